"""Matplotlib figures from lab/series.py's series: the bench's charts (PNG, SVG), the history and live series."""

from __future__ import annotations

import json
import statistics
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
    errs = [[m - r.get("min_ms", r["p10_ms"]) for m, (_, r) in zip(medians, rows, strict=True)],
            [r.get("max_ms", r["p90_ms"]) - m for m, (_, r) in zip(medians, rows, strict=True)]]
    ax.barh(labels, medians, xerr=errs, color=["#999", "#3b7", "#7a3", "#37b", "#b53"][: len(rows)])
    for y, (m, (_, r)) in enumerate(zip(medians, rows, strict=True)):
        ax.text(r.get("max_ms", r["p90_ms"]), y, f"  {m:.1f} ms", va="center")
    ax.set_xlim(0, max(r.get("max_ms", r["p90_ms"]) for _, r in rows) * 1.25)
    ax.set_xlabel("create-to-exit, median ms (bars: min-max)")
    ax.set_title(f"wasmlab start-up, {results.get('date', '')}")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


COLORS = {"wasmtime": "#3b7", "wasmer": "#7a3", "native": "#37b", "runc": "#b53", "crun": "#a5b",
          "compat": "#3b7", "bloated": "#b83"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _distribution(ax: Any, series: list[Any], unit: str, what: str, *, key: bool = True) -> None:
    """One box (median, quartiles, min-max whiskers) per series, the samples as dots over it."""
    labels = [s.label for s in series]
    ax.boxplot([list(s.ys) for s in series], orientation="horizontal", whis=(0, 100), widths=0.5,
               medianprops={"color": "black"})
    ax.set_yticks(range(1, len(labels) + 1), labels)
    for i, s in enumerate(series, start=1):
        ax.scatter(s.ys, [i] * len(s.ys), s=8, alpha=0.5, color=COLORS.get(s.label, "#555"), zorder=3)
        median = statistics.median(s.ys)
        ax.annotate(f"{median:.1f} {unit}", (max(s.ys), i), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_xlabel(f"{what} ({unit}; box: quartiles, whiskers: min-max)" if key else f"{what} ({unit})")
    ax.set_xlim(left=0)
    ax.invert_yaxis()


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def bench_charts(bench: dict[str, Any]) -> dict[str, Any]:
    """The bench's figures by name (startup, footprint, scaling, bloated), each built from lab.series."""
    from wasmlab.lab import series as ls

    plt = _pyplot()
    when = f"{bench.get('date', '')}, kernel {bench.get('machine', {}).get('kernel', '?')}, n={bench.get('n')}"
    absent = [f"{name}: {row.get('error')}" for name, row in (bench.get("engines") or {}).items()
              if not row.get("available")]
    figs: dict[str, Any] = {}
    for name, fn, unit, what in (("startup", ls.bench_startup, "ms", "hello, create to exit"),
                                 ("footprint", ls.bench_footprint, "MiB", "memgrow, cgroup peak")):
        data = fn(bench)
        fig, ax = plt.subplots(figsize=(7.5, 0.55 * max(3, len(data)) + 1.4))
        if data:
            _distribution(ax, data, unit, what)
        else:
            _note(ax, f"the {name} scenario did not run")
        ax.set_title(f"{what} per engine ({when})", fontsize=9)
        if absent:
            fig.text(0.01, 0.01, "not measured: " + "; ".join(absent), fontsize=7, color="#a00")
        fig.tight_layout(rect=(0, 0.04 if absent else 0, 1, 1))
        figs[name] = fig
    data = ls.bench_scaling(bench)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if data:
        for ax, unit, what in ((axes[0], "ms", "start-up per container"), (axes[1], "MiB", "memory per container")):
            for s in (s for s in data if s.unit == unit):
                ax.plot(s.xs, s.ys, marker="o", label=s.label, color=COLORS.get(s.label))
            ax.set_xscale("log")
            ax.set_xlabel("N containers alive at once")
            ax.set_ylabel(f"{what} ({unit})")
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
    else:
        for ax in axes:
            _note(ax, "the scaling scenario did not run")
    fig.suptitle(f"cost against N ({when})", fontsize=9)
    fig.tight_layout()
    figs["scaling"] = fig
    data = ls.bench_bloated(bench)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    if data:
        kinds = list(dict.fromkeys(s.label for s in data))
        sizes = {s.label: s for s in data if s.unit == "MB"}
        width = 0.38
        for i, kind in enumerate(kinds):
            axes[0].bar([x + i * width for x in (0, 1)], sizes[kind].ys, width, label=kind, color=COLORS.get(kind))
            for x, y in zip((0, 1), sizes[kind].ys, strict=True):
                axes[0].annotate(f"{y:.1f} MB" if y >= 0.1 else f"{y * 1000:.1f} kB", (x + i * width, y),
                                 ha="center", va="bottom", fontsize=7)
        axes[0].set_xticks([width / 2, 1 + width / 2], ["on disk", "compressed"])
        axes[0].set_ylabel("image size (MB)")
        axes[0].legend(fontsize=8)
        _distribution(axes[1], [s for s in data if s.unit == "ms"], "ms", "Lab.run start-up", key=False)
        _distribution(axes[2], [s for s in data if s.unit == "MiB"], "MiB", "cgroup peak", key=False)
        fig.text(0.99, 0.01, "boxes: quartiles; whiskers: min-max", fontsize=7, ha="right")
    else:
        skipped = ((bench.get("scenarios") or {}).get("bloated") or {}).get("skipped") or "did not run"
        for ax in axes:
            _note(ax, "bloated image: " + skipped[:60])
    fig.suptitle(f"hello.wasm: compat image against a Debian image carrying python3 + wasmtime ({when})",
                 fontsize=9)
    fig.tight_layout()
    figs["bloated"] = fig
    runtime = (bench.get("scenarios") or {}).get("runtime")
    if runtime and runtime.get("floor"):
        figs["runtime"] = bench_figure(runtime)
    return figs


def write_bench_charts(bench: dict[str, Any], out: Path) -> list[Path]:
    """Every bench chart as PNG and SVG in OUT; the paths written."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in bench_charts(bench).items():
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)
    return written


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
        print("usage: python -m wasmlab.lab.charts RESULTS.json OUT_DIR", file=sys.stderr)
        return 2
    results = json.loads(Path(args[0]).read_text())
    for path in write_bench_charts(results, Path(args[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
