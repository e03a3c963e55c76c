"""NamespaceInspector: for each container of each pod, which namespaces are the host's, the pod's or its own
(a table, and a heat map)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from wasmlab.lab.jupyter import figures
from wasmlab.lab.jupyter.panel import Panel, guarded, table

if TYPE_CHECKING:
    from wasmlab.runtime.pods.inspect import ContainerNamespaces

TYPES = ("net", "ipc", "uts", "pid", "mnt", "cgroup", "user")
# The heat map's scale: the host's namespace, the pod's (its sandbox's), the container's own.
SHARING = {"host": 0, "sandbox": 1, "private": 2}
ALL = "(every pod)"
# Column headings as `wasmlab pod inspect-ns` prints them: a namespace column says "NS", the cgroup's folder
# "CGROUP PATH" (the process is a PID; the pid namespace is PID NS).
NS_HEADINGS = tuple(f"{t.upper()} NS" for t in TYPES)


def share_matrix(rows: Sequence[ContainerNamespaces]) -> tuple[list[str], list[list[str]]]:
    """Row labels (pod/container) and, for each row, each namespace type's sharing ("host", "sandbox",
    "private", or "" when the container has no process)."""
    labels, grid = [], []
    for r in rows:
        shared = {e.type: e.shared for e in r.namespaces}
        labels.append(f"{r.pod}/{r.container}" if r.pod else r.container)
        grid.append([shared.get(t, "") for t in TYPES])
    return labels, grid


def share_lines(rows: Sequence[ContainerNamespaces]) -> list[str]:
    """The sharing table as text, its header first: one line per container, one column per namespace type
    (host, sandbox: the pod's, private: its own, "-": no process)."""
    labels, grid = share_matrix(rows)
    width = max([len("POD/CONTAINER"), *(len(label) for label in labels)])
    lines = [f"{'POD/CONTAINER':{width}}  " + " ".join(f"{h:9}" for h in NS_HEADINGS)]
    for label, cells in zip(labels, grid, strict=True):
        lines.append(f"{label:{width}}  " + " ".join(f"{c or '-':9}" for c in cells))
    return [line.rstrip() for line in lines]


def shares_with_pod(rows: Sequence[ContainerNamespaces], container: str) -> list[str]:
    """The namespace types a running container shares with its pod's sandbox."""
    for r in rows:
        if r.container == container and r.namespaces:
            return [e.type for e in r.namespaces if e.shared == "sandbox"]
    return []


def heat_map(labels: Sequence[str], grid: Sequence[Sequence[str]]) -> Any:
    """A matplotlib figure: one row per container, one column per namespace type, coloured by sharing."""
    from matplotlib.colors import ListedColormap

    fig, ax = figures.figure(7.0, 0.5 + 0.4 * max(1, len(labels)))
    values = [[SHARING.get(cell, float("nan")) for cell in row] for row in grid] or [[float("nan")] * len(TYPES)]
    ax.imshow(values, cmap=ListedColormap(["#bbb", "#3b7", "#37b"]), vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(len(TYPES)), TYPES)
    ax.set_yticks(range(len(labels)), labels)
    for y, row in enumerate(grid):
        for x, cell in enumerate(row):
            ax.text(x, y, cell or "-", ha="center", va="center", fontsize=7)
    ax.set_title("grey: the host's   green: the pod's (sandbox)   blue: its own", fontsize=9)
    fig.tight_layout()
    return fig


class NamespaceInspector(Panel):
    """Refresh reads /proc/PID/ns of every container of the played pods (or one pod): a table and a heat map."""

    def __init__(self, lab: Any = None) -> None:
        super().__init__(lab)
        self.target = w.Dropdown(options=[ALL], value=ALL, description="pod")
        self.button = w.Button(description="Refresh", icon="refresh")
        self.table = w.HTML(value="")
        self.chart = w.Output()
        self.rows: list[ContainerNamespaces] = []
        self.button.on_click(self.on_refresh)
        self.children = [w.HBox([self.target, self.button]), self.status, self.table, self.chart]
        self.on_refresh()

    @guarded
    def on_refresh(self, _button: Any = None) -> list[ContainerNamespaces]:
        pods = [p.identity for p in self.lab.pods()]
        chosen = self.target.value if self.target.value in pods else ALL
        self.target.options = [ALL, *pods]
        self.target.value = chosen
        self.rows = self.lab.inspect_ns(None if chosen == ALL else chosen)
        labels, grid = share_matrix(self.rows)
        self.table.value = table(["POD/CONTAINER", "ROLE", "PID", *NS_HEADINGS, "CGROUP PATH"],
                                 [[label, r.role, r.pid or "-", *cells, r.cgroup]
                                  for label, r, cells in zip(labels, self.rows, grid, strict=True)])
        if self.rows:
            figures.show_png(self.chart, heat_map(labels, grid))
        else:
            self.chart.clear_output()
        self.say(f"{len(self.rows)} containers in {len(pods)} pods" if pods else "no pod is played: play one first")
        return self.rows
