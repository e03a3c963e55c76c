"""The compiled-module cache, keyed by module digest, engine, version and configuration, in memory and on disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ModuleCache(Generic[T]):
    """Compiled modules, shared by every container.

    The memory tier lives in the long-lived process and is inherited by each forked container.
    The disk tier is a folder of serialized artifacts, reached through a directory fd so it works
    after pivot_root. Writes are a temporary file plus rename, so concurrent containers are safe;
    an artifact that fails to load is recompiled and replaced, never trusted.
    """

    def __init__(self, namespace: str, folder: str | None, memory_slots: int = 32) -> None:
        self.namespace = namespace          # engine-version-config fingerprint
        self.folder = os.path.join(folder, namespace) if folder else None
        self.memory: dict[str, T] = {}      # oldest first; every fork copies its page tables, so it stays small
        self.memory_slots = memory_slots
        self._dir_fd: int | None = None

    def dir_fd(self) -> int | None:
        """Open (once) the disk tier; call before pivot_root."""
        if self._dir_fd is None and self.folder:
            try:
                os.makedirs(self.folder, mode=0o700, exist_ok=True)
                self._dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                self.folder = None
        return self._dir_fd

    def _keep(self, key: str, module: T) -> None:
        while len(self.memory) >= self.memory_slots:
            self.memory.pop(next(iter(self.memory)))
        self.memory[key] = module

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def get(self, data: bytes, compile_: Callable[[bytes], T], serialize: Callable[[T], bytes],
            deserialize: Callable[[bytes], T], key: str | None = None) -> tuple[T, str]:
        """The compiled module for data, and where it came from: 'memory', 'disk' or 'compiled'."""
        key = key or self.digest(data)
        hit = self.memory.get(key)
        if hit is not None:
            return hit, "memory"
        fd = self.dir_fd()
        name = key + ".cwasm"
        if fd is not None:
            try:
                blob_fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
                try:
                    blob = _read_all(blob_fd)
                finally:
                    os.close(blob_fd)
                module = deserialize(blob)
                self._keep(key, module)
                return module, "disk"
            except FileNotFoundError:
                pass
            except Exception:
                # A corrupt or stale artifact: forget it and compile again.
                try:
                    os.unlink(name, dir_fd=fd)
                except OSError:
                    pass
        module = compile_(data)
        self._keep(key, module)
        if fd is not None:
            tmp = f".{name}.{os.getpid()}.tmp"
            try:
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=fd)
                try:
                    os.write(out, serialize(module))
                finally:
                    os.close(out)
                os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except OSError:
                try:
                    os.unlink(tmp, dir_fd=fd)
                except OSError:
                    pass
        return module, "compiled"

    def warm(self, key: str, deserialize: Callable[[bytes], T]) -> bool:
        """Load one disk artifact into the memory tier (done by the long-lived process, off the start path)."""
        if key in self.memory:
            return True
        fd = self.dir_fd()
        if fd is None:
            return False
        try:
            blob_fd = os.open(key + ".cwasm", os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
            try:
                self._keep(key, deserialize(_read_all(blob_fd)))
            finally:
                os.close(blob_fd)
            return True
        except Exception:
            return False


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
