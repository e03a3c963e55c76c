"""Work folders under the lab home: each held by its owner's flock while it works, swept once the owner is gone.

A folder is claimed under a hidden name (``.claim-*``), its ``.owner`` file is locked (an exclusive ``flock``
held for the owner's life), and only then is it renamed to its visible name (``KIND-TOKEN``). So every visible
folder is locked from the moment it can be seen, and the kernel drops the lock when its owner dies, however it
dies (SIGKILL included). :func:`sweep` removes each visible folder whose lock it can take: work whose owner is
gone. A claim killed in the few microseconds before its rename leaves an empty ``.claim-*`` folder, which a
sweep removes once it is older than :data:`CLAIM_GRACE` seconds.

A claim and the assignment that keeps its :class:`WorkFolder` happen with stop signals held (:func:`stop_signals_held`):
a SIGINT between the two would otherwise leave a visible folder nobody releases until the next sweep.

The lock descriptor is close-on-exec: a helper the owner starts (the zygote) never inherits it, so it cannot
keep a dead owner's work alive.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from wasmlab.runtime.store.atomic import remove_tree
from wasmlab.runtime.store.usage import allocated

OWNER = ".owner"
CLAIM_PREFIX = ".claim-"
CLAIM_GRACE = 600.0
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@dataclass
class SweepReport:
    """What a sweep removed: the folders (their names) and the disk space they used, in bytes."""

    folders: list[str] = field(default_factory=list)
    bytes: int = 0


class WorkFolder:
    """A claimed work folder; :meth:`release` (or leaving the ``with`` block) removes it and frees its lock."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the folder (whatever its owner made read-only included), then drop the lock. A stop signal that
    arrives meanwhile takes effect afterwards: cleanup is what it would interrupt."""
        if self._fd is None:
            return
        with stop_signals_held():  # a stop signal during the removal takes effect once it is done
            remove_writable(self.path)
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> WorkFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(root: str | os.PathLike[str], kind: str) -> WorkFolder:
    """Make and lock a fresh work folder ``ROOT/KIND-TOKEN`` (ROOT is created if missing)."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    hidden = base / f"{CLAIM_PREFIX}{kind}-{token}"
    hidden.mkdir(mode=0o700)
    fd = -1
    try:
        fd = os.open(hidden / OWNER, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        visible = base / f"{kind}-{token}"
        os.rename(hidden, visible)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        remove_tree(str(hidden))
        raise
    return WorkFolder(visible, fd)


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP take effect when the block ends (their handler runs just after it). For a claim
    and the assignment that records it: a handler raising between the two leaves a folder its owner no longer
    knows of. Only the main thread runs Python's handlers, so only it needs this.

    Blocking them in this thread is not enough: the kernel hands a signal sent to the process to any thread that
    does not block it, and Python then runs the handler in the main thread at once. So the handlers are also
    swapped for one that only notes the signal, and the noted signal is handed to the old handler afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    handlers: dict[int, _Handler] = {}
    for stop in STOP_SIGNALS:
        handler = signal.getsignal(stop)
        if handler is not None:  # None: set outside Python, left alone
            handlers[stop] = handler
            signal.signal(stop, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # one blocked here is delivered now, to its handler
        for signum in dict.fromkeys(noted):
            _deliver(signum, handlers[signum])


_Handler = Callable[[int, FrameType | None], Any] | int


def _deliver(signum: int, handler: _Handler) -> None:
    """Hand a signal that arrived while held to the handler it would have met."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # its default action (SIGINT's default is Python's own handler, a callable)


def owner_alive(path: str | os.PathLike[str]) -> bool:
    """True while the folder's owner holds its lock."""
    fd = _open_owner(Path(path))
    if fd < 0:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False


def sweep(root: str | os.PathLike[str], on_stale: Callable[[Path], None] | None = None) -> SweepReport:
    """Remove the work folders under ROOT whose owner is gone; returns what was removed.

    ``on_stale(path)`` is called first for each such folder (to undo what its owner started outside it: a
    build's RUN containers). If it raises, the folder is kept, so that the record is not lost.
    """
    report = SweepReport()
    base = Path(root)
    try:
        entries = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return report
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if entry.name.startswith(CLAIM_PREFIX):
            try:
                young = time.time() - entry.stat(follow_symlinks=False).st_mtime < CLAIM_GRACE
            except FileNotFoundError:
                continue
            if young or owner_alive(path):
                continue
            report.bytes += allocated([path])
            remove_writable(path)
            continue
        if entry.name.startswith("."):
            continue
        fd = _open_owner(path)
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        continue  # its owner is at work
                    raise
            # Ours now (or never claimed through claim(): a folder without an owner file): its owner is gone.
            if on_stale is not None:
                try:
                    on_stale(path)
                except Exception:
                    continue
            size = allocated([path])
            remove_writable(path)
            if not os.path.lexists(path):
                report.folders.append(entry.name)
                report.bytes += size
        finally:
            if fd >= 0:
                os.close(fd)
    return report


def _open_owner(path: Path) -> int:
    try:
        return os.open(path / OWNER, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return -1
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return -1
        raise


def remove_writable(path: str | os.PathLike[str]) -> None:
    """rm -rf PATH, first making its folders writable (a build may leave read-only ones behind)."""
    top = os.fspath(path)
    for dirpath, dirnames, _ in os.walk(top):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o700)
                except OSError:
                    pass
    remove_tree(top)
