"""The History screen: the last runs from the lab's run history (the charts of them are on the Metrics screen)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasmlab.lab.tui.widgets.table import Column, ResourceView, ago, human_size

if TYPE_CHECKING:
    from wasmlab.runtime import RunRecord

RECENT = 100


class HistoryView(ResourceView):
    """`wasmlab history`, newest first."""

    COLUMNS = (Column("WHEN", 8, 3), Column("NAME", 16, 0), Column("IMAGE", 22, 4), Column("HANDLER", 8, 1),
               Column("EXIT", 4, 1), Column("CREATE ms", 9, 1), Column("TOTAL ms", 9, 2),
               Column("MAX RSS", 8, 2), Column("CACHE", 6, 5))
    NOUN = "run"
    EMPTY = "no runs yet: select an image on screen 1 and press r"

    def fetch(self) -> Any:
        return self.lab.history(RECENT)

    def show(self, data: Any) -> None:
        runs: list[RunRecord] = data
        self.show_rows((str(r.seq), (ago(r.started_at), r.name or r.id, r.image, r.handler, str(r.exit_code),
                                     f"{r.create_ms:.2f}", f"{r.total_ms:.2f}", human_size(r.max_rss_kb * 1024),
                                     r.cache))
                       for r in runs)
