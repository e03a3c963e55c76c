"""The TUI's responsiveness benchmark: how long a key press takes to reach the screen while 20 containers start
through the TUI's own run workers, next to the same presses with nothing starting (the idle floor), in one run
(a benchmark for `make bench`, not a timed test)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import events

CONTAINERS = 20
PRESSES = 30  # at least this many presses while containers start, and as many with nothing starting
ROUNDS_MAX = 12  # batches of CONTAINERS starts, at most (a fast machine starts 20 in fewer presses than 30)
IDLE_CHUNK = 10  # idle presses between two batches: the floor and the load see the same machine
PACE = 0.05  # seconds from a frame to the next press: a fast typist's pace
KEYS = ("1", "2")  # Images and Containers, back and forth: each press changes the screen
TARGET_MS = 100


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of VALUES, as the benchmark has always reported it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies: list[float]) -> dict[str, Any]:
    return {"presses": len(latencies), "median_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(percentile(latencies, 0.95), 2), "max_ms": round(max(latencies), 2)}


class PressClock:
    """Times key presses on a running app: from the key event posted (as the terminal driver posts it) to the
    first frame written that shows the screen the key asked for."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.want: str | None = None
        self.at: float | None = None
        self.presses = 0
        real_display = app._display

        def display(screen: Any, renderable: Any) -> None:
            real_display(screen, renderable)
            if renderable is not None and self.want and self.at is None and app.active_tab == self.want:
                self.at = time.perf_counter()

        app._display = display

    async def press(self) -> float:
        """One press of the next key; its latency in ms."""
        key = KEYS[self.presses % 2]
        self.presses += 1
        self.want, self.at = ("images" if key == "1" else "containers"), None
        start = time.perf_counter()
        self.app.post_message(events.Key(key, key))
        deadline = start + 5
        while self.at is None and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
        if self.at is None:
            raise RuntimeError(f"key {key} did not show the {self.want} screen within 5 s")
        latency = (self.at - start) * 1000
        await asyncio.sleep(PACE)
        return latency

    async def presses_until(self, done: Callable[[], bool], at_least: int = 1) -> list[float]:
        out: list[float] = []
        while not done() or len(out) < at_least:
            out.append(await self.press())
        return out


async def drive(lab: Any, image: str, *, make_app: Callable[[Any], Any] | None = None,
                containers: int = CONTAINERS, presses: int = PRESSES,
                size: tuple[int, int] = (120, 40)) -> dict[str, Any]:
    """Batches of CONTAINERS starts (from the Run dialog's path, `start_run`) with presses while each batch
    starts, interleaved with presses while nothing starts, until both have PRESSES presses."""
    from wasmlab.lab.tui.screens.run import RunRequest

    if make_app is None:
        from wasmlab.lab.tui.app import WasmlabApp

        def make_app(lab: Any) -> Any:
            return WasmlabApp(lab, refresh_interval=2.0, offer_samples=False)

    app = make_app(lab)
    loaded: list[float] = []
    idle: list[float] = []
    batches: list[float] = []
    failed = 0
    async with app.run_test(size=size) as pilot:
        clock = PressClock(app)
        while not app.images_view.loaded:
            await pilot.pause(0.01)
        # One run first, unmeasured: the modules a first run imports are imported once per TUI, not per batch.
        warm = app.start_run(RunRequest(image, name="bench-warm"))
        while not warm.is_finished:
            await pilot.pause(0.02)
        await _remove_all(lab)
        batch = 0
        while (len(loaded) < presses and batch < ROUNDS_MAX) or len(idle) < presses:
            if len(idle) < presses:
                idle += [await clock.press() for _ in range(IDLE_CHUNK)]
            if len(loaded) < presses and batch < ROUNDS_MAX:
                latencies, took, errors = await _batch(app, clock, image, f"bench-{batch}", containers)
                loaded += latencies
                batches.append(took)
                failed += errors
                batch += 1
                await _remove_all(lab)
        await pilot.press("q")
    under_load, floor = summary(loaded), summary(idle)
    return {"containers": containers, "batches": len(batches), "failed_runs": failed,
            "start_all_s": round(statistics.median(batches), 3), "start_all_max_s": round(max(batches), 3),
            **under_load, "target_ms": TARGET_MS, "within_target": under_load["p95_ms"] < TARGET_MS,
            "idle_presses": floor["presses"], "idle_median_ms": floor["median_ms"], "idle_p95_ms": floor["p95_ms"],
            "idle_max_ms": floor["max_ms"],
            "p95_over_idle": round(under_load["p95_ms"] / floor["p95_ms"], 2),
            "median_over_idle": round(under_load["median_ms"] / floor["median_ms"], 2)}


async def _batch(app: Any, clock: PressClock, image: str, prefix: str,
                 containers: int) -> tuple[list[float], float, int]:
    """CONTAINERS starts through the app's run workers, with presses until all have started: (the presses'
    latencies, seconds until the last start, failed starts)."""
    from wasmlab.lab.tui.screens.run import RunRequest

    t0 = time.perf_counter()
    workers = [app.start_run(RunRequest(image, name=f"{prefix}-{i}")) for i in range(containers)]
    ended: list[float] = []

    def all_started() -> bool:
        if not ended and all(w.is_finished for w in workers):
            ended.append(time.perf_counter())
        return bool(ended)

    latencies = await clock.presses_until(all_started)
    return latencies, ended[0] - t0, sum(1 for w in workers if w.error is not None)


async def _remove_all(lab: Any) -> None:
    """Between batches, off the clock: the next batch starts on an empty Containers screen again."""
    def remove() -> None:
        for info in lab.ps(all=True):
            lab.rm(info.id, force=True)

    await asyncio.to_thread(remove)


def bench_lab(run: Callable[[Any, str], Any]) -> Any:
    """A fresh lab home with the hello image built; RUN(lab, image) in it; every container removed after."""
    from wasmlab.lab.tui.catalog import ASSETS
    from wasmlab.runtime import Lab

    with tempfile.TemporaryDirectory(prefix="wasmlab-tui-bench-") as tmp, Lab(Path(tmp) / "home") as lab:
        image = "localhost/bench/hello:compat"
        lab.build(ASSETS / "built", ASSETS / "containerfiles/hello/Containerfile.compat", tag=image,
                  annotations={"module.wasm.image/variant": "compat"})
        try:
            return run(lab, image)
        finally:
            for info in lab.ps(all=True):
                lab.rm(info.id, force=True)


def measure(containers: int = CONTAINERS, size: tuple[int, int] = (120, 40)) -> dict[str, Any]:
    """Key press to screen update, in ms (median, p95, max), while CONTAINERS hello containers start, and the
    same with nothing starting (the idle floor) and their ratio (needs root)."""
    result: dict[str, Any] = bench_lab(lambda lab, image: asyncio.run(drive(lab, image, containers=containers,
                                                                             size=size)))
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
