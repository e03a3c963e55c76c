"""The History view: the last runs from the lab's run history, and a chart of create_ms per handler."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.worker import get_current_worker
from wasmlab.lab.tui.messages import HistoryLoaded, LoadFailed, error_parts
from wasmlab.lab.tui.widgets.chart import CreateTimesChart
from wasmlab.lab.tui.widgets.table import ResourceView, ago, human_size

RECENT = 100


class HistoryView(ResourceView):
    """`wasmlab history`, with the create times drawn per handler."""

    COLUMNS = ("WHEN", "NAME", "IMAGE", "HANDLER", "EXIT", "CREATE ms", "TOTAL ms", "MAX RSS", "CACHE")
    NOUN = "run"

    def __init__(self, *, use_plotext: bool | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.use_plotext = use_plotext

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield CreateTimesChart(use_plotext=self.use_plotext)

    @work(thread=True, exclusive=True, group="load")
    def reload(self) -> None:
        worker = get_current_worker()
        try:
            runs = self.lab.history(RECENT)
        except Exception as exc:
            self.post_message(LoadFailed(*error_parts(exc)))
            return
        if not worker.is_cancelled:
            self.post_message(HistoryLoaded(runs))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        message.stop()
        self.show_rows((str(r.seq), (ago(r.started_at), r.name or r.id, r.image, r.handler, str(r.exit_code),
                                     f"{r.create_ms:.2f}", f"{r.total_ms:.2f}", human_size(r.max_rss_kb * 1024),
                                     r.cache))
                       for r in message.runs)
        self.query_one(CreateTimesChart).show(message.runs)
