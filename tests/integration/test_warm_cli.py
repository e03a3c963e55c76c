"""`wasmlab run` through the warm helper (issue 16): the same behaviour as the cold path, a version handshake,
idle exit, exit with its lab home, the system service/status/stop verbs, and the import budget of `run`."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, need_root, wait_gone
from tests.integration.test_terminal import Terminal

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
BUSYBOX = "wasmlab/busybox"
# WASMLAB_WARM=0 means no helper at all, used or started: a test that goes through the one it started says so.
WARM = {"WASMLAB_WARM": "120"}


def env_of(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WASMLAB_WARM"}
    return {**env, "WASMLAB_HOME": str(home), "WASMLAB_WARM": "0", **extra}  # helpers only where a test says


def wl(home: Path, *args: str, cwd: Path | None = None, input: str | None = None,
       extra: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, *args], cwd=cwd, env=env_of(home, **(extra or {})), capture_output=True,
                          text=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


def status(home: Path) -> dict[str, object] | None:
    r = wl(home, "system", "status", "--json")
    assert r.returncode == 0, r.stderr
    info: dict[str, object] | None = json.loads(r.stdout)["warm_helper"]
    return info


def start(home: Path, idle: float = 120) -> int:
    return start_at(home, idle)[0]


def start_at(home: Path, idle: float = 120) -> tuple[int, Path]:
    """The helper's pid and socket, as `system service` says them (a short-idle one may be gone already)."""
    r = wl(home, "system", "service", "--idle", str(idle))
    words = r.stdout.split()
    assert r.returncode == 0 and words[:2] == ["warm", "helper"] and words[3:5] == ["listens", "on"], r.stderr
    return int(words[2]), Path(words[5])


def stop(home: Path) -> None:
    r = wl(home, "system", "stop")
    assert r.returncode == 0, r.stderr
    assert status(home) is None


def wait_until(what: str, check: Callable[[], bool], timeout: float = 15) -> None:
    """Poll CHECK until it is true, with a deadline: the helper's exits are its own decisions."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    h = tmp_path_factory.mktemp("warm") / "home"
    assert wl(h, "samples", "-q", "--no-busybox").returncode == 0
    assert wl(h, "samples", "-q").returncode == 0
    yield h
    if status(h) is not None:
        print("stopping the warm helper of the test home before the leak checks")
        stop(h)


def is_running(home: Path, name: str) -> bool:
    return any(c["name"] == name and c["status"] == "running" for c in json.loads(wl(home, "ps", "--json").stdout))


def served(home: Path) -> int:
    info = status(home)
    assert info is not None
    return int(str(info["served"]))


def test_run_through_the_helper_equals_the_cold_path(home: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "vars.env").write_text("FROM_FILE=relative-to-cwd\n")
    cases: list[tuple[tuple[str, ...], str | None]] = [
        (("run", "--rm", "wasmlab/hello:compat"), None),
        (("run", "--rm", BUSYBOX, "sh", "-c", "echo out; echo err >&2; exit 3"), None),
        (("run", "--rm", "-e", "FROM_CALLER", BUSYBOX, "sh", "-c", "echo $FROM_CALLER"), None),
        (("run", "--rm", "--env-file", "vars.env", BUSYBOX, "sh", "-c", "echo $FROM_FILE"), None),
        (("run", "--rm", "-v", "./data:/data", BUSYBOX, "true"), None),
        (("run", "--rm", "-i", BUSYBOX, "cat"), "typed into stdin\n"),
        (("run", "--rm", "no-such-image"), None),
        (("run", "--no-such-flag", BUSYBOX), None),
        (("--debug", "run", "--rm", "wasmlab/exitcode:linux", "/exitcode", "42"), None),
    ]

    def all_runs(warm: bool = False) -> list[tuple[int, str, str]]:
        out = []
        for args, stdin in cases:
            r = wl(home, *args, cwd=cwd, input=stdin,
                   extra={"FROM_CALLER": "the caller's value", **(WARM if warm else {})})
            out.append((r.returncode, r.stdout, r.stderr))
        return out

    assert status(home) is None
    cold = all_runs()
    assert cold[2][1] == "the caller's value\n" and cold[3][1] == "relative-to-cwd\n" and cold[8][0] == 42
    start(home)  # its own environment has no FROM_CALLER: the value must come from the caller
    try:
        before = served(home)
        warm = all_runs(warm=True)
        assert served(home) - before == len(cases)  # every one went through the helper
    finally:
        stop(home)
    for (args, _), c, w in zip(cases, cold, warm, strict=True):
        assert c == w, f"{args}: cold {c!r} != warm {w!r}"


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 7), (signal.SIGTERM, 9)])
def test_ctrl_c_and_sigterm_are_forwarded(home: Path, signum: int, code: int) -> None:
    script = f'trap "echo got-it; exit {code}" INT TERM; echo ready; while :; do sleep 0.05; done'
    results = []
    for warm in (False, True):
        if warm:
            start(home)
        name = f"sig{signum}{'warm' if warm else 'cold'}"
        try:
            proc = subprocess.Popen([WASMLAB, "run", "--rm", "--name", name, BUSYBOX, "sh", "-c", script],
                                    env=env_of(home, **(WARM if warm else {})), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            # The handshake: the lab shows it running. (Its "ready" alone is not enough: a signal forwarded
            # before the container's state says "running" is dropped, cold or warm; see docs/design.md.)
            wait_until("the container runs", functools.partial(is_running, home, name))
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=20)
            results.append((proc.returncode, out, err))
            if warm:
                assert served(home) >= 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
                wl(home, "rm", "-f", name)
            if warm:
                stop(home)
    assert results[0] == results[1] == (code, "got-it\n", "")


def test_run_it_through_the_helper_has_the_callers_terminal_and_window_size(home: Path) -> None:
    start(home)
    try:
        term = Terminal(home, "run", "-it", "--rm", BUSYBOX, "sh", rows=24, cols=77,
                        env=env_of(home, TERM="dumb", **WARM))
        try:
            term.read_until(b"# ")
            term.type(b"echo tty=$(tty) size=$(stty size) mark-$((6*7))\r")
            line = term.read_until(b"mark-42")
            assert b"tty=/dev/pts/0" in line and b"size=24 77" in line, line
            term.resize(30, 90)  # SIGWINCH reaches the caller, which forwards it
            term.type(b"echo size=$(stty size) mark-$((6*8))\r")
            assert b"size=30 90" in term.read_until(b"mark-48")
            term.type(b"exit 3\r")
            assert term.exit_code() == 3
            assert term.cooked()
        finally:
            term.close()
        assert served(home) == 1
    finally:
        stop(home)


def test_a_helper_with_other_code_refuses_and_exits(home: Path) -> None:
    pid = start(home)
    source = ROOT / "lab" / "cli" / "warm.py"
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # as an edit would
    try:
        r = wl(home, "run", "--rm", "wasmlab/hello:compat", extra=WARM)
        assert r.returncode == 0 and r.stdout == "hello world from wasmlab !!!!\n", r.stderr
        wait_gone(pid)  # it never runs stale code: it refused and ended
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    # The run that found it stale started a fresh one in its place (WASMLAB_WARM is on here).
    wait_until("the helper started in its place answers", lambda: status(home) is not None)
    info = status(home)
    assert info is not None and info["pid"] != pid and info["served"] == 0, info
    stop(home)


def test_idle_helper_stops_by_itself(home: Path) -> None:
    pid, sock = start_at(home, idle=0.5)
    wait_until("the idle helper removes its socket", lambda: not sock.exists())
    wait_gone(pid)


def test_helper_never_outlives_its_lab_home(tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "home"
    pid, sock = start_at(other)
    shutil.rmtree(other)
    wait_gone(pid)
    assert not sock.exists()


def test_status_and_stop_verbs(home: Path) -> None:
    r = wl(home, "system", "status")
    assert r.returncode == 0 and r.stdout.startswith("warm helper: not running"), r.stdout
    pid = start(home)
    r = wl(home, "system", "status")
    assert r.stdout.startswith(f"warm helper: running, pid {pid}"), r.stdout
    assert wl(home, "system", "service").stdout.startswith(f"warm helper {pid} ")  # one per home
    r = wl(home, "system", "stop")
    assert r.returncode == 0 and r.stdout == f"warm helper {pid} stopped\n"
    wait_gone(pid)
    assert wl(home, "system", "stop").stdout == "warm helper: not running\n"
    r = wl(home, "system", "service", "--idle", "0")
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "--idle 0" in r.stderr


FORBIDDEN_COLD = ("rich", "yaml", "wasmtime", "matplotlib", "textual", "ipywidgets", "wasmer_sdk")
# Through the helper the caller is a thin client: none of the command line's or the Lab's own modules.
FORBIDDEN_WARM = (*FORBIDDEN_COLD, "argparse", "wasmlab.runtime.service", "wasmlab.runtime.images.service",
                  "wasmlab.runtime.lifecycle", "wasmlab.lab.cli.containers", "tarfile", "sqlite3")


def imported(home: Path, warm: bool = False) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    r = subprocess.run([PYTHON, "-X", "importtime", "-m", "wasmlab.lab.cli", "run", "--rm", "wasmlab/hello:compat"],
                       env=env_of(home, **(WARM if warm else {})), capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    names = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return names, r


def test_import_budget_of_run(home: Path) -> None:
    names, r = imported(home)
    assert r.returncode == 0 and r.stdout == "hello world from wasmlab !!!!\n"
    assert "wasmlab.lab.cli.containers" in names  # the cold path: the Lab runs in this process
    assert not [n for n in names if n.split(".")[0] in FORBIDDEN_COLD], sorted(names)
    start(home)
    try:
        names, r = imported(home, warm=True)
        assert r.returncode == 0 and r.stdout == "hello world from wasmlab !!!!\n"
        assert served(home) == 1
    finally:
        stop(home)
    assert not [n for n in names if n in FORBIDDEN_WARM or n.split(".")[0] in FORBIDDEN_COLD], sorted(names)


def test_the_cold_path_starts_the_zygote_before_its_own_imports(home: Path) -> None:
    """The zygote (a Python loading wasmtime) starts while the command line imports the Lab: it is the
    first process the command starts, before argparse is even imported."""
    code = ("import sys, subprocess\n"
            "seen = []\n"
            "real = subprocess.Popen.__init__\n"
            "def spy(self, args, *a, **k):\n"
            "    seen.append(('argparse' in sys.modules, list(args)))\n"
            "    real(self, args, *a, **k)\n"
            "subprocess.Popen.__init__ = spy\n"
            "from wasmlab.lab.cli import main\n"
            "code = main(['run', '--rm', 'wasmlab/hello:compat'])\n"
            "print(seen[0][0], 'wasmlab.runtime.zygote' in seen[0][1], len(seen), code, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env_of(home), capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.stdout == "hello world from wasmlab !!!!\n", r.stderr
    assert r.stderr.splitlines()[-1] == "False True 1 0"  # one zygote, started first, and it was the one used


def test_leak_checks_stop_the_helper_first_and_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import LeakCheck

    other = tmp_path / "home"
    monkeypatch.setenv("WASMLAB_HOME", str(other))
    check = LeakCheck()
    pid = start(other)
    check.assert_clean()
    wait_gone(pid)
    assert f"leak check: stopped the warm helper {pid} of {other} first" in capsys.readouterr().out


def test_run_leaves_a_helper_by_itself_unless_told_not_to(home: Path) -> None:
    """With WASMLAB_WARM unset (a user's default), the first `run` starts a helper and the next goes through it;
    WASMLAB_WARM=0 keeps the cold path only."""
    assert status(home) is None
    r = wl(home, "run", "--rm", BUSYBOX, "true", extra={"WASMLAB_WARM": "0"})
    assert r.returncode == 0 and status(home) is None, r.stderr
    env = {k: v for k, v in env_of(home).items() if k != "WASMLAB_WARM"}
    first = subprocess.run([WASMLAB, "run", "--rm", BUSYBOX, "echo", "cold"], env=env, capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert first.returncode == 0 and first.stdout == "cold\n", first.stderr
    wait_until("the helper the first run started answers", lambda: status(home) is not None)
    info = status(home)
    assert info is not None
    second = subprocess.run([WASMLAB, "run", "--rm", BUSYBOX, "echo", "warm"], env=env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert second.returncode == 0 and second.stdout == "warm\n", second.stderr
    after = status(home)
    assert after is not None and after["pid"] == info["pid"] and after["served"] == 1, after
    stop(home)
