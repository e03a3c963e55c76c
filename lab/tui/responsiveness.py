"""The TUI's responsiveness benchmark: how long a key press takes to reach the screen while 20 containers start
through the TUI's own run workers (a benchmark for `make bench`, not a timed test)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from textual import events

CONTAINERS = 20
KEYS = ("1", "2")  # Images and Containers, back and forth: each press changes the screen


async def _drive(lab: Any, image: str, containers: int, size: tuple[int, int]) -> dict[str, Any]:
    from wasmlab.lab.tui.app import WasmlabApp
    from wasmlab.lab.tui.screens.run import RunRequest

    app = WasmlabApp(lab, refresh_interval=2.0, offer_samples=False)
    latencies: list[float] = []
    want: dict[str, Any] = {"tab": None, "at": None}
    real_display = app._display

    def display(screen: Any, renderable: Any) -> None:
        """The moment a frame goes to the terminal: the first one that shows the wanted screen ends a press."""
        real_display(screen, renderable)
        if renderable is not None and want["tab"] and want["at"] is None and app.active_tab == want["tab"]:
            want["at"] = time.perf_counter()

    app._display = display  # type: ignore[method-assign]
    async with app.run_test(size=size) as pilot:
        while not app.images_view.loaded:
            await pilot.pause(0.01)
        t0 = time.perf_counter()
        workers = [app.start_run(RunRequest(image, name=f"bench-{i}")) for i in range(containers)]
        n = 0
        while not all(w.is_finished for w in workers) or n < 10:
            key = KEYS[n % 2]
            want.update(tab="images" if key == "1" else "containers", at=None)
            start = time.perf_counter()
            app.post_message(events.Key(key, key))  # as the terminal driver posts a key
            deadline = start + 5
            while want["at"] is None and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            if want["at"] is None:
                raise RuntimeError(f"key {key} did not show the {want['tab']} screen within 5 s")
            latencies.append((want["at"] - start) * 1000)
            n += 1
            await asyncio.sleep(0.05)  # a fast typist's pace
        started_s = time.perf_counter() - t0
        failed = [w for w in workers if w.error is not None]
        await pilot.press("q")
    ordered = sorted(latencies)
    return {"containers": containers, "failed_runs": len(failed), "start_all_s": round(started_s, 3),
            "presses": len(latencies), "median_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "max_ms": round(ordered[-1], 2), "target_ms": 100,
            "within_target": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] < 100}


def measure(containers: int = CONTAINERS, size: tuple[int, int] = (120, 40)) -> dict[str, Any]:
    """Key press to screen update, in ms (median, p95, max), while CONTAINERS hello containers start (needs root)."""
    from wasmlab.lab.tui.catalog import ASSETS
    from wasmlab.runtime import Lab

    with tempfile.TemporaryDirectory(prefix="wasmlab-tui-bench-") as tmp, Lab(Path(tmp) / "home") as lab:
        image = "localhost/bench/hello:compat"
        lab.build(ASSETS / "built", ASSETS / "containerfiles/hello/Containerfile.compat", tag=image,
                  annotations={"module.wasm.image/variant": "compat"})
        try:
            return asyncio.run(_drive(lab, image, containers, size))
        finally:
            for info in lab.ps(all=True):
                lab.rm(info.id, force=True)


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
