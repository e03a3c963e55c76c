"""WASMLAB_WARM as `run` reads it (issue 16, helper `warmfix`): seconds, the default, off, or a one-line refusal."""

from __future__ import annotations

import pytest
from wasmlab.lab.cli.warm import DEFAULT_IDLE, asks_for_help, idle_setting
from wasmlab.runtime.errors import UsageError


@pytest.mark.parametrize("text,idle", [("", DEFAULT_IDLE), ("  ", DEFAULT_IDLE), ("0", None), ("off", None),
                                       ("No", None), ("false", None), ("0.0", None), ("2.5", 2.5), (" 60 ", 60.0)])
def test_what_warm_takes(text: str, idle: float | None) -> None:
    assert idle_setting(text) == idle


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "5s", "on"])
def test_what_warm_refuses(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        idle_setting(text)
    assert caught.value.message.startswith(f"WASMLAB_WARM={text!r}") and "WASMLAB_WARM=0" in caught.value.hint


@pytest.mark.parametrize("argv,help_", [(["run", "--help"], True), (["run", "-h"], True),
                                        (["--debug", "run", "--rm", "-h", "img"], True),
                                        (["run", "--rm", "img", "--", "sh", "--help"], False),
                                        (["run", "--rm", "img"], False)])
def test_which_runs_only_ask_for_help(argv: list[str], help_: bool) -> None:
    assert asks_for_help(argv) is help_
