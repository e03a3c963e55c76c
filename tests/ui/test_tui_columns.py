"""The tables' columns at 80x24 and 160x48 (issue 14: "nothing important is cut"), on the snapshots' fixture data
(tests/ui/fixture_lab.py): fixed rows, so the test can name what each width must keep."""

from __future__ import annotations

import asyncio
from typing import Any

from wasmlab.lab import present
from wasmlab.lab.tui.app import WasmlabApp

from tests.ui.fixture_lab import FixtureLab
from tests.ui.test_tui import wait_for


def shown(size: tuple[int, int], key: str, tab: str) -> tuple[list[str], list[list[str]]]:
    """The column labels and the cells (as drawn) of TAB's table at SIZE."""
    out: dict[str, Any] = {}

    async def main() -> None:
        app = WasmlabApp(FixtureLab(), refresh_interval=3600, offer_samples=False)  # type: ignore[arg-type]
        async with app.run_test(size=size) as pilot:
            await pilot.press(key)
            view = app.views[tab]
            await wait_for(pilot, lambda: view.loaded, f"the {tab} rows")
            table = view.table
            out["labels"] = [str(c.label) for c in table.ordered_columns]
            out["rows"] = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
            app.exit(0)

    asyncio.run(main())
    return out["labels"], out["rows"]


def test_history_keeps_create_exited_and_memory_at_80x24() -> None:
    labels, rows = shown((80, 24), "6", "history")
    for kept in ("NAME", "ENGINE", "CODE", "CREATE", "EXITED", "CG PEAK", "GUEST", "INIT RSS"):
        assert kept in labels, f"{kept} is hidden at 80x24: {labels}"
    assert rows[0][labels.index("EXITED")] == "103.8"  # exit_ms of the newest fixture run (34.6 x 3)
    # Memory in MiB, as `wasmlab history` and the bench (it said 1.1 MB): 1 MiB + 2 x 64 KiB, 3 x 4 KiB, 1400 KiB.
    assert [rows[0][labels.index(k)] for k in ("CG PEAK", "GUEST", "INIT RSS")] == ["1.1 MiB", "12.0 KiB", "1.4 MiB"]
    labels, rows = shown((160, 48), "6", "history")
    # The same columns as `wasmlab history`: CODE is the exit code, EXITED the moment of the exit (it was "EXIT"
    # beside "TOTAL"), and START is known for every engine.
    assert labels == ["WHEN", "NAME", "IMAGE", "ENGINE", "CODE", "CREATE", "START", "1ST B", "EXITED", "CG PEAK",
                      "GUEST", "INIT RSS", "CACHE"]
    assert rows[0][labels.index("START")] == "38.1"


def test_containers_show_the_pod_when_there_is_room() -> None:
    labels, rows = shown((160, 48), "2", "containers")
    assert labels[-1] == "POD"
    pods = {r[0]: r[-1] for r in rows}
    assert pods["web"] == "-"
    assert pods["default_mixed-compat-smart_app"] == present.middle("default/mixed-compat-smart", 20)
    labels, rows = shown((80, 24), "2", "containers")
    assert "POD" not in labels  # the lowest priority: the first to go
    # A name too long for 80 columns is cut in its middle: its end (the pod's container) still shows.
    name = next(r[0] for r in rows if r[0].startswith("default_"))
    assert name.endswith("smart_app") and "…" in name


def test_middle_cut() -> None:
    assert present.middle("default_mixed-compat_sidecar", 16) == "default…_sidecar"
    assert len(present.middle("default_mixed-compat_sidecar", 16)) == 16
    assert present.middle("short", 16) == "short"
