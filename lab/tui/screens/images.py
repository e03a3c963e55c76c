"""The Images view: the lab's image store as a table; `r` runs the selected image detached, `d` describes it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.worker import get_current_worker
from wasmlab.lab.tui.messages import ActionDone, ActionFailed, Described, ImagesLoaded, LoadFailed, error_parts
from wasmlab.lab.tui.widgets.table import ResourceView, ago, human_size

if TYPE_CHECKING:
    from wasmlab.runtime import ImageSummary


class ImagesView(ResourceView):
    """`wasmlab images`, live."""

    COLUMNS = ("NAME", "IMAGE ID", "KIND", "PLATFORM", "SIZE", "CREATED")
    NOUN = "image"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run"),
        Binding("d", "describe", "Describe"),
        Binding("ctrl+d", "delete", "Delete"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.images: dict[str, ImageSummary] = {}

    @work(thread=True, exclusive=True, group="load")
    def reload(self) -> None:
        worker = get_current_worker()
        try:
            images = self.lab.images()
        except Exception as exc:
            self.post_message(LoadFailed(*error_parts(exc)))
            return
        if not worker.is_cancelled:
            self.post_message(ImagesLoaded(images))

    def on_images_loaded(self, message: ImagesLoaded) -> None:
        message.stop()
        self.images = {img.id: img for img in message.images}
        kinds = {"compat": "wasm", "compat-smart": "wasm-smart"}
        self.show_rows((img.id, (img.name or "<none>", img.short_id, kinds.get(img.variant, "linux"),
                                 f"{img.os}/{img.architecture}", human_size(img.size), ago(img.created)))
                       for img in message.images)

    @property
    def selected(self) -> ImageSummary | None:
        key = self.selected_key
        return self.images.get(key) if key else None

    def _ref(self, image: ImageSummary) -> str:
        return image.name or image.id

    # -- verbs -------------------------------------------------------------------------------------------------
    def action_run(self) -> None:
        image = self.selected
        if image is None:
            self.app.notify("no image selected: build one with `wasmlab build`", severity="warning")
            return
        self.app.notify(f"running {self._ref(image)} ...")
        self.run_image(self._ref(image))

    @work(thread=True, exclusive=True, group="run")
    def run_image(self, ref: str) -> None:
        try:
            run = self.lab.run(ref, detach=True)
        except Exception as exc:
            self.post_message(ActionFailed("run", ref, *error_parts(exc)))
            return
        self.post_message(ActionDone("run", ref, f"started container {run.name} (press 2 to see it)"))

    def action_describe(self) -> None:
        image = self.selected
        if image is not None:
            self.describe_image(self._ref(image))

    @work(thread=True, exclusive=True, group="describe")
    def describe_image(self, ref: str) -> None:
        try:
            details = self.lab.image_inspect(ref)
        except Exception as exc:
            self.post_message(ActionFailed("inspect", ref, *error_parts(exc)))
            return
        self.post_message(Described(f"image {ref}", dataclasses.asdict(details)))

    def action_delete(self) -> None:
        image = self.selected
        if image is None:
            return
        from wasmlab.lab.tui.screens.confirm import ConfirmScreen

        ref = self._ref(image)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.remove_image(ref)

        self.app.push_screen(ConfirmScreen(f"Delete image [b]{ref}[/b]?"), confirmed)

    @work(thread=True, exclusive=True, group="delete")
    def remove_image(self, ref: str) -> None:
        try:
            result = self.lab.rmi(ref)
        except Exception as exc:
            self.post_message(ActionFailed("rmi", ref, *error_parts(exc)))
            return
        self.post_message(ActionDone("rmi", ref, f"untagged {', '.join(result.untagged) or '-'}"))
