"""The `:` command bar (k9s-like): it takes every key from `:` on, tab completes, enter runs, esc closes."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input


def completion(text: str, candidates: list[str]) -> str:
    """What tab makes of TEXT: the first candidate it starts (the grey suggestion), else TEXT as it is."""
    low = text.lower()
    return next((c for c in candidates if low and c.lower().startswith(low)), text)


class CommandBar(Input):
    """Hidden until open(); while open it has the keys, even those typed before the focus reaches it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "complete", "Complete", show=False, priority=True),
        Binding("escape", "close", "Close", show=False),
    ]

    class Closed(Message):
        """Esc: the bar is hidden, the screen below takes the keys again."""

    def __init__(self, commands: list[str], *, id: str | None = None, placeholder: str = "") -> None:
        super().__init__(placeholder=placeholder, id=id, suggester=SuggestFromList(commands, case_sensitive=False))
        self.commands = commands
        self.candidates = list(commands)

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def open(self, extra: list[str]) -> None:
        self.candidates = self.commands + extra
        self.suggester = SuggestFromList(self.candidates, case_sensitive=False)
        self.value = ""
        self.add_class("-open")
        self.focus()

    def close(self) -> None:
        self.remove_class("-open")
        self.value = ""

    def action_complete(self) -> None:
        done = completion(self.value, self.candidates)
        if done != self.value:
            self.value = done
            self.cursor_position = len(done)

    def action_close(self) -> None:
        self.close()
        self.post_message(self.Closed())

    def take_key(self, key: str, character: str | None) -> bool:
        """A key that reached the app before the focus reached the bar: do what the bar would have done."""
        if key == "escape":
            self.action_close()
        elif key == "tab":
            self.action_complete()
        elif key == "enter":
            self.post_message(self.Submitted(self, self.value))
        elif key == "backspace":
            self.action_delete_left()
        elif character and character.isprintable():
            self.insert_text_at_cursor(character)
        else:
            return False
        return True
