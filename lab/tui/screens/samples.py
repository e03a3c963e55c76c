"""The first-start offer: an empty lab proposes to build the sample images (Lab.samples), with a progress bar."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, ProgressBar, Static
from wasmlab.lab.tui.messages import ActionFailed, Built, Progressed, error_parts

OFFER = ("This lab has no images yet. Build the samples from assets/ (hello, the seed's program and others, "
         "as Wasm compat, compat-smart and Linux images, and a busybox sidecar)? It takes a few seconds.")


class SamplesScreen(ModalScreen[bool]):
    """`y` builds the samples (the bar fills image by image), `n` or esc leaves the lab empty."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "build", "Build"),
        Binding("n", "skip", "Not now"),
        Binding("escape", "skip", "Not now", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")
        self.building = False
        self.done = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small"):
            yield Static("[b]Welcome to wasmlab[/b]", classes="dialog-title")
            yield Static(OFFER, classes="question")
            yield ProgressBar(total=None, show_eta=False, id="samples-bar")
            yield Static("", classes="dialog-status")
            with Horizontal(classes="buttons"):
                yield Button("Build samples (y)", variant="primary", id="yes", compact=True)
                yield Button("Not now (n)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    @on(Button.Pressed, "#yes")
    def action_build(self) -> None:
        if self.building or self.done:
            return
        self.building = True
        self.query_one(".dialog-status", Static).update("building the samples ...")
        self.build()

    @on(Button.Pressed, "#no")
    def action_skip(self) -> None:
        if not self.building:
            self.dismiss(self.done)

    @work(thread=True, exclusive=True, group="samples")
    def build(self) -> None:
        lab = self.app.lab  # type: ignore[attr-defined]
        try:
            built = lab.samples(progress=lambda p: self.post_message(
                Progressed(f"{p.done}/{p.total} {p.what}", p.fraction)))
        except Exception as exc:
            self.post_message(ActionFailed("samples", "assets/", *error_parts(exc)))
            return
        self.post_message(Built(f"{len(built)} sample images"))

    def on_progressed(self, message: Progressed) -> None:
        message.stop()
        bar = self.query_one(ProgressBar)
        if message.fraction is not None:
            bar.update(total=100, progress=100 * message.fraction)
        self.query_one(".dialog-status", Static).update(message.line)

    def on_action_failed(self, message: ActionFailed) -> None:
        message.stop()
        self.building = False
        hint = f" (hint: {message.hint})" if message.hint else ""
        self.query_one(".dialog-status", Static).update(f"[b red]Error:[/] {message.message}{hint}")

    def on_built(self, message: Built) -> None:
        message.stop()
        self.building = False
        self.done = True
        self.app.notify(f"built {message.name}: select one and press r to run it", title="samples")
        self.dismiss(True)
