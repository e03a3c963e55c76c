"""A pod drilled into (issue 14), on the snapshots' fixture pod (tests/ui/fixture_lab.py: fixed names and ids):
the lab names are shown whole, `s` opens a shell in a Linux container of the pod or says why not, the logs are
titled by name, and a describe shows moments as a date and an age."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from textual.widgets import Static
from wasmlab.lab import present
from wasmlab.lab.tui.app import WasmlabApp
from wasmlab.lab.tui.screens.describe import DescribeScreen
from wasmlab.lab.tui.screens.logs import LogScreen
from wasmlab.lab.tui.screens.pods import PodContainersView, PodScreen

from tests.ui.fixture_lab import FixtureLab
from tests.ui.test_tui import wait_for


def test_pod_drill_in() -> None:
    app = WasmlabApp(FixtureLab(), refresh_interval=3600, offer_samples=False)  # type: ignore[arg-type]
    shells: list[tuple[str, str]] = []
    # The shell itself takes the terminal (tested for real in test_tui_tmux.py); here, which container it is for.
    app.shell = lambda cid, name: shells.append((cid, name))  # type: ignore[method-assign]
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("3")
            await wait_for(pilot, lambda: app.pods_view.loaded, "the pods")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PodScreen), "the pod screen")
            view = app.screen.query_one(PodContainersView)
            await wait_for(pilot, lambda: view.loaded, "the pod's containers")
            table = view.table
            labels = [str(c.label) for c in table.ordered_columns]
            seen["lab names"] = [str(table.get_row_at(i)[labels.index("LAB NAME")]) for i in range(table.row_count)]
            seen["name width"] = table.ordered_columns[labels.index("NAME")].width
            seen["footer"] = {k for k, b in app.screen.active_bindings.items() if b.binding.show}
            # s on the Wasm app: why not, and which container would do.
            table.move_cursor(row=1)
            await pilot.press("s")
            await wait_for(pilot, lambda: any(n.title == "shell" for n in app._notifications), "the shell's word")
            seen["s on app"] = next(n.message for n in app._notifications if n.title == "shell")
            # s on the busybox sidecar: a shell in it.
            table.move_cursor(row=2)
            await pilot.press("s")
            seen["shells"] = list(shells)
            # l: the logs, titled by the lab name.
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, LogScreen), "the logs")
            seen["logs title"] = str(app.screen.query_one(".screen-title", Static).render())
            app.exit(0)

    asyncio.run(main())
    assert seen["lab names"] == ["mixed-compat-smart-infra", "mixed-compat-smart-app", "mixed-compat-smart-sidecar"]
    assert seen["name width"] <= 14  # the short Kubernetes name no longer takes the spare room
    assert {"l", "d", "s"} <= seen["footer"]
    assert "app runs on wasmtime" in seen["s on app"] and "sidecar" in seen["s on app"]
    assert seen["shells"] == [("a1a2a3a4a5a6", "mixed-compat-smart-sidecar")]
    assert seen["logs title"] == "logs of mixed-compat-smart-sidecar (a1a2a3a4a5a6)"


def test_describe_shows_moments_as_date_and_age() -> None:
    created = time.time() - 3 * 3600
    document = {"name": "x", "created": created, "state": {"created": "2026-12-01T10:00:00Z", "pid": 7}}
    shown = present.dated(document)
    assert shown["created"] == f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(created))} (3 hours ago)"
    assert shown["state"]["pid"] == 7 and shown["state"]["created"].endswith(" ago)")
    text = DescribeScreen("container x", document).text
    assert "(3 hours ago)" in text and str(created) not in text
    assert str(created) in DescribeScreen("container x", document, raw=True).text  # the JSON stays raw
