"""The WASI view of a Wasm container: its engine, preopens with their modes, argv, env, and the module's declared
linear memory (read from the module's bytes: no engine needed)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from wasmlab.runtime.errors import WasmlabError
from wasmlab.runtime.spec import runtime as rtspec

PAGE = 65536
WASM_MAGIC = b"\0asm\x01\0\0\0"
SECTION_IMPORT, SECTION_MEMORY = 2, 5
MODULE_READ_LIMIT = 256 << 20
# What each engine can tell about the guest's memory when it exits.
AT_EXIT_NOTES = {
    "wasmtime": "wasmtime reports the exported memory's size when the guest exits",
    "wasmer": "wasmer-sdk 0.5 has no memory inspection: the size at exit is unknown",
}


@dataclass
class DeclaredMemory:
    """One linear memory as the module declares it (pages of 64 KiB); maximum None when unbounded."""

    initial_pages: int
    maximum_pages: int | None
    imported: bool = False      # an import (env.memory) rather than the module's own memory section
    shared: bool = False
    memory64: bool = False

    @property
    def initial_bytes(self) -> int:
        return self.initial_pages * PAGE


@dataclass
class PreopenEntry:
    """A folder the guest can open: its guest path, the container path it is, the host folder behind it."""

    guest: str
    path: str
    host: str
    mode: str  # "rw" or "ro"


@dataclass
class WasiView:
    engine: str
    module: str                            # the module's path in the container
    argv: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    preopens: list[PreopenEntry] = field(default_factory=list)
    memories: list[DeclaredMemory] = field(default_factory=list)
    memory_at_exit_bytes: int | None = None
    memory_note: str = ""


class ModuleFormatError(ValueError):
    """The bytes are not a WebAssembly core module this reader understands."""


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ModuleFormatError("unexpected end of section")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self, bits: int = 32) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift >= bits + 7:
                raise ModuleFormatError("LEB128 integer too long")
        if out >> bits:
            raise ModuleFormatError("LEB128 integer out of range")
        return out

    def name(self) -> str:
        n = self.uleb()
        if self.pos + n > self.end:
            raise ModuleFormatError("name runs past its section")
        text = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return text

    def limits(self, imported: bool) -> DeclaredMemory:
        flags = self.byte()
        if flags & ~0x07:
            raise ModuleFormatError(f"unknown memory limits flags {flags:#x}")
        wide = 64 if flags & 0x04 else 32
        initial = self.uleb(wide)
        maximum = self.uleb(wide) if flags & 0x01 else None
        return DeclaredMemory(initial, maximum, imported, bool(flags & 0x02), bool(flags & 0x04))

    def skip_limits(self) -> None:
        flags = self.byte()
        self.uleb(64)
        if flags & 0x01:
            self.uleb(64)


def declared_memories(data: bytes) -> list[DeclaredMemory]:
    """The module's memories, imported ones first (as the memory index space counts them)."""
    if data[:8] != WASM_MAGIC:
        raise ModuleFormatError("not a WebAssembly core module (version 1)")
    pos, out_imported, out_own = 8, [], []
    while pos < len(data):
        head = _Reader(data, pos)
        section = head.byte()
        size = head.uleb()
        start, end = head.pos, head.pos + size
        if end > len(data):
            raise ModuleFormatError(f"section {section} runs past the end of the module")
        r = _Reader(data, start, end)
        if section == SECTION_IMPORT:
            for _ in range(r.uleb()):
                r.name()
                r.name()
                kind = r.byte()
                if kind == 0x00:    # function: a type index
                    r.uleb()
                elif kind == 0x01:  # table: a reference type and limits
                    r.byte()
                    r.skip_limits()
                elif kind == 0x02:
                    out_imported.append(r.limits(imported=True))
                elif kind == 0x03:  # global: a value type and mutability
                    r.byte()
                    r.byte()
                elif kind == 0x04:  # tag
                    r.byte()
                    r.uleb()
                else:
                    raise ModuleFormatError(f"unknown import kind {kind:#x}")
        elif section == SECTION_MEMORY:
            for _ in range(r.uleb()):
                out_own.append(r.limits(imported=False))
        pos = end
    return out_imported + out_own


def module_bytes(bundle: str, pid: int, path: str) -> bytes | None:
    """The module file's bytes: through the running container's root (/proc/PID/root, so links resolve inside
    it), else from the bundle's root on the host (the overlay's upper folder, then its lower layers, or the copied
    root), never following a link there. None when it cannot be read."""
    if pid:
        try:
            fd = os.open(f"/proc/{pid}/root/{path.lstrip('/')}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            return _read(fd)
    for root in _roots(bundle):
        try:
            fd = os.open(os.path.join(root, path.lstrip("/")), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        real = os.path.realpath(f"/proc/self/fd/{fd}")
        if not real.startswith(os.path.realpath(root) + "/"):
            os.close(fd)
            continue
        return _read(fd)
    return None


def _read(fd: int) -> bytes | None:
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(MODULE_READ_LIMIT)
    finally:
        os.close(fd)


def _roots(bundle: str) -> list[str]:
    try:
        overlay = rtspec.load_overlay(bundle)
    except (WasmlabError, OSError):  # a broken bundle: nothing to read
        return []
    if overlay is None:
        try:
            spec = rtspec.load(bundle)
        except (WasmlabError, OSError):
            return []
        return [spec.rootfs]
    lowers_dir, options = overlay
    opts = dict(o.split("=", 1) for o in options.split(",") if "=" in o)
    out = [opts["upperdir"]] if "upperdir" in opts else []
    for lower in opts.get("lowerdir", "").split(":"):
        if lower:
            out.append(lower if os.path.isabs(lower) else os.path.join(lowers_dir, lower))
    return out


def view(engine: str, bundle: str, cid: str, pid: int, memory_at_exit: int | None) -> WasiView:
    """The WASI view of the Wasm container whose bundle is BUNDLE: what its engine hands the guest."""
    from wasmlab.runtime import init

    spec = rtspec.load(bundle)
    plan = init.plan(spec, cid)
    sources = {rtspec.clean_path(m["destination"]): m.get("source") or "" for m in spec.mounts}
    preopens = []
    for pre in plan.preopens:
        host = sources.get(pre.path, "")
        if not host:
            # the container's root (or a folder of it): on the host, inside the bundle's root
            host = os.path.join(spec.rootfs, pre.path.lstrip("/")).rstrip("/") or "/"
        preopens.append(PreopenEntry(pre.guest, pre.path, host, "ro" if pre.readonly else "rw"))
    argv = list(spec.args)
    module = argv[0] if argv else ""
    if module and not module.startswith("/"):
        module = rtspec.clean_path(os.path.join(spec.cwd, module))
    out = WasiView(engine, module, argv, list(spec.env), preopens)
    data = module_bytes(bundle, pid, module) if module else None
    notes = []
    if data is None:
        notes.append(f"the module {module or '(none)'} cannot be read: its declared memory is unknown")
    else:
        try:
            out.memories = declared_memories(data)
        except ModuleFormatError as exc:
            notes.append(f"the module's memory cannot be read: {exc}")
    out.memory_at_exit_bytes = memory_at_exit if engine == "wasmtime" else None
    notes.append(AT_EXIT_NOTES.get(engine, f"{engine} does not report the guest's memory at exit"))
    out.memory_note = "; ".join(notes)
    return out
