"""The run dialog: image, engine (auto, wasmtime, wasmer), annotations, command, env, memory limit, name and
detach; what it asks for is one RunRequest, which the app hands to Lab.run in a worker."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

ENGINES = ("auto", "wasmtime", "wasmer")


@dataclass
class RunRequest:
    """What the run dialog asks of Lab.run."""

    image: str
    engine: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    memory: str | None = None
    name: str | None = None
    detach: bool = True


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """`k=v k2=v2` (or comma-separated) as a dict; a word without `=` is a ValueError a learner can read."""
    out = {}
    for word in shlex.split(text.replace(",", " ")):
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise ValueError(f"{what} {word!r} is not KEY=VALUE")
        out[key] = value
    return out


class RunScreen(ModalScreen[RunRequest | None]):
    """`wasmlab run [-d] [--engine E] [--annotation K=V] [-e K=V] [-m 32m] [--name N] IMAGE [COMMAND]`."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, image: str = "", images: list[str] | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.image = image
        self.images = images or []

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", can_focus=False):
            yield Static("[b]Run a container[/b]", classes="dialog-title")
            with Horizontal(classes="row"):
                with Vertical(classes="wide"):
                    yield Label("Image")
                    yield Input(self.image, id="image", compact=True,
                                suggester=SuggestFromList(self.images, case_sensitive=False))
                with Vertical():
                    yield Label("Engine")
                    yield Select([(e, e) for e in ENGINES], value="auto", allow_blank=False, id="engine", compact=True)
            yield Label("Command (empty: the image's)")
            yield Input(id="args", placeholder="/hello.wasm arg1 arg2", compact=True)
            yield Label("Annotations (K=V ...)")
            yield Input(id="annotations", placeholder="module.wasm.image/variant=compat", compact=True)
            yield Label("Environment (K=V ...)")
            yield Input(id="env", placeholder="GREETING=hi", compact=True)
            with Horizontal(classes="row"):
                with Vertical():
                    yield Label("Memory limit")
                    yield Input(id="memory", placeholder="32m", compact=True)
                with Vertical():
                    yield Label("Name")
                    yield Input(id="name", placeholder="(generated)", compact=True)
            yield Checkbox("Detach (else: follow its logs)", value=True, id="detach", compact=True)
            yield Static("", classes="dialog-status")
            with Horizontal(classes="buttons"):
                yield Button("Run", variant="primary", id="run", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#run" if self.image else "#image").focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#run")
    @on(Input.Submitted)
    def _run(self) -> None:
        request = self.request()
        if request is not None:
            self.dismiss(request)

    def request(self) -> RunRequest | None:
        """The form as a RunRequest, or None with the mistake shown in the dialog."""
        def value(wid: str) -> str:
            return self.query_one(f"#{wid}", Input).value.strip()

        image = value("image")
        if not image:
            self._status("[b red]Error:[/] which image? (the Images screen lists them)")
            return None
        try:
            annotations = parse_pairs(value("annotations"), "annotation")
            env = [f"{k}={v}" for k, v in parse_pairs(value("env"), "env").items()]
            command = shlex.split(value("args"))
        except ValueError as exc:
            self._status(f"[b red]Error:[/] {exc}")
            return None
        engine = str(self.query_one("#engine", Select).value)
        return RunRequest(image, None if engine == "auto" else engine, annotations, command, env,
                          value("memory") or None, value("name") or None, self.query_one("#detach", Checkbox).value)

    def _status(self, text: str) -> None:
        self.query_one(".dialog-status", Static).update(text)
