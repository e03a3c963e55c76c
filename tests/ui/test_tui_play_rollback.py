"""A failed play's rollback (issue 14), with the real runtime: mixed-compat fails by design (its busybox sidecar
cannot run as Wasm), the play removes the pod's containers with SIGKILL, and only the play's own error is told;
the kill of the pod's sandbox (exit 137) used to be told as a failure of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.lab.tui.screens.play import Playing, PlayScreen, pod_prefixes

from tests.conftest import need_root
from tests.ui.test_tui import assert_no_zygote_left, wait_for


@pytest.fixture
def samples_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from wasmlab.runtime import Lab

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WASMLAB_HOME", str(home))
    with Lab(home) as lab:
        lab.samples()
    return home


def test_pod_prefixes_of_a_file(tmp_path: Path) -> None:
    yaml_file = tmp_path / "pods.yaml"
    yaml_file.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n"
                         "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: lab}\n")
    assert pod_prefixes(str(yaml_file)) == ("default_a_", "lab_b_")
    assert pod_prefixes(str(tmp_path / "missing.yaml")) == ()
    playing = Playing(str(yaml_file), ("default_a_",))
    assert playing.owns("default_a_POD") and not playing.owns("default_ab_POD") and not playing.owns("web")


def test_a_rolled_back_play_tells_only_its_own_error(samples_home: Path) -> None:
    need_root()
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        await wait_for(pilot, lambda: app.images_view.loaded, "the images")
        await pilot.press("p")
        assert isinstance(app.screen, PlayScreen)
        options = app.screen.query_one("#presets", OptionList)
        options.highlighted = options.get_option_index("mixed-compat")
        await pilot.pause()
        await pilot.click("#play")
        await wait_for(pilot, lambda: any(n.title.startswith("play ") and n.severity == "error"
                                          for n in app._notifications), "the play's error", 60)
        # The play is over and every failure worker it could have started has ended: what is told is final.
        await wait_for(pilot, lambda: not app._playing and not [w for w in app.workers if w.group == "failure"
                                                                 and not w.is_finished], "the failures told")
        errors = [f"{n.title}: {n.message}" for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and "sidecar" in errors[0], errors
        assert not [e for e in errors if "exited with code" in e], errors
        app.exit(0)

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            try:
                await scenario(pilot)
            finally:
                for c in await asyncio.to_thread(app.lab.ps, all=True):
                    await asyncio.to_thread(app.lab.rm, c.id, force=True)

    asyncio.run(main())
    assert_no_zygote_left()
