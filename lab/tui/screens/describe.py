"""The describe screen: the JSON of `inspect` for a container or an image; `esc` goes back."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static


class DescribeScreen(Screen[None]):
    """k9s's describe, as pretty-printed JSON."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, title: str, document: dict[str, Any]) -> None:
        super().__init__(classes="describe-screen")
        self.title_text = title
        self.text = json.dumps(document, indent=2, default=str, sort_keys=False)

    def compose(self) -> ComposeResult:
        yield Static(f"describe [b]{self.title_text}[/b]", classes="screen-title")
        with VerticalScroll(classes="document"):
            yield Static(Syntax(self.text, "json", theme="ansi_dark", word_wrap=True))
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(".document", VerticalScroll).focus()
