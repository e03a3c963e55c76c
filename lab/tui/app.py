"""The wasmlab Textual app: Images, Containers and History tabs over the Lab service, with k9s keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from wasmlab.lab.tui.messages import ActionDone, ActionFailed, Described, RuntimeEvent
from wasmlab.lab.tui.screens.containers import ContainersView
from wasmlab.lab.tui.screens.describe import DescribeScreen
from wasmlab.lab.tui.screens.help import HelpScreen
from wasmlab.lab.tui.screens.history import HistoryView
from wasmlab.lab.tui.screens.images import ImagesView
from wasmlab.lab.tui.widgets.table import ResourceView
from wasmlab.runtime import ContainerCreated, ContainerExited, ContainerStarted, ImageBuilt, ImageRemoved, RunRecorded
from wasmlab.runtime.errors import WasmlabError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wasmlab.runtime import Lab, LabEvent

TABS = ("images", "containers", "history")
# The Lab's events that change what `ps` shows, and what `images` shows.
RELOAD_CONTAINERS = (ContainerCreated, ContainerStarted, ContainerExited)
RELOAD_IMAGES = (ImageBuilt, ImageRemoved)


class WasmlabApp(App[int]):
    """A thin face: every service call runs in a thread worker and comes back as a dataclass message."""

    CSS_PATH = "app.tcss"
    TITLE = "wasmlab"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("1", "show_tab('images')", "Images"),
        Binding("2", "show_tab('containers')", "Containers"),
        Binding("3", "show_tab('history')", "History"),
        Binding("escape", "back", "Back", show=False),  # Textual's own: pop the screen, if there is one
    ]

    def __init__(self, lab: Lab | None = None, *, refresh_interval: float = 2.0,
                 use_plotext: bool | None = None) -> None:
        super().__init__()
        self._owns_lab = lab is None
        # A lab that cannot open (a bad WASMLAB_HOME) is shown as its one-line error, in place of the tabs.
        self.lab_error: WasmlabError | None = None
        if lab is None:
            from wasmlab.runtime import Lab

            try:
                lab = Lab()
            except WasmlabError as exc:
                self.lab_error = exc
        self.lab: Lab = lab  # type: ignore[assignment]  # None only with lab_error, when no view is shown
        self.refresh_interval = refresh_interval
        self.images_view = ImagesView(id="images-view")
        self.containers_view = ContainersView(id="containers-view")
        self.history_view = HistoryView(id="history-view", use_plotext=use_plotext)
        self.views: dict[str, ResourceView] = {"images": self.images_view, "containers": self.containers_view,
                                               "history": self.history_view}
        self._unsubscribe: Callable[[], Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        if self.lab_error is not None:
            yield Static(f"Error: {self.lab_error.one_line()}", id="lab-error")
            yield Footer()
            return
        with TabbedContent(initial="images", id="tabs"):
            with TabPane("1 Images", id="images"):
                yield self.images_view
            with TabPane("2 Containers", id="containers"):
                yield self.containers_view
            with TabPane("3 History", id="history"):
                yield self.history_view
        yield Footer()

    def on_mount(self) -> None:
        if self.lab_error is not None:
            self.sub_title = "no lab home"
            return
        self.sub_title = str(self.lab.home)
        self._unsubscribe = self.lab.subscribe(self._lab_event)
        self.set_interval(self.refresh_interval, self._tick)

    def on_unmount(self) -> None:
        self.close_lab()

    def close_lab(self) -> None:
        """Stop listening and, if this app made the Lab, close it (its helper process goes with it)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._owns_lab and self.lab_error is None:
            self.lab.close()

    # -- live updates ------------------------------------------------------------------------------------------
    def _lab_event(self, event: LabEvent) -> None:
        """Runs on whichever thread the event happened on: hand it to the app's loop without waiting."""
        self.post_message(RuntimeEvent(event))

    def on_runtime_event(self, message: RuntimeEvent) -> None:
        event = message.event
        if isinstance(event, RELOAD_CONTAINERS):
            self.containers_view.reload()
        if isinstance(event, RELOAD_IMAGES):
            self.images_view.reload()
        if isinstance(event, RunRecorded):
            self.history_view.reload()
        elif isinstance(event, ContainerExited):
            # Until every run is announced as recorded: the row lands in the history just after the exit.
            self.set_timer(0.3, self.history_view.reload)

    def _tick(self) -> None:
        if len(self.screen_stack) == 1:
            self.views[self.active_tab].reload()

    # -- results of the views' workers -------------------------------------------------------------------------
    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.detail or f"{message.verb} {message.target}: done", title=message.verb)
        if message.verb == "rmi":
            self.images_view.reload()
        else:
            self.containers_view.reload()
            self.history_view.reload()

    def on_action_failed(self, message: ActionFailed) -> None:
        hint = f"\nhint: {message.hint}" if message.hint else ""
        self.notify(f"{message.message}{hint}", title=f"{message.verb} {message.target} failed", severity="error",
                    timeout=10)

    def on_described(self, message: Described) -> None:
        self.push_screen(DescribeScreen(message.title, message.document))

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        view = self.views.get(event.pane.id or "")
        if view is not None:
            view.reload()
            view.focus_table()

    # -- keys --------------------------------------------------------------------------------------------------
    @property
    def active_tab(self) -> str:
        return self.screen_stack[0].query_one("#tabs", TabbedContent).active or "images"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.lab_error is not None and action == "show_tab":
            return False  # no tabs: the error stays on screen
        return not (action in ("show_tab", "help") and isinstance(self.screen, ModalScreen))

    def action_show_tab(self, tab: str) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.screen_stack[0].query_one("#tabs", TabbedContent).active = tab
        self.views[tab].focus_table()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen())


def main() -> int:
    """Run the TUI until `q`; the Lab is closed on the way out."""
    app = WasmlabApp()
    try:
        app.run()
    finally:
        app.close_lab()
    if app.lab_error is not None:
        raise app.lab_error  # the command line prints it again in one line once the screen is back
    return int(app.return_code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
