"""Run history rows from the zygote's final figures, written off the caller's path (and for detached runs, later)."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from wasmlab.runtime.store.history import History, RunRecord
from wasmlab.runtime.zygote import protocol as p


def run_record(msg: p.ContainerReaped) -> RunRecord:
    """The history row of one finished container: every timing a moment from the create request (see RunRecord)."""
    timings = dict(msg.timings)
    for key in ("run_start_ms", "module_load_ms", "instantiate_ms"):
        if isinstance(msg.reports.get(key), (int, float)):
            timings[key] = float(msg.reports[key])
    rec = msg.exit
    lifetime = timings.get("lifetime_ms", 0.0)
    cache = msg.reports.get("cache")
    # The init's own moments (its clock starts with the request too): ready, then its workload began. The
    # runtime's create_ms comes later (its bookkeeping after ready), after the first byte of a native run.
    ready = timings.get("ready", timings.get("create_ms", 0.0))
    start = timings.get("run_start_ms")
    deleted = timings.get("delete_ms")
    return RunRecord(
        id=msg.id, handler=msg.handler, exit_code=rec.exit_code, signal=rec.signal,
        started_at=(rec.finished_at or time.time()) - lifetime / 1e3,
        name=msg.annotations.get("wasmlab.io/name", ""), image=msg.annotations.get("wasmlab.io/image", ""),
        oom_killed=rec.oom_killed, create_ms=ready, total_ms=lifetime,
        init_max_rss_kb=rec.max_rss_kb, cache=str(cache) if cache else None, timings=timings,
        memory=_guest_memory(msg.reports),
        start_ms=start, exit_ms=timings.get("exit_ms"),
        delete_ms=None if deleted is None else lifetime + deleted,
        cache_hit=CACHE_HITS.get(str(cache)), cgroup_peak_bytes=msg.memory.get("peak") or None,
        pod=msg.annotations.get(POD_ANNOTATION, ""), kernel=_UNAME.release,
        machine=f"{_UNAME.machine} {_UNAME.nodename}")


# Where a compiled module came from (the handlers' "cache" report): from a cache, or compiled for this run.
CACHE_HITS = {"memory": True, "disk": True, "instance": True, "compiled": False}
POD_ANNOTATION = "wasmlab.io/pod"
BASELINE_ANNOTATION = "wasmlab.io/baseline"  # a run that measures an engine's hello baseline: not history
_UNAME = os.uname()


def _guest_memory(reports: dict[str, Any]) -> dict[str, int]:
    """The guest's linear memory when it exited, where its engine reports it (wasmtime)."""
    size = reports.get("memory_bytes_at_exit")
    return {"wasm_memory_bytes": size} if isinstance(size, int) else {}


class Recorder:
    """Writes rows on a thread of its own, so neither a caller nor the zygote's reader waits for SQLite."""

    def __init__(self, history: History, on_recorded: Any = None) -> None:
        self.history = history
        self.on_recorded = on_recorded
        # enrich(row) adds what only the caller knows (first byte, image sizes, the guest's share), on this thread.
        self.enrich: Callable[[RunRecord], None] | None = None
        self._queue: queue.SimpleQueue[p.ContainerReaped | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    def take(self, msg: p.ContainerReaped) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wasmlab-recorder", daemon=True)
                self._thread.start()
        self._queue.put(msg)

    def _loop(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is None:
                return
            try:
                if msg.annotations.get(BASELINE_ANNOTATION):
                    continue
                row = run_record(msg)
                if self.enrich is not None:
                    try:
                        self.enrich(row)
                    except Exception:
                        pass  # a figure it could not add stays unknown; the row is still written
                self.history.record(row)
                if self.on_recorded is not None:
                    self.on_recorded(row)
            except Exception:
                pass  # a history that cannot be written must never fail a container
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row taken so far is written. On the recorder's own thread (a RunRecorded subscriber
        reading the history) there is nothing to wait for: the rows before are written, and waiting for the
        current one would hold this thread for the whole timeout."""
        if threading.current_thread() is self._thread:
            return
        with self._lock:
            self._idle.wait_for(lambda: self._pending == 0, timeout)

    def collect(self, root: str) -> int:
        """Record the runs that ended while nobody listened (detached containers whose caller exited)."""
        try:
            names = os.listdir(root)
        except OSError:
            return 0
        return sum(self.collect_one(os.path.join(root, name)) for name in names)

    def collect_one(self, state_dir: str) -> bool:
        """Record the run a container's state folder holds, if it ended while nobody listened: before a delete
        removes the folder, or the run would be missing from the history."""
        path = os.path.join(state_dir, p.REAPED_FILE)
        try:
            with open(path, "rb") as fh:
                msg = p.decode(fh.read())
            os.unlink(path)  # first: two collectors never record one run twice
        except (OSError, ValueError):
            return False
        if not isinstance(msg, p.ContainerReaped):
            return False
        self.take(msg)
        return True
