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
from wasmlab.lab.series import LEAST_TOP, live_summary
from wasmlab.lab.tui.messages import Loaded, LoadFailed, Ticked, error_parts
from wasmlab.lab.tui.widgets.chart import SeriesChart, footprint_by_engine, live_cpu, live_memory, startup_by_engine

if TYPE_CHECKING:
    from wasmlab.runtime import Lab

RECENT = 200
LIVE_TICKS = 120  # 30 s at the stream's 0.25 s


class MetricsView(Vertical):
    """Four charts; the history ones reload with the runs, the live ones with each tick of the stream."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="metrics-view")
        self.loaded = False
        self.ticks: deque[Any] = deque(maxlen=LIVE_TICKS)
        self._stream: Any = None
        self._runs_line = "loading..."

    @property
    def lab(self) -> Lab:
        lab: Lab = self.app.lab  # type: ignore[attr-defined]
        return lab

    def compose(self) -> ComposeResult:
        with Grid(classes="charts"):
            yield SeriesChart("startup ms per engine, by run", id="startup-chart")
            yield SeriesChart("footprint (cgroup peak) MiB per engine, by run", id="footprint-chart")
            yield SeriesChart("live CPU % per container", id="cpu-chart", least_top=LEAST_TOP["%"])
            yield SeriesChart("live memory MiB per container", id="memory-chart", least_top=LEAST_TOP["MiB"])
        yield Static("loading...", classes="status-line")

    def on_mount(self) -> None:
        self.reload()
        if not hasattr(self.lab, "metrics"):  # the snapshots' fixture lab has no stream
            for chart in ("#cpu-chart", "#memory-chart"):
                self.query_one(chart, SeriesChart).empty_hint = "This lab has no live stream."

    def on_unmount(self) -> None:
        self.live(False)

    def live(self, on: bool) -> None:
        """Follow the live stream while this screen is shown (it reads cgroup files every tick, so not always)."""
        if on and self._stream is None and hasattr(self.lab, "metrics"):
            self._stream = "starting"
            self.start_stream()
        elif not on and self._stream is not None:
            stream, self._stream = self._stream, None
            if stream != "starting":
                stream.close()

    @work(thread=True, exclusive=True, group="live")
    def start_stream(self) -> None:
        try:
            stream = self.lab.metrics(interval=0.5, callback=self._ticked)
        except Exception as exc:  # the live charts say why; the history ones still work
            self.post_message(LoadFailed(*error_parts(exc)))
            self._stream = None
            return
        if self._stream == "starting":
            self._stream = stream
        else:
            stream.close()  # the screen was left meanwhile

    def _ticked(self, tick: Any) -> None:
        """On the stream's thread: hand the tick to the loop."""
        self.post_message(Ticked(tick))

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
        self._runs_line = f"{len(runs)} runs in the history"
        self._status()

    def _status(self) -> None:
        """The runs in the history, then (while the stream runs) the newest tick's PIDs and I/O in one line."""
        live = f" · now {live_summary(self.ticks[-1])}" if self.ticks else ""
        self.query_one(".status-line", Static).update(self._runs_line + live)

    def on_ticked(self, message: Ticked) -> None:
        message.stop()
        self.ticks.append(message.tick)
        if self.is_attached:
            self.query_one("#cpu-chart", SeriesChart).show(live_cpu(list(self.ticks)))
            self.query_one("#memory-chart", SeriesChart).show(live_memory(list(self.ticks)))
            self._status()

    def on_load_failed(self, message: LoadFailed) -> None:
        message.stop()
        self.query_one(".status-line", Static).update(f"[b red]Error:[/] {message.message}")
