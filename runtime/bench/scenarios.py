"""The bench's registered scenarios: sample programs in interleaved rounds, scaling to N, pods, the bloated image."""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from wasmlab.runtime.bench.engines import (
    ANCHORS,
    AnchorRefused,
    Engine,
    MemoryParent,
    entrypoint,
    measure,
    program_rootfs,
    write_bundle,
)

MIB = 1024 * 1024


@dataclass
class BenchContext:
    """What a scenario gets: the options, a work folder, the engines that run here, a lab, and progress."""

    n: int
    quick: bool
    work: Path
    cgroup_base: str
    engines: dict[str, Engine]
    anchors: dict[str, dict[str, Any]]
    scaling: tuple[int, ...]
    tick: Callable[[str], None]
    lab_factory: Callable[[], Any]
    build_bloated: bool = False
    _lab: Any = None

    @property
    def lab(self) -> Any:
        if self._lab is None:
            self._lab = self.lab_factory()
        return self._lab


@dataclass(frozen=True)
class Rounds:
    """A sample program run on every engine, its samples taken in the shared interleaved rounds."""

    name: str
    title: str
    program: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]

    def steps(self, ctx: BenchContext) -> int:
        return 0  # counted by the rounds


@dataclass(frozen=True)
class Phase:
    """A scenario measured on its own, after the rounds (concurrency, pods, images: they cannot interleave)."""

    name: str
    title: str
    run: Callable[[BenchContext], dict[str, Any]]
    count: Callable[[BenchContext], int] = lambda ctx: 1
    fields: dict[str, Any] = field(default_factory=dict)

    def steps(self, ctx: BenchContext) -> int:
        return self.count(ctx)


Scenario = Rounds | Phase
SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to `wasmlab bench`: its name, place and --quick come from bench_catalog (the one list)."""
    from wasmlab.runtime.bench_catalog import BENCH_SCENARIO_NAMES

    if scenario.name not in BENCH_SCENARIO_NAMES:
        raise ValueError(f"bench scenario {scenario.name!r} is not in runtime/bench_catalog.py")
    SCENARIOS[scenario.name] = scenario
    return scenario


def summary(values: list[float]) -> dict[str, Any]:
    """Median, min and max (and the samples, for the charts)."""
    if not values:
        return {"n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "samples": [round(v, 4) for v in values]}


def run_rounds(ctx: BenchContext, rounds: list[Rounds]) -> dict[str, dict[str, Any]]:
    """One sample of every (program, engine) per round, in a shuffled (seeded) order, after one warm-up round:
    a noisy spell on this shared machine hits them all alike, and the ratios of one run stay fair."""
    jobs: list[tuple[Rounds, str, Callable[[], Any]]] = []
    for sc in rounds:
        args = list(sc.quick_args if ctx.quick else sc.args)
        for name, engine in ctx.engines.items():
            memory = MemoryParent(f"{ctx.cgroup_base}/{sc.name}-{name}")
            bundle = write_bundle(ctx.work / "bundles" / f"{sc.name}-{name}",
                                  program_rootfs(ctx.work, sc.program, name),
                                  [entrypoint(sc.program, name), *args], name, f"{memory.rel}/c")
            jobs.append((sc, name, partial(measure, engine, bundle, memory)))
    ms: dict[tuple[str, str], list[float]] = {(sc.name, name): [] for sc, name, _ in jobs}
    peaks: dict[tuple[str, str], list[float]] = {(sc.name, name): [] for sc, name, _ in jobs}
    order = random.Random(2026)
    for r in range(ctx.n + 1):
        ctx.tick(f"round {r} of {ctx.n} (0: warm-up), {len(jobs)} runs each" if r else "warm-up round")
        order.shuffle(jobs)
        for sc, name, job in jobs:
            sample = job()
            if r:
                ms[(sc.name, name)].append(sample.ms)
                peaks[(sc.name, name)].append(sample.peak_bytes / MIB)
    out: dict[str, dict[str, Any]] = {}
    for sc in rounds:
        results = {name: {"ms": summary(ms[(sc.name, name)]), "peak_mib": summary(peaks[(sc.name, name)])}
                   for name in ctx.engines}
        out[sc.name] = {"title": sc.title, "program": sc.program,
                        "args": list(sc.quick_args if ctx.quick else sc.args), "results": results,
                        "ratios_vs_runc": ratios_vs(results, "runc")}
    return out


def ratios_vs(results: dict[str, dict[str, Any]], anchor: str) -> dict[str, dict[str, float]]:
    """Each engine's median over the anchor's median, of the same run; empty when the anchor did not run."""
    base = results.get(anchor)
    if not base or not base["ms"].get("n"):
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, r in results.items():
        row = {"ms": r["ms"]["median"] / base["ms"]["median"]}
        if base["peak_mib"].get("median"):
            row["peak"] = r["peak_mib"]["median"] / base["peak_mib"]["median"]
        out[name] = row
    return out


# -- scaling: N containers alive at once -------------------------------------------------------------------------
def scaling(ctx: BenchContext) -> dict[str, Any]:
    """For each N, each engine starts N long-running containers (the `loop` sample, asleep between ticks) one
    after the other; the time until all N run, and the memory of all N together, per container."""
    out: dict[str, Any] = {"ns": list(ctx.scaling), "program": "loop", "results": {}}
    for name, engine in ctx.engines.items():
        out["results"][name] = []
        # Warm-up: the first detached container of an engine compiles the module and wakes its zygote.
        memory = MemoryParent(f"{ctx.cgroup_base}/scaling-{name}-warm")
        bundle = write_bundle(ctx.work / "scaling" / f"{name}-warm", program_rootfs(ctx.work, "loop", name),
                              [entrypoint("loop", name), "0", "60000"], name, f"{memory.rel}/c")
        try:
            engine.remove(engine.start_detached(bundle))
        finally:
            memory.remove()
    for n in ctx.scaling:
        for name, engine in ctx.engines.items():
            ctx.tick(f"scaling: {n} {name} containers at once")
            memory = MemoryParent(f"{ctx.cgroup_base}/scaling-{name}-{n}")
            root = program_rootfs(ctx.work, "loop", name)
            bundles = [write_bundle(ctx.work / "scaling" / f"{name}-{n}-{i}", root,
                                    [entrypoint("loop", name), "0", "60000"], name, f"{memory.rel}/c{i}")
                       for i in range(n)]
            started: list[str] = []
            each: list[float] = []
            ticks_r, ticks_w = os.pipe2(os.O_CLOEXEC)
            try:
                t = time.perf_counter_ns()
                for b in bundles:
                    t_one = time.perf_counter_ns()
                    started.append(engine.start_detached(b, stdout=ticks_w))
                    each.append((time.perf_counter_ns() - t_one) / 1e6)
                total_ms = (time.perf_counter_ns() - t) / 1e6
                os.close(ticks_w)
                ticks_w = -1
                # The handshake: every one of the N has printed its first tick, so each runs its program (a
                # Wasm one instantiated) when its memory is read.
                _await_ticks(ticks_r, n, name)
                current = memory.current()
                peak = memory.peak()
            finally:
                for fd in (ticks_r, ticks_w):
                    if fd >= 0:
                        os.close(fd)
                for cid in started:
                    engine.remove(cid)
                memory.remove()
            # per_container_ms: the median of the N starts (start_ms: with min and max); memory: the N's
            # together over N, a ratio of one measurement.
            out["results"][name].append({"n": n, "start_all_ms": total_ms, "start_ms": summary(each),
                                         "per_container_ms": statistics.median(each),
                                         "memory_mib": current / MIB, "per_container_mib": current / MIB / n,
                                         "peak_mib": peak / MIB})
    return out


def _await_ticks(fd: int, n: int, engine: str, timeout: float = 60.0) -> None:
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    # Counted without the newline: a guest may write "tick 1" and "\n" apart, and N writers interleave.
    while seen.count(b"tick 1") < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            from wasmlab.runtime.errors import BenchFailed

            raise BenchFailed(f"bench: {seen.count(b'tick 1') } of {n} {engine} loop containers printed their "
                              f"first tick within {timeout:.0f} s", "run the loop sample alone on that engine")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk


# -- pods -------------------------------------------------------------------------------------------------------
POD_YAML = """apiVersion: v1
kind: Pod
metadata:
  name: bench-pod
  annotations:
    module.wasm.image/variant: compat
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: wasmlab/loop:compat
    command: ["/loop.wasm", "0", "60000"]
"""


def pods(ctx: BenchContext) -> dict[str, Any]:
    """Pod start-up: `kube play` of a one-container Wasm pod (its pause sandbox included) to running, then
    `kube down` (quick; the pods helper's fuller figures are the `pod-figures` scenario)."""
    lab = ctx.lab
    assets = Path(__file__).resolve().parents[2] / "assets"
    lab.build(assets / "built", assets / "containerfiles" / "loop" / "Containerfile.compat",
              tag="wasmlab/loop:compat", annotations={"module.wasm.image/variant": "compat"})
    yaml = ctx.work / "bench-pod.yaml"
    yaml.write_text(POD_YAML)
    play, down = [], []
    for i in range(ctx.n + 1):
        ctx.tick(f"pods: play and down {i} of {ctx.n} (0: warm-up)")
        t = time.perf_counter_ns()
        res = lab.kube_play(yaml)
        played = (time.perf_counter_ns() - t) / 1e6
        t = time.perf_counter_ns()
        lab.kube_down(yaml)
        gone = (time.perf_counter_ns() - t) / 1e6
        if res.pods[0].status != "Running":
            from wasmlab.runtime.errors import BenchFailed

            raise BenchFailed(f"bench: the bench pod is {res.pods[0].status}, not Running",
                              "try `wasmlab kube play` of a one-container pod by hand")
        if i:
            play.append(played)
            down.append(gone)
    return {"title": "pod start-up: kube play of a one-container Wasm pod (pause sandbox + wasmtime)",
            "play_ms": summary(play), "down_ms": summary(down)}


def anchor_rows(ctx: BenchContext) -> dict[str, dict[str, Any]]:
    return {name: ctx.anchors[name] for name in ANCHORS if name in ctx.anchors}


__all__ = ["SCENARIOS", "AnchorRefused", "BenchContext", "Phase", "Rounds", "register", "run_rounds", "summary"]
