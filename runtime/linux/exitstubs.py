"""Native signal handlers that end the process at once with a chosen status: no thread, no Python, no epoch."""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import struct

from wasmlab.runtime.linux.syscalls import _libc

# Each stub is `mov edi, STATUS; movabs rax, _exit; jmp rax`: _exit(2) is async-signal-safe, so the stub is
# a complete signal handler. A Wasm guest that spins in a loop, or blocks in a host call, ends at once with
# the status a shell would give (128 + signal), where a Python handler would wait for the guest to return.
_STUB = struct.Struct("<BI2sQ2s")
_STUB_SIZE = 32

_signal = _libc.signal
_signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
_signal.restype = ctypes.c_void_p


class ExitStubs:
    """One page of x86-64 code, made once (in the zygote) and inherited by every fork."""

    def __init__(self, statuses: dict[int, int]) -> None:
        self.statuses = dict(statuses)
        exit_addr = ctypes.cast(_libc._exit, ctypes.c_void_p).value
        assert exit_addr is not None
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        for i, status in enumerate(self.statuses.values()):
            self._page[i * _STUB_SIZE:i * _STUB_SIZE + _STUB.size] = _STUB.pack(
                0xBF, status, b"\x48\xb8", exit_addr, b"\xff\xe0")
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        if _libc.mprotect(ctypes.c_void_p(base), mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
            raise OSError(ctypes.get_errno(), "mprotect of the signal stubs failed")
        self._handlers = {sig: base + i * _STUB_SIZE for i, sig in enumerate(self.statuses)}
        self.installed_in = 0  # the process that installed them last (forks inherit the handlers too)

    def install(self) -> None:
        """Make each signal end this process with its status (until execve or another handler)."""
        if self.installed_in == os.getpid():
            return
        for sig, addr in self._handlers.items():
            _signal(sig, addr)
        self.installed_in = os.getpid()


def install_early(statuses: dict[int, int]) -> None:
    """In a container's init, first thing after fork: a stop signal that comes during setup (or while a
    created container waits for `start`) ends it, instead of meeting the zygote's no-op handler and being
    lost. The stubs are normally made by the parent before fork; `execve` resets the handlers."""
    made = stubs(statuses)
    if made is not None:
        made.install()


def supported() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


_STUBS: ExitStubs | None = None
_REFUSED = False


def stubs(statuses: dict[int, int]) -> ExitStubs | None:
    """The process's stubs for these statuses (made on first use), or None where the CPU is not x86-64."""
    global _STUBS, _REFUSED
    if _REFUSED or not supported():
        return None
    if _STUBS is None or _STUBS.statuses != statuses:
        try:
            _STUBS = ExitStubs(statuses)
        except OSError:
            _REFUSED = True  # no executable memory here (an LSM's execmem rule): the handlers fall back
            return None
    return _STUBS
