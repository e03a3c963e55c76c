"""A stop signal that lands just as a work or staging folder is claimed leaves no folder behind (store/work.py).

The signal is sent at the exact moment `claim` returns (a profile hook: deterministic, no timing), which is
where `wasmlab load` interrupted by SIGINT left its staging folder behind once in a loaded CI run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from wasmlab.runtime.images.work import Work
from wasmlab.runtime.store.layout import ImageStore


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def interrupted_as_claim_returns(action: Callable[[], object]) -> None:
    """Run ACTION; SIGINT is sent to this (the main) thread the moment store.work.claim returns. To this thread:
    sent to the process, another thread (a leftover of an earlier test) might take it, and Python would then run
    the handler whenever that thread got to it (the bystander tests below)."""
    interrupted_through(lambda: signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT),
                        "claim", "return", action)


def test_a_transaction_interrupted_as_it_claims_its_staging_leaves_none(tmp_path: Path, sigint_raises: None) -> None:
    store = ImageStore(tmp_path / "images")
    interrupted_as_claim_returns(lambda: store.transaction().__enter__())
    assert os.listdir(store.staging_dir) == []
    with store.transaction():  # and the writers lock was let go: the next one goes on
        pass


def test_a_work_folder_interrupted_as_it_is_claimed_is_removed_on_close(tmp_path: Path, sigint_raises: None) -> None:
    store = ImageStore(tmp_path / "images")

    def use() -> None:
        with Work(store, "load") as work:
            work.path  # noqa: B018 - claims it

    interrupted_as_claim_returns(use)
    assert os.listdir(store.work_dir) == []



@pytest.fixture
def bystander() -> Iterator[Callable[[], None]]:
    """A thread that does not block stop signals, and a function that sends it SIGINT and returns once the signal
    has been taken (Python's C-level handler has run: it writes to the wakeup fd). The kernel may hand a signal
    sent to the process to such a thread; Python then runs the handler in the main thread."""
    parked = threading.Event()
    thread = threading.Thread(target=parked.wait, daemon=True)
    thread.start()
    r, w = os.pipe()
    os.set_blocking(w, False)
    old = signal.set_wakeup_fd(w)

    def interrupt() -> None:
        assert thread.ident is not None
        signal.pthread_kill(thread.ident, signal.SIGINT)
        assert os.read(r, 1) == bytes([signal.SIGINT])

    try:
        yield interrupt
    finally:
        signal.set_wakeup_fd(old)
        parked.set()
        thread.join()
        os.close(r)
        os.close(w)


def interrupted_through(interrupt: Callable[[], None], function: str, event: str,
                        action: Callable[[], object]) -> None:
    """Run ACTION; INTERRUPT is called at EVENT ('call' or 'return') of the first FUNCTION of store.work."""

    def hook(frame: FrameType, what: str, arg: Any) -> None:
        if what == event and frame.f_code.co_name == function and frame.f_globals["__name__"].endswith(
                "store.work"):
            sys.setprofile(None)
            interrupt()

    sys.setprofile(hook)
    try:
        with pytest.raises(KeyboardInterrupt):
            action()
    finally:
        sys.setprofile(None)


def use_work(store: ImageStore) -> None:
    with Work(store, "load") as work:
        work.path  # noqa: B018 - claims it


def test_a_stop_signal_another_thread_takes_still_waits_for_the_claim(
        tmp_path: Path, sigint_raises: None, bystander: Callable[[], None]) -> None:
    store = ImageStore(tmp_path / "images")
    interrupted_through(bystander, "claim", "return", lambda: use_work(store))
    assert os.listdir(store.work_dir) == []


def test_a_stop_signal_during_the_cleanup_waits_for_it(
        tmp_path: Path, sigint_raises: None, bystander: Callable[[], None]) -> None:
    store = ImageStore(tmp_path / "images")
    interrupted_through(bystander, "remove_writable", "call", lambda: use_work(store))
    assert os.listdir(store.work_dir) == []
