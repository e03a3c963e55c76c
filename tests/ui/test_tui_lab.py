"""Pilot tests of the seed scenario in the TUI, with the real runtime: build the seed image in the build dialog,
run it on both engines from the run dialog, play the mixed pod in compat and compat-smart, read a pod container's
logs, and read the namespace matrix; and the first start on an empty lab building the samples."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.lab.tui.screens.build import BuildScreen
from wasmlab.lab.tui.screens.logs import LogScreen
from wasmlab.lab.tui.screens.play import PlayScreen
from wasmlab.lab.tui.screens.pods import PodContainersView, PodScreen
from wasmlab.lab.tui.screens.run import RunScreen
from wasmlab.lab.tui.screens.samples import SamplesScreen
from wasmlab.lab.tui.widgets.chart import SeriesChart

from tests.conftest import need_root
from tests.ui.test_tui import assert_no_zygote_left, wait_for

SIZE = (100, 30)


@pytest.fixture
def samples_home(lab_home: Path) -> Path:
    from wasmlab.runtime import Lab

    with Lab(lab_home) as lab:
        lab.samples()
    return lab_home


def drive(app: WasmlabApp, scenario, size: tuple[int, int] = SIZE) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)
            await pilot.press("q")

    asyncio.run(main())


def test_first_start_offers_the_samples(lab_home: Path) -> None:
    app = WasmlabApp(refresh_interval=3600)

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, SamplesScreen), "the offer to build the samples")
        offer = app.screen
        await pilot.press("y")
        await wait_for(pilot, lambda: not isinstance(app.screen, SamplesScreen), "the samples to be built", 60)
        assert offer.done
        await wait_for(pilot, lambda: any(r[0] == "localhost/wasmlab/hello:compat" for r in app.images_view.rows()),
                       "the samples in the Images screen")

    drive(app, scenario)


def test_build_the_seed_image_with_two_names(lab_home: Path) -> None:
    """The build dialog's first recipe is the seed's Containerfile, tagged mywasm-image; a second name for the
    same image gets its own row (the seed's mywasm-image used to go missing)."""
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        await pilot.press("b")
        assert isinstance(app.screen, BuildScreen)
        dialog = app.screen
        await wait_for(pilot, lambda: dialog.query_one("#tag", Input).value == "mywasm-image", "the seed recipe")
        assert dialog.query_one("#variant", Select).value == "compat"
        await pilot.click("#build")
        await wait_for(pilot, lambda: dialog.built is not None or dialog.error is not None, "the build", 60)
        assert dialog.error is None and dialog.built is not None and "mywasm-image" in dialog.built
        await pilot.press("escape")
        app.lab.tag("mywasm-image", "myrepo/mywasmimage:latest")  # the seed pod's name for it
        app.images_view.reload()
        await wait_for(pilot, lambda: len(app.images_view.rows()) == 2, "both names of the image")
        names = sorted(r[0] for r in app.images_view.rows())
        assert names == ["localhost/myrepo/mywasmimage:latest", "localhost/mywasm-image:latest"]
        assert {r[2] for r in app.images_view.rows()} == {"wasm"}

        # A build error shows inline, in one line, and the dialog stays.
        await pilot.press("b")
        dialog = app.screen
        assert isinstance(dialog, BuildScreen)
        dialog.query_one("#containerfile", Input).value = "/nonexistent/Containerfile"
        dialog.query_one("#context", Input).value = "/nonexistent"
        await pilot.click("#build")
        await wait_for(pilot, lambda: dialog.error is not None, "the build error")
        assert isinstance(app.screen, BuildScreen) and "\n" not in (dialog.error or "")
        await pilot.press("escape")

    drive(app, scenario)


# Each dialog's Tab order: every field, then its buttons (issue 14: Tab never left the first field of a dialog).
TAB_ORDERS = {
    "b": ["recipe", "containerfile", "context", "tag", "variant", "platform", "build", "cancel"],
    "r": ["image", "engine", "args", "annotations", "env", "memory", "name", "detach", "run", "cancel"],
    "p": ["presets", "file", "propagation", "allowlist", "play", "cancel"],
}


def test_dialogs_are_driven_by_the_keyboard(lab_home: Path) -> None:
    """Tab and shift+Tab go through every field and button of the build, run and play dialogs, text typed lands
    in the focused field, Enter in a text field submits and Esc cancels; at 160x48 as the new user had it."""
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        for key, order in TAB_ORDERS.items():
            await pilot.press(key)
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, (BuildScreen, RunScreen, PlayScreen))
            assert app.focused is not None and app.focused.id == order[0]
            seen = [order[0]]
            for _ in order[1:]:
                await pilot.press("tab")
                seen.append(app.focused.id if app.focused is not None else "")
            assert seen == order
            await pilot.press("tab")  # round again
            assert app.focused is not None and app.focused.id == order[0]
            await pilot.press("shift+tab")
            assert app.focused is not None and app.focused.id == order[-1]
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, (BuildScreen, RunScreen, PlayScreen)), f"esc left {key}'s dialog up"
        # Text typed after three Tabs lands in the build dialog's Tag field.
        await pilot.press("b", "tab", "tab", "tab", "ctrl+u", *"typed-tag")
        assert app.screen.query_one("#tag", Input).value == "typed-tag"
        await pilot.press("escape")
        # Enter in a run dialog's text field runs: the dialog goes and the run is on its way.
        await pilot.press("r", *"no-such-image", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, RunScreen)
        await wait_for(pilot, lambda: any("no-such-image" in n.title for n in app._notifications
                                          if n.severity == "error"), "the run's one-line error")

    drive(app, scenario, size=(160, 48))


def test_build_the_seed_image_with_keys_only(lab_home: Path) -> None:
    """b, Tab to the Tag, a new tag, Enter: the seed image is built; then Tab to the Build button and Enter
    builds it again. No click and no field set by code."""
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        await pilot.press("b")
        dialog = app.screen
        assert isinstance(dialog, BuildScreen)
        await wait_for(pilot, lambda: dialog.query_one("#tag", Input).value == "mywasm-image", "the seed recipe")
        await pilot.press("tab", "tab", "tab", "ctrl+u", *"keys-image", "enter")
        await wait_for(pilot, lambda: dialog.built is not None or dialog.error is not None, "the build", 60)
        assert dialog.error is None and "keys-image" in (dialog.built or "")
        await pilot.press("tab", "tab", "tab")  # the variant, the platform, the Build button
        assert app.focused is not None and app.focused.id == "build"
        dialog.built = None
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.built is not None or dialog.error is not None, "the rebuild", 60)
        assert dialog.error is None and "keys-image" in (dialog.built or "")
        await pilot.press("escape")
        await wait_for(pilot, lambda: any("keys-image" in r[0] for r in app.images_view.rows()), "the image row")

    drive(app, scenario, size=(160, 48))


def test_run_on_both_engines_and_read_the_logs(samples_home: Path) -> None:
    need_root()
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: app.images_view.loaded, "the images")
        for engine in ("wasmtime", "wasmer"):
            app.run_command(":run localhost/wasmlab/hello:compat")
            await pilot.pause()
            assert isinstance(app.screen, RunScreen)
            app.screen.query_one("#engine", Select).value = engine
            app.screen.query_one("#name", Input).value = f"hello-{engine}"
            app.screen.query_one("#memory", Input).value = "64m"
            app.screen.query_one("#env", Input).value = "GREETING=hi"
            await pilot.click("#run")
        await pilot.press("2")
        rows = app.containers_view.rows
        for engine in ("wasmtime", "wasmer"):
            await wait_for(pilot, lambda e=engine: any(r[0] == f"hello-{e}" and r[4] == "0" and r[5] == e  # type: ignore[misc]
                                                        for r in rows()), f"the run on {engine}", 60)
        # The dialog's memory limit and environment reached the container's config.
        import json

        details = await asyncio.to_thread(app.lab.inspect, "hello-wasmtime")
        config = json.loads((Path(details.bundle) / "config.json").read_text())
        assert config["linux"]["resources"]["memory"]["limit"] == 64 * 1024 * 1024
        assert "GREETING=hi" in config["process"]["env"]
        # A failing run: a notification with the tail of its stderr.
        app.run_command("run localhost/wasmlab/trap:compat")
        await pilot.pause()
        await pilot.click("#run")
        await wait_for(pilot, lambda: any(n.severity == "error" and "exited with code" in n.title
                                          for n in app._notifications), "the failure notification", 60)
        # Logs, followed to the end.
        table = app.containers_view.table
        table.move_cursor(row=next(i for i, r in enumerate(rows()) if r[0] == "hello-wasmer"))
        await pilot.press("enter")
        assert isinstance(app.screen, LogScreen)
        log = app.screen
        await wait_for(pilot, lambda: log.ended is not None and "hello" in log.text, "the logs")
        await pilot.press("escape")
        # The Metrics screen: startup per engine from the history, and a running container in the live charts.
        await asyncio.to_thread(app.lab.run, "localhost/wasmlab/loop:compat", name="ticker", detach=True)
        await pilot.press("5")
        metrics = app.metrics_view
        startup = metrics.query_one("#startup-chart", SeriesChart)
        await wait_for(pilot, lambda: {"wasmtime", "wasmer"} <= {s.label for s in startup.series}, "the startup chart")
        cpu = metrics.query_one("#cpu-chart", SeriesChart)
        await wait_for(pilot, lambda: "ticker" in {s.label for s in cpu.series}, "the live CPU chart", 30)
        await pilot.press("1")
        await wait_for(pilot, lambda: metrics._stream is None, "the stream to stop off the Metrics screen")
        for info in await asyncio.to_thread(app.lab.ps, all=True):
            await asyncio.to_thread(app.lab.rm, info.id, force=True)

    drive(app, scenario)
    assert_no_zygote_left()


def play(app: WasmlabApp, preset: str) -> None:
    screen = app.screen
    assert isinstance(screen, PlayScreen)
    options = screen.query_one("#presets", OptionList)
    options.highlighted = options.get_option_index(preset)


def test_mixed_pod_both_variants_and_the_namespace_matrix(samples_home: Path) -> None:
    need_root()
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        try:
            await pods(pilot)
        finally:
            for pod in await asyncio.to_thread(app.lab.pods):
                await asyncio.to_thread(app.lab.pod_rm, pod.identity, force=True)
            for c in await asyncio.to_thread(app.lab.ps, all=True):
                await asyncio.to_thread(app.lab.rm, c.id, force=True)

    async def pods(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: app.images_view.loaded, "the images")
        # compat: the annotation reaches the busybox sidecar, whose ELF entrypoint cannot run as Wasm: the play
        # fails as a whole, and the notification says why in one line, with the fix.
        await pilot.press("p")
        play(app, "mixed-compat")
        await pilot.pause()
        await pilot.click("#play")
        await wait_for(pilot, lambda: any(n.severity == "error" and "compat-smart" in n.message
                                          for n in app._notifications), "the compat pod's error", 60)
        # compat-smart: only the Wasm entrypoint goes to a Wasm engine; the sidecar runs natively.
        await pilot.press("p")
        play(app, "mixed-compat-smart")
        await pilot.pause()
        await pilot.click("#play")
        await wait_for(pilot, lambda: any(r[0] == "default/mixed-compat-smart" for r in app.pods_view.rows()),
                       "the compat-smart pod", 60)
        assert app.active_tab == "pods"
        assert not any(r[0] == "default/mixed-compat" for r in app.pods_view.rows())

        def handlers(pod: str) -> dict[str, tuple[str, str]]:
            info = app.lab.pod_inspect(pod)
            return {c.name: (c.handler or "", c.status) for c in info.containers}

        smart = await asyncio.to_thread(handlers, "mixed-compat-smart")
        assert smart["sidecar"][0] == "native" and smart["app"][0] in ("wasmtime", "wasmer")

        # Drill into the compat-smart pod and read the app's logs.
        table = app.pods_view.table
        table.move_cursor(row=next(i for i, r in enumerate(app.pods_view.rows()) if r[0].endswith("smart")))
        await pilot.press("enter")
        assert isinstance(app.screen, PodScreen)
        inner = app.screen.query_one(PodContainersView)
        await wait_for(pilot, lambda: {r[0] for r in inner.rows()} >= {"app", "sidecar"}, "the pod's containers")
        inner.table.move_cursor(row=next(i for i, r in enumerate(inner.rows()) if r[0] == "app"))
        await pilot.press("l")
        assert isinstance(app.screen, LogScreen)
        log = app.screen
        await wait_for(pilot, lambda: "hello" in log.text, "the app's output")
        await pilot.press("escape", "escape")

        # The namespace matrix: the sidecar shares the pod's net namespace (highlighted), and a cell opens details.
        await pilot.press("4")
        ns = app.namespaces_view
        await wait_for(pilot, lambda: any(r[0] == "mixed-compat-smart/sidecar" for r in ns.rows()),
                       "the sidecar in the namespace matrix")
        row = next(r for r in ns.rows() if r[0] == "mixed-compat-smart/sidecar")
        assert row[3] == "pod"  # NET
        ns.open_details("default/mixed-compat-smart/sidecar", "net")
        from wasmlab.lab.tui.screens.describe import DescribeScreen

        await wait_for(pilot, lambda: isinstance(app.screen, DescribeScreen), "the cell's details")
        assert "namespace: net" in app.screen.text and "shared: sandbox" in app.screen.text
        assert "WASI view" not in app.screen.text  # a Linux sidecar
        await pilot.press("escape")

        # A running Wasm container's cell: the WASI view comes from the service (Lab.inspect_ns): its engine,
        # module, preopens with their modes and host folders, and the module's declared memory.
        await asyncio.to_thread(app.lab.run, "wasmlab/loop:compat", ["/loop.wasm", "0", "200"], name="ticker",
                                detach=True)
        await wait_for(pilot, lambda: any(r[0] == "ticker" for r in ns.rows()), "the Wasm container in the matrix")
        ns.open_details("ticker", "pid")
        await wait_for(pilot, lambda: isinstance(app.screen, DescribeScreen), "the Wasm container's details")
        text = app.screen.text
        assert "WASI view:" in text and "module: /loop.wasm" in text and "initial_pages:" in text, text
        assert "mode: rw" in text and "guest: /" in text and "rootfs" in text, text  # the root, from the host
        await pilot.press("escape")

    drive(app, scenario)
    assert_no_zygote_left()


def test_the_issue_presets_are_offered() -> None:
    """The play dialog's presets: hello-wasm, the mixed pod both ways, the containerd allowlist pitfall (played
    with its own allowlist, as the file's comment says) and the handler face-off."""
    from wasmlab.lab.tui import catalog

    presets = {p.name: p for p in catalog.presets()}
    assert {"hello-wasm", "mixed-compat", "mixed-compat-smart", "containerd-allowlist",
            "handler-faceoff"} <= set(presets)
    pitfall = presets["containerd-allowlist"]
    assert (pitfall.propagation, pitfall.pod_annotations) == ("containerd", "module.wasm.image/variant.*")
    assert presets["mixed-compat"].propagation == "crio"
    recipes = catalog.recipes()
    assert recipes[0].tag == "mywasm-image" and recipes[0].variant == "compat"
    assert {r.variant for r in recipes} == {"compat", "compat-smart", "none"}


def test_handler_faceoff_preset(samples_home: Path) -> None:
    """The face-off preset runs the same program on wasmtime, wasmer and natively, one pod each (its args used to
    replace the image's CMD, leaving "200000" as the entrypoint)."""
    need_root()
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        try:
            await wait_for(pilot, lambda: app.images_view.loaded, "the images")
            await pilot.press("p")
            play(app, "handler-faceoff")
            await pilot.pause()
            await pilot.click("#play")
            await wait_for(pilot, lambda: len(app.pods_view.rows()) == 3, "the three pods", 90)
            assert {r[0]: r[3] for r in app.pods_view.rows()} == {
                "faceoff/faceoff-wasmtime": "wasmtime", "faceoff/faceoff-wasmer": "wasmer",
                "faceoff/faceoff-native": "native"}

            def exits() -> set[int | None]:
                return {c.exit_code for p in app.lab.pods() for c in p.containers if c.role == "container"}

            for pod in ("faceoff-wasmtime", "faceoff-wasmer", "faceoff-native"):
                info = await asyncio.to_thread(app.lab.pod_inspect, f"faceoff/{pod}")
                cpu = info.container("cpu")
                await asyncio.to_thread(app.lab.wait, cpu.id, 60)
            assert await asyncio.to_thread(exits) == {0}
        finally:
            for pod in await asyncio.to_thread(app.lab.pods):
                await asyncio.to_thread(app.lab.pod_rm, pod.identity, force=True)

    drive(app, scenario)
    assert_no_zygote_left()
