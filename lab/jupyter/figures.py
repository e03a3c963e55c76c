"""Matplotlib in widgets: series drawn on axes, and a figure shown as a PNG in an Output (or live with ipympl)."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasmlab.lab.series import Series

# The engines' colours, the same in every chart of the notebooks.
COLOURS = {"wasmtime": "#3b7", "wasmer": "#7a3", "native": "#37b", "bloated": "#b53"}


def figure(width: float = 8.0, height: float = 3.0, *, rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    """A figure that belongs to no pyplot state (nothing is shown twice, no GUI backend), and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols)
    return fig, axes


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def show_png(output: Any, fig: Any) -> None:
    """Replace what OUTPUT shows with FIG as a PNG (works from any thread, unlike `with output:`)."""
    from IPython.display import Image

    output.clear_output(wait=True)
    output.append_display_data(Image(data=png(fig), format="png"))  # type: ignore[no-untyped-call]


def ipympl_present() -> bool:
    """Whether live figures can be widgets (ipympl installed, and a kernel to talk to)."""
    if importlib.util.find_spec("ipympl") is None:
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def draw_series(ax: Any, series: Sequence[Series], title: str, *, message: str | None = None,
                kind: str = "line") -> None:
    """Draw SERIES on AX (lines, or bars of each series' last value); MESSAGE instead when there is too little."""
    ax.clear()
    ax.set_title(title, fontsize=10)
    if message:
        ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=9, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    unit = series[0].unit if series else ""
    if kind == "bar":
        labels = [s.label for s in series]
        values = [sorted(s.ys)[len(s.ys) // 2] if s.ys else 0.0 for s in series]  # the median
        ax.bar(labels, values, color=[COLOURS.get(label, "#999") for label in labels])
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(f"median {unit}")
        return
    for s in series:
        ax.plot(s.xs, s.ys, marker=".", label=s.label, color=COLOURS.get(s.label))
    ax.set_ylabel(unit)
    if series:
        ax.legend(fontsize=8)
