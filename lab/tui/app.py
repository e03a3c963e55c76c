"""The wasmlab Textual app: six screens over the Lab service (images, containers, pods, namespaces, metrics,
history), k9s keys, a `:` command mode, and every service call in a thread worker."""

from __future__ import annotations

import gc
import shlex
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Header, Input, Static, TabbedContent, TabPane
from wasmlab.lab.tui.messages import (
    ActionDone,
    ActionFailed,
    Described,
    ImagesCounted,
    PlayEnded,
    RunStarted,
    RuntimeEvent,
    error_parts,
)
from wasmlab.lab.tui.screens.containers import ContainersView, stderr_tail
from wasmlab.lab.tui.screens.describe import DescribeScreen
from wasmlab.lab.tui.screens.help import HelpScreen, binding_rows
from wasmlab.lab.tui.screens.history import HistoryView
from wasmlab.lab.tui.screens.images import ImagesView
from wasmlab.lab.tui.screens.metrics import MetricsView
from wasmlab.lab.tui.screens.namespaces import NamespacesView
from wasmlab.lab.tui.screens.pods import PodContainersView, PodsView
from wasmlab.lab.tui.widgets.command import CommandBar
from wasmlab.lab.tui.widgets.footer import KeysFooter
from wasmlab.lab.tui.widgets.table import ResourceView
from wasmlab.runtime import ContainerCreated, ContainerExited, ContainerStarted, ImageBuilt, ImageRemoved, RunRecorded
from wasmlab.runtime.errors import WasmlabError

if TYPE_CHECKING:
    from wasmlab.lab.tui.screens.play import Playing, PlayRequest
    from wasmlab.lab.tui.screens.run import RunRequest
    from wasmlab.runtime import Lab, LabEvent

# The screens, in the order of their number keys: (id, tab label, what `:` also accepts).
TABS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("images", "Images", ("images", "image", "img")),
    ("containers", "Containers", ("containers", "ps", "co")),
    ("pods", "Pods", ("pods", "pod", "po")),
    ("namespaces", "Namespaces", ("ns", "namespaces")),
    ("metrics", "Metrics", ("metrics", "charts")),
    ("history", "History", ("history", "runs")),
)
COMMANDS = [alias for _, _, aliases in TABS for alias in aliases] + ["run ", "build", "play", "samples", "help",
                                                                        "quit"]
# The Lab's events that change what each screen shows.
RELOAD_CONTAINERS = (ContainerCreated, ContainerStarted, ContainerExited)
RELOAD_IMAGES = (ImageBuilt, ImageRemoved)
STARTS_AT_ONCE = 2  # run workers in Lab.run at once; the others wait (blocked, not competing for the GIL)
DEBOUNCE = 0.2  # at most five reloads a second per screen, however many containers start
ROLLBACK_SIGNAL = 9  # a failed play's rollback removes its pods' containers with SIGKILL (exit code 137)
TOLD_TOGETHER = 0.5  # runs that start within this many seconds of the first are told in one notification


class WasmlabApp(App[int]):
    """A thin face: every service call runs in a thread worker and comes back as a dataclass message."""

    CSS_PATH = "app.tcss"
    TITLE = "wasmlab"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", tooltip="quit (the containers keep running)"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this help"),
        Binding("colon", "command", "Cmd", key_display=":",
                tooltip="command mode, tab completes: :pods :images :ns :metrics :run IMAGE :build :play"),
        Binding("slash", "filter", "Filter", key_display="/", show=False,
                tooltip="filter the rows (enter keeps the filter, esc clears it)"),
        *(Binding(str(n), f"show_tab('{tab}')", label, show=False) for n, (tab, label, _) in enumerate(TABS, 1)),
        Binding("r", "run_dialog", "Run", show=False,
                tooltip="run dialog: image, engine, annotations, command, env, memory, detach"),
        Binding("b", "build", "Build", tooltip="build dialog: a Containerfile of assets/ or a path, tag, variant"),
        Binding("p", "play", "Play", tooltip="play a pod: a preset of assets/pods or a YAML file"),
        Binding("escape", "back", "Back", show=False, tooltip="go back: close a screen or a dialog"),
    ]

    def __init__(self, lab: Lab | None = None, *, refresh_interval: float = 2.0, offer_samples: bool = True) -> None:
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
        self.offer_samples = offer_samples
        self.images_view = ImagesView(id="images-view")
        self.containers_view = ContainersView(id="containers-view")
        self.pods_view = PodsView(id="pods-view")
        self.namespaces_view = NamespacesView(id="namespaces-view")
        self.metrics_view = MetricsView(id="metrics-view")
        self.history_view = HistoryView(id="history-view")
        self.views: dict[str, Any] = {"images": self.images_view, "containers": self.containers_view,
                                      "pods": self.pods_view, "namespaces": self.namespaces_view,
                                      "metrics": self.metrics_view, "history": self.history_view}
        self._unsubscribe: Callable[[], Any] | None = None
        self._pending: set[str] = set()
        # Screens not on show whose rows may have changed: reloaded when shown, not while hidden (a hidden
        # screen's reload is a service call and a table rebuilt for nobody, on the loop that draws the keys).
        self._stale: set[str] = set()
        self._reloaded_at: dict[str, float] = {}
        self._started: list[str] = []  # containers started since the last "started" notification
        self._playing: list[Playing] = []  # plays in flight (their containers' failures wait for their end)
        # Per pod verb in flight (by its target): the containers whose exit it causes (pod stop's SIGTERM, pod
        # kill's SIGKILL): asked for, so no failure to tell.
        self._asked_exits: dict[str, set[str]] = {}
        self._starting = threading.BoundedSemaphore(STARTS_AT_ONCE)
        self.image_names: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        if self.lab_error is not None:
            yield Static(f"Error: {self.lab_error.one_line()}", id="lab-error")
            yield KeysFooter()
            return
        with TabbedContent(initial="images", id="tabs"):
            for n, (tab, label, _) in enumerate(TABS, 1):
                with TabPane(f"{n} {label}", id=tab):
                    yield self.views[tab]
        yield CommandBar(COMMANDS, id="command",
                         placeholder=":pods :images :ns :metrics :run IMAGE :build :play  (tab completes, esc leaves)")
        yield KeysFooter(compact=True)

    def on_mount(self) -> None:
        if self.lab_error is not None:
            self.sub_title = "no lab home"
            return
        self.sub_title = str(self.lab.home)
        self._unsubscribe = self.lab.subscribe(self._lab_event)
        self.set_interval(self.refresh_interval, self._tick)
        self.call_after_refresh(self.settle_heap)

    @staticmethod
    def settle_heap() -> None:
        """Once the screens are up: what exists now (modules, widgets, the Lab) lives as long as the app, so the
        collector's full passes stop walking it (they took 80-130 ms here, a key press stuck behind each)."""
        gc.collect()
        gc.freeze()

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
            self.reload_soon("containers", "pods", "namespaces")
        if isinstance(event, RELOAD_IMAGES):
            self.reload_soon("images")
        if isinstance(event, RunRecorded):
            self.reload_soon("history", "metrics")
        elif isinstance(event, ContainerExited):
            self.set_timer(0.3, lambda: self.reload_soon("history", "metrics"))
        if isinstance(event, ContainerExited) and event.exit_code not in (0, None):
            asked = next((t for t, ids in self._asked_exits.items() if event.id in ids), None)
            if asked is not None:  # the user stopped or killed it: once, not a failure
                self._asked_exits[asked].discard(event.id)
                if not self._asked_exits[asked]:
                    del self._asked_exits[asked]
                return
            playing = next((p for p in self._playing if p.owns(event.name)), None)
            if playing is not None:  # told when its play is over, unless the play's rollback caused it
                playing.held.append((event.id, event.name, event.exit_code, event.signal))
            else:
                self.tell_failure(event.id, event.name, event.exit_code)

    def on_play_ended(self, message: PlayEnded) -> None:
        """A failed play rolled its pods back: the kills of their containers are its doing, and its own error is
        the one shown; any other failure of theirs is told now."""
        playing = message.playing
        if playing in self._playing:
            self._playing.remove(playing)
        for cid, name, code, signal in playing.held:
            if message.failed and (signal == ROLLBACK_SIGNAL or code == 128 + ROLLBACK_SIGNAL):
                continue
            self.tell_failure(cid, name, code)

    def reload_soon(self, *tabs: str) -> None:
        """Reload the screen on show once, DEBOUNCE from now, if it is one of TABS (a burst of events costs one
        service call); the others are marked stale and reload when shown. A pod's screen on top reloads too."""
        shown = self.active_tab if self.lab_error is None else ""
        self._stale.update(t for t in tabs if t != shown)
        fresh = [t for t in tabs if t == shown and t not in self._pending]
        on_top = len(self.screen_stack) > 1 and "pods" in tabs and "pod-screen" not in self._pending
        if not fresh and not on_top:
            return
        self._pending.update(fresh)
        if on_top:
            self._pending.add("pod-screen")

        def go() -> None:
            for tab in fresh:
                self._pending.discard(tab)
                self.reload_view(tab)
            if on_top:
                self._pending.discard("pod-screen")
                for screen in self.screen_stack[1:]:
                    for view in screen.query(PodContainersView):
                        view.reload()

        self.set_timer(DEBOUNCE, go)

    def reload_view(self, tab: str) -> None:
        self._stale.discard(tab)
        self._reloaded_at[tab] = time.monotonic()
        self.views[tab].reload()

    @work(thread=True, group="failure")
    def tell_failure(self, cid: str, name: str, code: int) -> None:
        """A container that failed: a notification with the tail of its stderr."""
        try:
            tail = stderr_tail(self.lab, cid, 3)
        except Exception:
            tail = []
        text = "\n".join(tail) or "(nothing on stderr)"
        self.call_from_thread(self.notify, text, title=f"{name or cid} exited with code {code}", severity="error",
                              timeout=10)

    def _tick(self) -> None:
        if len(self.screen_stack) == 1 and self.active_tab not in ("metrics",):
            self.reload_view(self.active_tab)

    # -- the workers every screen uses ---------------------------------------------------------------------------
    @work(thread=True, group="verbs")
    def act(self, verb: str, target: str, call: Callable[[], str]) -> None:
        """Run a verb of the service in a thread; its answer (or its error, in one line) as a notification."""
        try:
            detail = call()
        except Exception as exc:
            self.post_message(ActionFailed(verb, target, *error_parts(exc)))
            return
        self.post_message(ActionDone(verb, target, detail))

    @work(thread=True, group="describe")
    def describe(self, title: str, fetch: Callable[[], dict[str, Any]], *, raw: bool = False) -> None:
        try:
            document = fetch()
        except Exception as exc:
            self.post_message(ActionFailed("describe", title, *error_parts(exc)))
            return
        self.post_message(Described(title, document, raw=raw))

    def act_ending(self, verb: str, target: str, call: Callable[[], str], exits: Collection[str]) -> None:
        """act, for a verb that ends containers on purpose (pod stop, kill, rm): the exit of each of EXITS, with
        whatever code, is not told as a failure. Each is forgotten once its exit is seen, however late it comes
        (a kill's exits arrive after its answer), never after a time."""
        self._asked_exits.setdefault(target, set()).update(exits)
        self.act(verb, target, call)

    def confirm(self, question: str, verb: str, target: str, call: Callable[[], str],
                exits: Collection[str] = ()) -> None:
        """Ask QUESTION; on yes, act (EXITS: the containers the verb ends on purpose, see act_ending)."""
        from wasmlab.lab.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.act_ending(verb, target, call, exits)

        self.push_screen(ConfirmScreen(question), answered)

    def show_logs(self, container: str, name: str) -> None:
        from wasmlab.lab.tui.screens.logs import LogScreen

        self.push_screen(LogScreen(container, name))

    def shell(self, container: str, name: str) -> None:
        """`exec -it sh` in a Linux container: the screen steps aside while the shell has the terminal."""
        try:
            with self.suspend():
                code = self.lab.exec(container, ["sh"], tty=True)
        except Exception as exc:
            self.post_message(ActionFailed("shell", name, *error_parts(exc)))
            return
        self.notify(f"the shell in {name} exited with code {code}", title="shell")

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.detail or f"{message.verb} {message.target}: done", title=message.verb)
        self.reload_soon("images" if message.verb == "rmi" else "containers", "pods", "namespaces", "history")

    def on_run_started(self, message: RunStarted) -> None:
        """Runs started close together are told in one notification (20 toasts are 20 layouts, and unreadable)."""
        if not self._started:
            self.set_timer(TOLD_TOGETHER, self._tell_started)
        self._started.append(message.name)
        self.reload_soon("containers", "pods", "namespaces", "history")

    def _tell_started(self) -> None:
        names, self._started = self._started, []
        if len(names) == 1:
            text = f"started container {names[0]} (2: Containers)"
        else:
            listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            text = f"started {len(names)} containers: {listed} (2: Containers)"
        self.notify(text, title="run")

    def on_action_failed(self, message: ActionFailed) -> None:
        hint = f"\nhint: {message.hint}" if message.hint else ""
        self.notify(f"{message.message}{hint}", title=f"{message.verb} {message.target} failed", severity="error",
                    timeout=10)

    def on_described(self, message: Described) -> None:
        self.push_screen(DescribeScreen(message.title, message.document, raw=message.raw))

    def on_images_counted(self, message: ImagesCounted) -> None:
        if message.count == 0 and self.offer_samples:
            self.offer_samples = False  # once per start
            from wasmlab.lab.tui.screens.samples import SamplesScreen

            self.push_screen(SamplesScreen())
        try:
            rows = self.images_view.rows()
        except NoMatches:  # the app is closing: its screens are being taken down
            return
        self.image_names = [name for row in rows for name in row[:1]]

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        view = self.views.get(tab)
        self.metrics_view.live(tab == "metrics")
        if view is not None:
            view.focus_table()
            # After the switch is on screen (a key press shows at once), and only if its rows may have changed.
            if tab in self._stale or time.monotonic() - self._reloaded_at.get(tab, 0.0) > self.refresh_interval:
                self.reload_soon(tab)

    # -- keys --------------------------------------------------------------------------------------------------
    @property
    def active_tab(self) -> str:
        return self.screen_stack[0].query_one("#tabs", TabbedContent).active or "images"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.lab_error is not None and action not in ("quit", "help", "back"):
            return False  # no tabs: the error stays on screen
        # A dialog has the keys: typing a tag with a `q` in it must not quit. Only this app's own letters step
        # aside; Textual's (tab and shift+tab through the fields) must keep working in a dialog.
        if action.split("(", 1)[0] in OWN_ACTIONS:
            return not isinstance(self.screen, ModalScreen)
        return True

    def action_show_tab(self, tab: str) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.screen_stack[0].query_one("#tabs", TabbedContent).active = tab
        self.views[tab].focus_table()

    def action_filter(self) -> None:
        view = self.views[self.active_tab]
        if isinstance(view, ResourceView) and len(self.screen_stack) == 1:
            view.action_filter()

    def help_rows(self) -> list[tuple[str, str, str]]:
        from wasmlab.lab.tui.screens.confirm import ConfirmScreen
        from wasmlab.lab.tui.screens.logs import LogScreen

        sources: list[tuple[str, Any]] = [("anywhere", self.BINDINGS), ("tables", ResourceView.BINDINGS)]
        for tab, label, _ in TABS:
            own = getattr(type(self.views[tab]), "BINDINGS", [])
            if own is not ResourceView.BINDINGS:
                sources.append((label, own))
        sources += [("Pod", PodContainersView.BINDINGS), ("Logs", LogScreen.BINDINGS),
                    ("Confirm", ConfirmScreen.BINDINGS)]
        rows = binding_rows(sources)
        rows.insert(3, ("1-6", "anywhere", "screens: " + ", ".join(label for _, label, _ in TABS)))
        rows.insert(4, ("enter", "tables", "go in: describe, logs, drill into a pod, a namespace's details"))
        return [r for r in rows if not r[0].isdigit()]

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen(self.help_rows()))

    # -- command mode ------------------------------------------------------------------------------------------
    def action_command(self) -> None:
        self.query_one("#command", CommandBar).open([f"run {n}" for n in self.image_names])

    @on(Input.Submitted, "#command")
    def _command(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#command", CommandBar).close()
        # The command first: a screen switch focuses its own table, and the focus then goes to that one only (a
        # second focus on the old tab's table made TabbedContent switch back, and the two tables took turns).
        self.run_command(event.value)
        self.close_command()

    @on(CommandBar.Closed)
    def close_command(self) -> None:
        self.query_one("#command", CommandBar).close()
        view = self.views.get(self.active_tab)
        if view is not None:
            view.focus_table()

    def on_key(self, event: events.Key) -> None:
        """From `:` on, the keys are the bar's, also those that arrive before the focus does (typed fast after
        the `:`, they would otherwise run the table's keys: `p` opened the play dialog)."""
        if self.lab_error is not None or len(self.screen_stack) > 1:
            return
        bar = self.query_one("#command", CommandBar)
        if bar.is_open and self.focused is not bar and bar.take_key(event.key, event.character):
            event.stop()
            event.prevent_default()

    def run_command(self, text: str) -> None:
        """`:pods`, `:images`, `:ns`, `:metrics`, `:run IMAGE`, `:build`, `:play`, `:samples`, `:help`, `:q`."""
        words = shlex.split(text.strip().lstrip(":")) if text.strip() else []
        if not words:
            return
        verb, rest = words[0].lower(), words[1:]
        for tab, _, aliases in TABS:
            if verb in aliases:
                self.action_show_tab(tab)
                return
        if verb == "run":
            self.action_run_dialog(rest[0] if rest else None)
        elif verb == "build":
            self.action_build()
        elif verb == "play":
            self.action_play()
        elif verb == "samples":
            from wasmlab.lab.tui.screens.samples import SamplesScreen

            self.push_screen(SamplesScreen())
        elif verb == "help":
            self.action_help()
        elif verb in ("q", "quit"):
            self.exit(0)
        else:
            self.notify(f"no command {verb!r}", title=":", severity="warning")

    # -- dialogs -----------------------------------------------------------------------------------------------
    def action_run_dialog(self, image: str | None = None) -> None:
        from wasmlab.lab.tui.screens.run import RunScreen

        if image is None and self.active_tab == "images" and len(self.screen_stack) == 1:
            image = self.images_view.selected_ref
        self.push_screen(RunScreen(image or "", self.image_names), self._run_requested)

    def _run_requested(self, request: RunRequest | None) -> None:
        if request is not None:
            self.notify(f"running {request.image} ...", title="run")
            self.start_run(request)

    @work(thread=True, group="run")
    def start_run(self, request: RunRequest) -> None:
        from wasmlab.runtime import RunOptions

        try:
            with self._starting:  # a few at a time: each start is Python work that holds the GIL
                run = self.lab.run(request.image, request.command or None, name=request.name, detach=True,
                                   annotations=request.annotations, env=request.env, engine=request.engine,
                                   options=RunOptions(memory=request.memory))
        except Exception as exc:
            self.post_message(ActionFailed("run", request.image, *error_parts(exc)))
            return
        self.post_message(RunStarted(run.id, run.name))
        if not request.detach:
            self.call_from_thread(self.show_logs, run.id, run.name)

    def action_build(self) -> None:
        from wasmlab.lab.tui.screens.build import BuildScreen

        self.push_screen(BuildScreen())

    def action_play(self) -> None:
        from wasmlab.lab.tui.screens.play import PlayScreen

        self.push_screen(PlayScreen(), self._play_requested)

    def _play_requested(self, request: PlayRequest | None) -> None:
        if request is not None:
            from wasmlab.lab.tui.screens.play import Playing, pod_prefixes

            self.notify(f"playing {request.file} ...", title="play")
            playing = Playing(request.file, pod_prefixes(request.file))
            self._playing.append(playing)
            self.play(request, playing)
            self.action_show_tab("pods")

    @work(thread=True, group="verbs")
    def play(self, request: PlayRequest, playing: Playing) -> None:
        """kube play in a thread: its pods' states (or its error) as a notification, then PlayEnded (the exits
        of its containers were posted before it, on the same queue)."""
        try:
            result = self.lab.kube_play(request.file, propagation=request.propagation,
                                        pod_annotations=request.pod_annotations)
        except Exception as exc:
            self.post_message(ActionFailed("play", request.file, *error_parts(exc)))
            self.post_message(PlayEnded(playing, failed=True))
            return
        said = [f"pod {p.identity}: {p.status}" for p in result.pods] + result.warnings
        self.post_message(ActionDone("play", request.file, "\n".join(said)))
        self.post_message(PlayEnded(playing, failed=False))


# The actions of the app's own keys (and the palette's): a dialog on top takes these keys for itself.
OWN_ACTIONS = frozenset(b.action.split("(", 1)[0] for b in WasmlabApp.BINDINGS if isinstance(b, Binding)) | {
    "command_palette"}


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
