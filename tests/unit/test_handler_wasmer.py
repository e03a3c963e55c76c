"""Unit tests of the wasmer handler: each run is in a forked child of a fresh subprocess, like a container."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

wasmtime = pytest.importorskip("wasmtime")
pytest.importorskip("wasmer_sdk")

from wasmlab.runtime.handlers.base import EXIT_CPU_LIMIT, EXIT_TERMINATED, EXIT_TRAP, Preopen, Workload  # noqa: E402
from wasmlab.runtime.handlers.wasmer import WasmerHandler  # noqa: E402

# -- the guest programs, in WebAssembly text ----------------------------------------------------------------

PRELUDE = r'''
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_prestat_dir_name"
   (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_open"
   (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_unlink_file"
   (func $path_unlink_file (param i32 i32 i32) (result i32)))
 (memory (export "memory") 2)
 ;; 0..15 iovec and scratch, 16..63 strings, 1024 argv pointers, 4096 argv bytes, 8192 env pointers,
 ;; 12288 env bytes, 65536.. file buffer
 (data (i32.const 16) "hello\n")
 (func $write (param $fd i32) (param $p i32) (param $n i32)
  (i32.store (i32.const 0) (local.get $p))
  (i32.store (i32.const 4) (local.get $n))
  (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
 (func $nl (param $fd i32)
  (i32.store8 (i32.const 12) (i32.const 10))
  (call $write (local.get $fd) (i32.const 12) (i32.const 1)))
 (func $strlen (param $p i32) (result i32) (local $n i32)
  (block $d (loop $l
   (br_if $d (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
   (local.set $n (i32.add (local.get $n) (i32.const 1)))
   (br $l)))
  (local.get $n))
 (func $lines (param $ptrs i32) (param $count i32) (local $i i32) (local $p i32)
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $i) (local.get $count)))
   (local.set $p (i32.load (i32.add (local.get $ptrs) (i32.shl (local.get $i) (i32.const 2)))))
   (call $write (i32.const 1) (local.get $p) (call $strlen (local.get $p)))
   (call $nl (i32.const 1))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $l))))
 (func $argc (result i32)
  (drop (call $args_sizes_get (i32.const 32) (i32.const 36)))
  (drop (call $args_get (i32.const 1024) (i32.const 4096)))
  (i32.load (i32.const 32)))
 (func $arg (param $i i32) (result i32)
  (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))
 ;; the first preopen called "/"
 (func $root (result i32) (local $fd i32)
  (local.set $fd (i32.const 3))
  (block $d (loop $l
   (br_if $d (i32.gt_u (local.get $fd) (i32.const 64)))
   (if (i32.eqz (call $fd_prestat_get (local.get $fd) (i32.const 40)))
    (then
     (if (i32.eq (i32.load (i32.const 44)) (i32.const 1))
      (then
       (drop (call $fd_prestat_dir_name (local.get $fd) (i32.const 48) (i32.const 1)))
       (if (i32.eq (i32.load8_u (i32.const 48)) (i32.const 47)) (then (return (local.get $fd))))))))
   (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
   (br $l)))
  (call $proc_exit (i32.const 99))
  (unreachable))
 ;; open argv[i] (an absolute path) under the root preopen; exits 100+errno on failure
 (func $open (param $i i32) (param $oflags i32) (result i32) (local $p i32) (local $err i32)
  (local.set $p (i32.add (call $arg (local.get $i)) (i32.const 1)))
  (local.set $err (call $path_open (call $root) (i32.const 1) (local.get $p) (call $strlen (local.get $p))
                        (local.get $oflags) (i64.const 0x1fffffff) (i64.const 0x1fffffff)
                        (i32.const 0) (i32.const 56)))
  (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
  (i32.load (i32.const 56)))
'''

def _module(body: str) -> str:
    return "(module" + PRELUDE + body + ")"

HELLO = _module('(func (export "_start") (call $write (i32.const 1) (i32.const 16) (i32.const 6)))')
EXIT7 = _module('(func (export "_start") (call $proc_exit (i32.const 7)))')
ARGS_ENV = _module(r'''
 (func (export "_start") (local $n i32)
  (local.set $n (call $argc))
  (call $lines (i32.const 1024) (local.get $n))
  (drop (call $environ_sizes_get (i32.const 32) (i32.const 36)))
  (drop (call $environ_get (i32.const 8192) (i32.const 12288)))
  (call $lines (i32.const 8192) (i32.load (i32.const 32))))''')
CAT = _module(r'''
 (func (export "_start") (local $fd i32) (local $n i32)
  (drop (call $argc))
  (local.set $fd (call $open (i32.const 1) (i32.const 0)))
  (i32.store (i32.const 0) (i32.const 65536))
  (i32.store (i32.const 4) (i32.const 65536))
  (drop (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (call $write (i32.const 1) (i32.const 65536) (i32.load (i32.const 8))))''')
# write PATH TEXT [UNLINK-PATH]
WRITE = _module(r'''
 (func (export "_start") (local $fd i32) (local $n i32) (local $p i32) (local $err i32)
  (local.set $n (call $argc))
  (local.set $fd (call $open (i32.const 1) (i32.const 9)))
  (call $write (local.get $fd) (call $arg (i32.const 2)) (call $strlen (call $arg (i32.const 2))))
  (drop (call $fd_close (local.get $fd)))
  (if (i32.gt_u (local.get $n) (i32.const 3))
   (then
    (local.set $p (i32.add (call $arg (i32.const 3)) (i32.const 1)))
    (local.set $err (call $path_unlink_file (call $root) (local.get $p) (call $strlen (local.get $p))))
    (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err))))))))''')
STDIN_ECHO = _module(r'''
 (func (export "_start")
  (block $d (loop $l
   (i32.store (i32.const 0) (i32.const 65536))
   (i32.store (i32.const 4) (i32.const 65536))
   (br_if $d (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
   (br_if $d (i32.eqz (i32.load (i32.const 8))))
   (call $write (i32.const 1) (i32.const 65536) (i32.load (i32.const 8)))
   (br $l))))''')
TRAP = _module('(func (export "_start") (call $write (i32.const 1) (i32.const 16) (i32.const 6))'
               ' (unreachable))')
SPIN = _module('(func (export "_start") (loop $l (br $l)))')


# -- the harness ---------------------------------------------------------------------------------------------

# prepare() in the parent, run() in a forked child: the way the runtime uses a handler.
RUNNER = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
from wasmlab.runtime.errors import WasmlabError
from wasmlab.runtime.handlers.base import Preopen, Workload
from wasmlab.runtime.handlers.wasmer import WasmerHandler
handler = WasmerHandler(cache_folder=spec["cache"], **spec.get("limits", {}))
handler.prepare()
read_fd, write_fd = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_fd)
    reports = {}
    with open(spec["path"], "rb") as fh:
        head = fh.read(64)
    workload = Workload(path=spec["path"], args=spec["args"], env=spec["env"], cwd=spec.get("cwd", "/"),
                        head=head, preopens=[Preopen(**p) for p in spec["preopens"]],
                        cpu_time_ms=spec.get("cpu_time_ms"),
                        report=lambda key, value: reports.__setitem__(key, value))
    before = set(sys.modules)
    t0 = time.perf_counter()
    try:
        result = {"status": handler.run(workload)}
    except WasmlabError as exc:
        result = {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    result["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
    result["reports"] = reports
    result["new_modules"] = sorted(set(sys.modules) - before)
    os.write(write_fd, json.dumps(result).encode())
    os._exit(0)
os.close(write_fd)
with open(spec["result"] + ".pid.tmp", "w") as fh:  # whole or not at all: the test reads it once it exists
    fh.write(str(pid))
os.rename(spec["result"] + ".pid.tmp", spec["result"] + ".pid")
chunks = []
while chunk := os.read(read_fd, 65536):
    chunks.append(chunk)
os.waitpid(pid, 0)
with open(spec["result"], "wb") as fh:
    fh.write(b"".join(chunks))
"""


class Ran:
    def __init__(self, proc: subprocess.CompletedProcess[bytes], result: dict[str, Any]) -> None:
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.result = result
        self.status = result.get("status")
        self.reports = result.get("reports", {})


@pytest.fixture
def run(tmp_path: Path) -> Any:
    cache = tmp_path / "cache"
    counter = iter(range(1000))

    def _run(wat: str | bytes, args: list[str] | None = None, env: list[str] | None = None,
             preopens: list[Preopen] | None = None, stdin: bytes = b"", on_start: Any = None,
             **extra: Any) -> Ran:
        n = next(counter)
        module = tmp_path / f"m{n}.wasm"
        module.write_bytes(wasmtime.wat2wasm(wat) if isinstance(wat, str) else wat)
        result = tmp_path / f"result{n}.json"
        spec = {
            "path": str(module), "args": args or ["prog.wasm"], "env": env or [], "cache": str(cache),
            "preopens": [{"path": p.path, "guest": p.guest, "readonly": p.readonly} for p in preopens or []],
            "result": str(result), **extra,
        }
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(spec)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if on_start is not None:
            pid_file = Path(str(result) + ".pid")
            deadline = time.monotonic() + 30
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            on_start(int(pid_file.read_text()))
        out, err = proc.communicate(stdin, timeout=120)
        assert proc.returncode == 0, err.decode()
        return Ran(subprocess.CompletedProcess(proc.args, 0, out, err), json.loads(result.read_bytes()))

    return _run


def root(tmp_path: Path, readonly: bool = False) -> Path:
    folder = tmp_path / ("ro" if readonly else "rw")
    folder.mkdir(exist_ok=True)
    return folder


# -- the tests ----------------------------------------------------------------------------------------------


def test_class_api() -> None:
    handler = WasmerHandler()
    assert (handler.name, handler.aliases, handler.wasm) == ("wasmer", ("wasmer-sdk",), True)
    assert handler.available() is None
    assert handler.version() == "0.5.0"


def test_can_handle_core_modules_only() -> None:
    handler = WasmerHandler()

    def wl(head: bytes) -> Workload:
        return Workload(path="/x", args=["x"], env=[], cwd="/", head=head)

    assert handler.can_handle(wl(wasmtime.wat2wasm(HELLO)[:64]))
    assert not handler.can_handle(wl(b"\0asm\x0d\x00\x01\x00"))   # a component
    assert not handler.can_handle(wl(b"\x7fELF\x02\x01\x01"))
    assert not handler.can_handle(wl(b"(module)"))
    assert not handler.can_handle(wl(b""))


def test_hello_streams_stdout_and_imports_nothing(run: Any) -> None:
    ran = run(HELLO)
    assert ran.status == 0
    assert ran.stdout == b"hello\n"
    assert ran.stderr == b""
    assert ran.result["new_modules"] == []     # run() works after pivot_root, when site-packages is gone
    for key in ("engine_init_ms", "module_load_ms", "sandbox_ms", "run_ms", "copy_in_ms", "total_ms"):
        assert isinstance(ran.reports[key], float), key
    assert ran.reports["cache"] in ("compiled", "disk")
    print(f"wasmer hello: run() took {ran.result['elapsed_ms']:.1f} ms; reports {ran.reports}")


def test_compiled_module_cache_is_reused(run: Any) -> None:
    first = run(CAT, args=["cat", "/nothing"])
    second = run(CAT, args=["cat", "/nothing"])
    assert (first.reports["cache"], second.reports["cache"]) == ("compiled", "disk")


def test_exit_code(run: Any) -> None:
    ran = run(EXIT7)
    assert ran.status == 7
    assert ran.stdout == b""


def test_args_and_env(run: Any) -> None:
    ran = run(ARGS_ENV, args=["/app/prog.wasm", "one", "two words"], env=["A=1", "GREETING=hi there"])
    assert ran.status == 0
    lines = ran.stdout.decode().splitlines()
    assert lines[:3] == ["prog.wasm", "one", "two words"]   # argv[0]: the basename, the SDK's command name
    assert sorted(lines[3:]) == ["A=1", "GREETING=hi there"]   # the SDK does not keep the order


def test_stdin_is_forwarded(run: Any) -> None:
    ran = run(STDIN_ECHO, stdin=b"from the host\n")
    assert (ran.status, ran.stdout) == (0, b"from the host\n")


def test_preopened_file_is_readable_at_its_guest_path(run: Any, tmp_path: Path) -> None:
    rootfs = root(tmp_path, readonly=True)
    (rootfs / "in.txt").write_text("container file")
    (rootfs / "sub").mkdir()
    (rootfs / "sub" / "deep.txt").write_text("deeper")
    ran = run(CAT, args=["cat", "/in.txt"], preopens=[Preopen(str(rootfs), "/", True)])
    assert (ran.status, ran.stdout) == (0, b"container file")
    ran = run(CAT, args=["cat", "/sub/deep.txt"], preopens=[Preopen(str(rootfs), "/", True)])
    assert (ran.status, ran.stdout) == (0, b"deeper")


def test_missing_file_is_an_error_in_the_guest(run: Any, tmp_path: Path) -> None:
    ran = run(CAT, args=["cat", "/absent.txt"], preopens=[Preopen(str(root(tmp_path)), "/", False)])
    assert ran.status == 100 + 44    # 100 + WASI errno NOENT


def test_guest_writes_reach_a_writable_preopen(run: Any, tmp_path: Path) -> None:
    rootfs = root(tmp_path)
    (rootfs / "in.txt").write_text("old")
    (rootfs / "gone.txt").write_text("delete me")
    (rootfs / "keep.txt").write_text("untouched")
    ran = run(WRITE, args=["write", "/workspace/out.txt", "new file", "/workspace/gone.txt"],
              preopens=[Preopen(str(rootfs), "/", False)])
    assert ran.status == 0, ran.stderr
    assert (rootfs / "out.txt").read_text() == "new file"
    assert not (rootfs / "gone.txt").exists()
    assert (rootfs / "keep.txt").read_text() == "untouched"
    assert (rootfs / "in.txt").read_text() == "old"
    ran = run(WRITE, args=["write", "/workspace/in.txt", "changed"],
              preopens=[Preopen(str(rootfs), "/", False)])
    assert (rootfs / "in.txt").read_text() == "changed"
    assert ran.reports["copy_out_ms"] >= 0


def test_guest_writes_do_not_reach_a_readonly_preopen(run: Any, tmp_path: Path) -> None:
    rootfs = root(tmp_path, readonly=True)
    (rootfs / "in.txt").write_text("stays")
    preopens = [Preopen(str(rootfs), "/", True)]
    ran = run(WRITE, args=["write", "/workspace/out.txt", "new file", "/workspace/in.txt"], preopens=preopens)
    assert ran.status == 0          # the guest's own view is writable ...
    assert not (rootfs / "out.txt").exists()      # ... but nothing reaches the container
    assert (rootfs / "in.txt").read_text() == "stays"
    assert ran.reports["writeback_dropped"] == 1


def test_writes_outside_workspace_are_discarded(run: Any, tmp_path: Path) -> None:
    rootfs = root(tmp_path)
    (rootfs / "in.txt").write_text("stays")
    ran = run(WRITE, args=["write", "/in.txt", "changed"], preopens=[Preopen(str(rootfs), "/", False)])
    assert ran.status == 0
    assert (rootfs / "in.txt").read_text() == "stays"


def test_a_readonly_mount_inside_a_writable_root(run: Any, tmp_path: Path) -> None:
    rootfs, data = root(tmp_path), root(tmp_path, readonly=True)
    (data / "x.txt").write_text("mounted data")
    preopens = [Preopen(str(rootfs), "/", False), Preopen(str(data), "/data", True)]
    ran = run(CAT, args=["cat", "/data/x.txt"], preopens=preopens)
    assert (ran.status, ran.stdout) == (0, b"mounted data")
    ran = run(CAT, args=["cat", "/workspace/data/x.txt"], preopens=preopens)
    assert (ran.status, ran.stdout) == (0, b"mounted data")
    ran = run(WRITE, args=["write", "/workspace/data/y.txt", "nope"], preopens=preopens)
    assert ran.status == 0
    assert not (data / "y.txt").exists()
    assert not (rootfs / "data").exists()     # the mount's files belong to the mount, not to the root
    ran = run(WRITE, args=["write", "/workspace/z.txt", "yes"], preopens=preopens)
    assert (rootfs / "z.txt").read_text() == "yes"


def test_copy_limit_is_a_clear_error(run: Any, tmp_path: Path) -> None:
    rootfs = root(tmp_path)
    (rootfs / "big.bin").write_bytes(b"x" * 3000)
    ran = run(HELLO, preopens=[Preopen(str(rootfs), "/", False)], limits={"copy_limit": 2048})
    assert ran.result["error"] == "HandlerError"
    assert "too large for the wasmer handler" in ran.result["message"]
    assert "/big.bin" in ran.result["message"]
    assert ran.result["hint"]
    assert ran.stdout == b""


def test_trap(run: Any) -> None:
    ran = run(TRAP)
    assert ran.status == EXIT_TRAP
    assert ran.stdout == b"hello\n"              # what the guest wrote before the trap is kept
    assert ran.stderr.startswith(b"wasmlab: wasm trap: ")
    assert b"unreachable" in ran.stderr
    assert ran.stderr.count(b"unreachable") == 1  # reported once, not also by the SDK


def test_trap_in_the_start_function_is_a_trap_not_a_link_error(run: Any) -> None:
    ran = run('(module (func $s unreachable) (start $s) (func (export "_start")))')
    assert ran.status == EXIT_TRAP, ran.stderr
    assert ran.stderr.startswith(b"wasmlab: wasm trap: ") and b"unreachable" in ran.stderr


def test_truncated_module_is_a_module_error(run: Any) -> None:
    data = wasmtime.wat2wasm(HELLO)
    ran = run(data[: len(data) - 5])
    assert ran.result["error"] == "WasmModuleError"
    assert ran.result["message"].startswith("invalid Wasm module: ")
    assert "\n" not in ran.result["message"]
    assert ran.result["hint"]


def test_unknown_import_is_a_link_error(run: Any) -> None:
    ran = run('(module (import "env" "nope" (func)) (func (export "_start") (call 0)))')
    assert ran.status == 123  # EXIT_BAD_MODULE (docs/handlers.md)
    assert b"cannot link the module" in ran.stderr


def test_component_is_refused(run: Any) -> None:
    ran = run(b"\0asm\x0d\x00\x01\x00")
    assert ran.result["error"] == "HandlerError"
    assert "components" in ran.result["message"]


def test_cpu_time_limit(run: Any) -> None:
    t0 = time.monotonic()
    ran = run(SPIN, cpu_time_ms=300)
    assert ran.status == EXIT_CPU_LIMIT
    assert time.monotonic() - t0 < 30
    assert b"Traceback" not in ran.stderr and b"never retrieved" not in ran.stderr, ran.stderr


def test_sigterm_stops_a_spinning_guest(run: Any) -> None:
    def later(pid: int) -> None:
        time.sleep(0.5)
        os.kill(pid, signal.SIGTERM)

    ran = run(SPIN, on_start=later)
    assert ran.status == EXIT_TERMINATED


# -- the write-back never follows a symbolic link -------------------------------------------------------------

def _module_importing(imports: str, body: str) -> str:
    return "(module" + imports + PRELUDE + body + ")"


# mkdir DIR FILE TEXT: make a folder, then write a file (both under /workspace)
MKDIR_WRITE = _module_importing(
    ' (import "wasi_snapshot_preview1" "path_create_directory"'
    ' (func $path_create_directory (param i32 i32 i32) (result i32)))', r'''
 (func (export "_start") (local $fd i32) (local $p i32) (local $err i32)
  (drop (call $argc))
  (local.set $p (i32.add (call $arg (i32.const 1)) (i32.const 1)))
  (local.set $err (call $path_create_directory (call $root) (local.get $p) (call $strlen (local.get $p))))
  (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
  (local.set $fd (call $open (i32.const 2) (i32.const 9)))
  (call $write (local.get $fd) (call $arg (i32.const 3)) (call $strlen (call $arg (i32.const 3))))
  (drop (call $fd_close (local.get $fd))))''')


def _host_sentinel(tmp_path: Path) -> tuple[Path, Any]:
    """A folder on the host no write-back may touch, and a check that it is as it was."""
    folder = tmp_path / "sentinel"
    folder.mkdir()
    (folder / "keep.txt").write_text("host file")
    os.utime(folder / "keep.txt", ns=(10**9, 10**9))

    def state() -> Any:
        return sorted((p.name, p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()), \
            folder.stat().st_mtime_ns

    before = state()
    return folder, lambda: state() == before


def test_writeback_does_not_follow_a_dangling_link(run: Any, tmp_path: Path) -> None:
    rootfs = root(tmp_path)
    sentinel, unchanged = _host_sentinel(tmp_path)
    (rootfs / "link").symlink_to(sentinel / "made-by-writeback.txt")   # dangling: the snapshot skips it
    ran = run(WRITE, args=["write", "/workspace/link", "escaped"], preopens=[Preopen(str(rootfs), "/", False)])
    assert ran.status == 0
    assert unchanged(), "the write-back followed the link out of the container"
    assert os.readlink(rootfs / "link") == str(sentinel / "made-by-writeback.txt")
    assert b"/link: is or passes through a symbolic link" in ran.stderr, ran.stderr


def test_writeback_does_not_follow_a_link_to_a_folder(run: Any, tmp_path: Path) -> None:
    rootfs = root(tmp_path)
    sentinel, unchanged = _host_sentinel(tmp_path)
    (rootfs / "d").symlink_to(sentinel)
    ran = run(MKDIR_WRITE, args=["mkdir", "/workspace/d", "/workspace/d/new.txt", "escaped"],
              preopens=[Preopen(str(rootfs), "/", False)])
    assert ran.status == 0, ran.stderr
    assert unchanged(), "the write-back followed the link out of the container"
    assert (rootfs / "d").is_symlink()
    assert b"symbolic link" in ran.stderr


def test_writeback_writes_regular_files_and_new_folders(run: Any, tmp_path: Path) -> None:
    """The walk that refuses links still makes folders and files where there are none."""
    rootfs = root(tmp_path)
    ran = run(MKDIR_WRITE, args=["mkdir", "/workspace/a", "/workspace/a/new.txt", "made"],
              preopens=[Preopen(str(rootfs), "/", False)])
    assert (ran.status, ran.stderr) == (0, b"")
    assert (rootfs / "a" / "new.txt").read_text() == "made"
