"""The create-time chart: create_ms per handler over the last runs, with textual-plotext or Textual sparklines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

if TYPE_CHECKING:
    from wasmlab.runtime import RunRecord

try:
    from textual_plotext import PlotextPlot

    HAVE_PLOTEXT = True
except ImportError:  # optional: sparklines need nothing more than Textual
    HAVE_PLOTEXT = False

TITLE = "create_ms per handler, oldest to newest run"


def create_ms_by_handler(runs: Sequence[RunRecord]) -> dict[str, list[float]]:
    """History rows (newest first) as one oldest-first series per handler."""
    series: dict[str, list[float]] = {}
    for run in reversed(runs):
        series.setdefault(run.handler or "unknown", []).append(float(run.create_ms or 0.0))
    return series


class CreateTimesChart(Vertical):
    """One line per handler with plotext when installed; otherwise one sparkline row per handler."""

    def __init__(self, *, use_plotext: bool | None = None, id: str | None = None) -> None:
        super().__init__(id=id, classes="chart")
        self.use_plotext = HAVE_PLOTEXT if use_plotext is None else use_plotext and HAVE_PLOTEXT
        self.series: dict[str, list[float]] = {}
        self._drawn = False

    def compose(self) -> ComposeResult:
        if self.use_plotext:
            yield PlotextPlot(classes="plot")
        else:
            yield Static(TITLE, classes="chart-title")
            yield Vertical(classes="sparklines")
        yield Static("no runs yet: select an image on the Images tab and press r", classes="chart-empty")

    def show(self, runs: Sequence[RunRecord]) -> None:
        series = create_ms_by_handler(runs)
        if self._drawn and series == self.series:
            return
        self.series = series
        self._drawn = True
        self.set_class(not series, "-empty")
        if self.use_plotext:
            self._plot(series)
        else:
            self._sparklines(series)

    def _plot(self, series: dict[str, list[float]]) -> None:
        widget = self.query_one(PlotextPlot)
        plt: Any = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(TITLE)
        plt.xlabel("run")
        plt.ylabel("ms")
        for handler, values in series.items():
            plt.plot(list(range(1, len(values) + 1)), values, label=handler, marker="braille")
        widget.refresh()

    def _sparklines(self, series: dict[str, list[float]]) -> None:
        box = self.query_one(".sparklines", Vertical)
        box.remove_children()
        rows = []
        for handler, values in series.items():
            last = values[-1]
            summary = (f"{handler:<10} last {last:7.2f} ms  min {min(values):7.2f}  max {max(values):7.2f}"
                       f"  n={len(values)}")
            rows.append(Horizontal(Label(summary, classes="spark-label"),
                                   Sparkline(values, summary_function=max, classes="spark"), classes="spark-row"))
        if rows:
            box.mount_all(rows)
