"""The live metrics stream: CPU and memory of each running container and pod, read from cgroup files."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from wasmlab.runtime.errors import UsageError
from wasmlab.runtime.linux import cgroups
from wasmlab.runtime.status import ContainerStatus
from wasmlab.runtime.store.state import StateDir, list_ids, proc_start_time, status_of

NAME_ANNOTATION = "wasmlab.io/name"
_TICK_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class MetricSample:
    """One container's or pod's figures at one tick. Memory is the cgroup's where there is one (usage_in_bytes
    and max_usage_in_bytes on v1, memory.current and memory.peak on v2), else the init process's RSS and HWM."""

    at: float                 # the stream's clock (time.monotonic by default), seconds
    kind: str                 # "container" | "pod"
    id: str
    name: str
    pod: str | None           # "namespace/name" of its pod, or None
    engine: str | None        # the handler: "wasmtime", "wasmer", "native"; None for a pod
    cpu_percent: float        # over the last interval; 100.0 = one core busy (0.0 the first time it is seen)
    memory_bytes: int         # now
    memory_peak_bytes: int    # the peak so far


@dataclass(frozen=True)
class MetricsTick:
    """Every sample of one tick, taken together."""

    at: float
    samples: tuple[MetricSample, ...]


@dataclass(frozen=True)
class Watched:
    """Something to sample: a running container (its init's pid, its cgroup) or a pod (its cgroup parent)."""

    kind: str
    id: str
    name: str
    pod: str | None = None
    engine: str | None = None
    cgroup: str | None = None   # relative to each hierarchy; None: the process's /proc figures instead
    pid: int = 0


# -- reading the kernel's figures ------------------------------------------------------------------------------

def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _v2_cpu_ns(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, "cpu.stat"), "rb") as fh:
            for line in fh:
                if line.startswith(b"usage_usec "):
                    return int(line.split()[1]) * 1000
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class Reading:
    """One raw reading: CPU time used so far (ns) and memory now and at its peak (bytes); None when unknown."""

    cpu_ns: int | None
    memory: int | None
    peak: int | None


def read_cgroup(rel: str) -> Reading:
    """The cgroup's CPU time and memory, from its files alone (hierarchical: a pod's parent counts its containers)."""
    lay = cgroups.layout()
    if lay.mode == "v2" and lay.v2:
        d = os.path.join(lay.v2, rel)
        return Reading(_v2_cpu_ns(d), _read_int(os.path.join(d, "memory.current")),
                       _read_int(os.path.join(d, "memory.peak")))
    cpu_mnt = lay.v1.get("cpuacct")
    mem_mnt = lay.v1.get("memory")
    cpu = _read_int(os.path.join(cpu_mnt, rel, "cpuacct.usage")) if cpu_mnt else None
    mem = _read_int(os.path.join(mem_mnt, rel, "memory.usage_in_bytes")) if mem_mnt else None
    peak = _read_int(os.path.join(mem_mnt, rel, "memory.max_usage_in_bytes")) if mem_mnt else None
    return Reading(cpu, mem, peak)


def read_process(pid: int) -> Reading:
    """A process's own CPU time (utime + stime) and RSS and peak RSS (VmHWM), for a container without a cgroup."""
    cpu: int | None = None
    mem: int | None = None
    peak: int | None = None
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _TICK_HZ
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    mem = int(line.split()[1]) * 1024
                elif line.startswith(b"VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return Reading(cpu, mem, peak)


def read(target: Watched) -> Reading:
    return read_cgroup(target.cgroup) if target.cgroup else read_process(target.pid)


# -- what runs: the containers of a runtime root -----------------------------------------------------------------

@dataclass
class _Known:
    pid_start: int | None
    watched: Watched | None   # None: not one to sample (no process)


class RuntimeTargets:
    """The live containers under a runtime root, from their state files alone (no zygote round trip).

    A container's state is read once (per pid); each later call checks only that its process still lives and
    has not exited. DESCRIBE (optional) gives a container's lab name and pod from its id."""

    def __init__(self, root: str, describe: Callable[[str], tuple[str, str | None]] | None = None) -> None:
        self.root = root
        self.describe = describe
        self._known: dict[str, _Known] = {}

    def __call__(self) -> list[Watched]:
        out: list[Watched] = []
        ids = list_ids(self.root)
        for gone in set(self._known) - set(ids):
            del self._known[gone]
        for cid in ids:
            sd = StateDir(self.root, cid)
            known = self._known.get(cid)
            if known is None or known.watched is None:
                known = self._learn(cid, sd)
                if known is None:
                    continue
            w = known.watched
            if w is None or os.path.exists(sd.exit_file) or proc_start_time(w.pid) != known.pid_start:
                continue
            out.append(w)
        return out

    def _learn(self, cid: str, sd: StateDir) -> _Known | None:
        try:
            state = sd.read()
        except Exception:
            return None
        status = status_of(state, sd)
        if status in (ContainerStatus.STOPPED, ContainerStatus.CREATING):
            return None  # looked at again next time (a creating one will have a pid)
        pid = int(state.get("pid") or 0)
        anns = state.get("annotations") or {}
        name, pod = (self.describe(cid) if self.describe is not None else ("", None))
        engine = (state.get("decision") or {}).get("handler")
        w = Watched("container", cid, name or str(anns.get(NAME_ANNOTATION) or cid), pod,
                    str(engine) if engine else None, state.get("cgroup") or None, pid)
        known = _Known(state.get("pid_start") or proc_start_time(pid), w)
        self._known[cid] = known
        return known


# -- the stream ---------------------------------------------------------------------------------------------------

@dataclass
class _Sampler:
    """The state a stream keeps between ticks: the last CPU reading per id, and each one's peak so far."""

    discover: Callable[[], list[Watched]]
    clock: Callable[[], float]
    _cpu: dict[str, tuple[float, int]] = field(default_factory=dict)
    _peak: dict[str, int] = field(default_factory=dict)

    def tick(self) -> MetricsTick:
        at = self.clock()
        targets = self.discover()
        containers = [t for t in targets if t.kind == "container"]
        pods = {t.name: t for t in targets if t.kind == "pod"}
        samples: list[MetricSample] = []
        by_pod: dict[str, list[tuple[Reading, MetricSample]]] = {}
        for t in containers:
            r = read(t)
            s = self._sample(t, r, at)
            samples.append(s)
            if t.pod:
                by_pod.setdefault(t.pod, []).append((r, s))
        for identity, members in by_pod.items():
            pod = pods.get(identity) or Watched("pod", identity, identity, identity)
            r = read_cgroup(pod.cgroup) if pod.cgroup else Reading(None, None, None)
            if r.cpu_ns is None or r.memory is None:  # no readable parent: the sum of its containers
                cpu = [m[0].cpu_ns for m in members]
                r = Reading(sum(c for c in cpu if c is not None) if any(c is not None for c in cpu) else None,
                            sum(m[1].memory_bytes for m in members), None)
            samples.append(self._sample(Watched("pod", pod.id, identity, identity), r, at))
        live = {s.id for s in samples}
        for gone in set(self._cpu) - live:
            del self._cpu[gone]
        for gone in set(self._peak) - live:
            del self._peak[gone]
        return MetricsTick(at, tuple(samples))

    def _sample(self, t: Watched, r: Reading, at: float) -> MetricSample:
        pct = 0.0
        if r.cpu_ns is not None:
            last = self._cpu.get(t.id)
            if last is not None and at > last[0]:
                pct = max(0.0, (r.cpu_ns - last[1]) / ((at - last[0]) * 1e9) * 100.0)
            self._cpu[t.id] = (at, r.cpu_ns)
        mem = r.memory or 0
        peak = max(self._peak.get(t.id, 0), r.peak or 0, mem)
        self._peak[t.id] = peak
        return MetricSample(at, t.kind, t.id, t.name, t.pod, t.engine if t.kind == "container" else None,
                            round(pct, 2), mem, peak)


class MetricsStream:
    """Ticks of samples every INTERVAL seconds: iterate it yourself, or give a CALLBACK that a daemon thread calls
    once per tick. close() (or leaving its `with`) stops it; so does dropping the last reference to it, and a
    callback that raises (nobody listens any more). It only reads files: it never waits for the runtime."""

    def __init__(self, discover: Callable[[], list[Watched]], *, interval: float = 0.25,
                 callback: Callable[[MetricsTick], None] | None = None, clock: Callable[[], float] | None = None,
                 wait: Callable[[float], bool] | None = None) -> None:
        if not interval > 0:
            raise UsageError(f"a metrics interval must be positive (got {interval!r})",
                             "give seconds between samples, e.g. interval=0.25 for 4 a second")
        self.interval = float(interval)
        self._stop = threading.Event()
        self._sampler = _Sampler(discover, clock or time.monotonic)
        # WAIT(seconds) -> True once stopped: the stop event's by default; a test's own with an injected clock.
        self._wait = wait or self._stop.wait
        self._next: float | None = None
        self._callback = callback
        self._thread: threading.Thread | None = None
        # Nobody holds the stream any more: its thread ends (it holds only the sampler and the event).
        self._finalizer = weakref.finalize(self, self._stop.set)
        if callback is not None:
            self._thread = threading.Thread(target=_pump, name="wasmlab-metrics", daemon=True,
                                            args=(self._sampler, self.interval, self._stop, self._wait, callback))
            self._thread.start()

    def __iter__(self) -> Iterator[MetricsTick]:
        if self._callback is not None:
            raise UsageError("this metrics stream hands its ticks to its callback", "iterate a stream made "
                             "without a callback, or read the ticks in the callback")
        return self

    def __next__(self) -> MetricsTick:
        if self._stop.is_set():
            raise StopIteration
        if self._next is not None:
            wait = self._next - self._sampler.clock()
            if (wait > 0 and self._wait(wait)) or self._stop.is_set():
                raise StopIteration
        tick = self._sampler.tick()
        self._next = _next_due(self._next, tick.at, self.interval)
        return tick

    @property
    def running(self) -> bool:
        """Whether it still gives ticks (a callback's thread is alive; an iterated one is not closed)."""
        if self._thread is not None:
            return self._thread.is_alive()
        return not self._stop.is_set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop it; with a callback, wait until its thread has ended (unless called from that thread)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> MetricsStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _next_due(due: float | None, at: float, interval: float) -> float:
    """When the next tick is due: one interval after the last one was due (a wake-up a little late does not
    slow the rate), or after the tick itself when it came a whole interval late (no burst to catch up)."""
    if due is None or at - due >= interval:
        return at + interval
    return due + interval


def _pump(sampler: _Sampler, interval: float, stop: threading.Event, wait: Callable[[float], bool],
          callback: Callable[[MetricsTick], None]) -> None:
    """A callback stream's thread: a tick, the callback, then wait for the next one; ends on stop."""
    due: float | None = None
    while not stop.is_set():
        if due is not None:
            left = due - sampler.clock()
            if (left > 0 and wait(left)) or stop.is_set():
                return
        try:
            tick = sampler.tick()
            callback(tick)
        except Exception:
            stop.set()  # the listener is gone (or broken): nobody to sample for
            return
        due = _next_due(due, tick.at, interval)

