"""ImageBuilder: a Containerfile editor, the variant, a Build button with progress, and the built image."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from wasmlab.lab import present
from wasmlab.lab.jupyter.panel import ASSETS, Panel, guarded, table

if TYPE_CHECKING:
    from wasmlab.runtime import Lab, Progress

VARIANT_KEY = "module.wasm.image/variant"
# The dropdown's choices: the seed's annotation values, and none (a plain Linux image).
VARIANTS = ("compat", "compat-smart", "none")
SEED_CONTEXT = ASSETS / "containerfiles" / "seed"


@dataclass(frozen=True)
class Built:
    """What a build made, as the widget shows it."""

    name: str
    digest: str
    id: str
    size: int
    layers: int
    annotations: dict[str, str]
    seconds: float
    command: list[str]                  # the image's CMD: what the runtime will run
    platform: str                       # os/architecture from the image's config
    layer_digests: list[tuple[str, int]]  # what is in the image: each layer's digest and size


@dataclass(frozen=True)
class ImageFile:
    """One file of an image's layers, as `tar tv` of the layer would show it, and what kind of program it is."""

    path: str
    size: int
    kind: str   # "Wasm module", "Linux ELF binary", "directory", "file"


def _kind(head: bytes, is_dir: bool) -> str:
    if is_dir:
        return "directory"
    if head.startswith(b"\0asm"):
        return "Wasm module"
    if head.startswith(b"\x7fELF"):
        return "Linux ELF binary"
    return "file"


def image_files(lab: Lab, name: str) -> list[ImageFile]:
    """What is inside image NAME: every file of its layers. The image is saved as an OCI archive (what `wasmlab
    save` writes: a tar holding the manifest, the config and each layer, itself a tar) and its layers are read.
    For small images: the archive is written to a temporary folder first."""
    import json
    import tarfile

    out = []
    with tempfile.TemporaryDirectory(prefix="wasmlab-image-files-") as tmp:
        archive = Path(tmp) / "image.tar"
        lab.save(name, archive)
        with tarfile.open(archive) as outer:
            def blob(digest: str) -> Any:
                return outer.extractfile("blobs/" + digest.replace(":", "/"))

            index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
            manifest = json.load(blob(index["manifests"][0]["digest"]))
            for layer in manifest["layers"]:
                with tarfile.open(fileobj=blob(layer["digest"])) as inner:
                    for member in inner:
                        data = inner.extractfile(member) if member.isfile() else None
                        head = data.read(4) if data is not None else b""
                        out.append(ImageFile("/" + member.name.lstrip("./"), member.size,
                                             _kind(head, member.isdir())))
    return out


def seed_containerfile() -> str:
    """The seed article's Containerfile, as the assets carry it."""
    return (SEED_CONTEXT / "Containerfile").read_text()


def build_image(lab: Lab, containerfile: str, *, context: str | Path = SEED_CONTEXT, tag: str = "mywasm-image",
                variant: str = "compat", progress: Callable[[Progress], None] | None = None) -> Built:
    """Build CONTAINERFILE (its text) in CONTEXT as TAG, annotated with VARIANT (or none), like
    `buildah build --annotation module.wasm.image/variant=compat -t TAG`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    annotations = {} if variant == "none" else {VARIANT_KEY: variant}
    with tempfile.TemporaryDirectory(prefix="wasmlab-containerfile-") as tmp:
        path = Path(tmp) / "Containerfile"
        path.write_text(containerfile)
        res = lab.build(context, path, tag=tag or None, annotations=annotations, progress=progress)
    details = lab.image_inspect(res.name or res.digest)
    return Built(name=res.name or "", digest=res.digest, id=res.id, size=res.size, layers=res.layers,
                 annotations=dict(res.annotations), seconds=res.seconds, command=list(details.command),
                 platform=f"{res.os}/{res.architecture}",
                 layer_digests=[(layer.digest, layer.size) for layer in details.layers])


class ImageBuilder(Panel):
    """Edit a Containerfile, pick the variant annotation, Build; shows progress, then the digest and annotations."""

    def __init__(self, lab: Lab | None = None, *, containerfile: str | None = None,
                 context: str | Path = SEED_CONTEXT, tag: str = "mywasm-image", variant: str = "compat") -> None:
        super().__init__(lab)
        self.editor = w.Textarea(value=containerfile if containerfile is not None else seed_containerfile(),
                                 description="Containerfile", layout=w.Layout(width="95%", height="8em"))
        self.context = w.Text(value=str(context), description="context", layout=w.Layout(width="95%"))
        self.tag = w.Text(value=tag, description="tag")
        self.variant = w.Dropdown(options=VARIANTS, value=variant, description="variant")
        self.button = w.Button(description="Build", button_style="primary", icon="cube")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="", layout=w.Layout(width="60%"))
        self.result = w.HTML(value="")
        self.built: Built | None = None
        self.button.on_click(self.on_build)
        self.children = [self.editor, self.context, w.HBox([self.tag, self.variant, self.button]),
                         self.progress, self.status, self.result]

    def _on_progress(self, p: Progress) -> None:
        if p.total:
            self.progress.max = p.total
            self.progress.value = p.done
        if p.what:
            self.status.value = present.progress_line(p)

    @guarded
    def on_build(self, _button: Any = None) -> Built:
        self.button.disabled = True
        self.progress.value = 0
        self.result.value = ""
        self.say("building...")
        try:
            built = build_image(self.lab, self.editor.value, context=self.context.value, tag=self.tag.value.strip(),
                                variant=self.variant.value, progress=self._on_progress)
        finally:
            self.button.disabled = False
        self.built = built
        self.progress.value = self.progress.max
        self.say(f"built {built.name or present.short_id(built.id)} in {built.seconds:.2f} s")
        rows = [["name", built.name], ["digest", built.digest], ["size", present.size(built.size)],
                ["platform", built.platform], ["command", " ".join(built.command)]]
        rows += [[f"annotation {k}", v] for k, v in sorted(built.annotations.items())]
        rows += [[f"layer {i}", f"{digest} ({present.size(size)})"]
                 for i, (digest, size) in enumerate(built.layer_digests, 1)]
        self.result.value = table(["", ""], rows)
        return built
