"""The play dialog's presets (issue 14): each description is shown whole (the highlighted preset's comment,
wrapped, under the list; the list's own line is a whole first sentence), and mixed-compat comes before
mixed-compat-smart."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.widgets import OptionList, Static
from wasmlab.lab.tui import catalog
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.lab.tui.screens.play import PlayScreen

from tests.ui.fixture_lab import FixtureLab


def comment_words(name: str) -> list[str]:
    """Every word of a preset file's opening comment."""
    text = (catalog.ASSETS / "pods" / f"{name}.yaml").read_text()
    lines = [line[1:] for line in text.splitlines()]
    opening = lines[:next(i for i, line in enumerate(text.splitlines()) if not line.startswith("#"))]
    return " ".join(opening).split()


def test_presets_are_whole_and_in_order() -> None:
    presets = catalog.presets()
    names = [p.name for p in presets]
    assert names.index("mixed-compat") < names.index("mixed-compat-smart")
    for p in presets:
        assert p.about.split() == comment_words(p.name), p.name  # nothing of the comment left out
        assert p.about.startswith(p.summary) and p.summary.endswith("."), p.summary  # a whole sentence
    pitfall = next(p for p in presets if p.name == "containerd-allowlist")
    assert "\nwasmlab kube play --propagation containerd" in pitfall.about  # the command on its own line
    assert pitfall.summary == "The containerd allowlist pitfall."


def test_the_dialog_shows_the_highlighted_preset_whole() -> None:
    app = WasmlabApp(FixtureLab(), refresh_interval=3600, offer_samples=False)  # type: ignore[arg-type]
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("p")
            await pilot.pause()
            assert isinstance(app.screen, PlayScreen)
            options = app.screen.query_one("#presets", OptionList)
            seen["order"] = [options.get_option_at_index(i).id for i in range(options.option_count)]
            options.highlighted = options.get_option_index("containerd-allowlist")
            await pilot.pause()
            seen["about"] = str(app.screen.query_one("#preset-about", Static).render())
            app.exit(0)

    asyncio.run(main())
    assert seen["order"].index("mixed-compat") == seen["order"].index("mixed-compat-smart") - 1
    assert "with the seed's own allowlist:" in seen["about"]
    assert seen["about"].split() == comment_words("containerd-allowlist")
