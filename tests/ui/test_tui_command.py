"""Pilot tests of the `:` command bar (issue 14): it always takes the keys typed after `:` (even before the
focus reaches it), tab completes, enter runs, esc closes it and gives the keys back to the table."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual import events
from textual.pilot import Pilot
from textual.widgets import DataTable
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.lab.tui.screens.play import PlayScreen
from wasmlab.lab.tui.screens.run import RunScreen
from wasmlab.lab.tui.widgets.command import CommandBar, completion

from tests.ui.test_tui import wait_for


def drive(app: WasmlabApp, scenario, size: tuple[int, int] = (160, 48)) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            # A bound on the whole scenario: the old bar made two tables take the focus in turn, for ever.
            await asyncio.wait_for(scenario(pilot), 60)
            app.exit(0)

    asyncio.run(main())


def test_completion_takes_the_first_command_the_text_starts() -> None:
    commands = ["images", "image", "pods", "pod", "po", "play", "run ", "run localhost/hello:latest"]
    assert completion("po", commands) == "pods"
    assert completion("IM", commands) == "images"
    assert completion("pl", commands) == "play"
    assert completion("run l", commands) == "run localhost/hello:latest"
    assert completion("zz", commands) == "zz"
    assert completion("", commands) == ""


def test_the_command_bar_has_the_keys_from_colon_to_enter_or_esc(lab_home: Path) -> None:
    app = WasmlabApp(refresh_interval=3600, offer_samples=False)

    async def scenario(pilot: Pilot[object]) -> None:
        bar = app.query_one("#command", CommandBar)

        async def table_has_focus() -> None:
            await wait_for(pilot, lambda: isinstance(app.focused, DataTable) and app.focused.has_focus,
                           "the table to have the focus")
            view = app.views[app.active_tab]
            assert app.focused is view.table

        # :pods, enter: the Pods screen, and its table has the keys.
        await pilot.press(":", *"pods", "enter")
        assert app.active_tab == "pods" and not bar.is_open
        await table_has_focus()
        # `:` then `po` typed at once (all queued before the focus moves): both letters are the bar's, and
        # `p` does not open the play dialog. Tab completes `po` to `pods`.
        for key, char in (("colon", ":"), ("p", "p"), ("o", "o")):
            app.post_message(events.Key(key, char))

        await wait_for(pilot, lambda: bar.value == "po", "po in the bar")
        assert not isinstance(app.screen, PlayScreen)
        await pilot.press("tab")
        assert bar.value == "pods" and bar.is_open
        # Esc closes the bar and gives the keys back to the table.
        await pilot.press("escape")
        assert not bar.is_open
        await table_has_focus()
        # `:im`, tab, enter: the Images screen (not a describe of the row under the cursor).
        for key, char in (("colon", ":"), ("i", "i"), ("m", "m"), ("tab", None), ("enter", None)):
            app.post_message(events.Key(key, char))
        await wait_for(pilot, lambda: app.active_tab == "images" and not bar.is_open, "the Images screen")
        assert len(app.screen_stack) == 1
        await table_has_focus()
        # Many times in a row, the same.
        for tab, typed in (("pods", "po"), ("namespaces", "ns"), ("history", "hi"), ("containers", "ps")):
            await pilot.press(":", *typed, "tab", "enter")
            assert app.active_tab == tab and not bar.is_open
            await table_has_focus()
        # :run opens the run dialog; esc there, and the table has the keys again.
        await pilot.press(":", *"run", "enter")
        assert isinstance(app.screen, RunScreen)
        await pilot.press("escape")
        assert len(app.screen_stack) == 1 and not bar.is_open
        await table_has_focus()

    drive(app, scenario)
