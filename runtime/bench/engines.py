"""The bench's engines: a bundle per program and engine, run by wasmlab or an outside anchor, timed and weighed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets" / "built"
WASM_ENGINES = ("wasmtime", "wasmer")
LINUX_ENGINES = ("native",)
ANCHORS = ("runc", "crun")
ENGINES = (*WASM_ENGINES, *LINUX_ENGINES, *ANCHORS)


@dataclass(frozen=True)
class Sample:
    """One container run: create-to-exit wall time and the peak memory of its cgroup."""

    ms: float
    peak_bytes: int


@dataclass
class Anchor:
    """Whether an outside runtime runs here, and if not, the line it answered (never a faked figure)."""

    name: str
    path: str | None
    error: str = ""

    @property
    def available(self) -> bool:
        return self.path is not None and not self.error

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "available": self.available, "error": self.error}


def _tool(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)


class MemoryParent:
    """A v1 memory cgroup (or a v2 folder) holding every container of one engine, so that one file gives the
    peak of whatever ran under it, runc's own init included. Reset before each sample."""

    def __init__(self, rel: str) -> None:
        from wasmlab.runtime.linux import cgroups

        lay = cgroups.layout()
        self.rel = rel
        if lay.mode == "v2" and lay.v2:
            self.dir = os.path.join(lay.v2, rel)
            self.peak_file = "memory.peak"
        else:
            self.dir = os.path.join(lay.v1["memory"], rel)
            self.peak_file = "memory.max_usage_in_bytes"
        os.makedirs(self.dir, exist_ok=True)

    def reset(self) -> None:
        try:
            with open(os.path.join(self.dir, self.peak_file), "w") as fh:
                fh.write("0")  # v1: the peak starts again from the current use (v2 from 6.12: any write)
        except OSError:
            pass

    def peak(self) -> int:
        try:
            with open(os.path.join(self.dir, self.peak_file)) as fh:
                return int(fh.read())
        except (OSError, ValueError):
            return 0

    def current(self) -> int:
        name = "memory.current" if self.peak_file == "memory.peak" else "memory.usage_in_bytes"
        try:
            with open(os.path.join(self.dir, name)) as fh:
                return int(fh.read())
        except (OSError, ValueError):
            return 0

    def remove(self) -> None:
        for d in sorted((p for p, _, _ in os.walk(self.dir)), key=len, reverse=True):
            deadline = time.monotonic() + 2
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)


def program_rootfs(work: Path, program: str, engine: str) -> Path:
    """A read-only root holding the program's Wasm module or its static Linux build (assets/built)."""
    kind = "linux" if engine in LINUX_ENGINES or engine in ANCHORS else "wasm"
    root = work / "roots" / f"{program}-{kind}"
    if not root.exists():
        (root / "bin").mkdir(parents=True)
        for d in ("proc", "sys", "dev", "tmp"):
            (root / d).mkdir()
        src = ASSETS / kind / (f"{program}.wasm" if kind == "wasm" else program)
        shutil.copy2(src, root / "bin" / src.name)
    return root


def entrypoint(program: str, engine: str) -> str:
    kind = "linux" if engine in LINUX_ENGINES or engine in ANCHORS else "wasm"
    return f"/bin/{program}.wasm" if kind == "wasm" else f"/bin/{program}"


def write_bundle(bundle: Path, rootfs: Path, args: list[str], engine: str, cgroup: str) -> Path:
    """A bundle with runc's default config (namespaces, mounts, read-only root) for every engine alike, so
    that only the engine differs; a Wasm one carries the compat annotation and its handler."""
    from wasmlab.runtime.spec.runtime import default_config

    cfg = default_config(args)
    cfg["process"]["terminal"] = False
    cfg["root"] = {"path": str(rootfs), "readonly": True}
    cfg["linux"]["cgroupsPath"] = "/" + cgroup.strip("/")
    if engine in WASM_ENGINES:
        cfg["annotations"] = {"module.wasm.image/variant": "compat", "run.oci.handler": engine}
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


@dataclass
class Engine:
    """Runs bundles: wasmlab's Runtime for wasmtime, wasmer and native, or an anchor's binary."""

    name: str
    runtime: Any = None                 # wasmlab.runtime.lifecycle.Runtime for wasmlab's engines
    binary: str | None = None           # runc or crun
    state_root: Path | None = None
    counter: list[int] = field(default_factory=lambda: [0])

    def _id(self) -> str:
        self.counter[0] += 1
        return f"bench-{self.name}-{os.getpid()}-{self.counter[0]}"

    def run(self, bundle: Path) -> int:
        """Create, start, wait, delete; the exit code."""
        cid = self._id()
        if self.runtime is not None:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                return int(self.runtime.run(cid, str(bundle), stdio=(null, null, null)).exit_code or 0)
            finally:
                os.close(null)
        assert self.binary is not None
        proc = subprocess.run([self.binary, "--root", str(self.state_root), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            raise AnchorRefused(lines[-1] if lines else f"exit {proc.returncode}")
        return 0

    def start_detached(self, bundle: Path, stdout: int | None = None) -> str:
        """Create and start a long-running container (its output into STDOUT, or nowhere); its id."""
        cid = self._id()
        if self.runtime is not None:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                self.runtime.create(cid, str(bundle), stdin=null, stdout=null if stdout is None else stdout,
                                    stderr=null)
            finally:
                os.close(null)
            self.runtime.start(cid)
            return cid
        assert self.binary is not None
        import tempfile

        # Its stdio passes through to the container, which outlives runc: a pipe would never see its end.
        with tempfile.TemporaryFile() as err:
            proc = subprocess.run([self.binary, "--root", str(self.state_root), "run", "-d", "--bundle",
                                   str(bundle), cid], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL if stdout is None else stdout, stderr=err)
            err.seek(0)
            text = err.read()
        if proc.returncode != 0:
            lines = text.decode(errors="replace").strip().splitlines()
            raise AnchorRefused(lines[-1] if lines else f"exit {proc.returncode}")
        return cid

    def remove(self, cid: str) -> None:
        """Kill and delete a container started detached."""
        if self.runtime is not None:
            try:
                self.runtime.kill(cid, "KILL")
                self.runtime.wait(cid, timeout=10)
            except Exception:  # it may have gone already; delete says the rest
                pass
            self.runtime.delete(cid, force=True)
            return
        assert self.binary is not None
        subprocess.run([self.binary, "--root", str(self.state_root), "delete", "-f", cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class AnchorRefused(Exception):
    """An outside runtime refused to run a container here; its last line says why."""


def measure(engine: Engine, bundle: Path, memory: MemoryParent) -> Sample:
    """One run of BUNDLE in a fresh cgroup under MEMORY (a leaf reused at once could still be in the previous
    container's teardown, which runs after the answer and kills what is left in it)."""
    config = bundle / "config.json"
    cfg = json.loads(config.read_text())
    engine.counter[0] += 1
    cfg["linux"]["cgroupsPath"] = f"/{memory.rel}/s{engine.counter[0]}"
    config.write_text(json.dumps(cfg))
    memory.reset()
    t = time.perf_counter_ns()
    code = engine.run(bundle)
    ms = (time.perf_counter_ns() - t) / 1e6
    if code != 0:
        from wasmlab.runtime.errors import BenchFailed

        raise BenchFailed(f"bench: the {engine.name} container of {bundle.name} exited {code}",
                          "run it alone to see its output: wasmlab run IMAGE on that engine")
    return Sample(ms, memory.peak())


def probe_anchor(name: str, work: Path, cgroup_base: str) -> Anchor:
    """Whether NAME runs the hello bundle here: absent, refusing (with its line), or available."""
    path = _tool(name)
    if path is None:
        return Anchor(name, None, f"{name} is not installed (apt-get install {name})")
    engine = Engine(name, binary=path, state_root=work / f"{name}-state")
    bundle = write_bundle(work / "probe" / name, program_rootfs(work, "hello", name), [entrypoint("hello", name)],
                          name, f"{cgroup_base}/probe-{name}")
    try:
        engine.run(bundle)
    except AnchorRefused as exc:
        return Anchor(name, path, str(exc))
    finally:
        MemoryParent(f"{cgroup_base}/probe-{name}").remove()
    return Anchor(name, path)


def runner(engine: Engine, bundle: Path, memory: MemoryParent) -> Callable[[], Sample]:
    return lambda: measure(engine, bundle, memory)


def remove_cgroup_tree(rel: str) -> None:
    """Remove REL and everything under it from every cgroup hierarchy (runc and wasmlab make the parents of a
    container's cgroup in each controller and remove only the leaf)."""
    with open("/proc/self/mountinfo") as fh:
        mounts = sorted({line.split()[4] for line in fh if " - cgroup" in line})
    for mnt in mounts:
        top = os.path.join(mnt, rel.strip("/"))
        if not os.path.isdir(top):
            continue
        for d in sorted((p for p, _, _ in os.walk(top)), key=len, reverse=True):
            deadline = time.monotonic() + 2
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
