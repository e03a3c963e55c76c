"""Wasm containers on both engines: handler selection, the sandbox mapping, limits, the module cache, bad modules."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import wasmtime

from tests.conftest import (
    ROOT,
    make_rootfs_busybox,
    minimal_config,
    need_root,
    oci,
    read_until,
    wait_blocked_in_read,
    wait_gone,
    write_bundle,
)

pytestmark = pytest.mark.root
ASSETS = ROOT / "assets" / "built"
ENGINES = ("wasmtime", "wasmer")
COMPAT = {"module.wasm.image/variant": "compat"}


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def asset_bundle(tmp_path: Path, name: str, args: list[str] | None = None, *, engine: str = "wasmtime",
                 annotations: dict[str, str] | None = None, native: bool = False, **kw: object) -> Path:
    bundle = tmp_path / f"{name}-{engine}-{'native' if native else 'wasm'}"
    rootfs = bundle / "rootfs"
    (rootfs / "tmp").mkdir(parents=True, exist_ok=True)
    (rootfs / "proc").mkdir(exist_ok=True)
    shutil.copy2(ASSETS / "wasm" / f"{name}.wasm", rootfs / f"{name}.wasm")
    shutil.copy2(ASSETS / "linux" / name, rootfs / name)
    entry = f"/{name}" if native else f"/{name}.wasm"
    anns = dict((COMPAT if not native else {}) if annotations is None else annotations)
    if engine != "wasmtime" and anns and not native:
        anns["run.oci.handler"] = engine
    cfg = minimal_config([entry, *(args or [])], annotations=anns, **kw)  # type: ignore[arg-type]
    return write_bundle(bundle, cfg)


def wat_bundle(tmp_path: Path, name: str, wat: str | bytes, *, raw: bool = False, engine: str = "wasmtime",
               cfg_extra: dict | None = None) -> Path:
    bundle = tmp_path / name
    (bundle / "rootfs").mkdir(parents=True)
    data = wat if isinstance(wat, bytes) else (wat.encode() if raw else bytes(wasmtime.wat2wasm(wat)))
    (bundle / "rootfs" / "m.wasm").write_bytes(data)
    anns = dict(COMPAT)
    if engine != "wasmtime":
        anns["run.oci.handler"] = engine
    cfg = minimal_config(["/m.wasm"], annotations=anns)
    for k, v in (cfg_extra or {}).items():
        cfg[k] = v
    return write_bundle(bundle, cfg)


# -- output parity with the native builds --------------------------------------------------------------------

CASES = [("hello", []), ("argsenv", ["a b", "c"]), ("exitcode", ["42"]), ("cpu", ["20000"]), ("sys", []),
         ("files", ["/tmp"])]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("name", "args"), CASES)
def test_same_output_and_exit_as_native(tmp_path: Path, runtime, engine: str, name: str, args: list[str]) -> None:
    native = runtime.run(f"n-{name}", str(asset_bundle(tmp_path, name, args, native=True, engine=engine)))
    wasm = runtime.run(f"w-{name}", str(asset_bundle(tmp_path, name, args, engine=engine)))
    assert native.decision["handler"] == "native", native.decision
    assert wasm.decision["handler"] == engine, wasm.decision
    if name == "argsenv":  # argv[0] differs by design (the module's path); compare the rest
        rest_wasm, rest_native = wasm.stdout.split(b"\n")[2:], native.stdout.split(b"\n")[2:]
        if engine == "wasmer":  # wasmer-sdk does not keep the order of the environment (docs/handlers-wasmer.md)
            rest_wasm, rest_native = sorted(rest_wasm), sorted(rest_native)
        assert rest_wasm == rest_native
    else:
        assert wasm.stdout == native.stdout, wasm.stderr
    assert wasm.exit_code == native.exit_code


@pytest.mark.parametrize("engine", ENGINES)
def test_trap_reports_and_exits_134(tmp_path: Path, runtime, engine: str) -> None:
    res = runtime.run("trap", str(asset_bundle(tmp_path, "trap", engine=engine)))
    assert res.exit_code == 134
    assert b"about to trap" in res.stdout
    assert b"wasm trap" in res.stderr


def test_env_is_process_env_only_and_argv_is_full(tmp_path: Path, runtime, monkeypatch) -> None:
    monkeypatch.setenv("HOST_SECRET", "leak")
    bundle = asset_bundle(tmp_path, "argsenv", ["x", "y"])
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["env"] = ["ONLY=this"]
    (bundle / "config.json").write_text(json.dumps(cfg))
    out = runtime.run("env", str(bundle)).stdout.decode()
    assert "argv[0]=/argsenv.wasm" in out and "argv[2]=y" in out
    assert "env=ONLY=this" in out and "HOST_SECRET" not in out and "envc=1" in out


# -- selection ------------------------------------------------------------------------------------------------

def test_compat_on_elf_fails_and_suggests_compat_smart(tmp_path: Path, runtime, leaks) -> None:
    from wasmlab.runtime.errors import HandlerError

    bundle = asset_bundle(tmp_path, "hello", native=True, annotations=COMPAT)
    with pytest.raises(HandlerError) as info:
        runtime.run("sidecar", str(bundle))
    assert "module.wasm.image/variant=compat" in info.value.message
    assert "compat-smart" in info.value.hint
    assert runtime.list() == []
    leaks.assert_clean()


def test_compat_smart_runs_elf_natively_and_wasm_on_engine(tmp_path: Path, runtime) -> None:
    smart = {"module.wasm.image/variant": "compat-smart"}
    elf = runtime.run("e", str(asset_bundle(tmp_path, "hello", native=True, annotations=smart)))
    wasm = runtime.run("w", str(asset_bundle(tmp_path, "hello", annotations=smart)))
    assert elf.decision["handler"] == "native" and elf.exit_code == 0
    assert wasm.decision["handler"] == "wasmtime" and wasm.stdout == elf.stdout


def test_sandbox_container_is_always_native(tmp_path: Path, runtime) -> None:
    anns = {"module.wasm.image/variant": "compat", "io.kubernetes.cri.container-type": "sandbox"}
    res = runtime.run("pause", str(asset_bundle(tmp_path, "hello", native=True, annotations=anns)))
    assert res.decision["handler"] == "native" and res.exit_code == 0


def test_wat_text_is_accepted_without_suffix(tmp_path: Path, runtime) -> None:
    wat = '(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32))) ' \
          '(memory (export "memory") 1) (func (export "_start") (call $e (i32.const 9))))'
    res = runtime.run("wat", str(wat_bundle(tmp_path, "wat", wat, raw=True)))
    assert res.exit_code == 9
    assert res.decision["entrypoint_kind"] == "wat"


def test_explain_cli_names_annotation_and_rule(tmp_path: Path) -> None:
    bundle = asset_bundle(tmp_path, "hello", native=True, annotations={"module.wasm.image/variant": "compat-smart"})
    r = oci("explain", "--bundle", str(bundle), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["handler"] == "native"
    assert d["annotation"] == ["module.wasm.image/variant", "compat-smart"]
    assert d["entrypoint_kind"] == "elf"
    assert "compat-smart" in d["rule"]


def test_features_lists_handlers_and_annotations() -> None:
    r = oci("features")
    d = json.loads(r.stdout)
    names = {h["name"] for h in d["wasmlab"]["handlers"]}
    assert {"native", "wasmtime", "wasmer"} <= names
    assert "module.wasm.image/variant" in d["wasmlab"]["annotations"]


def test_cli_runs_wasm_with_both_engines(tmp_path: Path, state_root: Path) -> None:
    for engine in ENGINES:
        bundle = asset_bundle(tmp_path, "exitcode", ["5"], engine=engine)
        r = oci("run", "-b", str(bundle), f"cli-{engine}", root=state_root)
        assert r.returncode == 5, r.stderr
        assert r.stdout == "exiting with 5\n"


# -- limits ---------------------------------------------------------------------------------------------------

def test_kill_stops_busy_loop_within_100ms(tmp_path: Path, runtime) -> None:
    # It says "spinning" first: the test kills once the guest is in its loop.
    spin = """(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (data (i32.const 0) "\\10\\00\\00\\00\\09\\00\\00\\00")
      (data (i32.const 16) "spinning\\n")
      (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))
        (loop $l (br $l))))"""
    bundle = wat_bundle(tmp_path, "spin", spin)
    r, w = os.pipe()
    try:
        runtime.create("spin", str(bundle), stdout=w)
        os.close(w)
        runtime.start("spin")
        read_until(r, b"spinning\n")
    finally:
        os.close(r)
    assert runtime.state("spin")["status"] == "running"
    runtime.kill("spin", signal.SIGTERM)
    rec = runtime.wait("spin", timeout=30)  # a guest that ignored the signal spins on: the wait times out
    runtime.delete("spin")
    assert rec.exit_code == 143


def test_kill_stops_guest_blocked_in_a_host_call(tmp_path: Path, runtime) -> None:
    """A guest waiting in fd_read (stdin) never returns to Wasm code, so no epoch check can stop it: SIGTERM
    must end it all the same, with the status a shell would give."""
    # It says "reading" just before its fd_read; the test then waits until the kernel has it asleep in read(2).
    read = """(module (import "wasi_snapshot_preview1" "fd_read" (func $r (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (data (i32.const 0) "\\10\\00\\00\\00\\10\\00\\00\\00")
      (data (i32.const 48) "\\40\\00\\00\\00\\08\\00\\00\\00") (data (i32.const 64) "reading\\n")
      (func (export "_start") (drop (call $w (i32.const 1) (i32.const 48) (i32.const 1) (i32.const 32)))
        (drop (call $r (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 32)))))"""
    bundle = wat_bundle(tmp_path, "reader", read)
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        st = runtime.create("reader", str(bundle), stdin=r, stdout=out_w)
        os.close(out_w)
        runtime.start("reader")
        read_until(out_r, b"reading\n")
        wait_blocked_in_read(st["pid"])
        assert runtime.state("reader")["status"] == "running"
        runtime.kill("reader", signal.SIGTERM)
        rec = runtime.wait("reader", timeout=5)
        runtime.delete("reader")
    finally:
        os.close(r)
        os.close(w)
        os.close(out_r)
    assert rec.exit_code == 143


@pytest.mark.parametrize("kind", ["wasm", "linux"])
def test_sigterm_ends_a_created_container(kind: str, request: pytest.FixtureRequest, runtime) -> None:
    """Before `start` the init waits on its fifo, as pid 1 of its namespace: SIGTERM must still end it
    (with a shell's 143), not vanish into a no-op handler and leave it created for ever."""
    bundle = request.getfixturevalue("wasm_bundle" if kind == "wasm" else "busybox_bundle")
    cid = f"created-{kind}"
    runtime.create(cid, str(bundle))
    assert runtime.state(cid)["status"] == "created"
    runtime.kill(cid, signal.SIGTERM)
    rec = runtime.wait(cid, timeout=5)
    assert runtime.state(cid)["status"] == "stopped"
    runtime.delete(cid)
    assert rec.exit_code == 143


def test_after_run_the_container_is_gone_or_stopped(tmp_path: Path, runtime) -> None:
    """`run` answers as soon as the init reports its exit, before the zygote has reaped and deleted it: what
    the same Runtime shows next must already be the end state, every time."""
    from wasmlab.runtime.errors import ContainerNotFound

    bundle = asset_bundle(tmp_path, "hello")
    for i in range(20):
        runtime.run(f"gone{i}", str(bundle))
        with pytest.raises(ContainerNotFound):
            runtime.state(f"gone{i}")
    runtime.run("kept", str(bundle), keep=True)
    assert runtime.state("kept")["status"] == "stopped"
    assert all(c["id"] != "gone0" for c in runtime.list())
    runtime.delete("kept")


def test_run_result_comes_with_decision_and_timings(tmp_path: Path, runtime) -> None:
    """`run` of a Wasm container: the init hands over its result itself, with what the zygote used to add."""
    res = runtime.run("hello-result", str(asset_bundle(tmp_path, "hello")))
    assert res.exit_code == 0 and res.stdout
    assert res.decision["handler"] == "wasmtime"
    assert 0 < res.timings["ready"] <= res.timings["create_ms"] < res.timings["total_ms"]
    assert res.reports["engine"] == "wasmtime" and res.reports["guest_done_ms"] > res.reports["run_start_ms"]
    assert res.memory["max_rss_kb"] > 0


def test_cpu_time_annotation_stops_guest(tmp_path: Path, runtime) -> None:
    bundle = asset_bundle(tmp_path, "cpu", ["100000000"], annotations=COMPAT | {"wasmlab.io/cpu-time-ms": "200"})
    res = runtime.run("cpu", str(bundle), timeout=30)
    assert res.exit_code == 152


GROW_WAT = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    ;; grow by 1 MiB (16 pages) 64 times; exit 1 as soon as memory.grow fails, 0 if all succeed
    (loop $l
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then (call $exit (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 64))))
    (call $exit (i32.const 0))))
"""


@pytest.mark.parametrize("limit", [None, 32 * 1024 * 1024])
def test_memory_limit_fails_growth_inside_guest(tmp_path: Path, runtime, limit: int | None) -> None:
    extra = {"linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "uts", "ipc")],
                       "resources": {"memory": {"limit": limit}} if limit else {}}}
    bundle = wat_bundle(tmp_path, "grow", GROW_WAT, cfg_extra=extra)
    res = runtime.run("mem", str(bundle), timeout=60)
    assert res.exit_code == (1 if limit else 0)


# -- the compiled-module cache --------------------------------------------------------------------------------

def test_cache_miss_then_hit_and_corrupt_entry_recompiles(tmp_path: Path, runtime, lab_home: Path) -> None:
    bundle = asset_bundle(tmp_path, "cpu", ["100"])
    first = runtime.run("c1", str(bundle))
    second = runtime.run("c2", str(bundle))
    assert first.reports["cache"] == "compiled"
    assert second.reports["cache"] in ("memory", "disk", "instance")
    artifacts = list((lab_home / "cache" / "modules").rglob("*.cwasm"))
    assert len(artifacts) == 1
    artifacts[0].write_bytes(b"garbage")
    runtime.close()  # a fresh zygote has nothing in memory
    third = runtime.run("c3", str(bundle))
    assert third.exit_code == 0 and third.stdout == first.stdout
    assert third.reports["cache"] == "compiled"


# -- the sandbox holds --------------------------------------------------------------------------------------

ESCAPE_WAT = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "PATH")
  (func (export "_start")
    ;; open PATH relative to the first preopen (fd 3); exit 0 if it opened, 1 if refused
    (if (i32.eqz (call $open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const LEN)
                    (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
      (then (call $exit (i32.const 0))))
    (call $exit (i32.const 1))))
"""


@pytest.mark.parametrize("how", ["dotdot", "symlink-abs", "symlink-rel"])
def test_guest_cannot_read_outside_container_root(tmp_path: Path, runtime, how: str) -> None:
    marker = tmp_path / "marker-outside.txt"
    marker.write_text("secret")
    paths = {"dotdot": "../../../../../../" + str(marker).lstrip("/"), "symlink-abs": "link",
             "symlink-rel": "link"}
    path = paths[how]
    bundle = wat_bundle(tmp_path, f"esc-{how}", ESCAPE_WAT.replace("PATH", path).replace("LEN", str(len(path))))
    if how == "symlink-abs":
        (bundle / "rootfs" / "link").symlink_to(marker)
    elif how == "symlink-rel":
        (bundle / "rootfs" / "link").symlink_to("../" * 12 + str(marker).lstrip("/"))
    # control: the same module opens a file that is inside the root
    (bundle / "rootfs" / "inside.txt").write_text("ok")
    res = runtime.run(f"esc-{how}", str(bundle))
    assert res.exit_code == 1, "the guest opened a file outside the container's root"
    ctl = wat_bundle(tmp_path, f"ctl-{how}", ESCAPE_WAT.replace("PATH", "inside.txt").replace("LEN", "10"))
    (ctl / "rootfs" / "inside.txt").write_text("ok")
    assert runtime.run(f"ctl-{how}", str(ctl)).exit_code == 0


# -- bad modules --------------------------------------------------------------------------------------------

BAD = {
    "truncated": (lambda: bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))[:12], 121, "invalid"),
    "garbage": (lambda: b"\0asm\x01\0\0\0\xff\xff\xff", 121, "invalid"),
    "unknown-import": (lambda: bytes(wasmtime.wat2wasm(
        '(module (import "env" "nope" (func)) (func (export "_start")))')), 123, "cannot link"),
    "no-start": (lambda: bytes(wasmtime.wat2wasm('(module (func (export "main")))')), 124, "_start"),
    "bad-wat": (lambda: b"(module (func (export \"_start\") (i32.bogus)))", 122, "does not parse"),
    "4gib-memory": (lambda: bytes(wasmtime.wat2wasm(
        '(module (memory (export "memory") 65536) (func (export "_start")))')), 135, "memory"),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_module_gets_clear_error_and_exit_code(tmp_path: Path, state_root: Path, case: str, engine: str,
                                                   leaks) -> None:
    make, code, words = BAD[case]
    bundle = wat_bundle(tmp_path, case, make(), engine=engine)
    if case == "4gib-memory":
        cfg = json.loads((bundle / "config.json").read_text())
        cfg["linux"]["resources"] = {"memory": {"limit": 64 * 1024 * 1024}}
        (bundle / "config.json").write_text(json.dumps(cfg))
    r = oci("run", "-b", str(bundle), f"bad-{case}", root=state_root)
    assert r.returncode == code, r.stderr
    assert words in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert os.listdir(state_root) == []
    leaks.assert_clean()


def test_missing_entrypoint(tmp_path: Path, state_root: Path) -> None:
    bundle = tmp_path / "missing"
    (bundle / "rootfs").mkdir(parents=True)
    write_bundle(bundle, minimal_config(["/nope.wasm"], annotations=COMPAT))
    r = oci("run", "-b", str(bundle), "missing", root=state_root)
    assert r.returncode != 0
    assert "/nope.wasm" in r.stderr and "missing" in r.stderr


def test_busybox_sidecar_next_to_wasm(tmp_path: Path, runtime) -> None:
    bundle = tmp_path / "side"
    make_rootfs_busybox(bundle / "rootfs")
    smart = {"module.wasm.image/variant": "compat-smart"}
    write_bundle(bundle, minimal_config(["/bin/echo", "sidecar"], annotations=smart))
    res = runtime.run("side", str(bundle))
    assert res.stdout == b"sidecar\n" and res.decision["handler"] == "native"


COMPONENT_WAT = """(component
  (core module $m (func (export "run") (result i32) (i32.const CODE)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $inst (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $inst)))
"""


@pytest.mark.parametrize(("code", "status"), [(0, 0), (1, 1)])
def test_wasi_p2_component_runs_on_wasmtime(tmp_path: Path, runtime, code: int, status: int) -> None:
    data = bytes(wasmtime.wat2wasm(COMPONENT_WAT.replace("CODE", str(code))))
    res = runtime.run(f"comp{code}", str(wat_bundle(tmp_path, f"comp{code}", data)))
    assert res.decision["entrypoint_kind"] == "component"
    assert res.exit_code == status, res.stderr


def test_wasi_p2_component_on_wasmer_is_a_clear_error(tmp_path: Path, runtime) -> None:
    data = bytes(wasmtime.wat2wasm(COMPONENT_WAT.replace("CODE", "0")))
    res = runtime.run("compw", str(wat_bundle(tmp_path, "compw", data, engine="wasmer")))
    assert res.exit_code != 0
    assert b"cannot run WebAssembly components" in res.stderr and b"wasmtime" in res.stderr


@pytest.mark.parametrize("engine", ["wasmtime"])
def test_process_cwd_reaches_relative_paths(tmp_path: Path, runtime, engine: str) -> None:
    """WASI has no working directory: process.cwd is preopened as "." as well, where wasi-libc looks."""
    results = {}
    for native in (True, False):
        bundle = asset_bundle(tmp_path, "cwd", native=native, engine=engine)
        (bundle / "rootfs" / "work").mkdir()
        (bundle / "rootfs" / "work" / "rel.txt").write_text("in the working directory\n")
        (bundle / "rootfs" / "rel.txt").write_text("in the root\n")
        cfg = json.loads((bundle / "config.json").read_text())
        cfg["process"]["cwd"] = "/work"
        (bundle / "config.json").write_text(json.dumps(cfg))
        res = runtime.run(f"cwd-{native}", str(bundle))
        assert res.exit_code == 0, res.stderr
        results[native] = res.stdout.decode().splitlines()
    assert results[True] == ["cwd=/work", "rel.txt: in the working directory"]
    # getcwd() inside the guest still answers "/" (wasi-libc starts there); relative paths are right.
    assert results[False][1] == results[True][1]


def test_cache_is_safe_under_concurrent_compiles(tmp_path: Path, runtime, lab_home: Path) -> None:
    """Eight containers of a never-seen module at once: one artifact, every run right, no temp files left."""
    import threading

    bundle = asset_bundle(tmp_path, "cpu", ["1000"])
    results: dict[int, tuple[int, bytes]] = {}

    def worker(i: int) -> None:
        res = runtime.run(f"cc{i}", str(bundle))
        results[i] = (res.exit_code, res.stdout)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {i: (0, b"primes below 1000: 168\n") for i in range(8)}
    files = [p.name for p in (lab_home / "cache" / "modules").rglob("*") if p.is_file()]
    assert len([f for f in files if f.endswith(".cwasm")]) == 1
    assert not [f for f in files if f.endswith(".tmp")]


def test_wasm_exit_is_recorded_when_wasmlab_oci_has_gone(tmp_path: Path, state_root: Path) -> None:
    """Under podman or containerd, wasmlab-oci exits after create: the Wasm init records its own exit."""
    bundle = asset_bundle(tmp_path, "exitcode", ["9"])
    assert oci("create", "-b", str(bundle), "gone", root=state_root).returncode == 0
    pid = json.loads(oci("state", "gone", root=state_root).stdout)["pid"]
    assert oci("start", "gone", root=state_root).returncode == 0
    wait_gone(pid)
    st = json.loads(oci("state", "gone", root=state_root).stdout)
    assert st["status"] == "stopped"
    assert st["wasmlab"]["exit"]["exit_code"] == 9
    assert oci("delete", "gone", root=state_root).returncode == 0


# -- the command line picks and warms the engine the annotations ask for ----------------------------------------

@pytest.mark.parametrize("cli_engine,annotated", [("wasmtime", "wasmer"), ("wasmer", "wasmtime")])
def test_cli_warms_the_annotated_engine(cli_engine: str, annotated: str, tmp_path: Path, state_root: Path) -> None:
    """wasmlab.io/engine beats the CLI's default engine, and that engine must be the one imported before
    pivot_root (after it, nothing can be imported)."""
    bundle = asset_bundle(tmp_path, "hello", annotations=COMPAT | {"wasmlab.io/engine": annotated})
    r = oci("--engine", cli_engine, "run", "--bundle", str(bundle), "eng", root=state_root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello world from wasmlab !!!!\n"


def test_wasmer_through_create_and_start(tmp_path: Path, state_root: Path) -> None:
    """podman's path: `create` exits before the guest runs, so wasmer's cache must outlive it."""
    bundle = asset_bundle(tmp_path, "hello", engine="wasmer")
    out = tmp_path / "out"
    with open(out, "w") as fh:
        import subprocess

        from tests.conftest import OCI

        subprocess.run([OCI, "--root", str(state_root), "create", "--bundle", str(bundle), "wc"], stdout=fh,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True, timeout=120)
    pid = json.loads(oci("state", "wc", root=state_root).stdout)["pid"]
    assert oci("start", "wc", root=state_root).returncode == 0
    wait_gone(pid, timeout=60)
    assert json.loads(oci("state", "wc", root=state_root).stdout)["status"] == "stopped"
    oci("delete", "wc", root=state_root)
    assert out.read_text() == "hello world from wasmlab !!!!\n"


@pytest.mark.parametrize("annotations", [{"run.oci.handler": "wasmtime"}, {"run.oci.handler": "wasm"}, COMPAT])
def test_a_missing_wasm_entrypoint_is_127_whatever_the_annotation(annotations: dict, tmp_path: Path,
                                                                   state_root: Path) -> None:
    bundle = tmp_path / "b"
    (bundle / "rootfs").mkdir(parents=True)
    write_bundle(bundle, minimal_config(["/nowhere.wasm"], annotations=annotations))
    r = oci("run", "--bundle", str(bundle), "miss", root=state_root)
    assert r.returncode == 127 and "/nowhere.wasm" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_engine_handler_on_an_elf_entrypoint_suggests_wasm_smart(tmp_path: Path, state_root: Path) -> None:
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, minimal_config(["/bin/echo", "hi"], annotations={"run.oci.handler": "wasmtime"}))
    r = oci("run", "--bundle", str(bundle), "elfh", root=state_root)
    assert r.returncode != 0 and "ELF" in r.stderr and "run.oci.handler=wasm-smart" in r.stderr, r.stderr


def test_a_third_party_handler_is_chosen_by_annotation(tmp_path: Path, state_root: Path, lab_home: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler from the `wasmlab.handlers` entry-point group is picked by run.oci.handler like the built-in
    engines, runs inside the sandbox, and its status is the container's."""
    from wasmlab.runtime.lifecycle import Runtime

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "shout_handler.py").write_text(
        "import os\n"
        "class ShoutHandler:\n"
        "    name = 'shout'\n    aliases = ()\n    wasm = True\n"
        "    def available(self): return None\n    def version(self): return '1.0'\n"
        "    def prepare(self): pass\n    def can_handle(self, workload): return True\n"
        "    def run(self, workload):\n"
        "        os.write(1, ('SHOUT ' + ' '.join(workload.args) + '\\n').encode())\n"
        "        return 7\n")
    dist = plugins / "shout_handler-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-handler\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wasmlab.handlers]\nshout = shout_handler:ShoutHandler\n")
    monkeypatch.setenv("PYTHONPATH", str(plugins))
    bundle = tmp_path / "b"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "rootfs" / "thing").write_text("not a program\n")
    write_bundle(bundle, minimal_config(["/thing", "hello"], annotations={"run.oci.handler": "shout"}))
    with Runtime(root=str(state_root)) as rt:
        res = rt.run("shout", str(bundle))
    assert (res.exit_code, res.stdout, res.decision["handler"]) == (7, b"SHOUT /thing hello\n", "shout")


def test_a_module_on_path_needs_no_executable_bit_and_explain_agrees(tmp_path: Path, state_root: Path) -> None:
    bundle = tmp_path / "b"
    (bundle / "rootfs" / "usr" / "bin").mkdir(parents=True)
    module = bundle / "rootfs" / "usr" / "bin" / "hello.wasm"
    shutil.copy2(ASSETS / "wasm" / "hello.wasm", module)
    module.chmod(0o644)
    write_bundle(bundle, minimal_config(["hello.wasm"], annotations=COMPAT))
    explained = json.loads(oci("explain", "--bundle", str(bundle), "--json", root=state_root).stdout)
    assert (explained["handler"], explained["entrypoint"]) == ("wasmtime", "/usr/bin/hello.wasm")
    r = oci("run", "--bundle", str(bundle), "onpath", root=state_root)
    assert r.returncode == 0 and r.stdout == "hello world from wasmlab !!!!\n", r.stderr
