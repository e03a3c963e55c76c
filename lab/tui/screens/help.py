"""The help screen: every key of the TUI, generated from the bindings of the app and of each screen."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

ABOUT = ("wasmlab runs WebAssembly modules as OCI containers beside Linux ones. Everything here is also a `wasmlab` "
         "command: build, images, run -d, ps -a, logs -f, inspect, stop, kill, rm -f, kube play, pod stop, pod start, "
         "pod kill, inspect-ns, history. "
         "The mouse works too: click a tab, a row, a button.")


def key_name(binding: Binding) -> str:
    if binding.key_display:
        return binding.key_display
    return {"question_mark": "?", "slash": "/", "colon": ":", "escape": "esc", "enter": "enter"}.get(
        binding.key, binding.key.replace("ctrl+", "ctrl-"))


def binding_rows(sources: Iterable[tuple[str, Iterable[BindingType]]]) -> list[tuple[str, str, str]]:
    """(key, where, what) for every binding, one row per key and action, the places it works joined."""
    rows: dict[tuple[str, str], list[str]] = {}
    for where, bindings in sources:
        for b in bindings:
            if not isinstance(b, Binding):
                continue
            for key in b.key.split(","):
                single = Binding(key.strip(), b.action, b.description, key_display=b.key_display)
                rows.setdefault((key_name(single), b.tooltip or b.description or b.action), []).append(where)
    return [(key, ", ".join(dict.fromkeys(places)), what) for (key, what), places in rows.items()]


class HelpScreen(Screen[None]):
    """The keys, and where they work."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("question_mark", "app.pop_screen", "Back", key_display="?", show=False),
    ]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__(classes="help-screen")
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield Static("[b]wasmlab[/b] keys", classes="screen-title")
        with VerticalScroll(classes="help"):
            yield Static(self.table(), classes="keys")
            yield Static(ABOUT, classes="about")
        yield Footer()

    def table(self) -> Table:
        """The keys as a table whose last column wraps (it fits 80 columns)."""
        table = Table(box=None, expand=True, row_styles=["", "on #1c1c1c"], header_style="bold")
        table.add_column("KEY", no_wrap=True, width=7)
        table.add_column("WHERE", ratio=1)
        table.add_column("WHAT", ratio=2)
        for key, where, what in self.rows:
            table.add_row(key, where, what)
        return table

    def on_mount(self) -> None:
        self.query_one(".help", VerticalScroll).focus()
