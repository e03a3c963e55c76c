"""Matplotlib figures from metrics data: the benchmark's start-up times, and run-history series."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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
