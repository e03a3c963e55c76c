"""A container's status from its state record and its process (no root, no container), and what each allows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime.status import ContainerStatus
from wasmlab.runtime.store.state import ExitRecord, StateDir, proc_start_time, status_of

S = ContainerStatus


@pytest.fixture
def sd(tmp_path: Path) -> StateDir:
    d = StateDir(str(tmp_path / "root"), "c1")
    d.make(fifo=True)
    return d


def _live(**extra: Any) -> dict[str, Any]:
    """A record for a process that is alive: this test's own."""
    pid = os.getpid()
    return {"id": "c1", "bundle": "/b", "pid": pid, "pid_start": proc_start_time(pid), **extra}


def _no_such_pid() -> int:
    """A pid the kernel never hands out (above pid_max)."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_created_while_the_exec_fifo_waits(sd: StateDir) -> None:
    assert status_of(_live(), sd) == "created"
    # runc lets a created container be paused: paused until resumed, then created again (the fifo says so).
    assert status_of(_live(paused=True), sd) == "paused"


def test_running_once_the_fifo_is_gone_and_paused_by_the_flag(sd: StateDir) -> None:
    os.unlink(sd.fifo)
    assert status_of(_live(), sd) == "running"
    assert status_of(_live(paused=True), sd) == "paused"
    assert status_of(_live(pid_start=None), sd) == "running"  # a record from before pid_start was kept


def test_an_exit_record_means_stopped_whatever_else(sd: StateDir) -> None:
    os.unlink(sd.fifo)
    sd.write_exit(ExitRecord(exit_code=0))
    assert status_of(_live(), sd) == "stopped"
    assert status_of(_live(paused=True), sd) == "stopped"


def test_a_corrupt_exit_record_is_ignored(sd: StateDir) -> None:
    Path(sd.exit_file).write_text('{"exit_code": 0, "from_the_future": 1}')
    assert sd.read_exit() is None
    assert status_of(_live(), sd) == "created"


def test_no_pid_yet_is_creating_or_stopped(sd: StateDir) -> None:
    assert status_of({"id": "c1", "status": "creating", "pid": 0}, sd) == "creating"
    assert status_of({"id": "c1", "status": "creating"}, sd) == "creating"
    assert status_of({"id": "c1", "status": "created", "pid": 0}, sd) == "stopped"


def test_a_vanished_process_is_stopped(sd: StateDir) -> None:
    assert status_of({"id": "c1", "pid": _no_such_pid(), "pid_start": 1}, sd) == "stopped"


def test_a_reused_pid_is_not_the_container(sd: StateDir) -> None:
    """The pid is alive but started at another time: someone else has it now."""
    record = _live()
    record["pid_start"] += 1
    assert status_of(record, sd) == "stopped"


def test_a_zombie_is_stopped(sd: StateDir) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # it has exited; not reaped, so it is a zombie
        assert proc_start_time(pid) is None
        assert status_of({"id": "c1", "pid": pid, "pid_start": 1}, sd) == "stopped"
    finally:
        os.waitpid(pid, 0)


# What each status allows, as youki's ContainerStatus and runc answer.
ALLOWED = {
    #            start  kill   pause  resume exec   delete alive
    S.CREATING: (False, False, False, False, False, True, True),
    S.CREATED: (True, True, False, False, False, True, True),
    S.RUNNING: (False, True, True, False, True, False, True),
    S.PAUSED: (False, True, False, True, False, False, True),
    S.STOPPED: (False, False, False, False, False, True, False),
}


@pytest.mark.parametrize("status", list(S))
def test_what_each_status_allows(status: ContainerStatus) -> None:
    got = (status.can_start(), status.can_kill(), status.can_pause(), status.can_resume(), status.can_exec(),
           status.can_delete(), status.alive)
    assert got == ALLOWED[status]


def test_status_parses_and_compares_as_its_string() -> None:
    assert set(ALLOWED) == set(S)
    for status in S:
        assert S.parse(status.value) is status and status == status.value
    assert S.parse("exited") is S.STOPPED and S.parse("") is S.STOPPED
    assert f"{S.PAUSED}" == "paused"
