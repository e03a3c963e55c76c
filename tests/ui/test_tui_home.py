"""The TUI with a bad WASMLAB_HOME: it shows the one-line error (the History tab too) instead of crashing."""

from __future__ import annotations

import asyncio

import pytest
from textual.pilot import Pilot
from textual.widgets import Static
from wasmlab.lab.tui import app as tui
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.runtime.errors import HomeError


@pytest.mark.parametrize(("home", "says"), [
    ("/etc/passwd", "WASMLAB_HOME /etc/passwd exists and is not a folder"),
    ("/proc/wasmlab", "WASMLAB_HOME /proc/wasmlab is under /proc"),
])
def test_tui_shows_a_bad_home_in_one_line_on_every_tab(home: str, says: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMLAB_HOME", home)
    app = WasmlabApp(refresh_interval=0.05, offer_samples=False)
    assert isinstance(app.lab_error, HomeError)

    async def scenario() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            error = app.query_one("#lab-error", Static)
            for key in ("1", "2", "3", "question_mark", "escape", "3"):
                await pilot.press(key)
                await pilot.pause()
                text = str(error.render())
                assert text.startswith(f"Error: {says}") and "\n" not in text and "hint: " in text
                assert app.is_running and app.return_code is None
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(scenario())


def test_tui_main_hands_the_error_to_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wasmlab` with no verb: the app runs (headless here), then main() raises the error for the CLI to print."""
    monkeypatch.setenv("WASMLAB_HOME", "/etc/passwd")
    shown: list[str] = []
    real_run = WasmlabApp.run

    async def look_and_quit(pilot: Pilot[int]) -> None:
        shown.append(str(pilot.app.query_one("#lab-error", Static).render()))
        await pilot.press("q")

    def run_headless(self: WasmlabApp) -> int | None:  # the same app loop, without a terminal
        return real_run(self, headless=True, auto_pilot=look_and_quit)

    monkeypatch.setattr(WasmlabApp, "run", run_headless)
    with pytest.raises(HomeError, match="/etc/passwd exists and is not a folder"):
        tui.main()
    assert len(shown) == 1 and shown[0].startswith("Error: WASMLAB_HOME /etc/passwd exists and is not a folder")
