"""Chart data for every face: history rows and live stream ticks as plot-ready series (pure; no plotting library)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasmlab.runtime import MetricsTick, RunRecord

MIB = 1 << 20
# Engines in the order every face lists them; others follow by name.
ENGINE_ORDER = ("wasmtime", "wasmer", "native")


@dataclass(frozen=True)
class Series:
    """One line (or set of bars) of a chart: its label, its points, and the unit of its ys."""

    label: str                     # e.g. "wasmtime"
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    unit: str                      # "ms", "MiB", "%"
    # Each point's spread where it is a median: its min and max (empty when the ys are single readings).
    lows: tuple[float, ...] = ()
    highs: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.xs)


def _engine_key(engine: str) -> tuple[int, str]:
    return (ENGINE_ORDER.index(engine) if engine in ENGINE_ORDER else len(ENGINE_ORDER), engine)


def _oldest_first(records: Sequence[RunRecord]) -> list[RunRecord]:
    return sorted(records, key=lambda r: (r.seq or 0, r.started_at))


def startup_ms(record: RunRecord) -> float:
    """A run's start-up: from the create request to its workload beginning (start_ms, a moment from the same
    origin), or to the container being ready where that is not known."""
    start = getattr(record, "start_ms", None)
    return float(start if start is not None else record.create_ms or 0.0)


def _by_engine(records: Sequence[RunRecord], value: Any, unit: str) -> list[Series]:
    points: dict[str, tuple[list[float], list[float]]] = {}
    for order, rec in enumerate(_oldest_first(records), start=1):
        y = value(rec)
        if y is None:
            continue
        xs, ys = points.setdefault(rec.handler or "unknown", ([], []))
        xs.append(float(order))
        ys.append(float(y))
    return [Series(engine, tuple(xs), tuple(ys), unit)
            for engine, (xs, ys) in sorted(points.items(), key=lambda kv: _engine_key(kv[0]))]


def startup_by_engine(records: Sequence[RunRecord]) -> list[Series]:
    """One series per engine: x is the run's place in the history (1 = the oldest given), y its start-up in ms."""
    return _by_engine(records, startup_ms, "ms")


def cgroup_peak_bytes(record: RunRecord) -> int | None:
    """The run's cgroup memory peak (not the init's RSS), or None when it had no cgroup."""
    peak = record.cgroup_peak_bytes
    return int(peak) if peak else None


def footprint_by_engine(records: Sequence[RunRecord]) -> list[Series]:
    """One series per engine: x is the run's place in the history, y its cgroup peak in MiB (runs without a
    cgroup are left out: their init's RSS is another figure)."""
    def peak_mib(rec: RunRecord) -> float | None:
        peak = cgroup_peak_bytes(rec)
        return None if peak is None else peak / MIB

    return _by_engine(records, peak_mib, "MiB")


def _live(ticks: Sequence[MetricsTick], value: Any, unit: str) -> list[Series]:
    if not ticks:
        return []
    t0 = ticks[0].at
    points: dict[str, tuple[str, list[float], list[float]]] = {}
    for tick in ticks:
        for s in tick.samples:
            if s.kind != "container":
                continue
            _, xs, ys = points.setdefault(s.id, (s.name or s.id, [], []))
            xs.append(round(tick.at - t0, 6))
            ys.append(float(value(s)))
    return [Series(label, tuple(xs), tuple(ys), unit) for label, xs, ys in points.values()]


def live_cpu(ticks: Sequence[MetricsTick]) -> list[Series]:
    """One series per container seen: x is seconds since the first tick, y its CPU % (100 = one core)."""
    return _live(ticks, lambda s: s.cpu_percent, "%")


def live_memory(ticks: Sequence[MetricsTick]) -> list[Series]:
    """One series per container seen: x is seconds since the first tick, y its memory now in MiB."""
    return _live(ticks, lambda s: s.memory_bytes / MIB, "MiB")


def live_pids(ticks: Sequence[MetricsTick]) -> list[Series]:
    """One series per container seen: x is seconds since the first tick, y its tasks (the cgroup's pids.current)."""
    return _live(ticks, lambda s: s.pids or 0, "PIDs")


def live_summary(tick: MetricsTick) -> str:
    """One line of a tick for every face: its containers, their tasks, and their network and block I/O so far
    (podman stats' PIDS, NET IO and BLOCK IO, summed; a container on the host's network adds no network figure)."""
    from wasmlab.lab.present import stat_size

    rows = [s for s in tick.samples if s.kind == "container"]
    if not rows:
        return "nothing running"

    def total(name: str) -> str:
        return stat_size(sum(getattr(s, name) or 0 for s in rows))

    pids = sum(s.pids or 0 for s in rows)
    return (f"{len(rows)} running, {pids} PID{'s' if pids != 1 else ''}, net {total('net_rx_bytes')} / "
            f"{total('net_tx_bytes')}, block {total('block_read_bytes')} / {total('block_write_bytes')}")


# The least top a live axis shows (it starts at 0): an idle container's CPU or its few hundred KiB of memory are
# drawn near the floor, not stretched over the whole height (noise looked like a trend).
LEAST_TOP = {"%": 10.0, "MiB": 1.0}


def axis_top(series: Sequence[Series], least: float) -> float:
    """The top of an axis from 0 that holds every y of SERIES: a round figure (1, 2 or 5 times a power of ten),
    never below LEAST."""
    import math

    high = max((y for s in series for y in s.ys), default=0.0)
    if high <= least:
        return least
    power = 10.0 ** math.floor(math.log10(high))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= high)


def too_few(series: Sequence[Series], minimum: int = 3) -> str | None:
    """A sentence to show instead of an axis when no series has MINIMUM points yet; None when there is enough."""
    most = max((len(s.xs) for s in series), default=0)
    if most >= minimum:
        return None
    have = "no points yet" if most == 0 else f"only {most} point{'s' if most != 1 else ''} so far"
    return (f"Not enough data to chart: {have}, {minimum} needed. Run a few containers "
            f"(e.g. `wasmlab run --rm wasmlab/hello:compat`) and look again.")


# -- bench series (helper `bench`): from the JSON of `wasmlab bench` ---------------------------------------------
def _run_order(samples: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(i) for i in range(1, len(samples) + 1))


def run_samples(samples: Mapping[str, Sequence[float]], unit: str) -> list[Series]:
    """One series per label (in the mapping's order, labels without samples left out): xs the run order (1 = the
    first), ys the samples. The layout of every bench chart, and of the notebooks' face-off."""
    return [Series(label, _run_order(ys), tuple(float(v) for v in ys), unit) for label, ys in samples.items() if ys]


def _engine_samples(bench: dict[str, Any], scenario: str, measure: str, unit: str) -> list[Series]:
    results = ((bench.get("scenarios") or {}).get(scenario) or {}).get("results") or {}
    return run_samples({engine: [float(v) for v in (row.get(measure) or {}).get("samples") or ()]
                        for engine, row in results.items()}, unit)


def bench_startup(bench: dict[str, Any]) -> list[Series]:
    """hello's create-to-exit time, one series per engine that ran (xs: run order, ys: ms)."""
    return _engine_samples(bench, "startup", "ms", "ms")


def bench_footprint(bench: dict[str, Any]) -> list[Series]:
    """memgrow's cgroup peak, one series per engine that ran (xs: run order, ys: MiB)."""
    return _engine_samples(bench, "footprint", "peak_mib", "MiB")


def bench_scaling(bench: dict[str, Any]) -> list[Series]:
    """The cost of N containers alive at once, per container: for each engine one series in ms (the median of
    the N starts, with their min and max as lows and highs) and one in MiB (their memory together, over N: one
    reading, no spread); xs: N."""
    results = ((bench.get("scenarios") or {}).get("scaling") or {}).get("results") or {}
    out = []
    for engine, rows in results.items():
        if not rows:
            continue
        xs = tuple(float(r["n"]) for r in rows)
        ms = tuple(float(r["per_container_ms"]) for r in rows)
        spread = [r.get("start_ms") or {} for r in rows]
        if all("min" in st and "max" in st for st in spread):
            out.append(Series(engine, xs, ms, "ms", tuple(float(st["min"]) for st in spread),
                              tuple(float(st["max"]) for st in spread)))
        else:
            out.append(Series(engine, xs, ms, "ms"))
        out.append(Series(engine, xs, tuple(float(r["per_container_mib"]) for r in rows), "MiB"))
    return out


def bench_bloated(bench: dict[str, Any]) -> list[Series]:
    """The bloated image beside the compat one: per image, its start-up samples (ms), its peak memory samples
    (MiB), and its size (MB; xs 0: on disk, 1: compressed). Empty when the scenario did not run."""
    images = ((bench.get("scenarios") or {}).get("bloated") or {}).get("images") or {}
    out = []
    for kind, im in images.items():
        ms = [float(v) for v in im["ms"].get("samples") or ()]
        peak = [float(v) for v in im["peak_mib"].get("samples") or ()]
        out.append(Series(kind, _run_order(ms), tuple(ms), "ms"))
        out.append(Series(kind, _run_order(peak), tuple(peak), "MiB"))
        out.append(Series(kind, (0.0, 1.0), (im["disk_bytes"] / 1e6, im["compressed_bytes"] / 1e6), "MB"))
    return out
