"""Snapshots of each TUI screen at 80x24 and 160x48 (pytest-textual-snapshot). They use fixture data
(tests/ui/fixture_lab.py) and a frozen clock, because a snapshot needs fixed ids, names and ages; the functional
tests drive the real runtime. Update them with `pytest tests/ui/test_tui_snapshots.py --snapshot-update`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot
from wasmlab.lab import present
from wasmlab.lab.tui.app import WasmlabApp

from tests.ui.fixture_lab import FROZEN, FixtureLab
from tests.ui.test_tui import wait_for

SIZES = [(80, 24), (160, 48)]


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(present, "time", SimpleNamespace(time=lambda: FROZEN))


FIXED_ASSETS = Path("/tmp/wasmlab-snapshot-assets")  # the dialogs show absolute paths: one that is the same in
                                                     # every checkout (CI clones elsewhere), linked to this one's


@pytest.fixture(autouse=True)
def fixed_assets_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from wasmlab.lab.tui import catalog

    real = catalog.ASSETS
    if FIXED_ASSETS.is_symlink() and FIXED_ASSETS.resolve() != real:
        FIXED_ASSETS.unlink()
    if not FIXED_ASSETS.is_symlink():
        FIXED_ASSETS.symlink_to(real)
    monkeypatch.setattr(catalog, "ASSETS", FIXED_ASSETS)


def ready(*keys: str, loaded: str | None = None) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Wait for the screens' rows (fetched in workers), then press KEYS and wait for what they open."""
    async def run_before(pilot: Pilot[Any]) -> None:
        app: WasmlabApp = pilot.app  # type: ignore[assignment]
        await wait_for(pilot, lambda: app.images_view.loaded, "the images")
        for key in keys:
            await pilot.press(key)
        if loaded:
            view = app.views[loaded]
            await wait_for(pilot, lambda: view.loaded, f"the {loaded} screen")
        await pilot.pause(0.1)
    return run_before


SCREENS = {
    "images": ready(),
    "containers": ready("2", loaded="containers"),
    "pods": ready("3", loaded="pods"),
    "namespaces": ready("4", loaded="namespaces"),
    "metrics": ready("5", loaded="metrics"),
    "history": ready("6", loaded="history"),
    "help": ready("question_mark"),
    "run": ready("r"),
    "build": ready("b"),
    "play": ready("p"),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare: Any, screen: str, size: tuple[int, int]) -> None:
    app = WasmlabApp(FixtureLab(), refresh_interval=3600, offer_samples=False)  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=size, run_before=SCREENS[screen])
