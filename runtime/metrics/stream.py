"""The live metrics stream: CPU, memory, PIDs, block and network I/O of each running container and pod, read from
cgroup and /proc files."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

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
    and max_usage_in_bytes on v1, memory.current and memory.peak on v2), else the init process's RSS and HWM.
    The I/O figures are totals since the container started (the faces show them as podman: read / written)."""

    at: float                 # the stream's clock (time.monotonic by default), seconds
    kind: str                 # "container" | "pod"
    id: str
    name: str
    pod: str | None           # "namespace/name" of its pod, or None
    engine: str | None        # the handler: "wasmtime", "wasmer", "native"; None for a pod
    cpu_percent: float        # over the last interval; 100.0 = one core busy (0.0 the first time it is seen)
    memory_bytes: int         # now
    memory_peak_bytes: int    # the peak so far
    # podman stats' other figures; None where this machine cannot tell (each face shows "-" or "--").
    memory_limit_bytes: int | None = None  # the cgroup's limit; None: unlimited (or no cgroup)
    pids: int | None = None                # the cgroup's pids.current (tasks, as podman); None: no pids cgroup
    block_read_bytes: int | None = None    # so far: v2 io.stat rbytes, else the sum of /proc/PID/io read_bytes
    block_write_bytes: int | None = None   # so far: v2 io.stat wbytes, else the sum of /proc/PID/io write_bytes
    net_rx_bytes: int | None = None        # so far, in its network namespace, lo left out; None: the host's network
    net_tx_bytes: int | None = None


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

def _slurp(path: str) -> bytes | None:
    """A small kernel file's bytes with three system calls (no file object: the stream reads hundreds a tick)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_int(path: str) -> int | None:
    data = _slurp(path)
    try:
        return int(data.split()[0]) if data is not None else None
    except (ValueError, IndexError):
        return None


def _v2_cpu_ns(folder: str) -> int | None:
    data = _slurp(os.path.join(folder, "cpu.stat"))
    for line in (data or b"").splitlines():
        if line.startswith(b"usage_usec "):
            try:
                return int(line.split()[1]) * 1000
            except (ValueError, IndexError):
                return None
    return None


@dataclass(frozen=True)
class Reading:
    """One raw reading: CPU time used so far (ns), memory now and at its peak (bytes), tasks, and bytes read and
    written to storage so far; None when unknown."""

    cpu_ns: int | None
    memory: int | None
    peak: int | None
    pids: int | None = None
    block_read: int | None = None
    block_write: int | None = None


def _v2_io(folder: str) -> tuple[int, int] | None:
    """io.stat's rbytes and wbytes over every device; None when the io controller is not on this cgroup."""
    data = _slurp(os.path.join(folder, "io.stat"))
    if data is None:
        return None
    rd = wr = 0
    try:
        for word in data.split():
            if word.startswith(b"rbytes="):
                rd += int(word[7:])
            elif word.startswith(b"wbytes="):
                wr += int(word[7:])
    except ValueError:
        return None
    return rd, wr


def read_task_io(pids: list[int]) -> tuple[int, int] | None:
    """The storage bytes PIDS caused (read_bytes, write_bytes of /proc/PID/io, their reaped children's included):
    the block I/O figure where the cgroup counts none (v1's blkio.throttle counters stay 0 on a kernel with no
    throttle rule, see docs/design.md). Written bytes count when they are dirtied, so a write to a disk counts
    before its writeback and a write to tmpfs never does."""
    rd = wr = 0
    seen = False
    for pid in pids:
        data = _slurp(f"/proc/{pid}/io")
        if data is None:
            continue
        figures = dict(line.split(b":", 1) for line in data.splitlines() if b":" in line)
        try:
            rd, wr = rd + int(figures[b"read_bytes"]), wr + int(figures[b"write_bytes"])
        except (KeyError, ValueError):
            continue
        seen = True
    return (rd, wr) if seen else None


def _procs(folder: str) -> list[int]:
    data = _slurp(os.path.join(folder, "cgroup.procs"))
    return [int(x) for x in data.split()] if data else []


def read_cgroup(rel: str, *, tasks: bool = True) -> Reading:
    """The cgroup's CPU time, memory, tasks and block I/O, from its files (hierarchical: a pod's parent counts its
    containers). Block I/O is v2's io.stat; else (TASKS) the sum over the cgroup's own processes' /proc/PID/io."""
    lay = cgroups.layout()
    if lay.mode == "v2" and lay.v2:
        d = os.path.join(lay.v2, rel)
        io = _v2_io(d)
        if io is None and tasks:
            io = read_task_io(_procs(d))
        return Reading(_v2_cpu_ns(d), _read_int(os.path.join(d, "memory.current")),
                       _read_int(os.path.join(d, "memory.peak")), _read_int(os.path.join(d, "pids.current")),
                       *(io or (None, None)))
    cpu_mnt = lay.v1.get("cpuacct")
    mem_mnt = lay.v1.get("memory")
    pids_mnt = lay.v1.get("pids")
    cpu = _read_int(os.path.join(cpu_mnt, rel, "cpuacct.usage")) if cpu_mnt else None
    mem = _read_int(os.path.join(mem_mnt, rel, "memory.usage_in_bytes")) if mem_mnt else None
    peak = _read_int(os.path.join(mem_mnt, rel, "memory.max_usage_in_bytes")) if mem_mnt else None
    pids = _read_int(os.path.join(pids_mnt, rel, "pids.current")) if pids_mnt else None
    io = None
    if tasks:
        some = pids_mnt or mem_mnt or cpu_mnt
        io = read_task_io(_procs(os.path.join(some, rel))) if some else None
    return Reading(cpu, mem, peak, pids, *(io or (None, None)))


# Above this a cgroup's memory limit is "none": v1 writes PAGE_COUNTER_MAX pages (2^63 bytes less a page).
_UNLIMITED = 1 << 62


def read_memory_limit(rel: str) -> int | None:
    """The cgroup's memory limit in bytes (v2 memory.max, v1 memory.limit_in_bytes); None when unlimited."""
    lay = cgroups.layout()
    if lay.mode == "v2" and lay.v2:
        data = _slurp(os.path.join(lay.v2, rel, "memory.max"))
    else:
        mnt = lay.v1.get("memory")
        data = _slurp(os.path.join(mnt, rel, "memory.limit_in_bytes")) if mnt else None
    try:
        limit = int(data) if data is not None and data.strip() != b"max" else None
    except ValueError:
        return None
    return limit if limit is not None and limit < _UNLIMITED else None


def read_net(pid: int) -> tuple[int, int] | None:
    """Bytes received and sent so far by every interface of PID's network namespace but loopback
    (/proc/PID/net/dev); None when the process is gone."""
    data = _slurp(f"/proc/{pid}/net/dev")
    if data is None:
        return None
    rx = tx = 0
    for line in data.splitlines()[2:]:
        name, _, figures = line.partition(b":")
        if name.strip() == b"lo":
            continue
        f = figures.split()
        if len(f) >= 9 and f[0].isdigit() and f[8].isdigit():
            rx += int(f[0])
            tx += int(f[8])
    return rx, tx


def net_namespace(pid: int) -> tuple[int, int] | None:
    """PID's network namespace (device, inode of /proc/PID/ns/net); None when it cannot be seen."""
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def read_process(pid: int) -> Reading:
    """A process's own CPU time (utime + stime), RSS and peak RSS (VmHWM) and storage I/O, for a container
    without a cgroup."""
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
    io = read_task_io([pid])
    return Reading(cpu, mem, peak, None, *(io or (None, None)))


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
    """The state a stream keeps between ticks: the last CPU reading per id, each one's peak and I/O totals so far,
    and what does not change in a container's life (its memory limit, whether it has its own network)."""

    discover: Callable[[], list[Watched]]
    clock: Callable[[], float]
    _cpu: dict[str, tuple[float, int]] = field(default_factory=dict)
    _peak: dict[str, int] = field(default_factory=dict)
    _io: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    _fixed: dict[str, tuple[int | None, bool]] = field(default_factory=dict)  # id -> (memory limit, own network)
    _host_net: tuple[int, int] | None = field(default_factory=lambda: net_namespace(os.getpid()))

    def tick(self) -> MetricsTick:
        at = self.clock()
        targets = self.discover()
        containers = [t for t in targets if t.kind == "container"]
        pods = {t.name: t for t in targets if t.kind == "pod"}
        samples: list[MetricSample] = []
        by_pod: dict[str, list[tuple[Reading, MetricSample]]] = {}
        for t in containers:
            r = read(t)
            s = self._sample(t, r, at, self._net(t))
            samples.append(s)
            if t.pod:
                by_pod.setdefault(t.pod, []).append((r, s))
        for identity, members in by_pod.items():
            pod = pods.get(identity) or Watched("pod", identity, identity, identity)
            r = read_cgroup(pod.cgroup, tasks=False) if pod.cgroup else Reading(None, None, None)
            if r.cpu_ns is None or r.memory is None:  # no readable parent: the sum of its containers
                cpu = [m[0].cpu_ns for m in members]
                r = Reading(sum(c for c in cpu if c is not None) if any(c is not None for c in cpu) else None,
                            sum(m[1].memory_bytes for m in members), None, r.pids)
            if r.pids is None:
                r = replace(r, pids=_total([m[0].pids for m in members]))
            if r.block_read is None:  # v1 (or no io controller): what its containers' processes did
                r = replace(r, block_read=_total([m[0].block_read for m in members]),
                            block_write=_total([m[0].block_write for m in members]))
            # Its containers share its network namespace: any one's figures are the pod's.
            net = next(((m.net_rx_bytes, m.net_tx_bytes) for _, m in members
                        if m.net_rx_bytes is not None and m.net_tx_bytes is not None), None)
            samples.append(self._sample(Watched("pod", pod.id, identity, identity, cgroup=pod.cgroup), r, at, net))
        live = {s.id for s in samples}
        for book in (self._cpu, self._peak, self._io, self._fixed):
            for gone in set(book) - live:
                del book[gone]
        return MetricsTick(at, tuple(samples))

    def _net(self, t: Watched) -> tuple[int, int] | None:
        """Its network's totals; None when it shares the host's (or the stream's) network namespace."""
        if not self._fixed_for(t)[1]:
            return None
        return read_net(t.pid)

    def _fixed_for(self, t: Watched) -> tuple[int | None, bool]:
        fixed = self._fixed.get(t.id)
        if fixed is None:  # read once: nothing changes a container's limit or its namespaces while it runs
            limit = read_memory_limit(t.cgroup) if t.cgroup else None
            ns = net_namespace(t.pid) if t.pid else None
            fixed = (limit, ns is not None and ns != self._host_net)
            self._fixed[t.id] = fixed
        return fixed

    def _sample(self, t: Watched, r: Reading, at: float, net: tuple[int, int] | None) -> MetricSample:
        pct = 0.0
        if r.cpu_ns is not None:
            last = self._cpu.get(t.id)
            if last is not None and at > last[0]:
                pct = max(0.0, (r.cpu_ns - last[1]) / ((at - last[0]) * 1e9) * 100.0)
            self._cpu[t.id] = (at, r.cpu_ns)
        mem = r.memory or 0
        peak = max(self._peak.get(t.id, 0), r.peak or 0, mem)
        self._peak[t.id] = peak
        # Totals never go back (a process's counts move to its parent when it is reaped, not before).
        io = tuple(_most(old, new) for old, new in zip(self._io.get(t.id, (None,) * 4),
                                                       (r.block_read, r.block_write, *(net or (None, None))),
                                                       strict=True))
        self._io[t.id] = io
        return MetricSample(at, t.kind, t.id, t.name, t.pod, t.engine if t.kind == "container" else None,
                            round(pct, 2), mem, peak, self._fixed_for(t)[0], r.pids, *io)


def _total(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _most(old: int | None, new: int | None) -> int | None:
    return new if old is None else (old if new is None else max(old, new))


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

