"""The Namespaces screen: a matrix of running containers (in pods and alone) against namespace types; a shared
cell (the pod sandbox's or the host's) is highlighted, and enter on a cell opens its details, with the WASI view
of a Wasm container (what its guest sees in place of the namespaces)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from wasmlab.lab.tui.widgets.table import Column, ResourceView

if TYPE_CHECKING:
    pass

TYPES = ("net", "ipc", "uts", "pid", "mnt", "cgroup", "user")
SHOWN = {"sandbox": "pod", "host": "host", "private": "own"}
STYLES = {"sandbox": "bold black on green", "host": "bold black on yellow", "private": ""}
WASI_NOTE = "a WASI guest has no syscalls: it sees only these, whatever namespaces its process is in"


class NamespacesView(ResourceView):
    """`wasmlab inspect-ns` for every pod, and each running container outside pods, as a matrix."""

    COLUMNS = (Column("CONTAINER", 22, 0), Column("ROLE", 9, 3), Column("HANDLER", 8, 2),
               *(Column(t.upper(), 6, 1 if t in ("net", "ipc", "uts", "pid", "mnt") else 2) for t in TYPES))
    NOUN = "container"
    EMPTY = "nothing running: play a pod (screen 3, p) or run an image (screen 1, r)"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "details", "Details",
                tooltip="the cell's namespace: inode, who shares it, the WASI view of a Wasm guest (enter too)")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.details: dict[str, dict[str, Any]] = {}

    def on_mount(self) -> None:
        super().on_mount()
        self.table.cursor_type = "cell"

    def fetch(self) -> Any:
        lab = self.lab
        rows = [r.as_dict() for r in lab.inspect_ns()]
        handlers: dict[str, str] = {}
        for info in lab.ps():
            handlers[info.name] = info.handler or ""
            if not info.pod:
                rows.extend(r.as_dict() for r in lab.inspect_ns(info.id))
        for pod in lab.pods():
            for c in pod.containers:
                handlers[f"{pod.identity}/{c.name}"] = c.handler or ""
        for row in rows:
            key = f"{row['pod']}/{row['container']}" if row["pod"] else row["container"]
            row["handler"] = handlers.get(key, "")
            row["key"] = key
        return rows

    def show(self, data: Any) -> None:
        self.details = {}
        out = []
        for row in data:
            if not row["namespaces"]:
                continue  # stopped: no process, no namespaces
            entries = {e["type"]: e for e in row["namespaces"]}
            cells = [row["key"].removeprefix("default/"), row["role"], row["handler"]]
            for kind in TYPES:
                e = entries.get(kind)
                cells.append(SHOWN.get(e["shared"], e["shared"]) if e else "-")
            self.details[row["key"]] = row
            out.append((row["key"], cells))
        self.show_rows(out)

    def _render_rows(self) -> None:
        super()._render_rows()
        # Shared cells stand out: the pod's (green) and the host's (yellow).
        table = self.table
        labels = [self.COLUMNS[i].label.lower() for i in self._shown_columns]
        for r in range(table.row_count):
            key = table.coordinate_to_cell_key((r, 0)).row_key.value  # type: ignore[arg-type]
            row = self.details.get(key or "")
            if row is None:
                continue
            entries = {e["type"]: e for e in row["namespaces"]}
            for c, label in enumerate(labels):
                e = entries.get(label)
                if e and STYLES.get(e["shared"]):
                    table.update_cell_at((r, c), Text(SHOWN[e["shared"]], style=STYLES[e["shared"]]))  # type: ignore[arg-type]

    def cell_at(self, row: int, column: int) -> tuple[str, str] | None:
        """(container key, namespace type or column label) of a cell of the table."""
        table = self.table
        if not (0 <= row < table.row_count and 0 <= column < len(self._shown_columns)):
            return None
        key = table.coordinate_to_cell_key((row, 0)).row_key.value  # type: ignore[arg-type]
        return key or "", self.COLUMNS[self._shown_columns[column]].label.lower()

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        self.open_cell(event.coordinate.row, event.coordinate.column)

    def action_details(self) -> None:
        self.open_cell(self.table.cursor_coordinate.row, self.table.cursor_coordinate.column)

    def open_cell(self, row: int, column: int) -> None:
        cell = self.cell_at(row, column)
        if cell is not None:
            self.open_details(*cell)

    def open_details(self, key: str, kind: str) -> None:
        """The details of one cell: the namespace KIND of container KEY (or the container, for other columns)."""
        info = self.details.get(key)
        if info is None:
            return
        entry = next((e for e in info["namespaces"] if e["type"] == kind), None)
        doc: dict[str, Any] = {"container": key, "role": info["role"], "pid": info["pid"], "handler": info["handler"],
                               "cgroup": info["cgroup"]}
        if entry is not None:
            meaning = {"sandbox": "shared with the pod's sandbox (pause) container, so with every container of the pod",
                       "host": "the host's own: not isolated", "private": "its own"}[entry["shared"]]
            doc = {"namespace": kind, "inode": entry["inode"], "shared": entry["shared"], "meaning": meaning, **doc}
            doc["same inode in"] = [k for k, r in self.details.items() if k != key and any(
                e["type"] == kind and e["inode"] == entry["inode"] for e in r["namespaces"])]
        else:
            doc["namespaces"] = {e["type"]: f"{e['inode']} ({e['shared']})" for e in info["namespaces"]}
        if info.get("wasi"):
            # The service's WASI view (Lab.inspect_ns), made from the plan the container's init follows.
            doc["WASI view"] = {**info["wasi"], "note": WASI_NOTE}

        self.app.describe(f"{kind} of {key}" if entry else key, lambda: doc)  # type: ignore[attr-defined]
