"""The build dialog: a Containerfile from assets/ or a path, its context, a tag, the Wasm variant and the platform;
the build runs in a worker and its steps and errors show inline, in the dialog."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Log, Select, Static
from wasmlab.lab import present
from wasmlab.lab.tui import catalog
from wasmlab.lab.tui.messages import ActionFailed, Built, Progressed, error_parts

VARIANT_ANNOTATION = "module.wasm.image/variant"


class BuildScreen(ModalScreen[str | None]):
    """`wasmlab build -f FILE -t TAG --annotation module.wasm.image/variant=V --platform P CONTEXT`."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")
        self.recipes = catalog.recipes()
        self.building = False
        self.built: str | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", can_focus=False):
            yield Static("[b]Build an image[/b]", classes="dialog-title")
            yield Label("Containerfile from assets/")
            yield Select([(r.label, str(r.containerfile)) for r in self.recipes], prompt="or write a path below",
                         id="recipe", allow_blank=True, compact=True)
            yield Label("Containerfile path")
            yield Input(placeholder="path/to/Containerfile", id="containerfile", compact=True)
            yield Label("Context folder")
            yield Input(placeholder="the folder COPY reads from", id="context", compact=True)
            with Horizontal(classes="row"):
                with Vertical():
                    yield Label("Tag")
                    yield Input(placeholder="localhost/name:latest", id="tag", compact=True)
                with Vertical():
                    yield Label("Variant")
                    yield Select([(v, v) for v in catalog.VARIANTS], value="compat", allow_blank=False,
                                 id="variant", compact=True)
            yield Label("Platform (empty: the Containerfile's; wasi/wasm for a Wasm image)")
            yield Input(placeholder="", id="platform", compact=True)
            log = Log(classes="build-log", auto_scroll=True)
            log.can_focus = False  # the Tab order goes field to field to the buttons; the log follows by itself
            yield log
            yield Static("", classes="dialog-status")
            with Horizontal(classes="buttons"):
                yield Button("Build", variant="primary", id="build", compact=True)
                yield Button("Close (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        if self.recipes:
            self.query_one("#recipe", Select).value = str(self.recipes[0].containerfile)
        self.query_one("#recipe", Select).focus()

    @on(Select.Changed, "#recipe")
    def _recipe(self, event: Select.Changed) -> None:
        if not isinstance(event.value, str):
            return
        recipe = catalog.recipe_for(Path(event.value))
        self.query_one("#containerfile", Input).value = str(recipe.containerfile)
        self.query_one("#context", Input).value = str(recipe.context)
        self.query_one("#tag", Input).value = recipe.tag
        self.query_one("#variant", Select).value = recipe.variant

    def action_cancel(self) -> None:
        self.dismiss(self.built)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.action_cancel()

    @on(Button.Pressed, "#build")
    @on(Input.Submitted)
    def _build_pressed(self) -> None:
        self.start()

    def start(self) -> None:
        if self.building:
            return
        containerfile = self.query_one("#containerfile", Input).value.strip()
        context = self.query_one("#context", Input).value.strip() or (str(Path(containerfile).parent)
                                                                      if containerfile else "")
        tag = self.query_one("#tag", Input).value.strip() or None
        variant = self.query_one("#variant", Select).value
        platform = self.query_one("#platform", Input).value.strip() or None
        if not containerfile:
            self._status("[b red]Error:[/] pick a Containerfile, or write its path")
            return
        annotations = {VARIANT_ANNOTATION: str(variant)} if variant in ("compat", "compat-smart") else {}
        self.building = True
        self.error = None
        self.query_one(Log).clear()
        self._status(f"building {tag or containerfile} ...")
        self.build(context, containerfile, tag, annotations, platform)

    def _status(self, text: str) -> None:
        self.query_one(".dialog-status", Static).update(text)

    @work(thread=True, exclusive=True, group="build")
    def build(self, context: str, containerfile: str, tag: str | None, annotations: dict[str, str],
              platform: str | None) -> None:
        lab = self.app.lab  # type: ignore[attr-defined]
        try:
            res = lab.build(context, containerfile, tag=tag, annotations=annotations, platform=platform,
                            progress=lambda p: self.post_message(Progressed(p.output.rstrip("\n") if p.output
                                                                           else present.progress_line(p),
                                                                           p.fraction)))
        except Exception as exc:
            message, hint = error_parts(exc)
            self.post_message(ActionFailed("build", tag or containerfile, message, hint))
            return
        self.post_message(Progressed(f"built {res.name or res.id}", 1.0))
        self.post_message(Built(res.name or res.id))

    def on_progressed(self, message: Progressed) -> None:
        message.stop()
        self.query_one(Log).write_line(message.line)

    def on_action_failed(self, message: ActionFailed) -> None:
        message.stop()
        self.building = False
        self.error = message.message
        hint = f" (hint: {message.hint})" if message.hint else ""
        self._status(f"[b red]Error:[/] {message.message}{hint}")

    def on_built(self, message: Built) -> None:
        message.stop()
        self.building = False
        self.built = message.name
        self._status(f"[b green]built {message.name}[/]: esc to close, r on screen 1 to run it")
        self.app.notify(f"built {message.name}", title="build")

