"""The Images screen: one row per image name (an image with two names has two rows); enter or `d` describes it,
`y` shows its raw JSON, `r` opens the run dialog on it, `b` the build dialog, ctrl+d deletes a name."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from wasmlab.lab.tui.messages import ImagesCounted
from wasmlab.lab.tui.widgets.table import Column, ResourceView, ago, human_size

if TYPE_CHECKING:
    from wasmlab.runtime import ImageSummary

KINDS = {"compat": "wasm", "compat-smart": "wasm-smart"}


class ImagesView(ResourceView):
    """`wasmlab images`, live."""

    COLUMNS = (Column("NAME", 34, 0), Column("IMAGE ID", 12, 2), Column("KIND", 10, 1),
               Column("PLATFORM", 11, 4), Column("SIZE", 8, 3), Column("CREATED", 8, 5))
    NOUN = "image"
    EMPTY = "press b to build one, or : then samples to build the sample images"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "app.run_dialog", "Run", tooltip="run dialog on the selected image"),
        Binding("d", "describe", "Describe", tooltip="describe the image (enter too): names, annotations, layers"),
        Binding("y", "raw", "JSON", show=False, tooltip="the image's raw JSON (inspect)"),
        Binding("ctrl+d", "delete", "Delete", show=False, tooltip="delete the selected name, after a confirmation"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.images: dict[str, ImageSummary] = {}

    def fetch(self) -> Any:
        return self.lab.images()

    def show(self, data: Any) -> None:
        images: list[ImageSummary] = data
        self.images = {}
        rows = []
        for img in images:
            for name in img.names or [img.name or "<none>"]:
                key = f"{img.id}|{name}"
                self.images[key] = img
                rows.append((key, (name, img.short_id, KINDS.get(img.variant, "linux"),
                                   f"{img.os}/{img.architecture}", human_size(img.size), ago(img.created))))
        self.show_rows(rows)
        self.app.post_message(ImagesCounted(len(images)))

    @property
    def selected(self) -> ImageSummary | None:
        key = self.selected_key
        return self.images.get(key) if key else None

    @property
    def selected_ref(self) -> str | None:
        key = self.selected_key
        if not key or key not in self.images:
            return None
        name = key.partition("|")[2]
        return self.images[key].id if name == "<none>" else name

    # -- verbs -------------------------------------------------------------------------------------------------
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_describe()

    def action_describe(self, raw: bool = False) -> None:
        ref = self.selected_ref
        if ref is None:
            return
        lab = self.lab

        def details() -> dict[str, Any]:
            return dataclasses.asdict(lab.image_inspect(ref))

        self.app.describe(f"image {ref}", details, raw=raw)  # type: ignore[attr-defined]

    def action_raw(self) -> None:
        self.action_describe(raw=True)

    def action_delete(self) -> None:
        ref = self.selected_ref
        if ref is None:
            return
        lab = self.lab

        def remove() -> str:
            result = lab.rmi(ref)
            return f"untagged {', '.join(result.untagged) or '-'}"

        self.app.confirm(f"Delete image [b]{ref}[/b]?", "rmi", ref, remove)  # type: ignore[attr-defined]

