"""The warm helper under kill, stop and signals (issue 16, helper `warmfix`): a dead caller is one hang-up for its
command, `system stop` is immediate and says the truth, a killed helper leaves its commands to finish and report,
and the spawn decision honours `run --help` and WASMLAB_WARM."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_root, wait_gone
from tests.integration.test_warm_cli import (
    BUSYBOX,
    WARM,
    WASMLAB,
    env_of,
    is_running,
    served,
    start,
    status,
    stop,
    wait_until,
    wl,
)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    h = tmp_path_factory.mktemp("warmlife") / "home"
    assert wl(h, "samples", "-q").returncode == 0
    yield h
    if status(h) is not None:
        print("stopping the warm helper of the test home before the leak checks")
        stop(h)


def running(home: Path) -> int:
    info = status(home)
    assert info is not None
    return int(str(info["running"]))


def names(home: Path) -> list[str]:
    return [c["name"] for c in json.loads(wl(home, "ps", "-a", "--json").stdout)]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def warm_run(home: Path, *args: str, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen([WASMLAB, "run", *args], env=env_of(home, **WARM), stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_a_killed_caller_is_one_hang_up_and_its_command_ends(home: Path) -> None:
    """SIGKILL of a foreground `run --rm` client: its command gets SIGHUP once (as from a closed terminal; the
    helper used to send it on every pass of its loop, and the second became SIGKILL), lives on while the
    container does, and ends once the container is removed. The helper stays idle meanwhile."""
    helper = start(home)
    proc = warm_run(home, "--rm", "--name", "k3", BUSYBOX, "sh", "-c",
                    'trap "echo hup" HUP; echo ready; while :; do sleep 0.05; done')
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        wait_until("k3 runs", functools.partial(is_running, home, "k3"))  # see test_warm_cli's signal test
        cpu = cpu_seconds(helper)
        proc.kill()
        proc.wait()
        # The command holds our pipe (the caller's stdio): its one SIGHUP went to the container, whose trap says so.
        assert proc.stdout.readline() == b"hup\n"
        assert is_running(home, "k3"), "a second hang-up reached it (the Lab makes a second stop signal SIGKILL)"
        assert running(home) == 1
        r = wl(home, "rm", "k3")
        assert r.returncode == 2 and "rm -f" in r.stderr, r.stderr  # still running: podman's answer
        assert wl(home, "rm", "-f", "k3").returncode == 0
        wait_until("its command ends", lambda: running(home) == 0, timeout=20)
        assert proc.stdout.read() == b""  # nothing else was written: no second hup
        assert "k3" not in names(home)
        assert cpu_seconds(helper) - cpu < 1.0  # it never spun on the dead caller's socket
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        wl(home, "rm", "-f", "k3")
        stop(home)


def test_system_stop_is_immediate_and_its_commands_finish(home: Path) -> None:
    """`system stop` while a command runs: the helper is gone when stop says so (status agrees), and the command
    goes on with its caller's stdio and reports its exit as if nothing happened."""
    helper = start(home)
    proc = warm_run(home, "-i", "--rm", BUSYBOX, "sh", "-c", "echo started; read x; echo ran $x; exit 4",
                    stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"started\n"
        r = wl(home, "system", "stop")
        assert (r.returncode, r.stdout) == (0, f"warm helper {helper} stopped (the command it started goes on in its "
                                               "own process, and ends normally)\n"), r.stderr
        wait_gone(helper, timeout=1)  # stop waited for it: it is gone already
        assert status(home) is None
        out, err = proc.communicate(b"go\n", timeout=30)
        assert (proc.returncode, out, err) == (4, b"ran go\n", b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert names(home) == []  # --rm was done by the command itself


def test_a_killed_helper_leaves_its_command_to_run_and_report(home: Path) -> None:
    """kill -9 of the helper mid-run: the client still forwards signals (straight to the command, through its
    pidfd) and returns the command's own exit, not an error that invites running it twice."""
    helper = start(home)
    proc = warm_run(home, "--rm", "--name", "orphan", BUSYBOX, "sh", "-c",
                    'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.05; done')
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        wait_until("it runs", functools.partial(is_running, home, "orphan"))
        os.kill(helper, signal.SIGKILL)
        wait_gone(helper)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (5, b"got-term\n", b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            wl(home, "rm", "-f", "orphan")
    assert "orphan" not in names(home)
    assert status(home) is None


def test_run_help_starts_neither_a_helper_nor_a_zygote(home: Path) -> None:
    code = ("import sys, subprocess\n"
            "seen = []\n"
            "real = subprocess.Popen.__init__\n"
            "def spy(self, args, *a, **k):\n"
            "    seen.append(' '.join(args))\n"
            "    real(self, args, *a, **k)\n"
            "subprocess.Popen.__init__ = spy\n"
            "from wasmlab.lab.cli import main\n"
            "try:\n"
            "    main(['run', '--help'])\n"
            "except SystemExit as exc:\n"
            "    print('exit', exc.code, seen, file=sys.stderr)\n")
    env = {k: v for k, v in env_of(home).items() if k != "WASMLAB_WARM"}  # a user's default: helpers on
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.stdout.startswith("usage: wasmlab run"), r.stderr
        assert r.stderr.splitlines()[-1] == "exit 0 []"
    finally:
        if status(home) is not None:
            stop(home)


def test_warm_0_keeps_a_live_helper_out_of_the_run(home: Path) -> None:
    start(home)
    try:
        before = served(home)
        r = wl(home, "run", "--rm", BUSYBOX, "echo", "cold", extra={"WASMLAB_WARM": "0"})
        assert (r.returncode, r.stdout) == (0, "cold\n"), r.stderr
        assert served(home) == before
        r = wl(home, "run", "--rm", BUSYBOX, "echo", "warm", extra=WARM)
        assert (r.returncode, r.stdout) == (0, "warm\n"), r.stderr
        assert served(home) == before + 1
    finally:
        stop(home)


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "5s"])
def test_a_bad_warm_setting_is_refused_in_one_line(home: Path, value: str) -> None:
    assert status(home) is None
    r = wl(home, "run", "--rm", BUSYBOX, "echo", "ran", extra={"WASMLAB_WARM": value})
    assert (r.returncode, r.stdout) == (125, ""), r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"Error: WASMLAB_WARM={value!r} "), r.stderr
    assert "(hint: WASMLAB_WARM=300 " in r.stderr and "WASMLAB_WARM=0 uses none" in r.stderr
    assert status(home) is None and names(home) == []  # nothing started, nothing made
