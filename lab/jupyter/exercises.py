"""The notebooks' exercise checks: each prints "pass" or "not yet" (with a hint) and never raises, so an unsolved
notebook still runs top to bottom."""

from __future__ import annotations

from collections.abc import Callable

PASS = "pass"
NOT_YET = "not yet"


def check(label: str, test: Callable[[], object], hint: str = "") -> None:
    """Run TEST (a function, so that an unsolved exercise's NameError or None is caught here); print one line.
    Returns nothing, so that the printed line is a check cell's only output (a bool would show as Out[n])."""
    try:
        ok = bool(test())
    except Exception:  # an unsolved exercise: a name still None, a wrong type, a failed run
        ok = False
    print(f"{PASS}: {label}" if ok else f"{NOT_YET}: {label}" + (f" (hint: {hint})" if hint else ""))
