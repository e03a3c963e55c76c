"""Spare folders made ahead of time (when idle), each claimed whole by one rename on a container's start path."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from wasmlab.runtime.store.atomic import remove_tree

MAKING = ".making-"  # a spare being made: hidden from claim, flocked by its maker while it is made


class SpareFolders:
    """``ROOT/<token>``: folders MAKE has filled completely, ready to become somebody's folder by one rename.

    A folder costs several directory and file creations, each a journal entry: 0.1-0.2 ms apiece on a busy
    ext4 here, milliseconds in its bad moments. One rename costs about 12 us. So folders are made when
    nobody waits (``refill``), and taken on the start path (``claim``). A spare is made as ``.making-<token>``
    under its maker's flock and renamed to its ready name only once whole, so a claim never gets a half-made
    one; a maker killed half-way leaves a ``.making-`` folder, which the next refill (or ``clear``) removes.
    Spares persist across processes: what one command makes ahead, the next one claims (a rename is atomic,
    so two claimers never get the same spare).
    """

    def __init__(self, root: Path, make: Callable[[Path], None], keep: int = 1) -> None:
        self.root = root
        self._make = make
        self.keep = keep

    def _ready(self) -> list[str]:
        try:
            return [name for name in os.listdir(self.root) if not name.startswith(".")]
        except OSError:
            return []

    def claim(self, target: Path) -> bool:
        """Move a ready spare to TARGET, a new name in the same file system; False when there is none."""
        for name in self._ready():
            if os.path.lexists(target):
                return False  # never over somebody's folder (rename(2) would replace an empty one)
            try:
                os.rename(self.root / name, target)
                return True
            except FileNotFoundError:
                continue  # another process took that one first
            except OSError:
                return False
        return False

    def claim_held(self, target: Path) -> int:
        """As claim, with the spare flocked (store/creator.py) before it is renamed to TARGET: whoever sees it
        there finds it held. The descriptor that holds the lock, or -1 when there is no spare."""
        for name in self._ready():
            if os.path.lexists(target):
                return -1
            try:
                fd = os.open(self.root / name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue  # another process took that one first
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(self.root / name, target)
                return fd
            except (BlockingIOError, FileNotFoundError):
                os.close(fd)
                continue  # another claimer holds it, or has taken it
            except OSError:
                os.close(fd)
                return -1
        return -1

    def refill(self) -> int:
        """Make spares until KEEP are ready (and remove what killed makers left); returns how many were made."""
        self.sweep()
        made = 0
        for _ in range(self.keep - len(self._ready())):
            self._make_one()
            made += 1
        return made

    def _make_one(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(6)
        work = self.root / f"{MAKING}{token}"
        work.mkdir()
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A sweep may have taken it between mkdir and flock: then it is gone (and making in it fails).
            if os.fstat(fd).st_nlink == 0:
                raise FileNotFoundError(errno.ENOENT, "removed while being made", str(work))
            self._make(work)
            os.rename(work, self.root / token)
        except BaseException:
            remove_tree(str(work))
            raise
        finally:
            os.close(fd)  # the lock goes with it

    def sweep(self) -> int:
        """Remove ``.making-`` folders whose maker is gone (its flock is free); returns how many."""
        removed = 0
        try:
            names = [name for name in os.listdir(self.root) if name.startswith(MAKING)]
        except OSError:
            return 0
        for name in names:
            try:
                fd = os.open(self.root / name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its maker is at work
                remove_tree(str(self.root / name))
                removed += 1
            finally:
                os.close(fd)
        return removed

    def clear(self) -> None:
        """Remove every spare (a reset; or before the folders' layout changes)."""
        with contextlib.suppress(OSError):
            self.sweep()
        for name in self._ready():
            remove_tree(str(self.root / name))
        with contextlib.suppress(OSError):
            os.rmdir(self.root)
