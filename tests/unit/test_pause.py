"""The pod's infra process (assets/built/linux/pause): it waits, ends on SIGTERM or SIGINT with 0, and as PID 1
of a pid namespace reaps the orphans handed to it (no zombie stays)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

PAUSE = Path(__file__).resolve().parents[2] / "assets" / "built" / "linux" / "pause"


def _ready(proc: subprocess.Popen[bytes]) -> None:
    """pause's handlers are in place once it blocks in sigsuspend: wait for its SigCgt to list SIGTERM."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except FileNotFoundError:
            break
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt")), 16)
        if caught & (1 << (signal.SIGTERM - 1)) and "State:\tS" in status:
            return
        os.sched_yield()
    raise AssertionError("pause never got ready")


def test_version() -> None:
    out = subprocess.run([PAUSE, "-v"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout == "wasmlab-pause 1\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ends_on_stop_signals_with_zero(sig: int) -> None:
    proc = subprocess.Popen([PAUSE])
    _ready(proc)
    assert proc.poll() is None  # it waits: nothing but a signal ends it
    proc.send_signal(sig)
    assert proc.wait(10) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="a pid namespace needs root here")
def test_reaps_orphans_as_pid_1() -> None:
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", str(PAUSE)])
    try:
        # unshare's child is pause, PID 1 of the new namespace.
        deadline = time.monotonic() + 10
        children: list[str] = []
        while not children and time.monotonic() < deadline:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        pause = int(children[0])
        r, w = os.pipe()
        # An orphan in pause's namespace: sh starts `head` in the background and exits; head is reparented to
        # pause, and exits when we write a byte.
        orphan_maker = "exec 9<&0; head -c1 <&9 >/dev/null &"
        subprocess.run(["nsenter", "-t", str(pause), "--pid", "--", "/bin/sh", "-c", orphan_maker],
                       stdin=r, env={"PATH": "/usr/bin:/bin"}, check=True, timeout=10)
        os.close(r)
        orphans = Path(f"/proc/{pause}/task/{pause}/children").read_text().split()
        assert len(orphans) == 1, "head was not handed to pause"
        orphan = orphans[0]
        os.write(w, b"x")
        os.close(w)
        # Reaped: its /proc entry goes (a zombie would keep it, in state Z, for as long as pause lives).
        deadline = time.monotonic() + 10
        while Path(f"/proc/{orphan}").exists() and time.monotonic() < deadline:
            os.sched_yield()
        assert not Path(f"/proc/{orphan}").exists(), "the orphan stayed a zombie"
        os.kill(pause, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
