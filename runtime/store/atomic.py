"""Crash-safe file writes (temp file, fsync, rename) and flock-based locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from wasmlab.runtime.errors import DiskFull, StoreError, WasmlabError

TMP_PREFIX = ".tmp-"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory entry change (a create or a rename) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden temporary name in the same directory as PATH."""
    p = Path(path)
    return p.with_name(f"{TMP_PREFIX}{p.name}-{secrets.token_hex(6)}")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: int = 0o644, *,
                  sync: bool = True) -> Iterator[IO[bytes]]:
    """Open a temp file next to PATH; on a clean exit fsync it and rename it over PATH.

    Readers see either the old file or the whole new one. If the block raises, or the
    process dies, PATH is untouched (a killed process may leave a ``.tmp-*`` file behind,
    which stores sweep up). A full disk raises DiskFull naming PATH's folder.
    """
    target = Path(path)
    tmp = tmp_name(target)
    with writing_into(target.parent):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    if sync:
        fsync_dir(target.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Replace PATH with DATA atomically (same-directory temp file, fsync, rename)."""
    with atomic_writer(path, mode, sync=sync) as fh:
        fh.write(data)


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys: the bytes wasmlab hashes for manifests and configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, sync: bool = True) -> None:
    """Replace PATH with OBJ as JSON, atomically."""
    write_atomic(path, canonical_json(obj), sync=sync)


class Lock:
    """An advisory ``flock`` on a lock file; use it as a context manager.

    ``shared=True`` takes a shared lock (many holders), else an exclusive one.
    ``blocking=False`` makes ``acquire`` return False instead of waiting.
    The lock file is created if missing and never removed, so it does not race with holders.
    """

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False) -> None:
        self.path = Path(path)
        self.shared = shared
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        if self._fd is not None:
            raise StoreError(f"lock {self.path} is already held by this object",
                             "release it before acquiring it again")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open lock file {self.path}: {exc.strerror}",
                             "check that the lab home directory is writable") from None
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, op)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}",
                             "check the file system supports flock") from None
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, shared: bool = False) -> Iterator[Lock]:
    """``with locked(path):`` holds an flock on PATH for the block."""
    lock = Lock(path, shared=shared)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def remove_tree(path: str) -> None:
    """rm -rf, ignoring errors as shutil.rmtree(ignore_errors=True) does; symbolic links are removed, never
    followed. Not shutil: importing it brings zlib, bz2 and lzma into the zygote, whose every fork then
    copies their mappings."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                remove_tree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def full_disk_errno(exc: BaseException | None) -> int:
    """ENOSPC or EDQUOT if EXC, or an error it was raised from or while handling, is a full disk; else 0."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return 0


@contextlib.contextmanager
def writing_into(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk (ENOSPC, EDQUOT) met in the block into one typed error naming FOLDER.

    Also when another error was raised on account of it (a wasmlab error built from the OSError)."""
    try:
        yield
    except DiskFull:
        raise
    except (OSError, WasmlabError) as exc:
        code = full_disk_errno(exc)
        if not code:
            raise
        raise DiskFull(os.fspath(folder), quota=code == errno.EDQUOT) from None
