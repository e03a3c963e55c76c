"""Signal names and numbers as a learner types them, and wait statuses as real children end (no root)."""

from __future__ import annotations

import os
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wasmlab.runtime.errors import UsageError
from wasmlab.runtime.lifecycle import parse_signal
from wasmlab.runtime.store.state import decode_wait_status


@pytest.mark.parametrize(("text", "number"), [
    ("KILL", 9), ("kill", 9), ("SIGKILL", 9), ("sigterm", 15), (" TERM\n", 15), ("9", 9), ("15", 15),
    ("0", 0), ("HUP", 1), ("SIGUSR1", signal.SIGUSR1), ("RTMIN", signal.SIGRTMIN), ("64", 64), (9, 9),
])
def test_names_prefixes_and_numbers(text: str | int, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize(("text", "words"), [
    ("BOGUS", "unknown signal"), ("SIGBOGUS", "unknown signal"), ("", "unknown signal"), ("-9", "unknown signal"),
    ("SIG", "unknown signal"), ("9.0", "unknown signal"), ("²", "unknown signal"),
    ("99999", "no signal 99999"), ("65", "no signal 65"), (99999, "no signal 99999"), (-1, "unknown signal"),
])
def test_bad_signals_are_one_line_with_a_hint(text: str | int, words: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_signal(text)
    assert words in exc.value.message and "\n" not in exc.value.message
    assert "TERM" in exc.value.hint


@given(st.one_of(st.text(max_size=12), st.integers()))
def test_any_input_is_a_signal_number_or_a_usage_error(value: str | int) -> None:
    try:
        number = parse_signal(value)
    except UsageError:
        return
    assert 0 <= number <= signal.SIGRTMAX


def _child_status(body: str) -> int:
    """Fork a child that does BODY ('exit N' or 'signal N'), and return its raw wait status."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            verb, arg = body.split()
            if verb == "exit":
                os._exit(int(arg))
            if int(arg) != signal.SIGKILL:  # Python turns SIGINT into an exception; here the kernel must act
                signal.signal(int(arg), signal.SIG_DFL)
            os.write(ready_w, b"r")  # the parent kills once the child is ready (a handshake, not a sleep)
            while True:
                signal.pause()
        finally:
            os._exit(99)
    os.close(ready_w)
    try:
        if body.startswith("signal"):
            assert os.read(ready_r, 1) == b"r"
            os.kill(pid, int(body.split()[1]))
        return os.waitpid(pid, 0)[1]
    finally:
        os.close(ready_r)


@pytest.mark.parametrize(("body", "decoded"), [
    ("exit 0", (0, None)), ("exit 7", (7, None)), ("exit 137", (137, None)), ("exit 255", (255, None)),
    ("signal 9", (137, 9)), ("signal 15", (143, 15)), ("signal 2", (130, 2)),
])
def test_wait_status_of_real_children(body: str, decoded: tuple[int, int | None]) -> None:
    """exit(137) and a SIGKILL have one exit code and differ by the signal."""
    assert decode_wait_status(_child_status(body)) == decoded
