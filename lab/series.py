"""Plot-ready series from run history, stream samples and bench results: pure functions every face draws."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Series:
    # As in /work/briefs/contracts.md; helper `metrics` writes this file's top half (keep theirs on merge).
    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    unit: str


# -- bench series (helper `bench`): from the JSON of `wasmlab bench` ---------------------------------------------
def _run_order(samples: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(i) for i in range(1, len(samples) + 1))


def _engine_samples(bench: dict[str, Any], scenario: str, measure: str, unit: str) -> list[Series]:
    results = ((bench.get("scenarios") or {}).get(scenario) or {}).get("results") or {}
    out = []
    for engine, row in results.items():
        samples = [float(v) for v in (row.get(measure) or {}).get("samples") or ()]
        if samples:
            out.append(Series(engine, _run_order(samples), tuple(samples), unit))
    return out


def bench_startup(bench: dict[str, Any]) -> list[Series]:
    """hello's create-to-exit time, one series per engine that ran (xs: run order, ys: ms)."""
    return _engine_samples(bench, "startup", "ms", "ms")


def bench_footprint(bench: dict[str, Any]) -> list[Series]:
    """memgrow's cgroup peak, one series per engine that ran (xs: run order, ys: MiB)."""
    return _engine_samples(bench, "footprint", "peak_mib", "MiB")


def bench_scaling(bench: dict[str, Any]) -> list[Series]:
    """The cost of N containers alive at once, per container: for each engine one series in ms (the median of
    the N starts) and one in MiB (their memory together, over N); xs: N."""
    results = ((bench.get("scenarios") or {}).get("scaling") or {}).get("results") or {}
    out = []
    for engine, rows in results.items():
        if not rows:
            continue
        xs = tuple(float(r["n"]) for r in rows)
        out.append(Series(engine, xs, tuple(float(r["per_container_ms"]) for r in rows), "ms"))
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
