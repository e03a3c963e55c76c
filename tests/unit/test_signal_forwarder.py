"""The foreground runtime's signal forwarder: a signal that comes while one is being passed on waits for it."""

from __future__ import annotations

import os
import signal

from wasmlab.runtime.signals import Forwarder


def test_a_signal_during_passing_on_is_not_nested() -> None:
    """Passing on takes the container's lock (a flock): a nested second pass from the same process would wait
    on it forever. The second Ctrl-C, typed while the first is passed on, is passed on after it, as SIGKILL."""
    calls: list[tuple[int, bool]] = []
    inside = [False]

    def send(signum: int) -> None:
        calls.append((signum, inside[0]))
        if len(calls) == 1:
            inside[0] = True
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C arrives now, while this one is passed on
            inside[0] = False

    fw = Forwarder((signal.SIGINT,), escalate=True)
    try:
        fw.target(send)
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        fw.close()
    assert calls == [(signal.SIGINT, False), (signal.SIGKILL, False)]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
