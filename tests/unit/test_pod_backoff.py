"""The pod keeper's rules without processes: restartPolicy against exit codes, the kubelet's back-off schedule with
an injected clock (0, 10, 20, 40 ... 300, reset after 10 minutes of running), and its lab setting."""

from __future__ import annotations

import pytest
from wasmlab.runtime.errors import UsageError
from wasmlab.runtime.pods.keeper import BackOff, backoff_base, should_restart


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crash_loop(backoff: BackOff, clock: Clock, crashes: int, ran: float = 0.0) -> list[float]:
    """A container that exits RAN seconds after each (re)start: the wait before each restart."""
    waits = []
    for _ in range(crashes):
        clock.now += ran
        finished = clock.now
        until = backoff.wait_until("app", finished)
        waits.append(0.0 if until is None else round(until - finished, 6))
        if until is not None:
            clock.now = until + 0.001  # the keeper's poll timeout ends 1 ms after it
            assert backoff.wait_until("app", finished) is None  # and then it is out of its back-off
        backoff.restarted("app", finished)
    return waits


def test_the_kubelet_schedule_first_restart_at_once_then_10_doubling_capped_at_300() -> None:
    clock = Clock()
    assert crash_loop(BackOff(10, clock=clock), clock, 10) == [0, 10, 20, 40, 80, 160, 300, 300, 300, 300]


def test_ten_minutes_of_running_fine_resets_the_back_off() -> None:
    clock = Clock()
    backoff = BackOff(10, clock=clock)
    assert crash_loop(backoff, clock, 5) == [0, 10, 20, 40, 80]
    # The wait counts from the exit, however long it ran; 600 s (twice the cap) after its last restart is still
    # the same entry (the kubelet's test is "more than"), so the delay goes on doubling, capped.
    assert crash_loop(backoff, clock, 1, ran=600) == [160]
    assert crash_loop(backoff, clock, 1) == [300]
    assert crash_loop(backoff, clock, 1, ran=601) == [0]   # over 10 minutes fine: a fresh entry, restarted at once
    assert crash_loop(backoff, clock, 3) == [10, 20, 40]


def test_the_base_scales_the_cap_and_the_reset() -> None:
    clock = Clock()
    backoff = BackOff(0.2, clock=clock)
    assert backoff.cap == pytest.approx(6.0)
    assert crash_loop(backoff, clock, 8) == pytest.approx([0, 0.2, 0.4, 0.8, 1.6, 3.2, 6.0, 6.0])


@pytest.mark.parametrize(("policy", "code", "restarts"), [
    ("Always", 0, True), ("Always", 1, True), ("Always", None, True),
    ("OnFailure", 0, False), ("OnFailure", 1, True), ("OnFailure", 137, True), ("OnFailure", None, True),
    ("Never", 0, False), ("Never", 1, False),
])
def test_restart_policy_against_the_exit_code(policy: str, code: int | None, restarts: bool) -> None:
    assert should_restart(policy, code) is restarts


def test_the_back_off_base_is_a_lab_setting_refused_in_one_line_when_bad() -> None:
    assert backoff_base({}) == 10.0
    assert backoff_base({"WASMLAB_POD_BACKOFF_BASE": "0.2"}) == 0.2
    for bad in ("soon", "0", "-1", "nan", "1e9"):
        with pytest.raises(UsageError) as caught:
            backoff_base({"WASMLAB_POD_BACKOFF_BASE": bad})
        assert caught.value.message == f"WASMLAB_POD_BACKOFF_BASE={bad!r} is not a back-off in seconds"
