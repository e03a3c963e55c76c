"""The play dialog: a pod preset from assets/pods or a YAML path, and how annotations reach the containers
(CRI-O, or containerd with its pod_annotations allowlist); the app plays it in a worker (kube play)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option
from wasmlab.lab.tui import catalog


@dataclass
class PlayRequest:
    """What Lab.kube_play is asked."""

    file: str
    propagation: str = "crio"
    pod_annotations: list[str] | None = None


def pod_prefixes(file: str) -> tuple[str, ...]:
    """The name prefix (`namespace_pod_`) of the lab containers each Pod of FILE makes; () if it cannot be read
    (then kube play says why)."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(Path(file).read_text()))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return ()
    out = []
    for doc in docs:
        meta = doc.get("metadata") if isinstance(doc, dict) and doc.get("kind") == "Pod" else None
        if isinstance(meta, dict) and meta.get("name"):
            out.append(f"{meta.get('namespace') or 'default'}_{meta['name']}_")
    return tuple(out)


@dataclass
class Playing:
    """A play in flight: the containers it makes, and the failures of theirs held back until it ends (a failed
    play rolls its pods back, killing their containers: those kills are not failures of their own)."""

    file: str
    prefixes: tuple[str, ...]
    held: list[tuple[str, str, int, int | None]] = field(default_factory=list)  # (id, name, exit code, signal)

    def owns(self, name: str) -> bool:
        return name.startswith(self.prefixes) if self.prefixes else False


class PlayScreen(ModalScreen[PlayRequest | None]):
    """`wasmlab kube play [--propagation P] [--pod-annotations A] FILE`."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")
        self.presets = catalog.presets()

    def compose(self) -> ComposeResult:
        # The buttons and the status stay in sight; the body (presets, the highlighted one's comment) scrolls.
        with Vertical(classes="dialog fixed-buttons"):
            yield Static("[b]Play a pod[/b] (kube play)", classes="dialog-title")
            with VerticalScroll(classes="dialog-body", can_focus=False):
                yield from self._body()
            yield Static("", classes="dialog-status")
            with Horizontal(classes="buttons"):
                yield Button("Play", variant="primary", id="play", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def _body(self) -> ComposeResult:
        """The part that scrolls: the presets, the highlighted one's whole comment, a YAML path, how to pass."""
        yield Label("Presets (enter plays one)")
        yield OptionList(*(Option(f"[b]{p.name}[/b]  {escape(p.summary)}", id=p.name) for p in self.presets),
                         id="presets")
        yield Static("", id="preset-about")  # the highlighted preset's whole comment, wrapped
        yield Label("or a YAML file")
        yield Input(id="file", placeholder="path/to/pod.yaml", compact=True)
        with Horizontal(classes="row"):
            yield Select([("CRI-O (every pod annotation)", "crio"), ("containerd (allowlist)", "containerd")],
                         value="crio", allow_blank=False, id="propagation", compact=True)
            yield Input(id="allowlist", placeholder="containerd allowlist (default module.wasm.image/*)",
                        compact=True)

    def on_mount(self) -> None:
        self.query_one("#presets", OptionList).focus()

    def preset(self, name: str) -> catalog.Preset:
        return next(p for p in self.presets if p.name == name)

    @on(OptionList.OptionHighlighted, "#presets")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        preset = self.preset(event.option.id or "")
        self.query_one("#preset-about", Static).update(escape(preset.about))
        self.query_one("#file", Input).value = str(preset.path)
        self.query_one("#propagation", Select).value = preset.propagation
        self.query_one("#allowlist", Input).value = preset.pod_annotations

    @on(OptionList.OptionSelected, "#presets")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self._highlighted(event)  # type: ignore[arg-type]
        self._play()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#play")
    @on(Input.Submitted)
    def _play(self) -> None:
        file = self.query_one("#file", Input).value.strip()
        if not file or not Path(file).is_file():
            self.query_one(".dialog-status", Static).update(
                f"[b red]Error:[/] {'no file ' + repr(file) if file else 'pick a preset or write a YAML path'}")
            return
        allow = self.query_one("#allowlist", Input).value.strip()
        self.dismiss(PlayRequest(file, str(self.query_one("#propagation", Select).value),
                                 [a for a in allow.replace(",", " ").split() if a] or None))
