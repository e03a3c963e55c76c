"""Matplotlib figures from metrics data: the benchmark's start-up times, and the history and live series."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmlab.lab import series as ser

if TYPE_CHECKING:
    from wasmlab.runtime import MetricsTick, RunRecord

BARS = (("floor", "floor (fork+unshare)"), ("wasm_wasmtime", "Wasm on wasmtime"), ("wasm_wasmer", "Wasm on wasmer"),
        ("linux_embedded", "Linux (embedded)"), ("runc", "runc run"))


def bench_figure(results: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, results[key]) for key, label in BARS if results.get(key)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [label for label, _ in rows]
    medians = [r["median_ms"] for _, r in rows]
    errs = [[m - r["p10_ms"] for m, (_, r) in zip(medians, rows, strict=True)],
            [r["p90_ms"] - m for m, (_, r) in zip(medians, rows, strict=True)]]
    ax.barh(labels, medians, xerr=errs, color=["#999", "#3b7", "#7a3", "#37b", "#b53"][: len(rows)])
    for y, (m, (_, r)) in enumerate(zip(medians, rows, strict=True)):
        ax.text(max(m, r["p90_ms"]), y, f"  {m:.1f} ms", va="center")
    ax.set_xlim(0, max(r["p90_ms"] for _, r in rows) * 1.2)
    ax.set_xlabel("create-to-exit, median ms (bars: p10-p90)")
    ax.set_title(f"wasmlab start-up, {results.get('date', '')}")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(ax: Any, lines: Sequence[ser.Series], title: str, xlabel: str, *, minimum: int = 3) -> None:
    """One axis from series: a line per series with its label, or the too_few sentence instead of an axis."""
    ax.set_title(title)
    empty = ser.too_few(lines, minimum)
    if empty is not None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, empty, ha="center", va="center", wrap=True, transform=ax.transAxes)
        return
    for line in lines:
        ax.plot(line.xs, line.ys, marker="o", markersize=3, label=line.label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(lines[0].unit)
    ax.legend(loc="best", fontsize="small")


def history_figure(records: Sequence[RunRecord]) -> Any:
    """The run history: start-up (ms) and cgroup memory peak (MiB) per engine, oldest to newest run."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    draw(left, ser.startup_by_engine(records), "start-up per engine (create + start)", "run")
    draw(right, ser.footprint_by_engine(records), "cgroup memory peak per engine", "run")
    fig.tight_layout()
    return fig


def live_figure(ticks: Sequence[MetricsTick]) -> Any:
    """The live stream: CPU % and memory (MiB) per container over the seconds since the first tick."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    draw(left, ser.live_cpu(ticks), "CPU per container", "s")
    draw(right, ser.live_memory(ticks), "memory per container (cgroup)", "s")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m wasmlab.lab.charts RESULTS.json OUT.png", file=sys.stderr)
        return 2
    results = json.loads(Path(args[0]).read_text())
    bench_figure(results).savefig(args[1], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
