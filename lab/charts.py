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

BARS = (("floor", "floor (lean fork+unshare)"), ("wasm_wasmtime", "Wasm on wasmtime"),
        ("wasm_wasmer", "Wasm on wasmer"), ("linux_embedded", "Linux (embedded)"), ("runc", "runc run"))
FOOTER_SPACE = 0.07  # of a figure's height, kept free at its bottom for the footer


def footer_text(bench: dict[str, Any], n: str | None = None) -> str:
    """What every bench chart states at its foot: the date, the command, the kernel, and n (by default the
    run's rounds: each figure is the median of n samples)."""
    machine = bench.get("machine") or {}
    rounds = n or f"n={bench.get('n', '?')} rounds"
    return (f"{bench.get('date', '?')} · {bench.get('command', 'wasmlab bench')} · kernel "
            f"{machine.get('kernel', '?')} · {rounds}")


def _footer(fig: Any, bench: dict[str, Any], n: str | None = None, note: str = "") -> None:
    """The footer (wrapped to the figure's width at its " · " seams), and a NOTE line above it."""
    fits = int(fig.get_figwidth() * 72 / (7 * 0.6))  # characters of 7 pt text across the figure
    lines: list[str] = []
    for part in footer_text(bench, n).split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= fits:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    fig.text(0.01, 0.012, "\n".join(lines), fontsize=7, color="#444", ha="left", va="bottom")
    if note:
        fig.text(0.01, 0.05, note, fontsize=7, color="#a00", ha="left", va="bottom")


def _labels_inside(fig: Any, ax: Any, texts: Sequence[Any]) -> None:
    """Widen AX to the right until each of TEXTS (value labels past a bar's end) lies inside it."""
    for _ in range(8):
        fig.canvas.draw()
        right = ax.get_window_extent().x1
        if all(t.get_window_extent().x1 <= right - 2 for t in texts):
            return
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo, hi + (hi - lo) * 0.12)


def bench_figure(results: dict[str, Any], bench: dict[str, Any] | None = None) -> Any:
    """The runtime scenario's start-up bars (median, min-max), the floor measured from a lean process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, results[key]) for key, label in BARS if results.get(key)]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    labels = [label for label, _ in rows]
    medians = [r["median_ms"] for _, r in rows]
    errs = [[m - r.get("min_ms", r["p10_ms"]) for m, (_, r) in zip(medians, rows, strict=True)],
            [r.get("max_ms", r["p90_ms"]) - m for m, (_, r) in zip(medians, rows, strict=True)]]
    ax.barh(labels, medians, xerr=errs, color=["#999", "#3b7", "#7a3", "#37b", "#b53"][: len(rows)])
    texts = [ax.text(r.get("max_ms", r["p90_ms"]), y, f"  {m:.1f} ms (n={r.get('n', '?')})", va="center",
                     fontsize=8) for y, (m, (_, r)) in enumerate(zip(medians, rows, strict=True))]
    ax.set_xlim(0, max(r.get("max_ms", r["p90_ms"]) for _, r in rows) * 1.25)
    ax.set_xlabel("create-to-exit, median ms (bars: min-max)")
    ax.set_title("wasmlab start-up: the runtime's own figures", fontsize=9)
    ax.invert_yaxis()
    # n: the runtime scenario's rounds (its wasmer every 4th: each label says its own n).
    _footer(fig, bench or results, f"n={results.get('n', '?')} rounds")
    fig.tight_layout(rect=(0, FOOTER_SPACE, 1, 1))
    _labels_inside(fig, ax, texts)
    return fig


COLORS = {"wasmtime": "#3b7", "wasmer": "#7a3", "native": "#37b", "runc": "#b53", "crun": "#a5b",
          "compat": "#3b7", "bloated": "#b83"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _distribution(ax: Any, series: list[Any], unit: str, what: str, *, key: bool = True) -> list[Any]:
    """One box (median, quartiles, min-max whiskers) per series, the samples as dots over it; the median's
    label past each box's end (returned, for _labels_inside)."""
    labels = [s.label for s in series]
    ax.boxplot([list(s.ys) for s in series], orientation="horizontal", whis=(0, 100), widths=0.5,
               medianprops={"color": "black"})
    ax.set_yticks(range(1, len(labels) + 1), labels)
    texts = []
    for i, s in enumerate(series, start=1):
        ax.scatter(s.ys, [i] * len(s.ys), s=8, alpha=0.5, color=COLORS.get(s.label, "#555"), zorder=3)
        median = statistics.median(s.ys)
        texts.append(ax.annotate(f"{median:.1f} {unit}", (max(s.ys), i), xytext=(4, 0),
                                 textcoords="offset points", va="center", fontsize=8))
    ax.set_xlabel(f"{what} ({unit}; box: quartiles, whiskers: min-max)" if key else f"{what} ({unit})")
    ax.set_xlim(left=0)
    ax.invert_yaxis()
    return texts


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def bench_charts(bench: dict[str, Any]) -> dict[str, Any]:
    """The bench's figures by name (startup, footprint, scaling, bloated, runtime), each built from lab.series,
    each with a footer naming its date, command, kernel and n."""
    from wasmlab.lab import series as ls

    plt = _pyplot()
    absent = [f"{name}: {row.get('error')}" for name, row in (bench.get("engines") or {}).items()
              if not row.get("available")]
    not_measured = ("not measured: " + "; ".join(absent))[:110] if absent else ""
    figs: dict[str, Any] = {}
    for name, fn, unit, what in (("startup", ls.bench_startup, "ms", "hello, create to exit"),
                                 ("footprint", ls.bench_footprint, "MiB", "memgrow, cgroup peak")):
        data = fn(bench)
        fig, ax = plt.subplots(figsize=(7.5, 0.55 * max(3, len(data)) + 1.6))
        texts = _distribution(ax, data, unit, what) if data else []
        if not data:
            _note(ax, f"the {name} scenario did not run")
        ax.set_title(f"{what} per engine", fontsize=9)
        _footer(fig, bench, note=not_measured)
        fig.tight_layout(rect=(0, FOOTER_SPACE * (2 if not_measured else 1), 1, 1))
        _labels_inside(fig, ax, texts)
        figs[name] = fig
    data = ls.bench_scaling(bench)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
    if data:
        for ax, unit, what in ((axes[0], "ms", "start-up per container: median, bars min-max of the N"),
                               (axes[1], "MiB", "memory per container: all N's cgroups / N")):
            mine = [s for s in data if s.unit == unit]
            for i, s in enumerate(mine):
                # Engines side by side at each N (a small shift on the log axis), so their bars do not overlap.
                xs = [x * 1.07 ** (i - (len(mine) - 1) / 2) for x in s.xs]
                if s.lows and s.highs:
                    ax.errorbar(xs, s.ys, yerr=[[y - lo for y, lo in zip(s.ys, s.lows, strict=True)],
                                                  [hi - y for y, hi in zip(s.ys, s.highs, strict=True)]],
                                marker="o", capsize=3, label=s.label, color=COLORS.get(s.label))
                else:
                    ax.plot(xs, s.ys, marker="o", label=s.label, color=COLORS.get(s.label))
            ax.set_xscale("log")
            ax.set_xlabel("N containers alive at once")
            ax.set_ylabel(unit)
            ax.set_title(what, fontsize=8)
            ax.set_ylim(bottom=0)
        # One legend, beside the panels: inside either it covered points (wasmer's N=1 in the memory panel).
        axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    else:
        for ax in axes:
            _note(ax, "the scaling scenario did not run")
    fig.suptitle("cost against N", fontsize=9)
    _footer(fig, bench, "n=1 round per N (a round: N starts, then the N's memory)")
    fig.tight_layout(rect=(0, FOOTER_SPACE, 1, 1))
    figs["scaling"] = fig
    data = ls.bench_bloated(bench)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    if data:
        kinds = list(dict.fromkeys(s.label for s in data))
        sizes = {s.label: s for s in data if s.unit == "MB"}
        width = 0.38
        for i, kind in enumerate(kinds):
            axes[0].bar([x + i * width for x in (0, 1)], sizes[kind].ys, width, label=kind, color=COLORS.get(kind))
            for x, y in zip((0, 1), sizes[kind].ys, strict=True):
                axes[0].annotate(f"{y:.1f} MB" if y >= 0.1 else f"{y * 1000:.1f} kB", (x + i * width, y),
                                 ha="center", va="bottom", fontsize=7)
        axes[0].set_ylim(0, max(max(s.ys) for s in sizes.values()) * 1.15)
        axes[0].set_xticks([width / 2, 1 + width / 2], ["on disk", "compressed"])
        axes[0].set_ylabel("image size (MB)")
        axes[0].legend(fontsize=8, loc="upper right")
        ms_texts = _distribution(axes[1], [s for s in data if s.unit == "ms"], "ms", "Lab.run start-up", key=False)
        mib_texts = _distribution(axes[2], [s for s in data if s.unit == "MiB"], "MiB", "cgroup peak", key=False)
        fig.text(0.99, 0.045, "boxes: quartiles; whiskers: min-max", fontsize=7, ha="right")
    else:
        ms_texts = mib_texts = []
        skipped = ((bench.get("scenarios") or {}).get("bloated") or {}).get("skipped") or "did not run"
        for ax in axes:
            _note(ax, "bloated image: " + skipped[:60])
    fig.suptitle("hello.wasm: compat image against a Debian image carrying python3 + wasmtime", fontsize=9)
    _footer(fig, bench)
    fig.tight_layout(rect=(0, FOOTER_SPACE, 1, 1))
    _labels_inside(fig, axes[1], ms_texts)
    _labels_inside(fig, axes[2], mib_texts)
    figs["bloated"] = fig
    runtime = (bench.get("scenarios") or {}).get("runtime")
    if runtime and runtime.get("floor"):
        figs["runtime"] = bench_figure(runtime, bench)
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
