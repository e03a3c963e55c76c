"""The resource view: a DataTable of one kind of lab object, with a `/` filter, a status line and columns that
narrow by priority (the ones that do not fit a narrow terminal are left out, least important first)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker
from wasmlab.lab import present
from wasmlab.lab.tui.messages import Loaded, LoadFailed, error_parts

if TYPE_CHECKING:
    from wasmlab.runtime import Lab

Row = tuple[str, Sequence[str]]


@dataclass(frozen=True)
class Column:
    """One column: its label, the width it takes, and its priority (1 is kept longest; 0 grows to fill); a
    `middle` column is cut in the middle when too narrow (names: their end tells pod containers apart)."""

    label: str
    width: int
    priority: int = 5
    middle: bool = False


def human_size(n: float) -> str:
    return present.size(n)


def ago(when: float | str) -> str:
    return present.ago(when, short=True)


def fitting(columns: Sequence[Column], width: int) -> list[int]:
    """The indexes of the columns that fit WIDTH cells, in their order, most important first to be kept."""
    order = sorted(range(len(columns)), key=lambda i: (columns[i].priority, i))
    chosen: list[int] = []
    used = 0
    for i in order:
        need = columns[i].width + 2  # DataTable pads each cell by one on both sides
        if used + need <= width or not chosen:
            chosen.append(i)
            used += need
    return sorted(chosen)


class ResourceView(Vertical):
    """Rows of (key, cells); `/` filters them by substring, `esc` clears the filter; subclasses fetch the rows
    (in a thread worker) and turn them into cells."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    NOUN: ClassVar[str] = "row"  # singular: the status line says "1 row", "2 rows" (present.plural)
    EMPTY: ClassVar[str] = ""    # what the status line says when there are no rows: the next step
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/", show=False,
                tooltip="filter the rows (enter keeps the filter, esc clears it)"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="clear the filter"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="resource-view")
        self._rows: list[Row] = []
        self.filter_text = ""
        self.loaded = False
        self.typing_filter = False
        self._shown_columns: list[int] = []
        self._widths: dict[int, int] = {}  # the width each shown column got
        self._status = "loading..."

    @property
    def lab(self) -> Lab:
        lab: Lab = self.app.lab  # type: ignore[attr-defined]
        return lab

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row", zebra_stripes=True, classes="resource-table")
        yield Input(placeholder="filter: type to narrow the rows, enter to keep, esc to clear", classes="filter")
        yield Static(self._status, classes="status-line")

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width)
        self.reload()

    def on_resize(self, event: events.Resize) -> None:
        self._set_columns(event.size.width)

    def _set_columns(self, width: int) -> None:
        shown = fitting(self.COLUMNS, max(20, width - 2))
        if shown == self._shown_columns:
            return
        self._shown_columns = shown
        table = self.table
        table.clear(columns=True)
        spare = max(20, width - 2) - sum(self.COLUMNS[i].width + 2 for i in shown)
        self._widths = {}
        for i in shown:
            col = self.COLUMNS[i]
            self._widths[i] = col.width + (spare if col.priority == 0 else 0)
            table.add_column(col.label, width=self._widths[i])
        if self.loaded:
            self._render_rows()

    # -- loading: fetch() runs in a thread, show() on the app's loop ---------------------------------------------
    def fetch(self) -> Any:
        """Ask the service (called in a worker thread): what show() takes."""
        return None

    def show(self, data: Any) -> None:
        """Turn fetched data into rows (subclasses call show_rows)."""

    @work(thread=True, exclusive=True, group="load")
    def reload(self) -> None:
        worker = get_current_worker()
        try:
            data = self.fetch()
        except Exception as exc:
            self.post_message(LoadFailed(*error_parts(exc)))
            return
        if not worker.is_cancelled:
            self.post_message(Loaded(data))

    def on_loaded(self, message: Loaded) -> None:
        message.stop()
        self.show(message.data)

    def focus_table(self) -> None:
        self.table.focus()

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one(".resource-table", DataTable)

    @property
    def selected_key(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), table.row_count - 1)
        return table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value

    def rows(self) -> list[list[str]]:
        """The full cells of the rows shown (after the filter; every column, shown or not), top to bottom."""
        table = self.table
        cells = dict(self._rows)
        out = []
        for i in range(table.row_count):
            key = table.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value
            out.append([str(c) for c in cells.get(key or "", ())])
        return out

    def show_rows(self, rows: Iterable[Row]) -> None:
        rows = [(key, tuple(cells)) for key, cells in rows]
        if self.loaded and rows == self._rows:
            return  # the same rows: no rebuild of the table, no layout of the screen
        self._rows = rows
        self.loaded = True
        self._render_rows()

    def _render_rows(self) -> None:
        table = self.table
        keep = self.selected_key
        table.clear()
        needle = self.filter_text.lower()
        shown = 0
        for key, cells in self._rows:
            if needle and not any(needle in c.lower() for c in cells):
                continue
            table.add_row(*(present.middle(cells[i], self._widths[i]) if self.COLUMNS[i].middle else cells[i]
                            for i in self._shown_columns), key=key)
            shown += 1
        if keep is not None and keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))
        status = present.plural(len(self._rows), self.NOUN)
        if not self._rows and self.EMPTY:
            status = f"{status}: {self.EMPTY}"
        if needle:
            status = f"{shown} of {status} match /{self.filter_text}"
        self.say(status)

    def say(self, status: str) -> None:
        """The status line, updated only when it changes (an update lays out the whole screen again)."""
        if status != self._status:
            self._status = status
            self.query_one(".status-line", Static).update(status)

    def on_load_failed(self, message: LoadFailed) -> None:
        message.stop()
        text = message.message + (f"  (hint: {message.hint})" if message.hint else "")
        self.say(f"[b red]Error:[/] {text}")

    # -- the filter bar ----------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.typing_filter = True
        self.query_one(".filter", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action in ("filter", "clear_filter") or not self.typing_filter

    def on_key(self, event: events.Key) -> None:
        """Keys reach the view in order, before any binding: from `/` on, printable ones belong to the filter.

        (Focus moves to the filter bar a few messages later; keys typed fast in between would otherwise
        run the table's bindings, e.g. `l` for logs.)
        """
        if event.key == "slash" and not self.typing_filter:
            event.stop()
            event.prevent_default()
            self.action_filter()
        elif self.typing_filter and event.is_printable and event.character:
            event.stop()
            event.prevent_default()
            self.query_one(".filter", Input).insert_text_at_cursor(event.character)

    def action_clear_filter(self) -> None:
        self.typing_filter = False
        if not self.has_class("-filtering") and not self.filter_text:
            return
        self.remove_class("-filtering")
        field = self.query_one(".filter", Input)
        field.value = ""
        self.filter_text = ""
        self._render_rows()
        self.table.focus()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value
        self._render_rows()

    @on(Input.Submitted, ".filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.stop()
        self.typing_filter = False
        if not self.filter_text:
            self.remove_class("-filtering")
        self.table.focus()
