"""The key footer: one line drawn by one widget, repainted (never laid out again) when the keys it shows change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from rich.text import Text
from textual import events
from textual.widget import Widget

if TYPE_CHECKING:
    from textual.screen import Screen


class ShownKey(NamedTuple):
    key: str
    display: str
    description: str
    enabled: bool


def shown_keys(screen: Screen[Any]) -> tuple[tuple[ShownKey, ...], ShownKey | None]:
    """What the footer draws for SCREEN: each binding it shows (one per action), and the command palette's."""
    app = screen.app
    active = screen.active_bindings
    keys: dict[str, ShownKey] = {}
    for _, binding, enabled, _ in active.values():
        if binding.show and binding.action not in keys:
            keys[binding.action] = ShownKey(binding.key, app.get_key_display(binding), binding.description, enabled)
    palette = None
    if app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING in active:
        _, binding, enabled, _ = active[app.COMMAND_PALETTE_BINDING]
        palette = ShownKey(binding.key, app.get_key_display(binding), binding.description, enabled)
    return tuple(keys.values()), palette


class KeysFooter(Widget, can_focus=False):
    """Textual's Footer mounts a widget per key and recomposes on every bindings signal (a tab switch sends
    two): each time a layout of the whole screen, as long as the switch itself. This draws the same keys as
    one line of text, redrawn only when they change; a click on a key presses it, as on Footer's keys."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {"keys-footer--key", "keys-footer--description", "keys-footer--bar"}
    DEFAULT_CSS = """
    KeysFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        .keys-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .keys-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        .keys-footer--bar {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, *, compact: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.compact = compact
        self._keys: tuple[tuple[ShownKey, ...], ShownKey | None] = ((), None)
        self._spans: list[tuple[int, int, ShownKey]] = []  # where each key was drawn: for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[Any]) -> None:
        if screen is not self.screen or not self.is_attached:
            return
        keys = shown_keys(screen)
        if keys != self._keys:
            self._keys = keys
            self.refresh()  # a repaint of this line: its size never changes

    def _item(self, key: ShownKey) -> Text:
        key_style = self.get_component_rich_style("keys-footer--key")
        description_style = self.get_component_rich_style("keys-footer--description")
        if self.compact:
            shown = (key.display, key_style), (f" {key.description}" if key.description else "", description_style)
        else:
            shown = (f" {key.display} ", key_style), (f"{key.description} " if key.description else "",
                                                      description_style)
        text = Text.assemble(*shown)
        if not key.enabled:
            text.stylize("dim")
        return text

    def render(self) -> Text:
        keys, palette = self._keys
        line = Text(no_wrap=True, overflow="crop", end="")
        self._spans = []
        for key in keys:
            item = self._item(key)
            self._spans.append((len(line), len(line) + len(item), key))
            line.append_text(item)
            line.append(" " if self.compact else "")
        if palette is not None:  # on the right, after a thin bar, as Footer docks it
            item = self._item(palette)
            at = max(len(line) + 1, self.size.width - len(item) - 1)
            line.append(" " * (at - 1 - len(line)))
            line.append("\u258f", self.get_component_rich_style("keys-footer--bar"))
            self._spans.append((at, at + len(item), palette))
            line.append_text(item)
            line.append(" ")
        return line

    def on_mouse_down(self, event: events.MouseDown) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                if key.enabled:
                    self.app.simulate_key(key.key)
                else:
                    self.app.bell()
                return
