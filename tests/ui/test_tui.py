"""Pilot tests of the wasmlab TUI with the real runtime: tabs, filter, help, and run -> logs -> describe -> delete."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Static
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.lab.tui.screens.confirm import ConfirmScreen
from wasmlab.lab.tui.screens.describe import DescribeScreen
from wasmlab.lab.tui.screens.help import HelpScreen
from wasmlab.lab.tui.screens.logs import LogScreen
from wasmlab.lab.tui.widgets.chart import SeriesChart

from tests.conftest import hello_wasm, need_root, wait_gone

IMAGE = "localhost/hello:latest"
SIZE = (140, 40)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lab home holding one Wasm image built FROM scratch with the compat annotation."""
    from wasmlab.runtime import Lab

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WASMLAB_HOME", str(home))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.wasm").write_bytes(hello_wasm())
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY hello.wasm /hello.wasm\nCMD ["/hello.wasm"]\n')
    with Lab(home) as lab:
        lab.build(ctx, tag=IMAGE, annotations={"module.wasm.image/variant": "compat"})
    return home


async def wait_for(pilot: Pilot[object], condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def drive(app: WasmlabApp, scenario: Callable[[Pilot[object]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())


def zygotes() -> set[int]:
    """The runtime helper processes this test process started."""
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        if ppid == os.getpid() and b"wasmlab.runtime.zygote" in cmdline:
            out.add(int(name))
    return out


def assert_no_zygote_left() -> None:
    for pid in zygotes():
        try:
            wait_gone(pid, timeout=5)  # a pidfd says when it has ended
        except AssertionError:
            pass
    assert not zygotes(), "the TUI left the runtime helper running"


def test_images_tabs_filter_help(home: Path) -> None:
    app = WasmlabApp(refresh_interval=0.5, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        images = app.images_view
        await wait_for(pilot, lambda: images.loaded, "the images to load")
        rows = images.rows()
        assert len(rows) == 1
        assert rows[0][0] == IMAGE
        assert rows[0][2] == "wasm"
        assert app.active_tab == "images"
        assert str(images.query_one(".status-line", Static).content) == "1 image"  # not "1 images"

        await pilot.press("2")
        assert app.active_tab == "containers"
        await wait_for(pilot, lambda: app.containers_view.loaded, "the containers to load")
        assert app.containers_view.rows() == []
        await pilot.press("6")
        assert app.active_tab == "history"
        await wait_for(pilot, lambda: app.history_view.loaded, "the history to load")
        await pilot.press("5")
        await wait_for(pilot, lambda: app.metrics_view.loaded, "the charts to load")
        startup = app.metrics_view.query_one("#startup-chart", SeriesChart)
        assert startup.has_class("-empty") and "no points yet" in (startup.reason or "")  # no axis
        await pilot.click("#--content-tab-containers")  # the mouse works: a click on a tab opens it
        assert app.active_tab == "containers"
        await pilot.press("1")
        assert app.active_tab == "images"

        await pilot.press("slash", *"nomatch")
        await wait_for(pilot, lambda: images.rows() == [], "the filter to hide the image")
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(images.rows()) == 1, "esc to clear the filter")
        await pilot.press("slash", *"hello", "enter")
        assert len(images.rows()) == 1 and images.filter_text == "hello"
        await pilot.press("escape")
        assert images.filter_text == ""

        # Typed faster than focus moves: the keys after `/` are the filter's, not `r` (run) or `q` (quit).
        for key in ("slash", "r", "q", "2"):
            app.post_message(events.Key(key, "/" if key == "slash" else key))
        await wait_for(pilot, lambda: images.filter_text == "rq2", "the fast keys in the filter")
        assert app.is_running and app.active_tab == "images" and images.rows() == []
        await pilot.press("escape")
        await pilot.pause(0.5)
        assert app.lab.ps(all=True) == [], "`r` typed into the filter ran the image"

        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, DescribeScreen), "the image description")
        assert IMAGE in app.screen.text and "module.wasm.image/variant" in app.screen.text
        await pilot.press("escape")
        assert not isinstance(app.screen, DescribeScreen)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = {key for key, _, _ in app.screen.rows}
        # Generated from the bindings: every key of the table is there.
        assert {"?", ":", "/", "enter", "esc", "l", "d", "y", "s", "ctrl-k", "ctrl-d", "r", "b", "x", "p", "1-6",
                "q"} <= shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.pause(0.3)
        assert len(images.rows()) == 1, "saying no deleted the image"

        # A failing verb becomes an error notification with the service's message, not a crash.
        from wasmlab.lab.tui.screens.run import RunRequest

        app.start_run(RunRequest("localhost/nope:latest"))
        await wait_for(pilot, lambda: any(n.severity == "error" and "nope" in n.title for n in app._notifications),
                       "the error notification")

        await pilot.press("ctrl+d", "y")
        await wait_for(pilot, lambda: images.rows() == [], "the image to be deleted")
        assert app.lab.images() == []

        await pilot.press("q")

    drive(app, scenario)
    assert app.return_code == 0


def test_run_logs_describe_history_delete(home: Path) -> None:
    need_root()
    app = WasmlabApp(refresh_interval=0.5, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: app.images_view.loaded, "the images to load")
        await pilot.press("r")
        await pilot.press("enter")  # the run dialog, on the selected image: Run has the focus
        containers = app.containers_view

        def exited() -> list[str] | None:
            for row in containers.rows():
                if row[2] == IMAGE and row[3] in ("stopped", "exited") and row[4] == "0":
                    return row
            return None

        await pilot.press("2")  # a screen not on show is only marked stale: it reloads when shown
        assert app.active_tab == "containers"
        await wait_for(pilot, exited, "the container to exit with code 0")
        row = exited()
        assert row is not None and row[5] == "wasmtime"
        name, cid = row[0], row[1]

        await pilot.press("l")
        assert isinstance(app.screen, LogScreen)
        log = app.screen
        await wait_for(pilot, lambda: "hello from wasm" in log.text, "the output in the log view")
        await wait_for(pilot, lambda: log.ended is not None, "the end of the log")
        assert log.ended is not None and log.ended.exit_code == 0
        await pilot.press("escape")
        assert not isinstance(app.screen, LogScreen)

        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, DescribeScreen), "the container's JSON")
        assert cid in app.screen.text and '"exit_code": 0' in app.screen.text
        await pilot.press("escape")
        await pilot.press("d")  # describe: why this handler, step by step
        await wait_for(pilot, lambda: isinstance(app.screen, DescribeScreen), "the container description")
        assert "why this handler:" in app.screen.text and "=> wasmtime" in app.screen.text
        await pilot.press("escape")

        await pilot.press("6")
        history = app.history_view
        await wait_for(pilot, lambda: any(r[1] == name for r in history.rows()), "the run in the history")

        await pilot.press("2", "x")  # stopping an exited container is harmless
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: not any(r[1] == cid for r in containers.rows()), "the container to go")
        await pilot.press("q")

    drive(app, scenario)
    assert_no_zygote_left()


def test_live_event_refreshes_containers(home: Path) -> None:
    """A container started outside the TUI shows up through the runtime's events, without a refresh tick."""
    need_root()
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: app.containers_view.loaded, "the containers to load")
        await pilot.press("2")
        app.containers_view.reload()
        await pilot.pause(0.2)
        assert app.containers_view.rows() == []
        run = await asyncio.to_thread(app.lab.run, IMAGE, detach=True)
        await wait_for(pilot, lambda: any(r[0] == run.name and r[4] == "0" for r in app.containers_view.rows()),
                       "the exit event to refresh the table")
        await asyncio.to_thread(app.lab.rm, run.name, force=True)  # its cgroup goes with it

    drive(app, scenario)
    assert_no_zygote_left()


def test_delete_keeps_an_image_in_use(home: Path) -> None:
    """ctrl+d on an image a container was made from goes through the service's in-use rule (it used to
    remove the image from under the container): an error notification, and the image stays."""
    need_root()
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        images = app.images_view
        await wait_for(pilot, lambda: images.loaded and len(images.rows()) == 1, "the image to load")
        run = await asyncio.to_thread(app.lab.run, IMAGE, name="user", detach=True)
        try:
            await pilot.press("ctrl+d", "y")
            await wait_for(pilot, lambda: any(n.severity == "error" and "in use by container user" in n.message
                                              for n in app._notifications), "the in-use notification")
            assert [i.name for i in app.lab.images()] == [IMAGE]
        finally:
            await asyncio.to_thread(app.lab.rm, run.name, force=True)

    drive(app, scenario)
    assert_no_zygote_left()


def test_a_screen_switch_repaints_the_footer_line(home: Path) -> None:
    """The footer is one widget (no widget per key to mount on each switch), shows the keys of the screen on
    show, and a click on a key presses it."""
    from textual.widgets._footer import FooterKey
    from wasmlab.lab.tui.widgets.footer import KeysFooter

    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    def footer_line() -> str:
        return str(app.screen.query_one(KeysFooter).render())

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: app.images_view.loaded, "the images")
        await wait_for(pilot, lambda: "r Run" in footer_line(), "the Images keys in the footer")
        await pilot.press("2")
        await wait_for(pilot, lambda: "l Logs" in footer_line(), "the Containers keys in the footer")
        assert "r Run" not in footer_line() and "q Quit" in footer_line()
        assert not app.screen.query(FooterKey)  # Footer's widgets per key: mounted again on every switch
        assert app.screen.query_one(KeysFooter).size.height == 1
        at = footer_line().index("? Help")
        await pilot.click(KeysFooter, offset=(at, 0))
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "the help, from a click on `? Help`")

    drive(app, scenario)


def test_a_hidden_screen_is_reloaded_when_shown_not_before(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events mark the screens not on show stale (no service call, no table rebuilt for nobody); showing one
    reloads it; and runs started together are told in one notification."""
    need_root()
    import wasmlab.lab.tui.app as tui_app

    # The three runs start at once and are told together however slow the machine is: with two at once, the
    # third waits for a start to end, which under load can come after the half second the app groups by.
    monkeypatch.setattr(tui_app, "STARTS_AT_ONCE", 3)
    monkeypatch.setattr(tui_app, "TOLD_TOGETHER", 10.0)
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)
    reloads: list[str] = []

    async def scenario(pilot: Pilot[object]) -> None:
        from wasmlab.lab.tui.screens.run import RunRequest

        await wait_for(pilot, lambda: app.images_view.loaded and app.containers_view.loaded, "the screens")
        real = app.containers_view.reload
        app.containers_view.reload = lambda: (reloads.append("containers"), real())[1]  # type: ignore[method-assign]
        workers = [app.start_run(RunRequest(IMAGE, name=f"r{i}")) for i in range(3)]
        await wait_for(pilot, lambda: all(w.is_finished for w in workers), "the three runs")
        await wait_for(pilot, lambda: any("started 3 containers" in n.message for n in app._notifications),
                       "one notification for the three runs")
        assert not any("started container" in n.message for n in app._notifications)
        await wait_for(pilot, lambda: "containers" in app._stale, "the Containers screen marked stale")
        assert reloads == [] and app.containers_view.rows() == []  # hidden: not reloaded
        await pilot.press("2")
        await wait_for(pilot, lambda: {r[0] for r in app.containers_view.rows()} == {"r0", "r1", "r2"},
                       "the three containers, once the screen is shown")
        assert reloads == ["containers"]
        for name in ("r0", "r1", "r2"):
            await asyncio.to_thread(app.lab.rm, name, force=True)

    drive(app, scenario)
    assert_no_zygote_left()


def test_the_app_freezes_the_heap_it_starts_with(home: Path) -> None:
    """What the app made to start lives as long as it: the collector's full passes skip it (gc.freeze)."""
    import gc

    gc.unfreeze()
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: gc.get_freeze_count() > 0, "the heap to be frozen")
        await wait_for(pilot, lambda: app.image_names, "the images (before quitting: their rows are on the way)")

    try:
        drive(app, scenario)
    finally:
        gc.unfreeze()


def test_responsiveness_benchmark_reports_the_idle_floor(home: Path) -> None:
    """The benchmark (not a timed test: no figure is asserted) reports presses under load and idle, and the ratio."""
    need_root()
    from wasmlab.lab.tui import responsiveness
    from wasmlab.runtime import Lab

    with Lab(home) as lab:
        res = asyncio.run(responsiveness.drive(lab, IMAGE, containers=2, presses=3))
        assert not lab.ps(all=True)
    assert res["presses"] >= 3 and res["idle_presses"] >= 3 and res["failed_runs"] == 0
    assert res["p95_over_idle"] == round(res["p95_ms"] / res["idle_p95_ms"], 2)
    assert {"median_ms", "max_ms", "idle_median_ms", "start_all_s", "within_target"} <= set(res)


# -- the Pods screen's verbs: stop (stays stopped), start, restart, kill and delete, on a real pod -----------------

SLEEPER = """\
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  restartPolicy: Never
  containers:
  - name: polite
    image: wasmlab/busybox:latest
    command: ["/bin/sh", "-c", "trap 'exit 3' TERM; echo ready; sleep 3600 & wait"]
"""


@pytest.fixture
def pod_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lab home holding the busybox image, and a pod file whose one container leaves on SIGTERM with 3."""
    from wasmlab.runtime import Lab
    from wasmlab.runtime.images.samples import busybox_context

    need_root()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WASMLAB_HOME", str(home))
    ctx = tmp_path / "busybox"
    busybox_context(ctx)
    with Lab(home) as lab:
        lab.build(ctx, Path(__file__).parents[2] / "assets" / "containerfiles" / "busybox" / "Containerfile",
                  tag="wasmlab/busybox:latest")
    (tmp_path / "sleeper.yaml").write_text(SLEEPER)
    return home


def test_pod_verbs_from_the_pods_screen(pod_home: Path) -> None:
    """x stops the pod and it stays (Exited, its containers stopped), s starts it again, R restarts it, ctrl+k asks
    and then sends SIGKILL, ctrl+d asks and then removes it; each runs off the UI thread and ends in a
    notification and a refreshed row; an error (kill of a pod with nothing running) is one line."""
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)
    told: list[tuple[str, str, str]] = []
    notify = app.notify

    def recording(message: str, *, title: str = "", severity: str = "information", **kw: object) -> None:
        told.append((title, message, severity))
        notify(message, title=title, severity=severity, **kw)  # type: ignore[arg-type]

    app.notify = recording  # type: ignore[method-assign]

    def said(title: str, severity: str = "information") -> list[str]:
        return [m for t, m, s in told if t == title and s == severity]

    async def pod() -> object:
        [info] = await asyncio.to_thread(app.lab.pods)
        return info

    def readied(times: int) -> bool:
        """The handshake: the container said `ready` TIMES (its SIGTERM trap is set from then on)."""
        return sum(e.data.strip() == b"ready" for _, e in app.lab.pod_logs("sleeper")) >= times

    def status_shown() -> str:
        rows = app.pods_view.rows()
        return rows[0][1] if rows else ""

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: app.images_view.loaded, "the images")
        await asyncio.to_thread(app.lab.kube_play, pod_home.parent / "sleeper.yaml")
        await pilot.press("3")
        await wait_for(pilot, lambda: status_shown() == "Running", "the pod, running, on the Pods screen")
        await wait_for(pilot, lambda: readied(1), "the container's trap")
        first = await pod()
        polite = first.container("polite")  # type: ignore[attr-defined]
        assert polite.status == "running" and polite.pid > 0

        # x: pod stop. The pod stays, Exited; its containers (the infra one too) stopped, SIGTERM first.
        await pilot.press("x")
        await wait_for(pilot, lambda: said("pod stop"), "the stop to be told")
        assert said("pod stop") == ["stopping pod default/sleeper ...", "pod default/sleeper is Exited"]
        stopped = await pod()
        assert stopped.status == "Exited"  # type: ignore[attr-defined]
        assert {c.name: c.status for c in stopped.containers} == {"POD": "stopped", "polite": "stopped"}  # type: ignore[attr-defined]
        assert stopped.container("polite").exit_code == 3  # type: ignore[attr-defined]
        with pytest.raises(OSError):
            os.kill(polite.pid, 0)
        await wait_for(pilot, lambda: status_shown() == "Exited", "the row to show Exited")

        # ctrl+k on a stopped pod: asked, then the service's refusal as one line with its hint, no traceback.
        await pilot.press("ctrl+k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: said("pod kill default/sleeper failed", "error"), "the kill's refusal")
        [refusal] = said("pod kill default/sleeper failed", "error")
        assert refusal.splitlines() == ["pod default/sleeper has no running container to signal",
                                        "hint: `wasmlab pod start default/sleeper` starts it"]

        # s: pod start, the same containers running again.
        await pilot.press("s")
        await wait_for(pilot, lambda: said("pod start"), "the start to be told")
        assert said("pod start") == ["pod default/sleeper is Running"]
        started = await pod()
        assert started.status == "Running"  # type: ignore[attr-defined]
        assert {c.status for c in started.containers} == {"running"}  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: status_shown() == "Running", "the row to show Running")

        # R: pod restart, new processes.
        await wait_for(pilot, lambda: readied(2), "the started container's trap")
        before = started.container("polite").pid  # type: ignore[attr-defined]
        await pilot.press("R")
        await wait_for(pilot, lambda: len(said("pod restart")) == 2, "the restart to be told")
        restarted = await pod()
        assert restarted.status == "Running"  # type: ignore[attr-defined]
        after = restarted.container("polite")  # type: ignore[attr-defined]
        assert after.status == "running" and after.pid not in (0, before)

        # ctrl+k: asked first; no leaves it running; yes sends SIGKILL (restartPolicy Never: it stays dead).
        await pilot.press("ctrl+k")
        assert isinstance(app.screen, ConfirmScreen)
        assert "restartPolicy Never" in str(app.screen.question)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        os.kill(after.pid, 0)  # still there
        assert not said("pod kill")
        await pilot.press("ctrl+k", "y")
        await wait_for(pilot, lambda: said("pod kill"), "the kill to be told")
        killed = (await pod()).container("polite")  # type: ignore[attr-defined]
        assert killed.status == "stopped" and killed.exit_code == 137

        # ctrl+d: asked, then removed.
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: said("pod rm"), "the delete to be told")
        assert await asyncio.to_thread(app.lab.pods) == []
        await wait_for(pilot, lambda: app.pods_view.rows() == [], "the row to go")
        assert not [t for t, _, s in told if s == "error" and t != "pod kill default/sleeper failed"], told

    try:
        drive(app, scenario)
    finally:
        from wasmlab.runtime import Lab

        with Lab(pod_home) as lab:
            for left in lab.pods():
                lab.pod_rm(left.identity, force=True)
    assert_no_zygote_left()


def test_pod_keys_in_the_footer_and_the_help() -> None:
    """The Pods screen's footer shows x Stop and s Start (not Delete), and the help lists every pod verb's key."""
    from wasmlab.lab.tui.widgets.footer import KeysFooter

    from tests.ui.fixture_lab import FixtureLab

    app = WasmlabApp(FixtureLab(), refresh_interval=3600, offer_samples=False)  # type: ignore[arg-type]
    seen: dict[str, object] = {}

    async def scenario(pilot: Pilot[object]) -> None:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.pods_view.loaded, "the pods")
        await wait_for(pilot, lambda: "x Stop" in str(app.screen.query_one(KeysFooter).render()), "the pod keys")
        seen["footer"] = str(app.screen.query_one(KeysFooter).render())
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        seen["help"] = {(key, what) for key, where, what in app.screen.rows if "Pods" in where}

    drive(app, scenario)
    footer = str(seen["footer"])
    assert "x Stop" in footer and "s Start" in footer
    help_rows = dict(seen["help"])  # type: ignore[arg-type]
    assert help_rows["x"].startswith("pod stop:") and "stays (Exited)" in help_rows["x"]
    assert help_rows["s"].startswith("pod start:")
    assert help_rows["R"].startswith("pod restart:")
    assert help_rows["ctrl-k"].startswith("pod kill:") and "confirmation" in help_rows["ctrl-k"]
    assert help_rows["ctrl-d"].startswith("pod rm -f:") and "confirmation" in help_rows["ctrl-d"]
