"""The runtime's own figures (scenario `runtime`): start-up against runc and the floor, kill, footprint, Lab.run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wasmlab.runtime.metrics.probes import footprint

ROOT = Path(__file__).resolve().parents[2]  # runtime/bench/micro.py: the repository is two up
HELLO_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 6))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))))
"""
# Waits on stdin (a pipe nobody writes to): an idle container, for the footprint probe.
IDLE_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $r (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 16))
    (drop (call $r (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 32)))))
"""
SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
ISOLATION = ("pid", "mount", "uts", "ipc")


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"median_ms": statistics.median(samples), "p10_ms": samples[len(samples) // 10],
            "p90_ms": samples[(len(samples) * 9) // 10], "min_ms": samples[0], "max_ms": samples[-1],
            "n": len(samples)}


def _timed(fn: Callable[[], object]) -> float:
    """One sample in ms: what FN returns when it times itself (a float, e.g. FloorProbe), else its wall time."""
    t = time.perf_counter_ns()
    own = fn()
    took = (time.perf_counter_ns() - t) / 1e6
    return own if isinstance(own, float) else took


def _median_ms(fn: Callable[[], object], n: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    return _summary([_timed(fn) for _ in range(n)])


def interleaved_ms(fns: Mapping[str, tuple[Callable[[], object], int]], n: int, warmup: int = 3,
                   progress: Callable[[str], None] = lambda s: None) -> dict[str, dict[str, float]]:
    """Time several things in rounds, one sample of each per round, so a noisy spell on this shared machine
    hits them all alike and their ratios stay fair. The order within a round is shuffled (seeded): whatever
    one leaves behind (runc's cgroups, a container's teardown) slows whichever comes next, and that must
    not always be the same one. Each (fn, every) is sampled every `every` rounds."""
    import random

    order = random.Random(2026)
    for fn, _every in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(n):
        if i % max(1, n // 5) == 0:
            progress(f"round {i + 1} of {n}")
        order.shuffle(names)
        for name in names:
            fn, every = fns[name]
            if i % every:
                continue
            samples[name].append(_timed(fn))
    return {name: _summary(values) for name, values in samples.items()}


def _config(args: list[str], *, linux_default: bool, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    from wasmlab.runtime.spec.runtime import default_config

    cfg = default_config(args)
    cfg["process"]["terminal"] = False
    if not linux_default:
        cfg["linux"] = {"namespaces": [{"type": t} for t in ISOLATION]}
        cfg["mounts"] = []
        cfg["root"]["readonly"] = True
    if annotations:
        cfg["annotations"] = annotations
    return cfg


def make_bundles(work: Path) -> dict[str, Path]:
    import wasmtime

    bundles: dict[str, Path] = {}
    busybox = shutil.which("busybox")
    if busybox:
        b = work / "busybox"
        (b / "rootfs" / "bin").mkdir(parents=True)
        shutil.copy2(busybox, b / "rootfs" / "bin" / "busybox")
        (b / "rootfs" / "bin" / "echo").symlink_to("busybox")
        for d in ("proc", "sys", "dev", "tmp"):
            (b / "rootfs" / d).mkdir()
        (b / "config.json").write_text(json.dumps(_config(["/bin/echo", "hello"], linux_default=True)))
        bundles["busybox"] = b
    for engine in ("wasmtime", "wasmer"):
        w = work / f"hello-{engine}"
        (w / "rootfs").mkdir(parents=True)
        (w / "rootfs" / "hello.wasm").write_bytes(bytes(wasmtime.wat2wasm(HELLO_WAT)))
        anns = {"module.wasm.image/variant": "compat", "run.oci.handler": engine}
        cfg = _config(["/hello.wasm"], linux_default=False, annotations=anns)
        if engine == "wasmer":
            # wasmer-sdk reaches its compiled-module cache as /proc/self/fd/N (docs/handlers-wasmer.md)
            (w / "rootfs" / "proc").mkdir()
            cfg["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
        (w / "config.json").write_text(json.dumps(cfg))
        bundles[f"hello-{engine}"] = w
    spin = work / "spin"
    (spin / "rootfs").mkdir(parents=True)
    (spin / "rootfs" / "spin.wasm").write_bytes(bytes(wasmtime.wat2wasm(SPIN_WAT)))
    anns = {"module.wasm.image/variant": "compat"}
    (spin / "config.json").write_text(json.dumps(_config(["/spin.wasm"], linux_default=False, annotations=anns)))
    bundles["spin"] = spin
    idle = work / "idle"
    (idle / "rootfs").mkdir(parents=True)
    (idle / "rootfs" / "idle.wasm").write_bytes(bytes(wasmtime.wat2wasm(IDLE_WAT)))
    anns = {"module.wasm.image/variant": "compat"}
    (idle / "config.json").write_text(json.dumps(_config(["/idle.wasm"], linux_default=False, annotations=anns)))
    bundles["idle"] = idle
    return bundles


# The floor's helper: a bare interpreter (about 10 MB) that times fork, unshare and the child's exit itself, one
# sample per line it reads. The cost of fork grows with the forking process's size, and the bench's process is
# big (an engine, a Lab, every scenario's leftovers: fork from it took 25 ms where the lean zygote forks the
# containers in about 1): timed from there, the "floor" was slower than a whole container.
FLOOR_HELPER = """
import ctypes, os, sys, time
flags = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
sys.stdout.write(f"{os.getpid()}\\n")
sys.stdout.flush()
while sys.stdin.buffer.readline():
    t = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flags) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    took = (time.perf_counter_ns() - t) / 1e6
    sys.stdout.write(f"{took if status == 0 else -1.0}\\n")
    sys.stdout.flush()
"""


class FloorProbe:
    """The floor of isolation: fork, unshare the Wasm containers' namespaces (pid, mount, uts, ipc), exit, timed
    inside a lean helper process, as the zygote forks from a lean process (see FLOOR_HELPER). Calling it takes one
    sample and returns its ms."""

    def __init__(self) -> None:
        from wasmlab.runtime.linux import syscalls as sc

        flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWPID
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", FLOOR_HELPER, str(flags)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.pid = int(self.proc.stdout.readline())

    def __call__(self) -> float:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        took = float(line) if line.strip() else -1.0
        if took < 0:
            from wasmlab.runtime.errors import BenchFailed

            raise BenchFailed("bench: the floor's fork and unshare failed", "run the bench as root")
        return took

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> FloorProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def floor_in_process() -> Callable[[], None]:
    """The same fork, unshare and exit from the calling process: what the floor was before FloorProbe (kept
    to show the difference, in tests)."""
    from wasmlab.runtime.linux import syscalls as sc

    flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWPID

    def once() -> None:
        pid = os.fork()
        if pid == 0:
            try:
                sc.unshare(flags)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    return once


def runc_once(bundle: Path, root: Path) -> Callable[[], None] | None:
    runc = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
    if runc is None:
        return None
    counter = iter(range(10**9))

    def once() -> None:
        subprocess.run([runc, "--root", str(root), "run", "--bundle", str(bundle), f"bench{next(counter)}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=True)

    return once


def cli_version_ms(n: int) -> dict[str, float]:
    oci = str(ROOT / ".venv" / "bin" / "wasmlab-oci")

    def once() -> None:
        subprocess.run([oci, "--version"], stdout=subprocess.DEVNULL, check=True)

    return _median_ms(once, n, warmup=2)


def run(n: int, seq: int, out: Path | None, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    from wasmlab.runtime.lifecycle import Runtime

    os.environ.setdefault("WASMLAB_HISTORY", "0")
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "n": n,
                               "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
                               "command": " ".join(["python -m wasmlab.runtime.bench", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory(prefix="wasmlab-bench-") as tmp:
        work = Path(tmp)
        os.environ["WASMLAB_HOME"] = str(work / "home")
        bundles = make_bundles(work)
        rt = Runtime(root=str(work / "state"))
        floor = FloorProbe()
        counter = iter(range(10**9))

        def embedded(bundle: Path) -> Callable[[], None]:
            def once() -> None:
                res = rt.run(f"b{next(counter)}", str(bundle))
                if res.exit_code != 0:
                    raise RuntimeError(f"bench container failed: {res.stderr!r}")
            return once

        try:
            fns: dict[str, tuple[Callable[[], object], int]] = {
                "floor": (floor, 1),
                "wasm_wasmtime": (embedded(bundles["hello-wasmtime"]), 1),
                "wasm_wasmer": (embedded(bundles["hello-wasmer"]), 4),
            }
            if "busybox" in bundles:
                fns["linux_embedded"] = (embedded(bundles["busybox"]), 1)
                runc = runc_once(bundles["busybox"], work / "runc")
                if runc is not None:
                    fns["runc"] = (runc, 1)
            progress("start-up, round-robin: floor, " + ", ".join(name for name in fns if name != "floor"))
            results.update(interleaved_ms(fns, n, progress=progress))
            progress("the same floor and hello.wasm, each back to back on its own")
            results["isolated"] = {name: _median_ms(fns[name][0], n) for name in ("floor", "wasm_wasmtime")}
            progress(f"{seq} hello.wasm containers in sequence")
            t = time.perf_counter()
            once = embedded(bundles["hello-wasmtime"])
            for _ in range(seq):
                once()
            results["sequence"] = {"containers": seq, "seconds": time.perf_counter() - t}
            progress("idle hello.wasm footprint")
            results["idle_footprint"] = idle_footprint(rt, bundles["idle"])
            progress("kill of a spinning module: SIGTERM to exit")
            results["kill_latency"] = kill_latency(rt, bundles["spin"], max(5, n // 5))
            progress("wasmlab-oci --version")
            results["cli_version"] = cli_version_ms(max(10, n // 2))
            progress("Lab.run from images: snapshots, a 100 MB layer, and a prepared bundle")
            results["lab"] = lab_start(work, rt, bundles, n, progress)
        finally:
            floor.close()
            rt.close()
    results["ratios"] = ratios(results)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(results, indent=2))
        (out.parent / "bench.md").write_text(markdown(results))
    return results


def lab_start(work: Path, rt: Any, bundles: dict[str, Path], n: int,
              progress: Callable[[str], None]) -> dict[str, Any]:
    """What a learner measures: `Lab.run` of an image (unpack or snapshots, bundle, cgroup, log, record),
    with and without a 100 MB layer, with snapshots and with copies, next to `Runtime.run` of a prepared
    bundle of the same image (no cgroup): the snapshot targets of issue 11, interleaved in one run."""
    from wasmlab.runtime.service import Lab

    out: dict[str, Any] = {}
    home = work / "lab-home"
    with Lab(home) as lab:
        def build(name: str, containerfile: str, files: dict[str, Path | bytes],
                  annotations: dict[str, str] | None = None) -> None:
            context = work / "contexts" / name.replace("/", "_")
            context.mkdir(parents=True)
            (context / "Containerfile").write_text(containerfile)
            for rel, content in files.items():
                target = context / rel
                if isinstance(content, Path):
                    shutil.copytree(content, target, symlinks=True)
                else:
                    target.write_bytes(content)
            lab.build(context, tag=name, annotations=annotations)

        build("bench/hello", 'FROM scratch\nCOPY hello.wasm /\nCMD ["/hello.wasm"]\n',
              {"hello.wasm": (bundles["hello-wasmtime"] / "rootfs" / "hello.wasm").read_bytes()},
              {"module.wasm.image/variant": "compat"})
        if "busybox" in bundles:
            build("bench/busybox", 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/echo", "hello"]\n',
                  {"rootfs": bundles["busybox"] / "rootfs"})
            build("bench/busybox-100mb", "FROM bench/busybox\nCOPY blob.bin /data/\n",
                  {"blob.bin": os.urandom(100 << 20)})
        null = os.open(os.devnull, os.O_RDWR)

        def lab_run(image: str, copy: bool = False) -> Callable[[], None]:
            def once() -> None:
                if copy:
                    os.environ["WASMLAB_ROOTFS"] = "copy"
                try:
                    res = lab.run(image, rm=True, stdio=(null, null, null))
                finally:
                    os.environ.pop("WASMLAB_ROOTFS", None)
                if res.exit_code != 0:
                    raise RuntimeError(f"bench container of {image} exited {res.exit_code}")
            return once

        counter = iter(range(10**9))
        # The same image's bundle as `Lab.run` makes it (its config, its overlay root), without a cgroup.
        from wasmlab.runtime.images.service import Images

        prepared = Images(home).prepare("bench/hello", work / "hello-prepared").bundle

        def bundle_run() -> None:
            if rt.run(f"lb{next(counter)}", prepared).exit_code != 0:
                raise RuntimeError("bench hello bundle failed")

        fns: dict[str, tuple[Callable[[], None], int]] = {
            "lab_hello": (lab_run("bench/hello"), 1), "runtime_hello_bundle": (bundle_run, 1)}
        if "busybox" in bundles:
            fns["lab_busybox"] = (lab_run("bench/busybox"), 1)
            fns["lab_busybox_100mb"] = (lab_run("bench/busybox-100mb"), 1)
        out.update(interleaved_ms(fns, n, warmup=1, progress=progress))
        if "busybox" in bundles:
            # As before snapshots, for comparison: apart, since each copy leaves 100 MB to remove after it,
            # which would weigh on whatever ran next.
            progress("Lab.run with copies instead of snapshots")
            copies = lab_run("bench/busybox-100mb", copy=True)

            def copy_and_settle() -> None:
                copies()
                lab.settle()

            out["lab_busybox_100mb_copy"] = _median_ms(copy_and_settle, max(5, n // 8), warmup=1)
            # The disk a container takes: what it writes (1 MiB here), against the image's 100 MB.
            res = lab.run("bench/busybox-100mb", ["/bin/busybox", "sh", "-c",
                                                  "/bin/busybox head -c 1048576 /dev/zero > /written"],
                          name="disk", stdio=(null, null, null))
            if res.exit_code != 0:
                raise RuntimeError(f"the disk container exited {res.exit_code}")
            used = sum(p.lstat().st_blocks * 512 for p in Path(lab.inspect("disk").bundle).rglob("*"))
            out["container_disk"] = {"written_bytes": 1 << 20, "container_bytes": used,
                                     "image_bytes": sum(i.size for i in lab.images() if i.name and "100mb" in i.name)}
            lab.rm("disk")
        os.close(null)
        out["root_mode"] = lab.root_mode()
    base_ms = out["runtime_hello_bundle"]["median_ms"]
    out["ratios"] = {"lab_hello_vs_bundle": out["lab_hello"]["median_ms"] / base_ms}
    if "lab_busybox" in out:
        out["ratios"]["lab_100mb_vs_without"] = out["lab_busybox_100mb"]["median_ms"] / out["lab_busybox"]["median_ms"]
        out["ratios"]["lab_100mb_copy_vs_without"] = (out["lab_busybox_100mb_copy"]["median_ms"]
                                                     / out["lab_busybox"]["median_ms"])
    return out


def markdown(res: dict[str, Any]) -> str:
    """docs/bench.md: the figures of one run, with the date and the command that produced them."""
    def ms(key: str) -> str:
        r = res.get(key)
        return f"{r['median_ms']:.2f} ({r['min_ms']:.2f}-{r['max_ms']:.2f})" if r else "n/a"

    rat = res["ratios"]
    seq = res["sequence"]
    iso = res.get("isolated") or {}
    iso_floor = (iso.get("floor") or {}).get("median_ms", float("nan"))
    iso_wasm = (iso.get("wasm_wasmtime") or {}).get("median_ms", float("nan"))
    fp = res.get("idle_footprint") or {}
    lines = [
        "# Benchmark results",
        "",
        f"Measured {res['date']} on {res['machine']['cpus']} CPUs, kernel {res['machine']['kernel']}, "
        f"with `make bench` (`{res['command']}`), all in one run.",
        f"Start-up times are taken in rounds, one sample of each per round in a shuffled order ({res['n']} "
        "rounds; wasmer every 4th), so that a noisy spell on this shared machine hits them all alike: compare "
        "the ratios.",
        "",
        "| measurement | median ms (min-max) |",
        "|---|---|",
        f"| floor: fork from a lean process, unshare(pid, mount, uts, ipc), exit | {ms('floor')} |",
        f"| hello.wasm on wasmtime, `Runtime.run`, cache warm, pid+mount+uts+ipc+pivot_root | {ms('wasm_wasmtime')} |",
        f"| hello.wasm on wasmer, `Runtime.run` (also mounts /proc) | {ms('wasm_wasmer')} |",
        f"| busybox echo, `Runtime.run` (runc's default namespaces and mounts) | {ms('linux_embedded')} |",
        f"| busybox echo, `runc run`, same bundle | {ms('runc')} |",
        f"| `wasmlab-oci --version` | {ms('cli_version')} |",
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| Linux embedded / runc | {rat.get('linux_embedded_vs_runc', float('nan')):.2f} | <= 0.5 (aim 0.25) |",
        f"| wasmtime / runc | {rat.get('wasm_wasmtime_vs_runc', float('nan')):.2f} | <= 0.2 (aim 0.1) |",
        f"| wasmtime / floor | {rat['wasm_wasmtime_vs_floor']:.2f} | <= 2.5 |",
        f"| wasmer / runc | {rat.get('wasm_wasmer_vs_runc', float('nan')):.2f} | - |",
        "",
        "Measured back to back on their own instead (each sample following one of its kind, the floor's own "
        f"teardown tiny), the floor takes {iso_floor:.2f} ms and hello.wasm on wasmtime {iso_wasm:.2f} ms: "
        f"{iso_wasm / iso_floor:.2f} x the floor.",
        "",
        f"- {seq['containers']} hello.wasm containers in sequence: {seq['seconds']:.2f} s "
        f"({seq['seconds'] / seq['containers'] * 1e3:.2f} ms each; target: 1000 in <= 5 s).",
        f"- `kill` (SIGTERM) of a module spinning in a busy loop, to its exit: {ms('kill_latency')} ms, "
        f"max {res['kill_latency']['max_ms']:.2f} ms (target: within 100 ms).",
        f"- An idle hello.wasm container (wasmtime, blocked reading stdin; median of {fp.get('samples', 1)}, "
        f"cache warm): USS {fp.get('uss_kb', 0) / 1024:.2f} MiB, "
        f"PSS {fp.get('pss_kb', 0) / 1024:.2f} MiB, RSS {fp.get('rss_kb', 0) / 1024:.2f} MiB (target: USS <= 4 MiB).",
        "",
        "![start-up chart](bench/latest.png)",
        "",
    ]
    lab = res.get("lab")
    if lab:
        lr = lab["ratios"]
        disk = lab.get("container_disk") or {}

        def lab_ms(key: str) -> str:
            r = lab.get(key)
            return f"{r['median_ms']:.1f} ({r['min_ms']:.1f}-{r['max_ms']:.1f})" if r else "n/a"

        lines += [
            "## From an image: `Lab.run` (snapshots, issue 11)",
            "",
            f"Container roots here: **{lab.get('root_mode')}**. Interleaved in rounds as above; the copies "
            "measured in a phase of its own (each copy leaves 100 MB to remove). `Lab.run` does everything "
            "`wasmlab run --rm` does in the service: the bundle from the image (snapshots), a cgroup, the log, "
            "the run history, and the removal (after the answer).",
            "",
            "| measurement | median ms (min-max) |",
            "|---|---|",
            f"| `Lab.run` of hello.wasm (compat image) | {lab_ms('lab_hello')} |",
            f"| `Runtime.run` of a bundle of the same image, prepared once, no cgroup | "
            f"{lab_ms('runtime_hello_bundle')} |",
            f"| `Lab.run` of busybox echo | {lab_ms('lab_busybox')} |",
            f"| `Lab.run` of the same plus a 100 MB layer | {lab_ms('lab_busybox_100mb')} |",
            f"| the same, with copies (`WASMLAB_ROOTFS=copy`, as before snapshots) | "
            f"{lab_ms('lab_busybox_100mb_copy')} |",
            "",
            "| ratio | value | target |",
            "|---|---|---|",
            f"| 100 MB layer / without | {lr.get('lab_100mb_vs_without', float('nan')):.2f} | <= 1.2 |",
            f"| 100 MB layer, copies / without | {lr.get('lab_100mb_copy_vs_without', float('nan')):.2f} | - |",
            f"| `Lab.run` hello / `Runtime.run` of its bundle | {lr['lab_hello_vs_bundle']:.2f} | <= 1.5 |",
            "",
        ]
        if disk:
            lines += [f"- Disk taken by a container of the 100 MB image that writes 1 MiB: "
                      f"{disk['container_bytes'] / 1e6:.2f} MB (the image: {disk['image_bytes'] / 1e6:.1f} MB).", ""]
    return "\n".join(lines)


def kill_latency(rt: Any, bundle: Path, n: int) -> dict[str, float]:
    """From `kill` (SIGTERM) to the exit of a module spinning in a busy loop."""
    samples = []
    for i in range(n):
        rt.create(f"spin{i}", str(bundle))
        rt.start(f"spin{i}")
        time.sleep(0.05)
        t = time.perf_counter_ns()
        rt.kill(f"spin{i}", "TERM")
        rec = rt.wait(f"spin{i}", timeout=10)
        samples.append((time.perf_counter_ns() - t) / 1e6)
        rt.delete(f"spin{i}")
        if rec.exit_code != 143:
            raise RuntimeError(f"a spinning module exited {rec.exit_code} after SIGTERM, not 143")
    samples.sort()
    return {"median_ms": statistics.median(samples), "p10_ms": samples[len(samples) // 10],
            "p90_ms": samples[(len(samples) * 9) // 10], "min_ms": samples[0], "max_ms": samples[-1], "n": n}


def idle_footprint(rt: Any, bundle: Path, samples: int = 3) -> dict[str, Any]:
    """USS, PSS and RSS of an idle Wasm container, the median of a few; the first, which compiles the
    module (the cache is cold for it), is not counted."""
    probes = []
    for i in range(samples + 1):
        r, w = os.pipe()
        name = f"idle{i}"
        try:
            state = rt.create(name, str(bundle), stdin=r)
            rt.start(name)
            pid = int(state["pid"])
            time.sleep(0.5)
            fp = footprint(pid)
            rt.kill(name, "KILL")
            rt.wait(name, timeout=10)
            rt.delete(name)
        finally:
            os.close(r)
            os.close(w)
        if i and fp:
            probes.append(fp)
    if not probes:
        return {}
    probes.sort(key=lambda fp: fp.uss_kb)
    mid = probes[len(probes) // 2]
    return {"uss_kb": mid.uss_kb, "pss_kb": mid.pss_kb, "rss_kb": mid.rss_kb, "samples": len(probes)}


def ratios(res: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    runc = (res.get("runc") or {}).get("median_ms")
    floor = res["floor"]["median_ms"]
    if runc:
        if res.get("linux_embedded"):
            out["linux_embedded_vs_runc"] = res["linux_embedded"]["median_ms"] / runc
        for engine in ("wasmtime", "wasmer"):
            out[f"wasm_{engine}_vs_runc"] = res[f"wasm_{engine}"]["median_ms"] / runc
    for engine in ("wasmtime", "wasmer"):
        out[f"wasm_{engine}_vs_floor"] = res[f"wasm_{engine}"]["median_ms"] / floor
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wasmlab.runtime.bench", description=__doc__)
    parser.add_argument("-n", type=int, default=50, help="samples per measurement")
    parser.add_argument("--sequence", type=int, default=1000, help="Wasm containers run back to back")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args(argv)
    res = run(args.n, args.sequence, args.out, progress=lambda s: print(f"bench: {s}", file=sys.stderr))
    print(json.dumps({k: res[k] for k in ("ratios",)} | {
        k: v.get("median_ms") for k, v in res.items() if isinstance(v, dict) and "median_ms" in v
    } | {"sequence_s": res["sequence"]["seconds"], "idle_uss_kb": res["idle_footprint"].get("uss_kb")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
