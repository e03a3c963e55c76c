"""A container folder's creator lock: an flock on the folder, held by whoever makes (or runs) the container in it.

The kernel drops an flock when its holder dies, however it dies (SIGKILL included). So a folder whose record says
"being created" and whose lock is free was left by a creator that died before its container existed: it is no
container, and whoever looks next removes it (`take_if_free`). The lock is taken before anyone can see the folder
(a spare is locked before it is renamed into place), so a live creator's folder is never taken for a dead one's.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


def hold(folder: Path) -> int:
    """Lock FOLDER, a folder just made and not yet shown to anybody; the descriptor holds the lock (close it to
    release). Blocks only if somebody else holds it, which cannot happen to a new folder."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def take_if_free(folder: Path) -> int | None:
    """The lock on FOLDER if its creator is gone (nobody holds it): a descriptor to close once done; None while
    its creator lives, or when the folder is gone."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def is_free(folder: Path) -> bool:
    """True when nobody makes or runs a container in FOLDER (its lock is free)."""
    fd = take_if_free(folder)
    if fd is None:
        return False
    os.close(fd)
    return True
