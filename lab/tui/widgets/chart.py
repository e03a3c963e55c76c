"""The series chart: lines of chart series (label, xs, ys, unit) drawn with textual-plotext, or a sentence in place
of the axis when there are too few points to mean anything."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

try:
    from textual_plotext import PlotextPlot

    HAVE_PLOTEXT = True
except ImportError:  # pragma: no cover - textual-plotext is in the lab extra
    HAVE_PLOTEXT = False

from wasmlab.lab.series import axis_top, footprint_by_engine, live_cpu, live_memory, startup_by_engine, too_few

__all__ = ["HAVE_PLOTEXT", "SeriesChart", "footprint_by_engine", "live_cpu", "live_memory", "startup_by_engine",
           "too_few"]


class SeriesChart(Vertical):
    """One chart: a title, then either the plot or a sentence saying why there is none."""

    def __init__(self, title: str, *, empty_hint: str = "", least_top: float | None = None,
                 id: str | None = None) -> None:
        """LEAST_TOP: the y axis starts at 0 and reaches at least this (None: plotext fits it to the points)."""
        super().__init__(id=id, classes="chart")
        self.least_top = least_top
        self.y_range: tuple[float, float] | None = None  # what the axis was last drawn with
        self.title = title
        self.empty_hint = empty_hint
        self.series: list[Any] = []
        self.reason: str | None = None
        self.drawn = False

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="chart-title")
        if HAVE_PLOTEXT:
            yield PlotextPlot(classes="plot")
        yield Static(self._sentence(), classes="chart-empty")

    def _sentence(self) -> str:
        return f"{self.empty_hint or self.reason}" if self.reason else ""

    def show(self, series: Sequence[Any]) -> None:
        series = list(series)
        if series == self.series and self.drawn:
            return
        self.series = series
        self.drawn = True
        self.reason = too_few(series) if HAVE_PLOTEXT else "textual-plotext is not installed"
        self.set_class(self.reason is not None, "-empty")
        self.query_one(".chart-empty", Static).update(self._sentence())
        if self.reason is None:
            self._plot(series)

    def _plot(self, series: Sequence[Any]) -> None:
        widget = self.query_one(PlotextPlot)
        plt: Any = widget.plt
        plt.clear_data()
        plt.clear_figure()
        unit = series[0].unit if series else ""
        plt.ylabel(unit)
        for s in series:
            plt.plot(list(s.xs), list(s.ys), label=s.label, marker="braille")
        if self.least_top is not None:
            self.y_range = (0.0, axis_top(series, self.least_top))
            plt.ylim(*self.y_range)
        widget.refresh()
