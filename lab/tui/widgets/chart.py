"""The series chart: lines of chart series (label, xs, ys, unit) drawn with textual-plotext, or a sentence in place
of the axis when there are too few points to mean anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

if TYPE_CHECKING:
    from wasmlab.runtime import RunRecord

try:
    from textual_plotext import PlotextPlot

    HAVE_PLOTEXT = True
except ImportError:  # pragma: no cover - textual-plotext is in the lab extra
    HAVE_PLOTEXT = False

try:  # the face-neutral series (issue 13); until they land, the same shapes from the history, here
    from wasmlab.lab.series import (  # type: ignore[import-not-found,unused-ignore]
        footprint_by_engine,
        startup_by_engine,
        too_few,
    )
except ImportError:
    @dataclass(frozen=True)
    class Series:
        label: str
        xs: tuple[float, ...]
        ys: tuple[float, ...]
        unit: str

    def _by_engine(records: Sequence[RunRecord], value: Any, unit: str) -> list[Series]:
        grouped: dict[str, list[float]] = {}
        for run in sorted(records, key=lambda r: r.seq):
            grouped.setdefault(run.handler or "unknown", []).append(float(value(run)))
        return [Series(k, tuple(float(i) for i in range(1, len(v) + 1)), tuple(v), unit) for k, v in grouped.items()]

    def startup_by_engine(records: Sequence[RunRecord]) -> list[Series]:  # type: ignore[misc,unused-ignore]
        return _by_engine(records, lambda r: r.create_ms or 0.0, "ms")

    def footprint_by_engine(records: Sequence[RunRecord]) -> list[Series]:  # type: ignore[misc,unused-ignore]
        return _by_engine(records, lambda r: (r.max_rss_kb or 0) / 1024, "MiB")

    def too_few(series: Sequence[Any], minimum: int = 3) -> str | None:  # type: ignore[misc,unused-ignore]
        most = max((len(s.xs) for s in series), default=0)
        if most >= minimum:
            return None
        return (f"too few points to draw: {most} so far, {minimum} needed" if most else "no points yet")


__all__ = ["HAVE_PLOTEXT", "SeriesChart", "footprint_by_engine", "startup_by_engine", "too_few"]


class SeriesChart(Vertical):
    """One chart: a title, then either the plot or a sentence saying why there is none."""

    def __init__(self, title: str, *, empty_hint: str = "", id: str | None = None) -> None:
        super().__init__(id=id, classes="chart")
        self.title = title
        self.empty_hint = empty_hint
        self.series: list[Any] = []
        self.reason: str | None = "no points yet"

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="chart-title")
        if HAVE_PLOTEXT:
            yield PlotextPlot(classes="plot")
        yield Static(self._sentence(), classes="chart-empty")

    def _sentence(self) -> str:
        return f"{self.reason}. {self.empty_hint}".strip() if self.reason else ""

    def show(self, series: Sequence[Any]) -> None:
        series = list(series)
        if series == self.series and self.is_mounted and self.reason != "no points yet":
            return
        self.series = series
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
        widget.refresh()
