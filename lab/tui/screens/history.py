"""The History screen: the last runs from the lab's run history (the charts of them are on the Metrics screen)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasmlab.lab import present
from wasmlab.lab.tui.widgets.table import Column, ResourceView, ago

if TYPE_CHECKING:
    from wasmlab.runtime import RunRecord

RECENT = 100


class HistoryView(ResourceView):
    """`wasmlab history`, newest first."""

    # The same figures as `wasmlab history`, under the same names (present.CODE ... present.INIT_RSS): every time a
    # moment in ms from the create request, memory in MiB. At 80x24 the create, exited and memory columns stay: the
    # image, start, first byte, age and cache go first, and the name is cut in its middle.
    COLUMNS = (Column("WHEN", 7, 5), Column("NAME", 14, 0, middle=True), Column("IMAGE", 30, 7, middle=True),
               Column("ENGINE", 8, 1), Column(present.CODE, 4, 1), Column(present.CREATE, 6, 1),
               Column(present.START, 6, 4), Column("1ST B", 6, 4), Column(present.EXITED, 6, 1),
               Column("CG PEAK", 8, 2), Column(present.GUEST.upper(), 8, 2), Column(present.INIT_RSS.upper(), 8, 2),
               Column("CACHE", 6, 6))
    NOUN = "run"
    EMPTY = "no runs yet: select an image on screen 1 and press r"

    def fetch(self) -> Any:
        return self.lab.history(RECENT)

    def show(self, data: Any) -> None:
        runs: list[RunRecord] = data
        self.show_rows((str(r.seq), (ago(r.started_at), r.name or r.id, r.image, r.handler,
                                     "-" if r.exit_code is None else str(r.exit_code), present.ms(r.create_ms),
                                     present.ms(r.start_ms), present.ms(r.first_byte_ms), present.ms(r.exit_ms),
                                     present.memory(r.cgroup_peak_bytes), present.memory(r.guest_bytes),
                                     present.memory(r.init_max_rss_kb * 1024), r.cache or "-"))
                       for r in runs)
