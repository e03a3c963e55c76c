"""podman's habits for logs (k8s-file records, --tail, --since, -t, -f, a size cap), published ports (-p) through a
forwarder into the container's network namespace, ps --format and -q, and `system df` / `system reset`."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime import Lab

from tests.conftest import ROOT, busybox, need_root

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
ASSETS = ROOT / "assets" / "built"
LOOP = "localhost/loop:latest"          # the native loop sample
BUSYBOX = "localhost/bb:latest"
K8S_LINE = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_root()
    tmp = tmp_path_factory.mktemp("logsports")
    home = tmp / "home"
    with Lab(home) as lab:
        ctx = tmp / "loop"
        ctx.mkdir()
        shutil.copy2(ASSETS / "linux" / "loop", ctx / "loop")
        (ctx / "Containerfile").write_text('FROM scratch\nCOPY loop /\nCMD ["/loop", "0", "20"]\n')
        lab.build(ctx, tag=LOOP)
        ctx = tmp / "bb"
        (ctx / "bin").mkdir(parents=True)
        shutil.copy2(busybox(), ctx / "bin" / "busybox")
        (ctx / "Containerfile").write_text('FROM scratch\nCOPY bin/ /bin/\nRUN ["/bin/busybox", "--install", "-s", '
                                           '"/bin"]\nRUN mkdir -p /www /tmp && echo "hello through -p" > '
                                           '/www/index.html\nCMD ["/bin/sh"]\n')
        lab.build(ctx, tag=BUSYBOX)
    return home


@pytest.fixture
def lab(home: Path) -> Iterator[Lab]:
    with Lab(home) as lab:
        yield lab
        for c in lab.ps(all=True):
            lab.rm(c.id, force=True)


def wl(home: Path, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WASMLAB_HOME=str(home))
    return subprocess.run([WASMLAB, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def wait_stopped(lab: Lab, name: str, timeout: float = 30) -> None:
    """The container's exit, heard as an event (no polling of the status). Not "until the status is no longer
    alive": that flips as soon as the process is a zombie, before its reaper has drained the last output into
    the log and recorded the exit (then sent the event). The exit record is what says the event was sent."""
    done = threading.Event()
    cid = lab.resolve(name)
    unsubscribe = lab.subscribe(lambda e: done.set() if getattr(e, "id", None) == cid
                                and type(e).__name__ == "ContainerExited" else None)
    try:
        if "exit" not in ((lab.inspect(name).state or {}).get("wasmlab") or {}):
            assert done.wait(timeout), f"{name} did not exit"
    finally:
        unsubscribe()


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed by a rotation in between
        return 0


def ticks(data: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"tick (\d+)\n", data)]


# -- logs ------------------------------------------------------------------------------------------------------

def test_the_log_records_a_time_per_line_and_tail_and_since_choose_lines(lab: Lab, home: Path) -> None:
    lab.run(LOOP, ["/loop", "12", "5"], detach=True, name="stamped")
    wait_stopped(lab, "stamped")
    folder = home / "containers" / lab.resolve("stamped")
    raw = (folder / "ctr.log").read_bytes().splitlines()
    assert raw and all(K8S_LINE.match(line) for line in raw), raw[:3]
    stamps = [K8S_LINE.match(line).group(1).decode() for line in raw]  # type: ignore[union-attr]
    times = [time.mktime(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone for s in stamps]
    assert all(abs(t - time.time()) < 120 for t in times) and stamps == sorted(stamps)
    entries, _ = lab.log_entries("stamped")
    assert b"".join(e.data for e in entries) == b"".join(b"tick %d\n" % i for i in range(1, 13)) + b"done\n"
    last, _ = lab.log_entries("stamped", tail=3)
    assert [e.data for e in last] == [b"tick 11\n", b"tick 12\n", b"done\n"]
    assert lab.log_entries("stamped", tail=0)[0] == []
    # --since the time of tick 7: tick 7 on (the loop sleeps 5 ms between ticks, so times differ)
    since = entries[6].time
    later, _ = lab.log_entries("stamped", since=since)
    assert later[0].data == b"tick 7\n" and len(later) == 7
    assert lab.log_entries("stamped", since="10m")[0] == entries  # a duration before now
    assert lab.log_entries("stamped", since=str(int(time.time()) + 60))[0] == []  # unix seconds
    # The command line: the last two lines, with the time each was recorded.
    r = wl(home, "logs", "--tail", "2", "-t", "stamped")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{entries[-2].time} tick 12", f"{entries[-1].time} done"]
    r = wl(home, "logs", "--since", since, "stamped")
    assert r.stdout == "".join(f"tick {i}\n" for i in range(7, 13)) + "done\n", r.stderr
    r = wl(home, "logs", "--since", "yesterday-ish", "stamped")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "cannot read the time" in r.stderr


def test_a_foreground_run_logs_stdout_and_stderr_as_records(lab: Lab, home: Path) -> None:
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        res = lab.run(BUSYBOX, ["/bin/sh", "-c", "echo out; echo err >&2; printf partial"], name="fg",
                      stdio=(null, w, w))
    finally:
        os.close(w)
        os.close(null)
    os.close(r)
    assert res.exit_code == 0
    records = (home / "containers" / res.id / "ctr.log").read_bytes().splitlines()
    parsed = sorted((m.group(2), m.group(3), m.group(4)) for m in map(K8S_LINE.match, records) if m)
    assert len(parsed) == len(records) == 3
    assert parsed == [(b"stderr", b"F", b"err"), (b"stdout", b"F", b"out"), (b"stdout", b"P", b"partial")]
    assert b"".join(e.data for e in lab.log_entries("fg")[0] if e.stream == "stdout") == b"out\npartial"


def test_an_older_raw_log_still_reads_and_refuses_since_in_one_line(lab: Lab, home: Path) -> None:
    res = lab.run(LOOP, ["/loop", "2", "0"], name="old", stdio=(0, os.open(os.devnull, os.O_WRONLY),
                                                                   os.open(os.devnull, os.O_WRONLY)))
    folder = home / "containers" / res.id
    meta = json.loads((folder / "meta.json").read_text())
    del meta["log"]  # as a container made before this wasmlab
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "ctr.log").write_bytes(b"raw one\nraw two\n")
    assert lab.logs("old") == ([b"raw one\nraw two\n"], 16)
    assert [e.data for e in lab.log_entries("old", tail=1)[0]] == [b"raw two\n"]
    r = wl(home, "logs", "--since", "1m", "old")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "before wasmlab recorded times" in r.stderr
    assert wl(home, "logs", "old").stdout == "raw one\nraw two\n"


def test_the_log_stays_under_its_cap_while_loop_runs_fast(home: Path) -> None:
    cap = 64 * 1024
    with Lab(home, log_size_max=cap) as lab:
        res = lab.run(LOOP, ["/loop", "60000", "0"], detach=True, name="flood")
        folder = home / "containers" / res.id
        seen = 0
        done = threading.Event()
        unsubscribe = lab.subscribe(lambda e: done.set() if getattr(e, "id", None) == res.id
                                    and type(e).__name__ == "ContainerExited" else None)
        try:
            while not done.is_set() and lab.inspect("flood").status.alive:
                sizes = [log_size(folder / name) for name in ("ctr.log", "ctr.log.1")]
                seen = max(seen, sum(sizes))
                assert sum(sizes) <= cap, sizes
                done.wait(0.005)
        finally:
            unsubscribe()
        wait_stopped(lab, "flood")
        total = sum(p.stat().st_size for p in folder.glob("ctr.log*"))
        assert total <= cap and (folder / "ctr.log.1").exists()
        entries, _ = lab.log_entries("flood")
        text = b"".join(e.data for e in entries)
        assert text.endswith(b"tick 60000\ndone\n")  # the newest lines are kept, the oldest dropped
        got = ticks(text)
        assert got == list(range(got[0], 60001)) and got[0] > 1  # what is kept has no hole
        # 60000 lines written (about 2.8 MB as records), at most 64 KiB kept
        lab.rm("flood", force=True)


def test_follow_prints_new_lines_as_they_come_with_tail(lab: Lab, home: Path) -> None:
    env = dict(os.environ, WASMLAB_HOME=str(home))
    lab.run(BUSYBOX, ["/bin/sh", "-c", "mkfifo /tmp/go; echo one; echo two; read x < /tmp/go; echo three"], detach=True,
            name="follow")
    # The follower starts once the first lines are in the log; it prints the last one, then what comes after.
    deadline = time.monotonic() + 20
    while len(lab.log_entries("follow")[0]) < 2:
        assert time.monotonic() < deadline
        threading.Event().wait(0.01)
    proc = subprocess.Popen([WASMLAB, "logs", "-f", "--tail", "1", "follow"], env=env, stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"two\n"
    lab.exec("follow", ["/bin/sh", "-c", "echo go > /tmp/go"], stdio=(0, 1, 2))
    assert proc.stdout.readline() == b"three\n"
    assert proc.wait(20) == 0  # and -f ends with the container


# -- published ports -------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Is anything listening on 127.0.0.1:PORT (a connect is answered)?"""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_browser_reaches_busybox_httpd_through_p_and_rm_frees_the_port(lab: Lab, home: Path) -> None:
    import urllib.request

    port = free_port()
    # busybox httpd in the foreground (-f); the shell says "ready" once httpd answers on the container's own
    # 127.0.0.1 (so loopback is up in there), and the test waits for that line in the log: the handshake.
    r = wl(home, "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:8080", BUSYBOX, "/bin/sh", "-c",
           "httpd -f -p 8080 -h /www & until wget -qO /dev/null http://127.0.0.1:8080/; do usleep 10000; done; "
           "echo ready; wait")
    assert r.returncode == 0, r.stderr
    stop = threading.Event()
    for entry in lab.follow_entries("web", stop=stop, poll=0.02):
        if entry.data == b"ready\n":
            break
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:
        page = resp.read()
    assert page == b"hello through -p\n"
    ps = json.loads(wl(home, "ps", "--json").stdout)
    assert ps[0]["ports"] == [f"127.0.0.1:{port}->8080/tcp"]
    # The same port again: one line, and nothing is left of the second container.
    before = {c.id for c in lab.ps(all=True)}
    r = wl(home, "run", "-d", "-p", f"127.0.0.1:{port}:8080", BUSYBOX, "/bin/sh", "-c", "exec sleep 60")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "already in use" in r.stderr, r.stderr
    assert {c.id for c in lab.ps(all=True)} == before
    forwarder = lab.inspect("web").info  # the forwarder's pid is in the container's meta
    fwd_pid = json.loads((home / "containers" / forwarder.id / "meta.json").read_text())["forwarder"]["pid"]
    assert b"portforward" in _cmdline(Path(f"/proc/{fwd_pid}"))
    assert wl(home, "rm", "-f", "web").returncode == 0
    assert not listening(port)  # nothing is left listening once rm returns
    assert b"portforward" not in _cmdline(Path(f"/proc/{fwd_pid}"))  # nor the forwarder


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_forwarder_ends_with_the_container_and_with_stop(lab: Lab) -> None:
    from wasmlab.runtime import RunOptions

    port = free_port()
    lab.run(BUSYBOX, ["/bin/sh", "-c", "exec sleep 60"], detach=True, name="stopped",
            options=RunOptions(publish=[f"{port}:80"]))
    assert listening(port)
    lab.stop("stopped", timeout=1)
    assert not listening(port)
    # A foreground run: the port lives while the container does, and is free when run returns.
    port2 = free_port()
    res = lab.run(BUSYBOX, ["/bin/true"], name="fgport", options=RunOptions(publish=[f"127.0.0.1:{port2}:80"]),
                  stdio=(0, 1, 2))
    assert res.exit_code == 0 and not listening(port2)


def test_bad_publish_specs_are_one_line(home: Path) -> None:
    for spec, words in (("80", "cannot read the port mapping"), ("1.2.3.999:80:80", "not an IP address"),
                        ("70000:80", "between 1 and 65535"), ("8080:80/udp", "only tcp")):
        r = wl(home, "run", "--rm", "-p", spec, BUSYBOX, "/bin/true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and words in r.stderr, (spec, r.stderr)
    assert json.loads(wl(home, "ps", "-a", "--json").stdout) == []


# -- ps --format and -q ----------------------------------------------------------------------------------------

def test_ps_format_go_template_table_and_json_exactly(lab: Lab, home: Path) -> None:
    a = lab.run(BUSYBOX, ["/bin/sleep", "60"], detach=True, name="alpha")
    b = lab.run(LOOP, ["/loop", "1", "0"], name="beta", stdio=(0, os.open(os.devnull, os.O_WRONLY),
                                                                os.open(os.devnull, os.O_WRONLY)))
    r = wl(home, "ps", "-a", "--format", "{{.ID}} {{.Names}} {{.State}} {{.Status}} {{.Image}}")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == sorted([f"{a.id} alpha running Running {BUSYBOX}",
                                                    f"{b.id} beta exited Exited (0) {LOOP}"])
    r = wl(home, "ps", "--format", "table {{.Names}}\\t{{.Command}}\\t{{.ExitCode}}")
    assert r.stdout == "NAMES  COMMAND        EXIT CODE\nalpha  /bin/sleep 60\n", repr(r.stdout)
    r = wl(home, "ps", "--format", "{{.Names}}\\t{{.CreatedAt}}")
    name, created = r.stdout.rstrip("\n").split("\t")
    assert name == "alpha" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} [+-]\d{4} \w+", created)
    assert json.loads(wl(home, "ps", "-a", "--format", "json").stdout) == json.loads(
        wl(home, "ps", "-a", "--json").stdout)
    for bad, words in (("{{.Nope}}", "no field .Nope"), ("{{json .}}", "only json, table"),
                       ("{{.ID | upper}}", "only json, table"), ("yaml", "only json, table")):
        r = wl(home, "ps", "--format", bad)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and words in r.stderr and not r.stdout, (bad, r)


def test_quiet_flags_print_ids_or_nothing(lab: Lab, home: Path) -> None:
    r = wl(home, "run", "-d", "-q", "--name", "quiet", BUSYBOX, "/bin/sleep", "60")
    assert r.returncode == 0 and re.fullmatch(r"[0-9a-f]{12}\n", r.stdout), r
    assert wl(home, "ps", "-q").stdout == r.stdout
    r = wl(home, "rm", "-f", "-q", "quiet")
    assert (r.returncode, r.stdout) == (0, "")
    assert wl(home, "tag", LOOP, "localhost/spare:1").returncode == 0
    r = wl(home, "rmi", "-q", "localhost/spare:1")
    assert (r.returncode, r.stdout) == (0, "")
    ids = wl(home, "images", "-q").stdout.split()
    assert ids and all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)


# -- system df and system reset --------------------------------------------------------------------------------

def du(*paths: Path, exclude: str | None = None) -> int:
    """`du -s -B1` summed over PATHS (each once), as a learner would check."""
    args = ["du", "-s", "-B1", "-c", *([f"--exclude={exclude}"] if exclude else []), *map(str, paths)]
    return int(subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()[-1].split()[0])


def test_system_df_figures_match_the_files_on_disk(lab: Lab, home: Path) -> None:
    lab.run(LOOP, ["/loop", "300", "0"], name="logged", stdio=(0, os.open(os.devnull, os.O_WRONLY),
                                                                os.open(os.devnull, os.O_WRONLY)))
    lab.run(BUSYBOX, ["/bin/sleep", "60"], detach=True, name="busy")
    rows = {r["kind"]: r for r in json.loads(wl(home, "system", "df", "--json").stdout)}
    folders = sorted((home / "containers").iterdir())
    logs = [p for f in folders for p in f.glob("ctr.log*")]
    assert rows["Images"]["size"] == du(home / "images") and rows["Images"]["total"] == 2
    assert rows["Images"]["active"] == 2
    assert rows["Containers"] == {"kind": "Containers", "total": 2, "active": 1,
                                  "size": du(*folders, exclude="ctr.log*"),
                                  "reclaimable": du(home / "containers" / lab.resolve("logged"), exclude="ctr.log*")}
    assert rows["Logs"]["size"] == du(*logs) > 0 and rows["Logs"]["total"] == 1  # the sleeper said nothing
    assert rows["Caches"]["size"] == du(home / "cache")
    text = wl(home, "system", "df").stdout.splitlines()
    assert text[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"] and len(text) == 8


def test_system_reset_asks_then_leaves_an_empty_home_and_no_process(home: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "home"
    shutil.copytree(home, scratch, ignore=shutil.ignore_patterns("containers", "run", "history.db*"))
    port = free_port()
    with Lab(scratch) as lab:
        lab.run(BUSYBOX, ["/bin/sh", "-c", "echo up; exec sleep 600"], detach=True, name="web",
                options=_publish(port))
        lab.run(LOOP, ["/loop", "0", "10"], detach=True, name="ticking")
        pids = [lab.inspect(n).info.pid for n in ("web", "ticking")]
        ids = [lab.resolve(n) for n in ("web", "ticking")]
    assert listening(port) and all(Path(f"/proc/{p}").exists() for p in pids)
    r = wl(scratch, "system", "reset", stdin="n\n")
    assert r.returncode == 1 and "nothing was removed" in r.stderr
    assert len(json.loads(wl(scratch, "ps", "--json").stdout)) == 2
    r = wl(scratch, "system", "reset", stdin="y\n")
    assert r.returncode == 0, r.stderr
    assert os.listdir(scratch) == []
    assert not listening(port)
    assert not any(_proc_alive(p) for p in pids)
    mine = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(scratch).encode() in _cmdline(p)]
    assert mine == []  # no zygote, forwarder or container of that home is left
    assert str(scratch) not in Path("/proc/self/mountinfo").read_text()
    cgroups = [c for c in Path("/sys/fs/cgroup").glob("*/wasmlab/*") if c.name in ids]
    assert cgroups == []
    # --force asks nothing; an empty home is reset again without complaint
    assert wl(scratch, "system", "reset", "--force").returncode == 0 and os.listdir(scratch) == []


def _publish(port: int) -> Any:
    from wasmlab.runtime import RunOptions

    return RunOptions(publish=[f"127.0.0.1:{port}:80"])


def _proc_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_rootless_publish_is_refused_in_one_line_and_doctor_lists_it() -> None:
    code = ("from wasmlab.runtime.service import Lab\n"
            "from wasmlab.runtime.errors import WasmlabError\n"
            "try:\n    Lab._check_publish(['8080:80'])\nexcept WasmlabError as e:\n    print(e.one_line())\n")
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env",
                        str(ROOT / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and "needs root here" in r.stdout, (r.stdout, r.stderr)
    report = json.loads(subprocess.run([WASMLAB, "doctor", "--json"], capture_output=True, text=True,
                                       timeout=60).stdout)
    assert any(line.startswith("-p/--publish: refused") for line in report["rootless"])
