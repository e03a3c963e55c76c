"""LiveChart: start-up and footprint per engine (from the run history, as runs are recorded) and each running
container's CPU and memory (from the Lab's live metrics stream), redrawn while containers run."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from wasmlab.lab.jupyter import figures
from wasmlab.lab.jupyter.panel import Panel, guarded

if TYPE_CHECKING:
    from wasmlab.runtime import Lab, LabEvent, MetricsStream, MetricsTick, RunRecord


class LiveChart(Panel):
    """Start streams, run containers (here or in another cell), watch; Stop ends the stream and its thread.

    With ipympl (in a kernel) the figure is a live canvas; otherwise it is redrawn as a PNG in an Output."""

    def __init__(self, lab: Lab | None = None, *, interval: float = 0.25, window: int = 240, history: int = 50,
                 redraw_every: float = 0.5, live_canvas: bool | None = None) -> None:
        super().__init__(lab)
        self.interval = interval
        self.redraw_every = redraw_every
        self.ticks: deque[MetricsTick] = deque(maxlen=window)
        self.records: list[RunRecord] = list(reversed(self.lab.history(history)))
        self.draws = 0
        self._keep = history
        self._lock = threading.Lock()
        self._last_draw = float("-inf")
        self._stream: MetricsStream | None = None
        self._unsubscribe: Any = None
        self.fig, axes = figures.figure(10.0, 6.0, rows=2, cols=2)
        (self.ax_startup, self.ax_footprint), (self.ax_cpu, self.ax_memory) = axes
        self.live_canvas = figures.ipympl_present() if live_canvas is None else live_canvas
        if self.live_canvas:
            from ipympl.backend_nbagg import Canvas, FigureManager

            self.chart = Canvas(self.fig)
            FigureManager(self.chart, 0)
            self.chart.header_visible = False
        else:
            self.chart = w.Output()
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.start_button.on_click(self.on_start)
        self.stop_button.on_click(self.on_stop)
        self.children = [w.HBox([self.start_button, self.stop_button]), self.status, self.chart]
        self.redraw()

    @property
    def running(self) -> bool:
        return self._stream is not None

    @guarded
    def on_start(self, _button: Any = None) -> None:
        if self._stream is not None:
            return
        self._unsubscribe = self.lab.subscribe(self.on_event)
        self._stream = self.lab.metrics(interval=self.interval, callback=self.on_tick)
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.say(f"watching: a sample every {self.interval:g} s")

    @guarded
    def on_stop(self, _button: Any = None) -> None:
        self._stop_streams()
        self.start_button.disabled, self.stop_button.disabled = False, True
        self.redraw()
        self.say(f"stopped after {len(self.ticks)} samples")

    def _stop_streams(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def close(self) -> None:
        self._stop_streams()  # no redraw: close() also runs when the widget is collected, even at exit
        super().close()

    def on_tick(self, tick: MetricsTick) -> None:
        """The stream's callback (its own thread): keep the tick, redraw at most every redraw_every seconds."""
        self.ticks.append(tick)
        if time.monotonic() - self._last_draw >= self.redraw_every:
            self.redraw()

    def on_event(self, event: LabEvent) -> None:
        """A run was recorded: its row joins the start-up and footprint charts at once."""
        if type(event).__name__ != "RunRecorded":
            return
        newest = self.records[-1].seq if self.records else 0
        with self._lock:
            # since_seq gives the rows after it, oldest first; without one, history is newest first.
            added = self.lab.history(self._keep, since_seq=newest) if newest else reversed(self.lab.history(self._keep))
            self.records.extend(added)
            del self.records[:-self._keep]
        self.redraw()

    def redraw(self) -> None:
        from wasmlab.lab import series

        with self._lock:
            ticks, records = list(self.ticks), list(self.records)
            panels = ((self.ax_startup, series.startup_by_engine(records), "start-up per engine (create, ms)"),
                      (self.ax_footprint, series.footprint_by_engine(records), "footprint per engine (MiB)"),
                      (self.ax_cpu, series.live_cpu(ticks), "live CPU (%)"),
                      (self.ax_memory, series.live_memory(ticks), "live memory (MiB)"))
            for ax, drawn, title in panels:
                figures.draw_series(ax, drawn, title, message=series.too_few(drawn))
            self.fig.tight_layout()
            if self.live_canvas:
                self.chart.draw_idle()
            else:
                figures.show_png(self.chart, self.fig)
            self.draws += 1
            self._last_draw = time.monotonic()
        if ticks and self._stream is not None:
            self.say(f"watching: {series.live_summary(ticks[-1])}")
