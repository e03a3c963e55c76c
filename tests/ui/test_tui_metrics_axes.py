"""The live charts' axes (issue 14): CPU % and memory start at 0 with a least top, so an idle container's zeros
and a few KiB of memory noise are drawn flat near the floor (they were drawn on -1..1 and 0.1055..0.1133 MiB).
The ticks are made here: the snapshots' fixture lab has no stream, and real idle figures would not be fixed."""

from __future__ import annotations

import asyncio
from typing import Any

from wasmlab.lab.series import LEAST_TOP, Series, axis_top
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.lab.tui.messages import Ticked
from wasmlab.lab.tui.widgets.chart import SeriesChart
from wasmlab.runtime import MetricSample, MetricsTick

from tests.ui.fixture_lab import FixtureLab
from tests.ui.test_tui import wait_for


def line(*ys: float) -> list[Series]:
    return [Series("c", tuple(float(i) for i in range(len(ys))), ys, "%")]


def test_axis_top_is_a_round_figure_from_a_least_top() -> None:
    assert axis_top(line(0, 0, 0), 10) == 10
    assert axis_top(line(0.1055, 0.1133), 1) == 1
    assert axis_top(line(3, 37, 12), 10) == 50
    assert axis_top(line(99.5), 10) == 100
    assert axis_top(line(230), 10) == 500
    assert axis_top([], 10) == 10


def tick(at: float, cpu: float, memory: int) -> MetricsTick:
    return MetricsTick(at, (MetricSample(at, "container", "c1", "idle", None, "wasmtime", cpu, memory, memory),))


def test_idle_live_charts_start_at_zero() -> None:
    app = WasmlabApp(FixtureLab(), refresh_interval=3600, offer_samples=False)  # type: ignore[arg-type]
    ranges: dict[str, Any] = {}

    async def main() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("5")
            await wait_for(pilot, lambda: app.metrics_view.loaded, "the metrics screen")
            for i, memory in enumerate((110_600, 118_800, 114_000)):  # 0.1055 to 0.1133 MiB, as seen
                app.metrics_view.post_message(Ticked(tick(i * 0.5, 0.0, memory)))
            cpu = app.metrics_view.query_one("#cpu-chart", SeriesChart)
            mem = app.metrics_view.query_one("#memory-chart", SeriesChart)
            await wait_for(pilot, lambda: cpu.y_range is not None and mem.y_range is not None, "the live charts")
            ranges["cpu"], ranges["memory"] = cpu.y_range, mem.y_range
            app.exit(0)

    asyncio.run(main())
    assert ranges == {"cpu": (0.0, LEAST_TOP["%"]), "memory": (0.0, LEAST_TOP["MiB"])}


def test_the_status_line_shows_the_live_pids_and_io_at_80x24() -> None:
    """PIDS has no table to be a column of on this screen (four charts fill 80x24): the status line under them
    carries the newest tick's PIDs and I/O, the figures `wasmlab stats` shows, from the same stream."""
    app = WasmlabApp(FixtureLab(), refresh_interval=3600, offer_samples=False)  # type: ignore[arg-type]
    seen: dict[str, str] = {}
    sample = MetricSample(1.0, "container", "c1", "forker", None, "native", 0.0, 1 << 20, 1 << 20, None, 6,
                          0, 1_048_576, 1000, 2000)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("5")
            await wait_for(pilot, lambda: app.metrics_view.loaded, "the metrics screen")
            app.metrics_view.post_message(Ticked(MetricsTick(1.0, (sample,))))
            status = app.metrics_view.query_one(".status-line")
            await wait_for(pilot, lambda: "PIDs" in str(status.render()), "the live status")
            seen["line"] = str(status.render())
            app.exit(0)

    asyncio.run(main())
    assert "1 running, 6 PIDs, net 1kB / 2kB, block 0B / 1.049MB" in seen["line"]
