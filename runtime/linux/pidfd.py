"""Watching processes that are not our children (a dead zygote's containers) through pidfds."""

from __future__ import annotations

import os
import select
import signal

from wasmlab.runtime.store.state import proc_start_time


def open_process(pid: int, start: int | None = None) -> int | None:
    """A pidfd for pid, or None when it is gone or the pid now names another process (start time differs)."""
    if pid <= 0:
        return None
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None
    # Opened first, checked after: a pid reused between the check and the open would otherwise slip through.
    now = proc_start_time(pid)
    if now is None or (start and now != start):
        os.close(fd)
        return None
    return fd


def wait_exit(fd: int, timeout: float | None) -> bool:
    """True once the process behind the pidfd has exited (or is a zombie); False on timeout. Closes nothing."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def wait_gone(pid: int, start: int | None = None, timeout: float | None = None) -> bool:
    """Wait until pid (started at start) is gone; True when it is, False on timeout."""
    fd = open_process(pid, start)
    if fd is None:
        return True
    try:
        return wait_exit(fd, timeout)
    finally:
        os.close(fd)


def end(pid: int, start: int | None = None, *, first: int | None = None, timeout: float = 5.0,
        then: int | None = signal.SIGKILL) -> None:
    """Make sure pid (started at start) ends: send FIRST (if any), wait up to TIMEOUT s, then send THEN (if
    any) and wait as long again. Through a pidfd, so a reused pid is never signalled."""
    fd = open_process(pid, start)
    if fd is None:
        return
    try:
        if first is not None:
            signal.pidfd_send_signal(fd, first)
        if not wait_exit(fd, timeout) and then is not None:
            signal.pidfd_send_signal(fd, then)
            wait_exit(fd, timeout)
    except OSError:
        pass  # it ended meanwhile
    finally:
        os.close(fd)
