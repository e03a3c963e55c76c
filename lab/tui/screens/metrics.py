"""The Metrics screen: startup time and footprint per engine from the run history, and live CPU and memory per
container from the Lab's metrics stream, drawn with textual-plotext (a sentence instead of a meaningless axis)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import Static
from textual.worker import get_current_worker
from wasmlab.lab.tui.messages import Loaded, LoadFailed, Ticked, error_parts
from wasmlab.lab.tui.widgets.chart import SeriesChart, footprint_by_engine, startup_by_engine

if TYPE_CHECKING:
    from wasmlab.runtime import Lab

RECENT = 200
LIVE_TICKS = 120  # 30 s at the stream's 0.25 s

try:
    from wasmlab.lab.series import live_cpu, live_memory  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    live_cpu = live_memory = None


class MetricsView(Vertical):
    """Four charts; the history ones reload with the runs, the live ones with each tick of the stream."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="metrics-view")
        self.loaded = False
        self.ticks: deque[Any] = deque(maxlen=LIVE_TICKS)
        self._stream: Any = None

    @property
    def lab(self) -> Lab:
        lab: Lab = self.app.lab  # type: ignore[attr-defined]
        return lab

    def compose(self) -> ComposeResult:
        hint = "Run images on both engines (screen 1, r) to compare them."
        with Grid(classes="charts"):
            yield SeriesChart("startup (create) ms per engine, by run", empty_hint=hint, id="startup-chart")
            yield SeriesChart("footprint MiB per engine, by run", empty_hint=hint, id="footprint-chart")
            yield SeriesChart("live CPU % per container", empty_hint="Start a container to see it live.",
                              id="cpu-chart")
            yield SeriesChart("live memory MiB per container", empty_hint="Start a container to see it live.",
                              id="memory-chart")
        yield Static("loading...", classes="status-line")

    def on_mount(self) -> None:
        self.reload()
        if hasattr(self.lab, "metrics") and live_cpu is not None:
            try:
                self._stream = self.lab.metrics(interval=0.5, callback=lambda tick: self.post_message(Ticked(tick)))
            except Exception as exc:  # the live charts say why; the history ones still work
                self.query_one("#cpu-chart", SeriesChart).empty_hint = error_parts(exc)[0]
        else:
            for chart in ("#cpu-chart", "#memory-chart"):
                self.query_one(chart, SeriesChart).empty_hint = "This lab has no live stream yet."

    def on_unmount(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def focus_table(self) -> None:
        self.focus()

    @work(thread=True, exclusive=True, group="load")
    def reload(self) -> None:
        worker = get_current_worker()
        try:
            runs = self.lab.history(RECENT)
        except Exception as exc:
            self.post_message(LoadFailed(*error_parts(exc)))
            return
        if not worker.is_cancelled:
            self.post_message(Loaded(runs))

    def on_loaded(self, message: Loaded) -> None:
        message.stop()
        runs = message.data
        self.query_one("#startup-chart", SeriesChart).show(startup_by_engine(runs))
        self.query_one("#footprint-chart", SeriesChart).show(footprint_by_engine(runs))
        if not self.ticks:
            for chart in ("#cpu-chart", "#memory-chart"):
                self.query_one(chart, SeriesChart).show([])
        self.loaded = True
        self.query_one(".status-line", Static).update(f"{len(runs)} runs in the history")

    def on_ticked(self, message: Ticked) -> None:
        message.stop()
        self.ticks.append(message.tick)
        if live_cpu is not None and live_memory is not None and self.is_attached:
            self.query_one("#cpu-chart", SeriesChart).show(live_cpu(list(self.ticks)))
            self.query_one("#memory-chart", SeriesChart).show(live_memory(list(self.ticks)))

    def on_load_failed(self, message: LoadFailed) -> None:
        message.stop()
        self.query_one(".status-line", Static).update(f"[b red]Error:[/] {message.message}")
