"""The describe screen: a container's, image's or pod's document, as readable YAML (`d`) or the raw JSON (`y`)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import yaml
from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from wasmlab.lab import present


class DescribeScreen(Screen[None]):
    """k9s's describe (YAML) and its `y` (here the raw JSON the CLI's --json prints)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, title: str, document: dict[str, Any], *, raw: bool = False) -> None:
        super().__init__(classes="describe-screen")
        self.title_text = title
        self.raw = raw
        if raw:
            self.text = json.dumps(document, indent=2, default=str, sort_keys=False)
        else:
            # Moments as a date and an age (the raw JSON keeps the epoch seconds).
            self.text = yaml.safe_dump(present.dated(json.loads(json.dumps(document, default=str))), sort_keys=False,
                                       allow_unicode=True, width=1000)

    def compose(self) -> ComposeResult:
        yield Static(f"{'json' if self.raw else 'describe'} [b]{self.title_text}[/b]", classes="screen-title")
        with VerticalScroll(classes="document"):
            yield Static(Syntax(self.text, "json" if self.raw else "yaml", theme="ansi_dark", word_wrap=True))
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(".document", VerticalScroll).focus()
