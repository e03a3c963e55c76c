"""The wasmer handler: WASI preview1 core modules run by wasmer-sdk, the container's files copied in and out.

wasmer-sdk 0.5.0 (import name ``wasmer_sdk``) is asynchronous and sandbox-based: a ``Wasmer`` client loads
packages, a sandbox holds in-memory files, and a command runs one package inside a sandbox. It has no
host-directory preopens, no memory limit and no CPU-time limit, so this handler maps a container onto it:

Files (the copy-in / copy-out mapping)
    Before the run, every preopened directory tree of the container is read into memory, at most
    ``copy_limit`` bytes (64 MiB, which the SDK then holds twice) and ``file_limit`` files (20000) in all;
    past that, ``run`` raises a ``HandlerError``. Guest paths under /proc, /sys, /dev and /workspace are
    skipped, as are special files, symbolic links to directories, dangling links and names that are not
    UTF-8; a preopen's walk stops
    where a longer preopen (a mount) begins, which is then walked for itself. The files reach the guest
    twice:

    * at their own guest paths (``/in.txt``, ``/data/x``), as files of the package. The guest reads them
      where it expects them, but anything it writes there lives only for that run and is discarded: the
      SDK cannot read that part of the guest's filesystem back. Empty directories are not reproduced.
    * under ``/workspace`` (``/workspace/in.txt``, ``/workspace/data/x``), the sandbox's one persistent
      directory (the SDK refuses files anywhere else), which so mirrors the container's whole tree. After
      the guest exits, the handler lists and reads ``/workspace`` back through the sandbox filesystem API
      and applies the differences to the container: new and modified files are written, files the guest
      deleted are unlinked, new directories are created and emptied ones removed. A path belongs to the
      preopen with the longest matching guest path; changes that belong to a read-only preopen are
      dropped (counted in the report key ``writeback_dropped``).

    So a guest that must change the container's files has to write below ``/workspace``. Modes, owners and
    times are not copied; written-back files are created 0644. The writes happen after the guest exits, not
    while it runs, and a failed write is reported on stderr without changing the exit status. The write-back
    never follows a symbolic link: each path is walked name by name with O_NOFOLLOW from its preopen, so a
    link on the way (a dangling one, one to a folder, one to a file) is reported, never written through,
    and only regular files are written.

Live mounts
    Writable mounts (``-v``, ``--mount``: preopens other than the root and cwd) are not copied: the package is
    then loaded from a folder whose ``wasmer.toml`` ``[fs]`` maps each of them live, both ways, while the guest
    runs (``_package_folder``); the root and read-only mounts are written into that folder and mapped as ``/``
    (the SDK opens mapped files read-write, so a read-only folder cannot be mapped live). See docs/handlers.md.

Limits
    ``memory_limit`` is not applied by the SDK (it has no such option). A module whose declared initial
    memory exceeds it is refused (exit ``EXIT_MEMORY_LIMIT``, as with wasmtime); growth while it runs is
    bounded only by the container's memory cgroup. ``cpu_time_ms`` is enforced like the wasmtime
    handler does it, by an ``ITIMER_VIRTUAL`` on the process, which counts the engine's compile and run
    threads; when it fires the guest is killed and the status is ``EXIT_CPU_LIMIT``.

Other differences from the wasmtime handler
    Components (layer 1) are refused: the SDK's command runner only takes core modules. The guest's
    ``argv[0]`` is the basename of ``process.args[0]`` (letters, digits and ``-_.+`` only; others become
    ``_``), because the SDK uses it as the command name. The guest's cwd is always ``/`` (as with
    wasi-libc anywhere); the SDK's ``.`` preopen points at the ``/workspace`` copy of the container's cwd.
    The environment reaches the guest in no particular order. Networking is disabled. The sandbox also
    shows the SDK's own ``/bin``, ``/etc``, ``/tmp``, ``/usr`` and ``/dev``; the container's files
    overlay them, and a container directory called ``/workspace`` is neither shown nor written.

Engine
    The client is created in the container's child process, never in the long-lived process (the SDK
    starts Tokio threads, which would not survive a fork). It needs a writable cache folder: the
    runtime's ``cache_dir_fd`` (subfolder ``wasmer-sdk-<version>``), else the folder opened by
    ``prepare`` (``cache_folder`` or a private temporary one), reached as ``/proc/self/fd/N``. The report
    key ``cache`` says ``compiled`` when the SDK added a compiled artifact during the run and ``disk``
    when it did not (two containers compiling at once may see each other's artifacts), or ``none`` when
    a throwaway folder in the container's /tmp had to be used. The SDK prints traps on the process's
    stderr itself; the handler captures fd 2 during the run so the trap is reported once.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import HandlerError, WasmModuleError
from wasmlab.runtime.handlers.base import (
    EXIT_BAD_MODULE,
    EXIT_BAD_WAT,
    EXIT_INVALID_MODULE,
    EXIT_KILLED,
    EXIT_MEMORY_LIMIT,
    EXIT_NO_START,
    EXIT_TRAP,
    STOP_STATUS,
    Preopen,
    Workload,
)
from wasmlab.runtime.handlers.binary import initial_memory
from wasmlab.runtime.handlers.detect import classify
from wasmlab.runtime.store.atomic import remove_tree

WASM_MAGIC = b"\0asm"
CORE_VERSION = b"\x01\x00\x00\x00"
WORKSPACE = "/workspace"
COPY_LIMIT = 64 << 20
FILE_LIMIT = 20000
SKIPPED_GUEST_PATHS = ("/proc", "/sys", "/dev", WORKSPACE)
_COMMAND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")
_MODULE_HINT = "rebuild the module for wasm32-wasi; `wasm-validate` shows where it breaks"


@dataclass
class Snapshot:
    """The container's preopened files as read before the run, by guest path."""

    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    total: int = 0


class WasmerHandler:
    name = "wasmer"
    aliases: tuple[str, ...] = ("wasmer-sdk",)
    wasm = True

    def __init__(self, cache_folder: str | None = None, copy_limit: int = COPY_LIMIT,
                 file_limit: int = FILE_LIMIT) -> None:
        self.cache_folder = cache_folder
        self.copy_limit = copy_limit
        self.file_limit = file_limit
        self._sdk: Any = None
        self._version: str | None = None
        self._cache_fd: int | None = None

    # -- in the long-lived process ------------------------------------------------------------------------

    def available(self) -> str | None:
        # find_spec, not import: loading the SDK adds ~40 MB to the process that forks containers,
        # so it is imported only by prepare(), when a container may use this engine.
        import importlib.util

        try:
            found = importlib.util.find_spec("wasmer_sdk") is not None
        except (ImportError, ValueError) as exc:
            return f"wasmer-sdk does not load here: {_first_line(exc)}"
        return None if found else "the wasmer-sdk package is not installed (pip install wasmer-sdk)"

    def version(self) -> str:
        from wasmlab.runtime.handlers import installed

        return installed.version("wasmer-sdk") or "unknown"

    def prepare(self) -> None:
        """Import the SDK and everything run() needs, and open the cache folder. Never starts the engine."""
        if self._sdk is not None:
            return
        # run() drives the SDK with an event loop and must import nothing after pivot_root.
        import asyncio.runners
        import concurrent.futures

        import wasmer_sdk
        import wasmer_sdk._api
        import wasmer_sdk._native

        del asyncio, concurrent

        self._sdk = wasmer_sdk
        self._version = self.version()
        self._open_cache_folder()

    def _open_cache_folder(self) -> None:
        folder = os.path.join(self.cache_folder, self._namespace()) if self.cache_folder else None
        if folder is None:
            import atexit

            # Not tempfile or shutil: they bring zlib, bz2 and lzma into the zygote, and so into every fork.
            folder = os.path.join(os.environ.get("TMPDIR") or "/tmp",
                                  f"wasmlab-wasmer-sdk-{os.getpid()}-{os.urandom(6).hex()}")
            os.mkdir(folder, 0o700)  # a fresh name: fails rather than reuse anybody's folder
            owner = (os.getpid(), folder)

            def _remove() -> None:
                if os.getpid() == owner[0]:     # never from a forked container
                    remove_tree(owner[1])

            atexit.register(_remove)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            self._cache_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self._cache_fd = None

    def can_handle(self, workload: Workload) -> bool:
        head = bytes(workload.head or b"")
        return head[:4] == WASM_MAGIC and head[4:8] == CORE_VERSION

    # -- inside the sandbox -------------------------------------------------------------------------------

    def run(self, workload: Workload) -> int:
        self.prepare()
        import asyncio  # already imported by prepare()

        t0 = time.perf_counter()
        with open(workload.path, "rb") as fh:
            data = fh.read()
        if classify(data[:64]) == "wat":
            data = _wat_to_wasm(data)
        if data[:4] != WASM_MAGIC:
            raise WasmModuleError("the entrypoint is not a WebAssembly module (no \\0asm magic)",
                                  _MODULE_HINT, exit_code=EXIT_INVALID_MODULE)
        if data[4:8] != CORE_VERSION:
            if data[6:8] == b"\x01\x00":
                raise HandlerError("the wasmer handler cannot run WebAssembly components (WASI 0.2)",
                                   "use the wasmtime handler, which runs components, "
                                   "or build a wasm32-wasi module")
            raise WasmModuleError(f"unsupported WebAssembly version {data[4:8].hex(' ')}", _MODULE_HINT,
                                  exit_code=EXIT_INVALID_MODULE)
        declared = initial_memory(data)
        if workload.memory_limit and declared > workload.memory_limit:
            # The SDK cannot cap linear memory; at least the declared start is checked, as wasmtime does.
            sys.stderr.write(f"wasmlab: the module needs more memory than the container's limit "
                             f"({workload.memory_limit // (1 << 20)} MiB): it starts with {declared // (1 << 20)} "
                             "MiB (hint: raise linux.resources.memory.limit)\n")
            return EXIT_MEMORY_LIMIT
        snapshot = self.snapshot(workload.preopens, live=live_mounts(workload.preopens))
        workload.report("copy_in_ms", (time.perf_counter() - t0) * 1e3)
        cache_root, cache_kind = self._cache_root(workload)
        before = _artifacts(cache_root) if cache_kind != "none" else set()
        try:
            capture = _StderrCapture()
            try:
                with capture:
                    status, message = asyncio.run(
                        self._run(workload, data, snapshot, cache_root, capture.real_fd))
            except BaseException:
                capture.forward()
                raise
            if message is None:
                capture.forward()
            else:
                _write_all(2, message.encode("utf-8", "replace"))
        finally:
            if cache_kind == "none":
                remove_tree(cache_root)
        if cache_kind != "none":
            cache_kind = "compiled" if _artifacts(cache_root) - before else "disk"
        workload.report("cache", cache_kind)
        workload.report("total_ms", (time.perf_counter() - t0) * 1e3)
        return status

    async def _run(self, workload: Workload, data: bytes, snapshot: Snapshot, cache_root: str,
                   stdout_err_fd: int) -> tuple[int, str | None]:
        """Run the command; the status and, for traps and link errors, the message for stderr."""
        sdk = self._sdk
        t = time.perf_counter()
        try:
            client = sdk.Wasmer(cache_root=cache_root)
        except sdk.WasmerError as exc:
            raise HandlerError(f"wasmer-sdk cannot start: {_first_line(exc)}",
                               "the cache folder must be writable; check that /proc is mounted") from None
        workload.report("engine_init_ms", (time.perf_counter() - t) * 1e3)
        folder: str | None = None
        try:
            t = time.perf_counter()
            command = _command_name(workload.args[0] if workload.args else "")
            live = live_mounts(workload.preopens)
            folder = _package_folder(cache_root, data, command, live, snapshot) if live else None
            try:
                if folder is not None:
                    package = await client.packages.load(_PathLike(folder))
                else:
                    package = await client.packages.create(sdk.PackageDefinition(
                        modules={"main": data},
                        commands={command: sdk.PackageCommandDefinition(module="main")},
                        entrypoint=command,
                        files={g: body for g, body in snapshot.files.items()},
                    ))
            except sdk.WasmerError as exc:
                raise _module_error(exc) from None
            workload.report("module_load_ms", (time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            mirror = {_workspace_path(g): body for g, body in snapshot.files.items()}
            sandbox = await client.sandboxes.create(packages=[package], files=mirror)
            try:
                parents = {_parent(g) for g in snapshot.files}
                for d in sorted(snapshot.dirs - parents - {"/"}):     # empty directories
                    await sandbox.fs.mkdir(_workspace_path(d), recursive=True)
                workload.report("sandbox_ms", (time.perf_counter() - t) * 1e3)
                status, message = await self._command(workload, sandbox, package, stdout_err_fd)
                t = time.perf_counter()
                await self.write_back(sandbox, snapshot, workload)
                workload.report("copy_out_ms", (time.perf_counter() - t) * 1e3)
                return status, message
            finally:
                await _quietly(sandbox.close())
        finally:
            await _quietly(client.close())
            if folder is not None:
                remove_tree(folder)     # the root's copy, read lazily while the guest ran

    async def _command(self, workload: Workload, sandbox: Any, package: Any,
                       err_fd: int) -> tuple[int, str | None]:
        import asyncio

        sdk = self._sdk
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[int] = loop.create_future()
        for sig, status in STOP_STATUS.items():
            try:
                loop.add_signal_handler(sig, _stop, stopped, status)
            except (ValueError, RuntimeError, OSError):   # not the main thread: leave signals alone
                pass
        env = dict(e.split("=", 1) for e in workload.env if "=" in e)
        # The SDK's "." (where wasi-libc resolves relative paths) is the /workspace copy of the cwd; a cwd
        # inside a live mount has no copy there, so its relative paths do not resolve (absolute ones do).
        cwd = _workspace_path(workload.cwd)
        stdin = "pipe" if _fd_open(0) else "closed"
        t = time.perf_counter()
        if workload.cpu_time_ms:
            signal.setitimer(signal.ITIMER_VIRTUAL, workload.cpu_time_ms / 1000.0)
        try:
            try:
                proc = await sandbox.command(package, workload.args[1:], cwd=cwd, env=env).spawn(
                    stdin=stdin, stdout="pipe", stderr="pipe")
            except sdk.WasmerError as exc:
                return _execution_failure(exc)
            if proc.stdin is not None:
                threading.Thread(target=_feed_stdin, args=(loop, proc.stdin), name="wasmlab-wasmer-stdin",
                                 daemon=True).start()
            pumps = asyncio.gather(_pump(proc.stdout, 1), _pump(proc.stderr, err_fd))
            waiting = asyncio.ensure_future(proc.wait())
            await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                await _quietly(proc.kill())
                await asyncio.wait({waiting}, timeout=2.0)
                pumps.cancel()
                pumps.add_done_callback(_retrieve)  # the kill may have ended a pump first: no asyncio warning
                if not waiting.done():
                    waiting.cancel()
                elif not waiting.cancelled():
                    waiting.exception()     # retrieved: the kill made it fail or end
                return stopped.result(), None
            await _quietly(pumps)
            try:
                output = waiting.result()
            except sdk.WasmerError as exc:
                if stopped.done():
                    return stopped.result(), None
                return _execution_failure(exc)
            if output.reason is sdk.ExitReason.TERMINATED:
                return (stopped.result() if stopped.done() else EXIT_KILLED), None
            return int(output.exit_code), None
        finally:
            if workload.cpu_time_ms:
                signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            workload.report("run_ms", (time.perf_counter() - t) * 1e3)
            for sig in STOP_STATUS:
                try:
                    loop.remove_signal_handler(sig)
                except (ValueError, RuntimeError, OSError):
                    pass

    # -- the copy-in / copy-out mapping --------------------------------------------------------------------

    def snapshot(self, preopens: list[Preopen], live: list[Preopen] | None = None) -> Snapshot:
        """Read every preopened tree into memory (see the module docstring for what is skipped); the LIVE
        ones (mounts the SDK maps itself) are left out."""
        snap = Snapshot()
        for pre in preopens:
            guest = _normal(pre.guest)
            if _skipped(guest) or not _owned_by(guest, preopens, pre) or pre in (live or ()):
                continue
            self._walk(pre, preopens, pre.path, guest, snap)
        return snap

    def _walk(self, pre: Preopen, preopens: list[Preopen], host: str, guest: str, snap: Snapshot) -> None:
        snap.dirs.add(guest)
        try:
            entries = sorted(os.scandir(host), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                continue
            child = _join(guest, entry.name)
            if _skipped(child) or not _owned_by(child, preopens, pre):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    self._walk(pre, preopens, entry.path, child, snap)
                    continue
                if not entry.is_file(follow_symlinks=True):
                    continue             # special files, dangling links, links to directories
                size = entry.stat(follow_symlinks=True).st_size
                if snap.total + size > self.copy_limit or len(snap.files) >= self.file_limit:
                    raise HandlerError(
                        f"the container's files are too large for the wasmer handler, which copies them "
                        f"into memory: more than {self.copy_limit >> 20} MiB or {self.file_limit} files "
                        f"(stopped at {child})",
                        "use the wasmtime handler, or keep large data out of the container's root and mounts")
                with open(entry.path, "rb") as fh:
                    body = fh.read()
            except OSError:
                continue
            snap.total += len(body)
            snap.files[child] = body

    async def write_back(self, sandbox: Any, snap: Snapshot, workload: Workload) -> None:
        """Apply the guest's changes under /workspace to the container's writable preopens."""
        import asyncio

        preopens = workload.preopens
        if not preopens:
            return
        files: list[str] = []           # guest paths of the files now in /workspace
        dirs: set[str] = {"/"}          # and of its directories
        unlisted: list[str] = []        # directories that could not be listed: nothing under them is deleted
        level = ["/"]
        while level:
            listings = await asyncio.gather(*(sandbox.fs.read_dir(_workspace_path(d)) for d in level),
                                            return_exceptions=True)
            nxt: list[str] = []
            for parent, listing in zip(level, listings, strict=True):
                if isinstance(listing, BaseException):
                    unlisted.append(parent)
                    continue
                for entry in listing:
                    guest = _join(parent, entry.name)
                    if entry.kind == "directory":
                        nxt.append(guest)
                        dirs.add(guest)
                    else:
                        files.append(guest)
            level = nxt
        if "/" in unlisted:
            _write_all(2, b"wasmlab: wasmer: cannot list /workspace after the run; "
                          b"the guest's changes are lost\n")
            return

        def known(guest: str) -> bool:
            return not any(_within(guest, u) for u in unlisted)

        failures: list[str] = []
        wanted = [g for g in files if self._writable(g, workload)]
        dropped = len(files) - len(wanted)
        bodies = await asyncio.gather(*(sandbox.fs.read(_workspace_path(g)) for g in wanted),
                                      return_exceptions=True)
        present = set(files)
        tree = _ContainerTree(preopens)
        try:
            # 1. files the guest deleted
            deleted = (g for g in snap.files if g not in present and known(g) and self._writable(g, workload))
            for guest in sorted(deleted):
                tree.unlink(guest, failures)
            # 2. directories the guest removed, deepest first (never a preopen's own root)
            for guest in sorted((g for g in snap.dirs - dirs if known(g)), key=len, reverse=True):
                owner = _owner(guest, preopens)
                if owner is not None and not owner.readonly and guest != _normal(owner.guest):
                    tree.rmdir(guest)
            # 3. directories the guest made
            for guest in sorted(dirs - snap.dirs):
                if not self._writable(guest, workload):
                    dropped += 1
                    continue
                tree.makedirs(guest, failures)
            # 4. files the guest created or changed
            for guest, body in zip(wanted, bodies, strict=True):
                if isinstance(body, BaseException) or snap.files.get(guest) == body:
                    continue
                tree.write(guest, body, failures)
        finally:
            tree.close()
        workload.report("writeback_dropped", dropped)
        if failures:
            shown = "; ".join(failures[:3]) + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
            _write_all(2, f"wasmlab: wasmer: could not write back the guest's changes: {shown}\n".encode())

    def _writable(self, guest: str, workload: Workload) -> bool:
        owner = _owner(_normal(guest), workload.preopens)
        # A live mount took the guest's writes as they came: nothing of it is written back from /workspace.
        return (owner is not None and not owner.readonly and not _skipped(_normal(guest))
                and owner not in live_mounts(workload.preopens))

    # -- the cache folder ----------------------------------------------------------------------------------

    def _namespace(self) -> str:
        return f"wasmer-sdk-{self._version or 'unknown'}"

    def _cache_root(self, workload: Workload) -> tuple[str, str]:
        """A writable folder for the SDK's caches, and 'shared' or 'none' (a throwaway folder)."""
        candidates = []
        if workload.cache_dir_fd is not None:
            candidates.append((f"/proc/self/fd/{workload.cache_dir_fd}", self._namespace()))
        if self._cache_fd is not None:
            candidates.append((f"/proc/self/fd/{self._cache_fd}", ""))
        for base, sub in candidates:
            if os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK):
                return (f"{base}/{sub}" if sub else base), "shared"
        for tmp in ("/tmp", "/var/tmp", "/"):      # only folders that exist; removed after the run
            path = os.path.join(tmp, f".wasmlab-wasmer-sdk-{os.getpid()}")
            try:
                os.mkdir(path, 0o700)
                return path, "none"
            except FileExistsError:
                return path, "none"
            except OSError:
                continue
        raise HandlerError("wasmer-sdk needs a writable cache folder and none is reachable in the container",
                           "give the container a writable /tmp (a tmpfs mount), or run it as root")


# -- the container's files, as the write-back changes them ------------------------------------------------------


class _ContainerTree:
    """Changes the container's files without ever following a symbolic link.

    Each guest path is walked from its preopen's root one name at a time, with O_NOFOLLOW and the *at system
    calls, so a link anywhere on the way (a dangling one from the image, one a guest left, a link to a
    folder) is reported as a failure, never written through: the guest saw no link there (the snapshot
    skips them), and what it wrote belongs at that very path, not where a link would lead.
    """

    _DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, preopens: list[Preopen]) -> None:
        self.preopens = preopens
        self.fds: dict[tuple[str, tuple[str, ...]], int] = {}   # (preopen root, folder names) -> O_PATH fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def _split(self, guest: str) -> tuple[str, list[str]]:
        owner = _owner(guest, self.preopens)
        assert owner is not None
        root = _normal(owner.guest)
        rel = guest[len(root):] if root != "/" else guest
        return owner.path, [p for p in rel.split("/") if p]

    def _folder(self, root: str, names: list[str], create: bool) -> int:
        """An fd of the folder root/names..., made as needed; OSError (ELOOP, ENOTDIR) on any link."""
        key = (root, tuple(names))
        fd = self.fds.get(key)
        if fd is not None:
            return fd
        if not names:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)   # the preopen itself (a mount)
        else:
            parent = self._folder(root, names[:-1], create)
            try:
                fd = os.open(names[-1], self._DIR, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(names[-1], 0o755, dir_fd=parent)
                except FileExistsError:
                    pass
                fd = os.open(names[-1], self._DIR, dir_fd=parent)
        if len(self.fds) >= 64:      # stay far below the container's RLIMIT_NOFILE
            self.close()
        self.fds[key] = fd
        return fd

    def _fail(self, failures: list[str], guest: str, exc: OSError) -> None:
        reason = "is or passes through a symbolic link, which the write-back never follows" \
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        failures.append(f"{guest}: {reason}")

    def unlink(self, guest: str, failures: list[str]) -> None:
        root, names = self._split(guest)
        try:
            os.unlink(names[-1], dir_fd=self._folder(root, names[:-1], False))
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._fail(failures, guest, exc)

    def rmdir(self, guest: str) -> None:
        root, names = self._split(guest)
        stale = self.fds.pop((root, tuple(names)), None)
        if stale is not None:
            os.close(stale)
        try:
            os.rmdir(names[-1], dir_fd=self._folder(root, names[:-1], False))
        except OSError:
            pass

    def makedirs(self, guest: str, failures: list[str]) -> None:
        root, names = self._split(guest)
        try:
            self._folder(root, names, True)
        except OSError as exc:
            self._fail(failures, guest, exc)

    def write(self, guest: str, body: bytes, failures: list[str]) -> None:
        root, names = self._split(guest)
        try:
            folder = self._folder(root, names[:-1], True)
            # O_NOFOLLOW: a link at the path itself is ELOOP; O_NONBLOCK: a fifo without a reader is
            # refused at once; and only a regular file is truncated and written.
            fd = os.open(names[-1], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         0o644, dir_fd=folder)
        except OSError as exc:
            self._fail(failures, guest, exc)
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                failures.append(f"{guest}: not a regular file in the container")
                return
            os.ftruncate(fd, 0)
            _write_all(fd, body)
        except OSError as exc:
            self._fail(failures, guest, exc)
        finally:
            os.close(fd)


# -- live mounts ----------------------------------------------------------------------------------------------


def live_mounts(preopens: list[Preopen]) -> list[Preopen]:
    """The preopens the SDK maps live (a wasmer.toml [fs] entry each): every mount, not the root or cwd."""
    return [p for p in preopens if _normal(p.guest) != "/" and not _skipped(_normal(p.guest)) and not p.readonly]


class _PathLike:
    """A folder path the SDK's packages.load takes as a local package (it wants an os.PathLike, and
    pathlib would be one more import in the process that forks containers)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for the characters a path holds)."""
    return json.dumps(text)


def _package_folder(cache_root: str, data: bytes, command: str, live: list[Preopen], snapshot: Snapshot) -> str:
    """A package folder for the SDK: the module, the root's copy, and a wasmer.toml whose [fs] maps each
    writable mount live.

    wasmer-sdk maps a folder named in [fs] both ways while the guest runs (a mapping other than `/`); a
    mapping of `/` is readable and discards writes, which is what the in-memory copy gave the root. The SDK
    opens every mapped file read-write, so a read-only folder (a `:ro` volume, a --read-only root) cannot be
    mapped: the root and read-only mounts are copied into the folder (the snapshot, as before) and mapped
    as `/`; the root's writes still reach the container through /workspace and the write-back.
    """
    name = f".wasmlab-wasmer-package-{os.getpid()}-{os.urandom(4).hex()}"
    # The SDK resolves the folder to an absolute path, so the lab's cache (reached through /proc/self/fd,
    # outside the container's root) will not do: a folder inside the container must, for as long as the
    # load takes.
    bases = ([] if cache_root.startswith("/proc/") else [cache_root]) + ["/tmp", "/var/tmp", "/run", "/"]
    for base in bases:
        folder = os.path.join(base, name)
        try:
            os.mkdir(folder, 0o700)
            break
        except OSError:
            continue
    else:
        raise HandlerError("the wasmer handler needs a writable folder in the container to map volumes live",
                           "give the container a writable /tmp, e.g. --mount type=tmpfs,destination=/tmp")
    with open(os.path.join(folder, "main.wasm"), "wb") as fh:
        fh.write(data)
    root = os.path.join(folder, "root")
    os.mkdir(root, 0o700)
    for guest in sorted(snapshot.dirs):
        os.makedirs(root + guest, 0o755, exist_ok=True)
    for guest, body in snapshot.files.items():
        os.makedirs(root + _parent(guest), 0o755, exist_ok=True)
        with open(root + guest, "wb") as fh:
            fh.write(body)
    lines = ['[package]', 'name = "wasmlab/container"', 'version = "0.1.0"',
             f'entrypoint = {_toml_string(command)}', '',
             '[[module]]', 'name = "main"', 'source = "main.wasm"', 'abi = "wasi"', '',
             '[[command]]', f'name = {_toml_string(command)}', 'module = "main"', '', '[fs]',
             f'"/" = {_toml_string(root)}']
    lines += [f"{_toml_string(_normal(p.guest))} = {_toml_string(p.path)}" for p in live]
    with open(os.path.join(folder, "wasmer.toml"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return folder


# -- helpers ------------------------------------------------------------------------------------------------


class _StderrCapture:
    """Points fd 2 at a pipe during the run, so the SDK's own printing of a trap can be dropped."""

    def __init__(self) -> None:
        self.real_fd = 2
        self.chunks: list[bytes] = []
        self._read_fd = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _StderrCapture:
        try:
            saved = os.dup(2)
        except OSError:
            return self
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.real_fd, self._read_fd = saved, read_fd
        self._thread = threading.Thread(target=self._drain, name="wasmlab-wasmer-stderr", daemon=True)
        self._thread.start()
        return self

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    def __exit__(self, *exc: object) -> None:
        if self.real_fd == 2:
            return
        sys.stderr.flush()
        os.dup2(self.real_fd, 2)        # closes the pipe's last write end, so the drain ends
        os.close(self.real_fd)
        self.real_fd = 2
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        os.close(self._read_fd)

    def forward(self) -> None:
        """Pass on what the engine printed (warnings), when it was not a trap already reported."""
        if self.chunks:
            _write_all(2, b"".join(self.chunks))


def _stop(stopped: Any, status: int) -> None:
    if not stopped.done():
        stopped.set_result(status)


async def _pump(stream: Any, fd: int) -> None:
    if stream is None:
        return
    broken = False
    async for chunk in stream:
        if not broken:
            try:
                _write_all(fd, chunk)
            except OSError:
                broken = True       # the reader went away: keep draining so the guest is not blocked


def _feed_stdin(loop: Any, writer: Any) -> None:
    """Copy fd 0 to the guest's stdin until EOF (a daemon thread: it may stay blocked after the run)."""
    import asyncio
    import concurrent.futures

    def start(chunk: bytes, done: concurrent.futures.Future[None]) -> None:
        # Runs on the loop, so no coroutine is ever created for a loop that has closed.
        task = asyncio.ensure_future(writer.write(chunk) if chunk else writer.close())

        def finished(t: asyncio.Future[None]) -> None:
            if t.cancelled():
                done.set_exception(RuntimeError("the run ended"))
            elif t.exception() is not None:
                done.set_exception(RuntimeError("the guest's stdin is closed"))
            else:
                done.set_result(None)

        task.add_done_callback(finished)

    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(start, chunk, done)
            done.result()
        except BaseException:
            return
        if not chunk:
            return


def _retrieve(future: Any) -> None:
    """Mark a finished future's outcome as seen, whatever it was."""
    try:
        if not future.cancelled():
            future.exception()
    except BaseException:
        pass


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        pass


def _execution_failure(exc: Any) -> tuple[int, str]:
    text = str(exc).strip()
    text = text.removeprefix("command execution failed:").strip()
    text = text.removeprefix("unable to spawn the command:").strip()
    if "RuntimeError:" in text:   # a trap, also one in the start function while instantiating
        return EXIT_TRAP, f"wasmlab: wasm trap: {text}\n"
    if "Failed to create the instance" in text or "unknown import" in text or "Error while importing" in text:
        return EXIT_BAD_MODULE, (f"wasmlab: cannot link the module: {text} "
                                 "(hint: it imports functions the WASI preview1 host does not provide)\n")
    return EXIT_TRAP, f"wasmlab: wasm trap: {text}\n"


def _wat_to_wasm(data: bytes) -> bytes:
    """WebAssembly text, assembled with wasmtime's assembler (the SDK only takes binaries)."""
    import wasmtime

    try:
        return bytes(wasmtime.wat2wasm(data.decode("utf-8", "replace")))
    except wasmtime.WasmtimeError as exc:
        raise WasmModuleError(f"the .wat text does not parse: {_first_line(exc)}",
                              "check the WebAssembly text syntax", exit_code=EXIT_BAD_WAT) from None


def _module_error(exc: Any) -> WasmModuleError:
    text = _first_line(exc)
    marker = "in-memory module `main``:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    if "_start" in text:
        return WasmModuleError("the module has no _start function, so it is not a WASI command",
                               "build it as a command (wasm32-wasi executable), not a library",
                               exit_code=EXIT_NO_START)
    if "components are not supported" in text:
        return WasmModuleError("the wasmer handler cannot run WebAssembly components (WASI 0.2)",
                               "use the wasmtime handler, or build a wasm32-wasi module")
    return WasmModuleError(f"invalid Wasm module: {text}", _MODULE_HINT, exit_code=EXIT_INVALID_MODULE)


def _command_name(argv0: str) -> str:
    base = argv0.rstrip("/").rsplit("/", 1)[-1]
    name = "".join(c if c in _COMMAND_CHARS else "_" for c in base)
    return name if name not in ("", ".", "..") else "main"


def _normal(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return "/" + "/".join(out)


def _join(guest: str, name: str) -> str:
    return guest.rstrip("/") + "/" + name


def _within(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


def _skipped(guest: str) -> bool:
    return any(_within(guest, s) for s in SKIPPED_GUEST_PATHS)


def _owner(guest: str, preopens: list[Preopen]) -> Preopen | None:
    """The preopen a guest path belongs to: the one with the longest matching guest path."""
    best: Preopen | None = None
    best_len = -1
    for pre in preopens:
        root = _normal(pre.guest)
        if _within(guest, root) and len(root) > best_len:
            best, best_len = pre, len(root)
    return best


def _owned_by(guest: str, preopens: list[Preopen], pre: Preopen) -> bool:
    return _owner(guest, preopens) is pre


def _parent(guest: str) -> str:
    return guest.rsplit("/", 1)[0] or "/"


def _workspace_path(guest: str) -> str:
    guest = _normal(guest)
    return WORKSPACE if guest == "/" else WORKSPACE + guest


def _artifacts(root: str) -> set[str]:
    found: set[str] = set()
    for folder, _dirs, names in os.walk(os.path.join(root, "cache-v1", "compiled")):
        found.update(os.path.join(folder, n) for n in names if not n.startswith("."))
    return found


def _fd_open(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return not stat.S_ISDIR(mode)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
