"""Watching processes that are not our children (a dead zygote's containers) through pidfds."""

from __future__ import annotations

import os
import select

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
