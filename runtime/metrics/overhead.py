"""What measuring costs: recording on against off for Runtime.run of hello, and the live stream's real rate."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from wasmlab.runtime.metrics.baseline import ASSETS
from wasmlab.runtime.store import media


def _hello_bundle(folder: Path) -> Path:
    from wasmlab.runtime.spec.runtime import default_config

    bundle = folder / "hello"
    (bundle / "rootfs").mkdir(parents=True)
    shutil.copy2(ASSETS / "wasm" / "hello.wasm", bundle / "rootfs" / "hello.wasm")
    config = default_config(["/hello.wasm"])
    config["process"]["terminal"] = False
    config["annotations"] = {media.WASM_VARIANT: media.WASM_VARIANT_COMPAT}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def recording_overhead(n: int = 200) -> dict[str, Any]:
    """N runs of hello with recording on (a Runtime given a lab home: every run becomes a history row) and N with
    it off (no home), interleaved (on/off, then off/on), from two warm Runtimes over one bundle. The recorder
    writes on its own thread, so its work is counted by waiting, inside the timed total, until it has written
    every row. Returns medians and totals in ms and the overhead (on total / off total - 1), which is to stay
    under 5%."""
    from wasmlab.runtime.lifecycle import Runtime

    if n < 1:
        raise ValueError("n must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="wasmlab-overhead-"))
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        bundle = str(_hello_bundle(tmp))
        on = Runtime(root=str(tmp / "state-on"), home=str(tmp / "home"))
        off = Runtime(root=str(tmp / "state-off"))
        try:
            for rt, name in ((on, "warm-on"), (off, "warm-off")):  # zygotes up, module compiled and cached
                for i in range(5):
                    rt.run(f"{name}-{i}", bundle, stdio=(null, null, null))
            on.close()  # its warm-up rows written before the timing starts
            on = Runtime(root=str(tmp / "state-on"), home=str(tmp / "home"))
            on.run("warm-on-again", bundle, stdio=(null, null, null))
            on.flush_records()
            times: dict[str, list[float]] = {"on": [], "off": []}
            for i in range(n):
                order = ((on, "on"), (off, "off")) if i % 2 == 0 else ((off, "off"), (on, "on"))
                for rt, mode in order:
                    t0 = time.perf_counter()
                    res = rt.run(f"{mode}-{i}", bundle, stdio=(null, null, null))
                    times[mode].append((time.perf_counter() - t0) * 1e3)
                    if res.exit_code != 0:
                        raise RuntimeError(f"hello exited {res.exit_code} during the benchmark")
            t0 = time.perf_counter()
            on.flush_records()  # every run's final figures arrived and its row is written: the deferred work
            drain_ms = (time.perf_counter() - t0) * 1e3
            from wasmlab.runtime.store.history import History

            history = History(tmp / "home" / "history.db")
            recorded = sum(1 for r in history.recent(10 * n) if r.id.startswith("on-"))
            history.close()
        finally:
            on.close()
            off.close()
    finally:
        os.close(null)
        shutil.rmtree(tmp, ignore_errors=True)
    total_on = sum(times["on"]) + drain_ms
    total_off = sum(times["off"])
    return {
        "runs": n, "recorded": recorded,
        "on_median_ms": statistics.median(times["on"]), "off_median_ms": statistics.median(times["off"]),
        "on_min_ms": min(times["on"]), "on_max_ms": max(times["on"]),
        "off_min_ms": min(times["off"]), "off_max_ms": max(times["off"]),
        "on_total_ms": total_on, "off_total_ms": total_off, "drain_ms": drain_ms,
        "overhead": total_on / total_off - 1.0,
        "overhead_of_medians": statistics.median(times["on"]) / statistics.median(times["off"]) - 1.0,
    }


def stream_rate(seconds: float = 2.0, interval: float = 0.25, containers: int = 3) -> dict[str, Any]:
    """The live stream's real rate: CONTAINERS busy-ish Wasm containers (loop, 10 ms ticks) sampled for SECONDS
    through a callback stream on the real clock. Returns ticks per second, the gaps between ticks (ms), and how
    long one tick's sampling took (ms)."""
    from wasmlab.runtime.lifecycle import Runtime
    from wasmlab.runtime.metrics.stream import MetricsStream, MetricsTick, RuntimeTargets
    from wasmlab.runtime.spec.runtime import default_config

    tmp = Path(tempfile.mkdtemp(prefix="wasmlab-stream-rate-"))
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    ticks: list[MetricsTick] = []
    costs: list[float] = []
    done = threading.Event()
    try:
        bundle = tmp / "loop"
        (bundle / "rootfs").mkdir(parents=True)
        shutil.copy2(ASSETS / "wasm" / "loop.wasm", bundle / "rootfs" / "loop.wasm")
        with Runtime(root=str(tmp / "state")) as rt:
            ids = []
            try:
                for i in range(containers):
                    cid = f"rate-{i}"
                    config = default_config(["/loop.wasm", "0", "10"])
                    config["process"]["terminal"] = False
                    config["annotations"] = {media.WASM_VARIANT: media.WASM_VARIANT_COMPAT}
                    if os.geteuid() == 0:
                        from wasmlab.runtime.linux import cgroups

                        config.setdefault("linux", {})["cgroupsPath"] = cgroups.normalize_path("", cid)
                    (bundle / "config.json").write_text(json.dumps(config))
                    rt.create(cid, str(bundle), stdin=null, stdout=null, stderr=null)
                    ids.append(cid)
                    rt.start(cid)
                targets = RuntimeTargets(rt.root)

                def on_tick(tick: MetricsTick) -> None:
                    costs.append((time.monotonic() - tick.at) * 1e3)
                    ticks.append(tick)
                    if tick.at - ticks[0].at >= seconds:
                        done.set()

                stream = MetricsStream(targets, interval=interval, callback=on_tick)
                done.wait(seconds + 10)
                stream.close()
            finally:
                for cid in ids:
                    rt.delete(cid, force=True)
    finally:
        os.close(null)
        shutil.rmtree(tmp, ignore_errors=True)
    gaps = [(b.at - a.at) * 1e3 for a, b in itertools.pairwise(ticks)]
    span = ticks[-1].at - ticks[0].at if len(ticks) > 1 else 0.0
    return {
        "containers": containers, "interval_s": interval, "ticks": len(ticks),
        "rate_per_s": (len(ticks) - 1) / span if span else 0.0,
        "samples_per_tick": statistics.median(len(t.samples) for t in ticks) if ticks else 0,
        "gap_median_ms": statistics.median(gaps) if gaps else 0.0, "gap_max_ms": max(gaps, default=0.0),
        "tick_cost_median_ms": statistics.median(costs) if costs else 0.0, "tick_cost_max_ms": max(costs, default=0.0),
    }
