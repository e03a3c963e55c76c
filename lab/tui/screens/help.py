"""The help screen: every key of the TUI, k9s style; `esc` or `?` goes back."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

KEYS: list[tuple[str, str, str]] = [
    ("?", "anywhere", "this help"),
    ("q", "anywhere", "quit"),
    ("1 2 3", "main", "Images, Containers, History tabs"),
    ("/", "tables", "filter the rows (enter keeps the filter, esc clears it)"),
    ("esc", "anywhere", "back: close a screen or clear the filter"),
    ("r", "Images", "run the selected image, detached"),
    ("d", "Images, Containers", "describe: the JSON of inspect"),
    ("ctrl+d", "Images, Containers", "delete, after a confirmation (y / n)"),
    ("l", "Containers", "logs of the selected container, followed while it runs"),
    ("s", "Containers", "stop: SIGTERM, then SIGKILL after 10 s"),
    ("c", "Logs", "clear the log view"),
]

ABOUT = ("wasmlab runs WebAssembly modules as OCI containers beside Linux ones. "
         "Everything here is also a `wasmlab` command: images, run -d, ps -a, logs -f, inspect, stop, rm -f, history.")


class HelpScreen(Screen[None]):
    """The keys, and where they work."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("question_mark", "app.pop_screen", "Back", key_display="?", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static("[b]wasmlab[/b] keys", classes="screen-title")
        with VerticalScroll(classes="help"):
            yield DataTable(cursor_type="none", zebra_stripes=True, classes="keys")
            yield Static(ABOUT, classes="about")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("KEY", "WHERE", "WHAT")
        for key, where, what in KEYS:
            table.add_row(key, where, what)
        table.focus()
