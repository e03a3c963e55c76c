"""The Containers view: `wasmlab ps -a` as a table; `l` logs, `d` describe, `s` stop, `ctrl+d` delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.worker import get_current_worker
from wasmlab.lab.tui.messages import ActionDone, ActionFailed, ContainersLoaded, Described, LoadFailed, error_parts
from wasmlab.lab.tui.widgets.table import ResourceView, ago

if TYPE_CHECKING:
    from wasmlab.runtime import ContainerInfo


class ContainersView(ResourceView):
    """Every lab container, running or not, newest first."""

    COLUMNS = ("NAME", "CONTAINER ID", "IMAGE", "STATUS", "EXIT", "HANDLER", "COMMAND", "CREATED")
    NOUN = "container"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs"),
        Binding("d", "describe", "Describe"),
        Binding("s", "stop", "Stop"),
        Binding("ctrl+d", "delete", "Delete"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.containers: dict[str, ContainerInfo] = {}

    @work(thread=True, exclusive=True, group="load")
    def reload(self) -> None:
        worker = get_current_worker()
        try:
            containers = self.lab.ps(all=True)
        except Exception as exc:
            self.post_message(LoadFailed(*error_parts(exc)))
            return
        if not worker.is_cancelled:
            self.post_message(ContainersLoaded(containers))

    def on_containers_loaded(self, message: ContainersLoaded) -> None:
        message.stop()
        self.containers = {c.id: c for c in message.containers}
        self.show_rows((c.id, (c.name, c.id, c.image, str(c.status), "" if c.exit_code is None else str(c.exit_code),
                               c.handler or "", " ".join(c.command), ago(c.created)))
                       for c in message.containers)

    @property
    def selected(self) -> ContainerInfo | None:
        key = self.selected_key
        return self.containers.get(key) if key else None

    # -- verbs -------------------------------------------------------------------------------------------------
    def action_logs(self) -> None:
        ctr = self.selected
        if ctr is not None:
            from wasmlab.lab.tui.screens.logs import LogScreen

            self.app.push_screen(LogScreen(ctr.id, ctr.name))

    def action_describe(self) -> None:
        ctr = self.selected
        if ctr is not None:
            self.describe_container(ctr.id, ctr.name)

    @work(thread=True, exclusive=True, group="describe")
    def describe_container(self, cid: str, name: str) -> None:
        try:
            document = self.lab.inspect(cid).as_dict()
        except Exception as exc:
            self.post_message(ActionFailed("inspect", name, *error_parts(exc)))
            return
        self.post_message(Described(f"container {name}", document))

    def action_stop(self) -> None:
        ctr = self.selected
        if ctr is not None:
            self.app.notify(f"stopping {ctr.name} ...")
            self.stop_container(ctr.id, ctr.name)

    @work(thread=True, exclusive=True, group="stop")
    def stop_container(self, cid: str, name: str) -> None:
        try:
            info = self.lab.stop(cid)
        except Exception as exc:
            self.post_message(ActionFailed("stop", name, *error_parts(exc)))
            return
        self.post_message(ActionDone("stop", name, f"{name} is {info.status}"))

    def action_delete(self) -> None:
        ctr = self.selected
        if ctr is None:
            return
        from wasmlab.lab.tui.screens.confirm import ConfirmScreen

        cid, name = ctr.id, ctr.name
        running = " It is still running and will be killed." if ctr.status.can_kill() else ""

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.remove_container(cid, name)

        self.app.push_screen(ConfirmScreen(f"Delete container [b]{name}[/b]?{running}"), confirmed)

    @work(thread=True, exclusive=True, group="delete")
    def remove_container(self, cid: str, name: str) -> None:
        try:
            self.lab.rm(cid, force=True)
        except Exception as exc:
            self.post_message(ActionFailed("rm", name, *error_parts(exc)))
            return
        self.post_message(ActionDone("rm", name, f"deleted {name}"))
