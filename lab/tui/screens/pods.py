"""The Pods screen: every played pod (`wasmlab pod ps`); `p` plays a preset or a YAML file, enter drills into a pod
(its containers, their handlers and exits), `l` its logs, `d`/`y` describe, and podman's pod verbs: `x` stop (the
pod stays, Exited), `s` start, `R` restart, ctrl+k kill and ctrl+d delete (both after a confirmation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from wasmlab.lab.tui.widgets.table import Column, ResourceView, ago

if TYPE_CHECKING:
    from wasmlab.runtime import Lab, PodContainer, PodInfo


class PodsView(ResourceView):
    """`wasmlab pod ps`, live."""

    COLUMNS = (Column("POD", 26, 0), Column("STATUS", 9, 1), Column("CONTAINERS", 10, 1),
               Column("HANDLERS", 18, 2), Column("PROPAGATION", 11, 4), Column("CREATED", 8, 3))
    NOUN = "pod"
    EMPTY = "press p to play a preset (the mixed pod, the face-off, ...) or a YAML file"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs", tooltip="the pod's logs, every container's lines by time"),
        Binding("d", "describe", "Describe", tooltip="describe the pod (enter drills into its containers)"),
        Binding("y", "raw", "JSON", show=False, tooltip="the pod's raw JSON"),
        Binding("x", "stop", "Stop",
                tooltip="pod stop: SIGTERM, then SIGKILL after 10 s; the pod stays (Exited) until started again"),
        Binding("s", "start", "Start", tooltip="pod start: a stopped pod's containers again, and its restartPolicy"),
        Binding("R", "restart", "Restart", show=False, tooltip="pod restart: stop the pod, then start it"),
        Binding("ctrl+k", "kill", "Kill", show=False,
                tooltip="pod kill: SIGKILL to its running containers, after a confirmation (restartPolicy applies)"),
        Binding("ctrl+d", "delete", "Delete", show=False,
                tooltip="pod rm -f: stop and remove the pod and its containers, after a confirmation"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pods: dict[str, PodInfo] = {}

    def fetch(self) -> Any:
        return self.lab.pods()

    def show(self, data: Any) -> None:
        pods: list[PodInfo] = data
        self.pods = {p.identity: p for p in pods}
        rows = []
        for p in pods:
            workers = [c for c in p.containers if c.role != "sandbox"]
            handlers = ",".join(sorted({c.handler or "-" for c in workers}))
            rows.append((p.identity, (p.identity, p.status, str(len(workers)), handlers, p.propagation,
                                      ago(p.created))))
        self.show_rows(rows)

    @property
    def selected(self) -> PodInfo | None:
        key = self.selected_key
        return self.pods.get(key) if key else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        pod = self.selected
        if pod is not None:
            self.app.push_screen(PodScreen(pod.identity))

    def action_logs(self) -> None:
        pod = self.selected
        if pod is None:
            return
        lab, name = self.lab, pod.identity

        def lines() -> dict[str, Any]:
            return {"logs": [f"{who}: {e.data.decode('utf-8', 'replace').rstrip()}" for who, e in lab.pod_logs(name)]}

        self.app.describe(f"logs of pod {name}", lines)  # type: ignore[attr-defined]

    def action_describe(self, raw: bool = False) -> None:
        pod = self.selected
        if pod is not None:
            lab, name = self.lab, pod.identity
            self.app.describe(f"pod {name}", lambda: lab.pod_inspect(name).as_dict(), raw=raw)  # type: ignore[attr-defined]

    def action_raw(self) -> None:
        self.action_describe(raw=True)

    # -- podman's pod verbs: each one Lab call in the app's worker; its answer or error comes back as a toast ------
    def pod_verb(self, verb: str, call: Callable[[Lab, str], str], *, told: str = "", ending: bool = False) -> None:
        """Run `wasmlab pod VERB` on the selected pod off the UI thread (`told`: said at once, for a slow one;
        `ending`: it stops the pod's running containers, whose exits are then no failures to tell)."""
        pod = self.selected
        if pod is None:
            return
        lab, name = self.lab, pod.identity
        if told:
            self.app.notify(f"{told} pod {name} ...", title=f"pod {verb}")
        self.app.act_ending(f"pod {verb}", name, lambda: call(lab, name),  # type: ignore[attr-defined]
                            running(pod) if ending else ())

    def action_stop(self) -> None:
        self.pod_verb("stop", lambda lab, name: f"pod {name} is {lab.pod_stop(name).status}", told="stopping",
                      ending=True)

    def action_start(self) -> None:
        self.pod_verb("start", lambda lab, name: f"pod {name} is {lab.pod_start(name).status}")

    def action_restart(self) -> None:
        self.pod_verb("restart", lambda lab, name: f"pod {name} is {lab.pod_restart(name).status}",
                      told="restarting", ending=True)

    def action_kill(self) -> None:
        pod = self.selected
        if pod is None:
            return
        lab, name = self.lab, pod.identity

        def kill() -> str:
            lab.pod_kill(name)
            return f"sent SIGKILL to the running containers of pod {name}"

        self.app.confirm(f"Kill pod [b]{name}[/b]? Its running containers get SIGKILL "  # type: ignore[attr-defined]
                         f"(restartPolicy {pod.restart_policy}).", "pod kill", name, kill,
                         running(pod, apps=True))

    def action_delete(self) -> None:
        pod = self.selected
        if pod is None:
            return
        lab, name = self.lab, pod.identity

        def remove() -> str:
            lab.pod_rm(name, force=True)
            return f"stopped and removed pod {name}"

        self.app.confirm(f"Delete pod [b]{name}[/b] and its containers?", "pod rm", name,  # type: ignore[attr-defined]
                         remove, running(pod))


def running(pod: PodInfo, *, apps: bool = False) -> list[str]:
    """The ids of the pod's containers that run (as last listed): those a stop or a delete ends; with APPS, not
    the infra container (a kill leaves it)."""
    return [c.id for c in pod.containers if c.status in ("running", "paused") and not (apps and c.role == "sandbox")]


class PodContainersView(ResourceView):
    """The containers of one pod: the sandbox, init containers and containers, with their handlers."""

    # The Kubernetes NAME is short; the LAB NAME (what `wasmlab logs` takes) grows to fill and is cut in its middle.
    COLUMNS = (Column("NAME", 14, 1), Column("ROLE", 9, 2), Column("STATUS", 9, 1), Column("EXIT", 4, 1),
               Column("HANDLER", 8, 1), Column("IMAGE", 24, 3, middle=True), Column("LAB NAME", 20, 0, middle=True))
    NOUN = "container"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs", tooltip="the container's logs, followed (enter too)"),
        Binding("d", "describe", "Describe", tooltip="describe: status, exit, handler and why, stderr tail"),
        Binding("s", "shell", "Shell", tooltip="shell: exec -it sh, in a Linux container of the pod"),
    ]

    def __init__(self, pod: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pod = pod
        self.containers: dict[str, PodContainer] = {}

    def fetch(self) -> Any:
        return self.lab.pod_inspect(self.pod)

    def show(self, data: Any) -> None:
        pod: PodInfo = data
        self.containers = {c.id: c for c in pod.containers}
        self.show_rows((c.id, (c.name, c.role, c.status, "" if c.exit_code is None else str(c.exit_code),
                               c.handler or "", c.image, c.lab_name)) for c in pod.containers)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_logs()

    @property
    def selected(self) -> PodContainer | None:
        key = self.selected_key
        return self.containers.get(key) if key else None

    def action_logs(self) -> None:
        ctr = self.selected
        if ctr is not None:
            self.app.show_logs(ctr.id, ctr.lab_name or ctr.id)  # type: ignore[attr-defined]

    def action_describe(self) -> None:
        ctr = self.selected
        if ctr is not None:
            from wasmlab.lab.tui.screens.containers import container_document

            lab, cid = self.lab, ctr.id
            self.app.describe(f"container {ctr.lab_name or cid}",  # type: ignore[attr-defined]
                              lambda: container_document(lab, cid))

    def action_shell(self) -> None:
        """`exec -it sh` in the selected container if it is a Linux one; else the pod's Linux containers are named."""
        ctr = self.selected
        if ctr is None:
            return
        if ctr.handler in (None, "native") and ctr.role != "sandbox" and ctr.status == "running":
            self.app.shell(ctr.id, ctr.lab_name or ctr.id)  # type: ignore[attr-defined]
            return
        linux = [c.name for c in self.containers.values()
                 if c.handler in (None, "native") and c.role != "sandbox" and c.status == "running"]
        if ctr.role == "sandbox":
            why = f"{ctr.name} is the pod's sandbox (pause): it has no shell"
        elif ctr.handler not in (None, "native"):
            why = f"{ctr.name} runs on {ctr.handler}: a Wasm module has no shell to open"
        else:
            why = f"{ctr.name} is {ctr.status}: a shell needs a running container"
        hint = (f"; a Linux container of this pod: {', '.join(linux)}" if linux
                else "; this pod has no running Linux container")
        self.app.notify(why + hint, title="shell", severity="warning")


class PodScreen(Screen[None]):
    """Drilled into one pod: its containers; enter or `l` for a container's logs, esc back."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, pod: str) -> None:
        super().__init__(classes="pod-screen")
        self.pod = pod

    def compose(self) -> ComposeResult:
        yield Static(f"pod [b]{self.pod}[/b]", classes="screen-title")
        yield PodContainersView(self.pod, id="pod-containers")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PodContainersView).focus_table()
