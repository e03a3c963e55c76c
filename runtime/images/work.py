"""A build's or a load's work in progress: its folder in the lab home, the RUN containers it started, and a clean stop
on SIGINT, SIGTERM and SIGHUP.

Work folders live in the image store's ``.wasmlab/work`` (under the lab home, on the store's disk), each held by its
owner's lock (store/work.py). A build records each RUN container in its folder before creating it, so that whoever
sweeps the folder of a build that was killed (SIGKILL: no cleanup ran) deletes its containers too: the next build,
load or prune does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from wasmlab.runtime.errors import ContainerNotFound
from wasmlab.runtime.store.atomic import write_atomic
from wasmlab.runtime.store.layout import ImageStore
from wasmlab.runtime.store.work import SweepReport, WorkFolder, claim, stop_signals_held, sweep

CONTAINERS = "containers.json"
"""In a build's work folder: ``[{"root": STATE_ROOT, "id": ID}, ...]``, the RUN containers it may have running."""


class Work:
    """One build's or load's work folder, claimed on first use, with the containers it started."""

    def __init__(self, store: ImageStore, kind: str, where: str | os.PathLike[str] | None = None) -> None:
        self.store = store
        self.kind = kind
        self.where = Path(where) if where is not None else None
        self._folder: WorkFolder | None = None
        self._containers: list[dict[str, str]] = []

    @property
    def path(self) -> Path:
        """The folder (claimed now if it was not yet)."""
        if self._folder is None:
            if self.where is None:
                self.store.init()
            with stop_signals_held():  # claimed and recorded as one step: close() finds what was claimed
                self._folder = claim(self.store.work_dir if self.where is None else self.where, self.kind)
        return self._folder.path

    @property
    def claimed(self) -> bool:
        return self._folder is not None

    def note_container(self, root: str, container_id: str) -> None:
        """Record a container before it is created (so a sweep after a SIGKILL finds it)."""
        self._containers.append({"root": root, "id": container_id})
        write_atomic(self.path / CONTAINERS, json.dumps(self._containers).encode(), sync=False)

    def forget_container(self, container_id: str) -> None:
        self._containers = [c for c in self._containers if c["id"] != container_id]
        if self._folder is not None:
            write_atomic(self.path / CONTAINERS, json.dumps(self._containers).encode(), sync=False)

    def close(self) -> None:
        """Delete the containers still recorded, then the folder."""
        try:
            for record in list(self._containers):
                delete_container(record)
            self._containers = []
        finally:
            if self._folder is not None:
                self._folder.release()
                self._folder = None

    def __enter__(self) -> Work:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def delete_container(record: dict[str, Any], *, settle: float = 10.0) -> None:
    """Stop and delete one recorded container (gone already, or never created: nothing to do).

    The zygote that started it reaps it and writes its exit record into its state folder: a delete that ran
    before that would see the folder made again. So once killed, the container is deleted after its reaper has
    written the record (or has gone, or SETTLE seconds have passed)."""
    from wasmlab.runtime.errors import InvalidState
    from wasmlab.runtime.lifecycle import Containers
    from wasmlab.runtime.store.state import StateDir

    containers = Containers(str(record["root"]))
    cid = str(record["id"])
    sd = StateDir(containers.root, cid)
    try:
        state = sd.read()
    except ContainerNotFound:
        if os.path.isdir(sd.path):
            containers.delete(cid, force=True)  # a half-made folder
        return
    reaper = _parent_of(int(state.get("pid") or 0))
    try:
        containers.kill(cid, "KILL")
    except (InvalidState, ContainerNotFound):
        pass
    if reaper > 1 and reaper != os.getpid():
        deadline = time.monotonic() + settle
        while sd.read_exit() is None and os.path.isdir(sd.path) and _parent_of(reaper) >= 0 \
                and time.monotonic() < deadline:
            time.sleep(0.01)  # polls for the reaper's record (a file that appears), with a deadline
    try:
        containers.delete(cid, force=True)
    except ContainerNotFound:
        pass


def _parent_of(pid: int) -> int:
    """The parent pid of PID (0 for the host's init), or -1 if there is no such process."""
    if pid <= 0:
        return -1
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return -1
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] == b"Z":
        return -1
    return int(fields[1])


def _delete_recorded(folder: Path) -> None:
    try:
        records = json.loads((folder / CONTAINERS).read_bytes())
    except FileNotFoundError:
        return
    except ValueError:
        records = []  # cut short while written: write_atomic makes that impossible, but never keep a folder for it
    for record in records if isinstance(records, list) else []:
        if isinstance(record, dict) and "root" in record and "id" in record:
            delete_container(record)


def sweep_work(store: ImageStore) -> SweepReport:
    """Remove the work of builds and loads whose process is gone, their RUN containers included."""
    return sweep(store.work_dir, on_stale=_delete_recorded)


# -- a clean stop on signals ---------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived during a build or a load: raised so that its cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Stops(threading.local):
    active = False
    deferring = 0
    pending = 0


_stops = _Stops()
_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _stops.pending:
        return  # already stopping: let the cleanup finish
    _stops.pending = signum
    if not _stops.deferring:
        raise Interrupted(signum)


@contextlib.contextmanager
def stopping_cleanly() -> Iterator[None]:
    """During the block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`, so that its ``finally`` clauses
    clean up (work folders, RUN containers); after the block, the signal takes its usual course: SIGINT raises
    KeyboardInterrupt, SIGTERM and SIGHUP end the process as killed by them.

    Only in the main thread (where Python runs signal handlers), and only for signals left to their defaults: a
    face that handles a signal itself, or ignores it (nohup), keeps it."""
    if threading.current_thread() is not threading.main_thread() or _stops.active:
        yield
        return
    previous: dict[int, Any] = {}
    for sig in _SIGNALS:
        old = signal.getsignal(sig)
        if old is signal.SIG_DFL or (sig == signal.SIGINT and old is signal.default_int_handler):
            previous[sig] = old
            signal.signal(sig, _on_signal)
    _stops.active, _stops.pending, _stops.deferring = True, 0, 0
    try:
        yield
    finally:
        pending = _stops.pending
        for sig, old in previous.items():
            signal.signal(sig, old)
        _stops.active, _stops.pending, _stops.deferring = False, 0, 0
        if pending and pending in previous and pending != signal.SIGINT:
            os.kill(os.getpid(), pending)  # the default action, now that the cleanup is done
    if pending:
        raise Interrupted(pending)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A stop signal arriving during the block takes effect at its end (say, once a container that is being
    created exists, so that the cleanup can find and delete it)."""
    _stops.deferring += 1
    try:
        yield
    finally:
        _stops.deferring -= 1
    if _stops.active and _stops.pending and not _stops.deferring:
        raise Interrupted(_stops.pending)
