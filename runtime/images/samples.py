"""The sample images: every program in assets/ as a compat, a compat-smart and a Linux image, plus a busybox sidecar."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.images.service import Images
from wasmlab.runtime.store import media

ASSETS = Path(__file__).resolve().parents[2] / "assets"
VARIANTS = {"compat": media.WASM_VARIANT_COMPAT, "compat-smart": "compat-smart", "linux": None}
BUSYBOX = "/bin/busybox"


@dataclass(frozen=True)
class Sample:
    """One sample image that was built: its name, the program, and the variant."""

    name: str
    program: str
    variant: str
    digest: str   # the manifest's digest
    id: str = ""  # the image id, as `wasmlab images` shows it (the config's digest)


def containerfiles(assets: Path = ASSETS) -> list[tuple[str, str, Path]]:
    """(program, variant, Containerfile) for every sample program in assets/containerfiles."""
    found = []
    for folder in sorted((assets / "containerfiles").iterdir()):
        for variant in VARIANTS:
            path = folder / f"Containerfile.{variant}"
            if path.is_file():
                found.append((folder.name, variant, path))
    return found


def build_samples(images: Images, *, assets: Path = ASSETS, busybox: bool = True,
                  progress: Callable[[str], None] = lambda s: None) -> list[Sample]:
    """Build every sample as `wasmlab/PROGRAM:VARIANT` (and `wasmlab/busybox:latest` where Debian's
    busybox-static is installed). Each build is atomic; an existing tag simply moves to the new build."""
    built = []
    context = assets / "built"
    for program, variant, path in containerfiles(assets):
        name = f"wasmlab/{program}:{variant}"
        progress(name)
        annotation = VARIANTS[variant]
        res = images.build(context, path, tag=name,
                           annotations={media.WASM_VARIANT: annotation} if annotation else None)
        built.append(Sample(name, program, variant, res.digest, res.id))
    if busybox and _static_busybox():
        progress("wasmlab/busybox:latest")
        with tempfile.TemporaryDirectory(prefix="wasmlab-busybox-") as tmp:
            ctx = Path(tmp)
            busybox_context(ctx)
            res = images.build(ctx, assets / "containerfiles" / "busybox" / "Containerfile",
                               tag="wasmlab/busybox:latest")
            built.append(Sample("wasmlab/busybox:latest", "busybox", "linux", res.digest, res.id))
    return built


def busybox_context(ctx: Path) -> None:
    """What assets/containerfiles/busybox/prepare.sh makes: bin/busybox and a link per applet."""
    if not _static_busybox():
        raise ImageError("the busybox sidecar needs Debian's statically linked /bin/busybox",
                         "apt-get install busybox-static")
    (ctx / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, ctx / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", ctx / "bin" / applet)


def _static_busybox() -> bool:
    try:
        with open(BUSYBOX, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    # A dynamic executable names its interpreter; Debian's busybox-static has none.
    return head[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in head and b"/lib/ld-" not in head
