"""Signal forwarding for a foreground runtime: what it receives, its container receives (as runc run does)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH)


class Forwarder:
    """Armed before the container exists: a signal that comes before its target is known is passed on as
    soon as it is. With escalate, a second stop signal becomes SIGKILL (a Linux pid 1 ignores the signals
    it has no handler for, so the first may do nothing)."""

    def __init__(self, signals: Iterable[int] = FORWARDED, *, escalate: bool = False,
                 on_first_stop: Callable[[int], None] | None = None) -> None:
        self.escalate = escalate
        self.on_first_stop = on_first_stop  # called with the signal, once it has been passed on
        self.send: Callable[[int], None] | None = None
        self.pending: list[int] = []
        self.stops = 0
        self.busy = False
        self.previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}

    def _on_signal(self, signum: int, _frame: object) -> None:
        # A signal that comes while the previous one is being passed on (Python nests handlers) waits for it:
        # passing on takes the container's lock, which the interrupted handler may hold.
        if self.send is None or self.busy:
            self.pending.append(signum)
            return
        self.busy = True
        try:
            self._pass_on(signum)
            while self.pending:
                self._pass_on(self.pending.pop(0))
        finally:
            self.busy = False

    def _pass_on(self, signum: int) -> None:
        assert self.send is not None
        first = False
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.stops += 1
            first = self.stops == 1
            if self.escalate and self.stops > 1:
                signum = signal.SIGKILL
        self.send(signum)
        if first and self.on_first_stop is not None:
            self.on_first_stop(signum)

    def target(self, send: Callable[[int], None]) -> None:
        """From now on signals go to send(signum); the ones that came before go first."""
        self.busy = True
        self.send = send
        try:
            while self.pending:
                self._pass_on(self.pending.pop(0))
        finally:
            self.busy = False

    def close(self) -> None:
        """Put back the handlers there were before."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
