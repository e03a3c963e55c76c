"""The Containers screen: `wasmlab ps -a` as a table; enter or `l` logs (followed), `d` describe with the handler's
explain steps, `y` raw JSON, `s` shell, `x` stop, ctrl+k kill, ctrl+d delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from wasmlab.lab.tui.widgets.table import Column, ResourceView, ago

if TYPE_CHECKING:
    from wasmlab.runtime import ContainerInfo, Lab

STDERR_TAIL = 5


def stderr_tail(lab: Lab, cid: str, lines: int = STDERR_TAIL) -> list[str]:
    """The last lines a container wrote to stderr (what a failed one said before it died)."""
    entries, _ = lab.log_entries(cid)
    err = [e.data.decode("utf-8", "replace").rstrip("\n") for e in entries if e.stream == "stderr"]
    return [line for line in err if line.strip()][-lines:]


def container_document(lab: Lab, cid: str) -> dict[str, Any]:
    """What `d` shows of a container: the inspect document, the handler's explain steps first, and for a failed
    container the tail of its stderr."""
    details = lab.inspect(cid)
    doc = details.as_dict()
    decision = ((details.state or {}).get("wasmlab") or {}).get("decision") or {}
    head: dict[str, Any] = {"name": details.info.name, "status": str(details.status), "exit_code": details.exit_code,
                            "handler": details.info.handler or "-",
                            "why this handler": list(decision.get("steps") or []) or ["(not started)"]}
    if details.exit_code:
        head["stderr (last lines)"] = stderr_tail(lab, cid) or ["(nothing on stderr)"]
    return {**head, **doc}


class ContainersView(ResourceView):
    """Every lab container, running or not, newest first."""

    COLUMNS = (Column("NAME", 18, 0, middle=True), Column("CONTAINER ID", 12, 6), Column("IMAGE", 22, 2, middle=True),
               Column("STATUS", 8, 1), Column("EXIT", 4, 1), Column("HANDLER", 8, 1), Column("COMMAND", 16, 7),
               Column("CREATED", 8, 5), Column("POD", 20, 8, middle=True))  # POD: as `ps --pod`, last to stay
    NOUN = "container"
    EMPTY = "select an image on screen 1 and press r to run it"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs", tooltip="logs, followed while it runs (enter too)"),
        Binding("d", "describe", "Describe",
                tooltip="describe: status, exit, handler and why (explain steps), stderr tail"),
        Binding("y", "raw", "JSON", show=False, tooltip="the container's raw JSON (inspect)"),
        Binding("s", "shell", "Shell", show=False, tooltip="shell: exec -it sh, in a Linux container"),
        Binding("x", "stop", "Stop", tooltip="stop: SIGTERM, then SIGKILL after 10 s"),
        Binding("ctrl+k", "kill", "Kill", show=False, tooltip="kill: SIGKILL"),
        Binding("ctrl+d", "delete", "Delete", show=False,
                tooltip="delete, after a confirmation (a running one is killed)"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.containers: dict[str, ContainerInfo] = {}

    def fetch(self) -> Any:
        return self.lab.ps(all=True)

    def show(self, data: Any) -> None:
        containers: list[ContainerInfo] = data
        self.containers = {c.id: c for c in containers}
        self.show_rows((c.id, (c.name, c.id, c.image, str(c.status), "" if c.exit_code is None else str(c.exit_code),
                               c.handler or "", " ".join(c.command), ago(c.created), c.pod or "-"))
                       for c in containers)

    @property
    def selected(self) -> ContainerInfo | None:
        key = self.selected_key
        return self.containers.get(key) if key else None

    # -- verbs -------------------------------------------------------------------------------------------------
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_logs()

    def action_logs(self) -> None:
        ctr = self.selected
        if ctr is not None:
            self.app.show_logs(ctr.id, ctr.name)  # type: ignore[attr-defined]

    def action_describe(self, raw: bool = False) -> None:
        ctr = self.selected
        if ctr is None:
            return
        lab, cid = self.lab, ctr.id
        if raw:
            self.app.describe(f"container {ctr.name}", lambda: lab.inspect(cid).as_dict(),  # type: ignore[attr-defined]
                              raw=True)
        else:
            self.app.describe(f"container {ctr.name}", lambda: container_document(lab, cid))  # type: ignore[attr-defined]

    def action_raw(self) -> None:
        self.action_describe(raw=True)

    def action_stop(self) -> None:
        ctr = self.selected
        if ctr is not None:
            lab, cid, name = self.lab, ctr.id, ctr.name
            self.app.act("stop", name, lambda: f"{name} is {lab.stop(cid).status}")  # type: ignore[attr-defined]

    def action_kill(self) -> None:
        ctr = self.selected
        if ctr is not None:
            lab, cid, name = self.lab, ctr.id, ctr.name
            self.app.act("kill", name, lambda: f"sent SIGKILL to {lab.kill(cid)}")  # type: ignore[attr-defined]

    def action_shell(self) -> None:
        ctr = self.selected
        if ctr is None:
            return
        if ctr.handler not in (None, "native"):
            self.app.notify(f"{ctr.name} runs on {ctr.handler}: a Wasm module has no shell to open",
                            title="shell", severity="warning")
            return
        self.app.shell(ctr.id, ctr.name)  # type: ignore[attr-defined]

    def action_delete(self) -> None:
        ctr = self.selected
        if ctr is None:
            return
        lab, cid, name = self.lab, ctr.id, ctr.name
        running = " It is still running and will be killed." if ctr.status.can_kill() else ""

        def remove() -> str:
            lab.rm(cid, force=True)
            return f"deleted {name}"

        self.app.confirm(f"Delete container [b]{name}[/b]?{running}", "rm", name, remove)  # type: ignore[attr-defined]
