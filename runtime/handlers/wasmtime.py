"""The wasmtime handler: WASI preview1 modules and 0.2 components, in the sandbox, with the container root preopened."""

from __future__ import annotations

import _thread
import os
import signal
import sys
import time
from typing import Any

from wasmlab.runtime.errors import WasmModuleError
from wasmlab.runtime.handlers import installed
from wasmlab.runtime.handlers.base import (
    EXIT_BAD_MODULE,
    EXIT_BAD_WAT,
    EXIT_INVALID_MODULE,
    EXIT_MEMORY_LIMIT,
    EXIT_NO_START,
    EXIT_TERMINATED,
    EXIT_TRAP,
    STOP_STATUS,
    Workload,
)
from wasmlab.runtime.handlers.binary import has_start_section
from wasmlab.runtime.handlers.cache import ModuleCache
from wasmlab.runtime.handlers.detect import classify
from wasmlab.runtime.linux import exitstubs

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGVTALRM)


class Interrupt:
    """Stops a guest promptly on a stop signal, even one spinning in a loop or blocked in a host call.

    On x86-64 the signals get native handlers that call _exit(status) (see linux/exitstubs.py): nothing
    to start per container. Elsewhere a thread turns them into an epoch bump, which traps the guest.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.reason: int | None = None

    def arm(self, cpu_time_ms: int | None) -> None:
        native = exitstubs.stubs(STOP_STATUS)
        if native is not None:
            native.install()
        else:
            install_stop_handlers()
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            _thread.start_new_thread(self._watch, ())  # the bare thread API: a third of threading.Thread's cost
        if cpu_time_ms:
            signal.setitimer(signal.ITIMER_VIRTUAL, cpu_time_ms / 1000.0)

    def _watch(self) -> None:
        self.reason = signal.sigwait(_STOP_SIGNALS)
        self.engine.increment_epoch()

    def exit_status(self) -> int:
        return STOP_STATUS.get(int(self.reason or signal.SIGTERM), EXIT_TERMINATED)


def _noop(signum: int, frame: object) -> None:
    return None


def install_stop_handlers() -> None:
    """pid 1 of a pid namespace only receives the signals it handles; sigwait consumes them.

    The zygote installs these once, and its forks inherit them (execve resets handled signals to their
    defaults, so native containers are unaffected); a container only blocks them and starts the watcher.
    """
    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is not _noop:
            signal.signal(sig, _noop)


class WasmtimeHandler:
    name = "wasmtime"
    aliases: tuple[str, ...] = ("wasmtime-py",)
    wasm = True

    def __init__(self, cache_folder: str | None = None) -> None:
        self._engine: Any = None
        self._wasmtime: Any = None
        self.cache_folder = cache_folder
        self.cache: ModuleCache[Any] | None = None
        self._linker: Any = None
        self._expected: tuple[list[str], list[str], Any] | None = None
        self.digests: dict[tuple[int, ...], str] = {}  # (dev, ino, size, mtime, ctime) -> sha256, learned
        self.ready: dict[str, tuple[Any, Any, Any]] = {}  # digest -> (store, instance, _start), made in the zygote

    def available(self) -> str | None:
        try:
            import wasmtime  # noqa: F401
        except ImportError as exc:
            return f"the wasmtime package is not installed ({exc})"
        return None

    def version(self) -> str:
        import wasmtime

        return str(getattr(wasmtime, "__version__", "") or installed.version("wasmtime") or "unknown")

    @property
    def config_fingerprint(self) -> str:
        return "epoch1-nopar"

    def prepare(self) -> None:
        if self._engine is not None:
            return
        import wasmtime
        import wasmtime.component

        cfg = wasmtime.Config()
        cfg.parallel_compilation = False   # no compiler threads: the process that holds this engine forks
        cfg.epoch_interruption = True      # kill and CPU limits interrupt a busy guest
        self._wasmtime = wasmtime
        self._engine = wasmtime.Engine(cfg)
        self.cache = ModuleCache(f"wasmtime-{self.version()}-{self.config_fingerprint}", self.cache_folder)
        self.cache.dir_fd()
        self._linker = wasmtime.Linker(self._engine)
        self._linker.define_wasi()
        # Warm the code paths a container takes, so nothing is imported after pivot_root.
        hello = wasmtime.wat2wasm('(module (func (export "_start")))')
        mod = wasmtime.Module(self._engine, bytes(hello))
        store = wasmtime.Store(self._engine)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_epoch_deadline(1)
        instance = self._linker.instantiate(store, mod)
        # Entering Wasm once sets up this thread's trap handling (its signal stack and thread-local
        # state); forks inherit it, so no container pays for it again.
        _call_start(store, instance.exports(store)["_start"])

    def warm(self, digest: str, *, instantiate: bool = False, identity: list[int] | None = None) -> bool:
        """Keep a module in memory, so the next container forks with it compiled.

        With instantiate (the module has no start section, so instantiating runs no guest code), also keep
        an instance of it: every container forked afterwards gets its own copy-on-write copy, ready to run.
        """
        if self.cache is None:
            return False
        wt = self._wasmtime
        if not self.cache.warm(digest, lambda b: wt.Module.deserialize(self._engine, b)):
            return False
        if identity:
            if len(self.digests) > 1024:
                self.digests.clear()
            self.digests[tuple(identity)] = digest
        if instantiate and digest not in self.ready:
            store = wt.Store(self._engine)
            store.set_limits(memory_size=PREINSTANTIATE_MEMORY)
            store.set_wasi(wt.WasiConfig())
            try:
                instance = self._linker.instantiate(store, self.cache.memory[digest])
            except (wt.WasmtimeError, wt.Trap):
                return True  # it will be instantiated in each container, where errors are reported
            start = instance.exports(store).get("_start")
            if start is None:
                return True
            while len(self.ready) >= PREINSTANTIATED_MODULES:
                self.ready.pop(next(iter(self.ready)))
            self.ready[digest] = (store, instance, start)
        return True

    def can_handle(self, workload: Workload) -> bool:
        return classify(workload.head) in ("module", "component", "wat")

    # -- inside the sandbox -------------------------------------------------------------------------------

    def _compile(self, data: bytes) -> Any:
        return self._wasmtime.Module(self._engine, data)

    def load(self, data: bytes, key: str | None = None) -> tuple[Any, str]:
        """The compiled module for data (through the cache) and the cache outcome."""
        assert self.cache is not None
        wt = self._wasmtime
        try:
            return self.cache.get(data, self._compile, lambda m: bytes(m.serialize()),
                                  lambda b: wt.Module.deserialize(self._engine, b), key)
        except wt.WasmtimeError as exc:
            raise WasmModuleError(f"invalid Wasm module: {_first_line(exc)}",
                                  "rebuild the module for wasm32-wasi; `wasm-validate` shows where it breaks",
                                  exit_code=EXIT_INVALID_MODULE) from None

    def run(self, workload: Workload) -> int:
        self.prepare()
        wt = self._wasmtime
        t0 = time.perf_counter()
        st = os.stat(workload.path)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = self.digests.get(identity)
        if known is not None and known in self.ready:
            # The same file (device, inode, size, mtime, ctime) as a module already instantiated: run it.
            return self._run_module(workload, known, "instance", self.ready[known], None, t0)
        with open(workload.path, "rb") as fh:
            data = fh.read()
        kind = classify(data[:64])
        if kind == "wat":
            try:
                data = wt.wat2wasm(data.decode("utf-8", "replace"))
            except wt.WasmtimeError as exc:
                raise WasmModuleError(f"the .wat text does not parse: {_first_line(exc)}",
                                      "check the WebAssembly text syntax", exit_code=EXIT_BAD_WAT) from None
            kind = classify(data[:8])
        if kind == "component":
            return self._run_component(workload, data, t0)
        key = ModuleCache.digest(data)
        workload.report("module_identity", list(identity))
        workload.report("preinstantiable", not has_start_section(data))
        ready = self.ready.get(key)
        if ready is not None:  # forked with the module compiled and instantiated by the zygote
            return self._run_module(workload, key, "instance", ready, None, t0)
        module, origin = self.load(data, key)
        return self._run_module(workload, key, origin, None, module, t0)

    def _run_module(self, workload: Workload, key: str, origin: str, ready: Any, module: Any, t0: float) -> int:
        """Run a pre-instantiated (store, instance, _start), or instantiate module here."""
        workload.report("engine", self.name)
        workload.report("module_digest", key)
        workload.report("cache", origin)
        workload.report("module_load_ms", (time.perf_counter() - t0) * 1e3)
        wt = self._wasmtime
        limit = workload.memory_limit if workload.memory_limit and workload.memory_limit > 0 else None
        interrupt = Interrupt(self._engine)
        start: Any = None
        if ready is not None:
            store, instance, start = ready
        else:
            store = wt.Store(self._engine)
        store.set_epoch_deadline(1)
        if limit is not None or ready is not None:
            # A store instantiated ahead carries PREINSTANTIATE_MEMORY as its limit: the container's own
            # limit replaces it (none: -1, unlimited), or its guest could not grow past 64 MiB.
            store.set_limits(memory_size=limit if limit is not None else -1)
        store.set_wasi(self._wasi(workload))
        interrupt.arm(workload.cpu_time_ms)
        if ready is None:
            try:
                instance = self._linker.instantiate(store, module)
            except wt.Trap as exc:
                return self._trap(exc, interrupt)
            except wt.WasmtimeError as exc:
                return self._link_error(exc, workload)
        elif limit is not None:
            memory = instance.exports(store).get("memory")
            if isinstance(memory, wt.Memory) and memory.data_len(store) > limit:
                return self._link_error(wt.WasmtimeError("memory minimum size exceeds memory limits"), workload)
        if start is None:
            start = instance.exports(store).get("_start")
        if start is None:
            raise WasmModuleError("the module has no _start function, so it is not a WASI command",
                                  "build it as a command (wasm32-wasi executable), not a library",
                                  exit_code=EXIT_NO_START)
        workload.report("instantiate_ms", (time.perf_counter() - t0) * 1e3)
        status, _ = self._guest(interrupt, lambda: _call_start(store, start))
        try:
            memory = instance.exports(store).get("memory")
            if isinstance(memory, wt.Memory):
                workload.report("memory_bytes_at_exit", memory.data_len(store))  # inspect-ns shows it
        except wt.WasmtimeError:
            pass
        return 0 if status is None else status

    def _guest(self, interrupt: Interrupt, call: Any) -> tuple[int | None, Any]:
        """Run the guest: (None, what call returned), or (its status, None) when it exited, trapped or was
        stopped by the host."""
        wt = self._wasmtime
        try:
            return None, call()
        except wt.ExitTrap as exc:
            return int(exc.code), None
        except wt.Trap as exc:
            return self._trap(exc, interrupt), None
        except wt.WasmtimeError as exc:
            return self._host_error(exc, interrupt), None

    def expect(self, args: list[str], env: list[str]) -> None:
        """Before a fork that may run Wasm: build its WASI config here, where it costs a tenth as much.

        Everything but the preopens, which must be opened inside the container after pivot_root. Only the
        forks consume the config (each its own copy), so the same one serves every run with these args and env.
        """
        expected = self._expected
        if expected is None or expected[0] != args or expected[1] != env:
            self._expected = (args, env, self._base_wasi(args, env))

    def _base_wasi(self, args: list[str], env: list[str]) -> Any:
        wasi = self._wasmtime.WasiConfig()
        wasi.argv = args
        wasi.env = [tuple(e.split("=", 1)) for e in env]
        wasi.inherit_stdin()   # fds 0-2 are taken when the store gets the config: the container's
        wasi.inherit_stdout()
        wasi.inherit_stderr()
        return wasi

    def _wasi(self, workload: Workload) -> Any:
        expected = self._expected
        if expected is not None and expected[0] == workload.args and expected[1] == workload.env:
            wasi = expected[2]
        else:
            wasi = self._base_wasi(workload.args, workload.env)
        for pre in workload.preopens:
            wasi.preopen_dir(pre.path, pre.guest, not pre.readonly)
        return wasi

    def _link_error(self, exc: Exception, workload: Workload) -> int:
        msg = _first_line(exc)
        if "memory" in msg and ("limit" in msg or "minimum" in msg):
            limit = workload.memory_limit or 0
            sys.stderr.write(f"wasmlab: the module needs more memory than the container's limit "
                             f"({limit // (1 << 20)} MiB): {msg} (hint: raise linux.resources.memory.limit)\n")
            return EXIT_MEMORY_LIMIT
        sys.stderr.write(f"wasmlab: cannot link the module: {msg} "
                         "(hint: it imports functions the WASI preview1 host does not provide)\n")
        return EXIT_BAD_MODULE

    def _trap(self, exc: Exception, interrupt: Interrupt) -> int:
        """The guest trapped (unreachable, out of bounds, ...): its message, and EXIT_TRAP."""
        if interrupt.reason is not None:
            return interrupt.exit_status()
        sys.stderr.write(f"wasmlab: wasm trap: {exc}\n")
        sys.stderr.flush()
        return EXIT_TRAP

    def _host_error(self, exc: Exception, interrupt: Interrupt) -> int:
        """A host function refused the guest (not a trap): exit 1, as `wasmtime run` does."""
        if interrupt.reason is not None:
            return interrupt.exit_status()
        if "invalid exit status" in str(exc):
            # wasmtime refuses proc_exit(n) for n >= 126 (those mean signals in a shell).
            sys.stderr.write("wasmlab: the module called proc_exit with a status above 125, which wasmtime "
                             "refuses (hint: use 0-125; wasmer keeps the low 8 bits)\n")
        else:
            sys.stderr.write(f"wasmlab: the WASI host stopped the module: {_first_line(exc)}\n")
        return 1

    def _run_component(self, workload: Workload, data: bytes, t0: float) -> int:
        wt = self._wasmtime
        comp = wt.component
        try:
            component = comp.Component(self._engine, data)
        except wt.WasmtimeError as exc:
            raise WasmModuleError(f"invalid Wasm component: {_first_line(exc)}", "rebuild it for wasm32-wasip2",
                                  exit_code=EXIT_INVALID_MODULE) from None
        workload.report("cache", "none")
        store = wt.Store(self._engine)
        store.set_epoch_deadline(1)
        if workload.memory_limit and workload.memory_limit > 0:
            store.set_limits(memory_size=workload.memory_limit)
        store.set_wasi(self._wasi(workload))
        linker = comp.Linker(self._engine)
        linker.add_wasip2()
        interrupt = Interrupt(self._engine)
        interrupt.arm(workload.cpu_time_ms)
        try:
            instance = linker.instantiate(store, component)
        except wt.Trap as exc:
            return self._trap(exc, interrupt)
        except wt.WasmtimeError as exc:
            return self._link_error(exc, workload)  # an import it lacks, or memory beyond the limit (135)
        run = _component_run_func(instance, store)
        if run is None:
            raise WasmModuleError("the component does not export wasi:cli/run",
                                  "build it as a WASI 0.2 command component")
        workload.report("instantiate_ms", (time.perf_counter() - t0) * 1e3)
        status, result = self._guest(interrupt, lambda: run(store))
        if status is not None:
            return status
        ok = result is None or getattr(result, "tag", "ok") == "ok" or result == 0
        return 0 if ok else 1


def _component_run_func(instance: Any, store: Any) -> Any:
    for version in ("0.2.6", "0.2.3", "0.2.2", "0.2.1", "0.2.0"):
        idx = instance.get_export_index(store, f"wasi:cli/run@{version}")
        if idx is None:
            continue
        fidx = instance.get_export_index(store, "run", idx)
        if fidx is not None:
            return instance.get_func(store, fidx)
    return None


def _call_start(store: Any, start: Any) -> None:
    """Call a () -> () export. wasmtime-py's Func.__call__ first builds the function's type, its parameter
    and result arrays and a result list: a millisecond in a freshly forked child, for nothing here."""
    if _enter_wasm is None:  # a wasmtime-py without these internals: take the public path
        start(store)
        return
    from ctypes import byref

    from wasmtime import WasmtimeError, _ffi

    with _enter_wasm(store) as trap:
        error = _ffi.wasmtime_func_call(store._context(), byref(start._func), None, 0, None, 0, trap)
        if error:
            raise WasmtimeError._from_ptr(error)


_enter_wasm: Any
try:
    from wasmtime._func import enter_wasm as _enter_wasm
except ImportError:
    _enter_wasm = None

PREINSTANTIATE_MEMORY = 64 << 20  # modules that start with more linear memory are instantiated per container
PREINSTANTIATED_MODULES = 8


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
