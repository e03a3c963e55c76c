"""The log screen: a container's output, followed while it runs; `esc` goes back."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Log, Static
from textual.worker import get_current_worker
from wasmlab.lab.tui.messages import LoadFailed, LogChunk, LogEnded, error_parts

if TYPE_CHECKING:
    from wasmlab.runtime import Lab

POLL = 0.25


class LogScreen(Screen[None]):
    """`wasmlab logs -f NAME`: the same follow as the CLI's (Lab.follow), until the container has no process left."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "clear", "Clear"),
    ]

    def __init__(self, container: str, name: str) -> None:
        super().__init__(classes="log-screen")
        self.container = container
        self.container_name = name
        self.ended: LogEnded | None = None

    def compose(self) -> ComposeResult:
        ident = "" if self.container_name == self.container else f" ({self.container})"
        yield Static(f"logs of [b]{self.container_name}[/b]{ident}", classes="screen-title")
        yield Log(highlight=False, auto_scroll=True, classes="log")
        yield Static("following...", classes="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Log).focus()
        self.follow()

    @property
    def text(self) -> str:
        return "\n".join(self.query_one(Log).lines)

    @work(thread=True, exclusive=True, group="logs")
    def follow(self) -> None:
        """Each chunk once, as it comes; then the status it ended with. Leaving the screen cancels the worker."""
        worker = get_current_worker()
        lab: Lab = self.app.lab  # type: ignore[attr-defined]
        try:
            for chunk in lab.follow(self.container, stop=worker.cancelled_event, poll=POLL):
                self.post_message(LogChunk(chunk.decode("utf-8", "replace")))
            if worker.is_cancelled:
                return
            details = lab.inspect(self.container)
        except Exception as exc:
            self.post_message(LoadFailed(*error_parts(exc)))
            return
        self.post_message(LogEnded(str(details.status), details.exit_code))

    def on_log_chunk(self, message: LogChunk) -> None:
        self.query_one(Log).write(message.text)

    def on_log_ended(self, message: LogEnded) -> None:
        self.ended = message
        code = "" if message.exit_code is None else f", exit code {message.exit_code}"
        self.query_one(".status-line", Static).update(f"{message.status}{code}: end of log")

    def on_load_failed(self, message: LoadFailed) -> None:
        hint = f"  (hint: {message.hint})" if message.hint else ""
        self.query_one(".status-line", Static).update(f"[b red]Error:[/] {message.message}{hint}")

    def action_clear(self) -> None:
        self.query_one(Log).clear()
