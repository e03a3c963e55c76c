"""What assets/ offers the TUI's dialogs: the Containerfiles to build and the pod presets to play."""

from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"
VARIANTS = ("compat", "compat-smart", "none")


@dataclass(frozen=True)
class Recipe:
    """One Containerfile of assets/: where it is, the context it builds in, and the tag and variant it suggests."""

    label: str
    containerfile: Path
    context: Path
    tag: str
    variant: str  # "compat", "compat-smart" or "none" (a Linux image)


@dataclass(frozen=True)
class Preset:
    """One pod YAML of assets/pods/: its file and its opening comment, which says what it shows."""

    name: str
    path: Path
    about: str  # the whole opening comment: its sentences joined, its indented command lines on their own
    propagation: str = "crio"
    pod_annotations: str = ""  # containerd's allowlist, as the file's own `wasmlab kube play` line gives it

    @property
    def summary(self) -> str:
        """The first sentence of `about`, whole."""
        first = self.about.split("\n", 1)[0]
        head, dot, _ = first.partition(". ")
        return head + dot.strip() if dot else first


def recipe_for(containerfile: Path) -> Recipe:
    """A Containerfile's context, tag and variant: assets' samples build in assets/built and say their variant in
    their suffix (Containerfile.compat); any other Containerfile builds in its own folder, as a compat image."""
    program = containerfile.parent.name or "image"
    suffix = containerfile.name.partition(".")[2]
    if suffix:
        variant = "none" if suffix == "linux" else suffix
        context = ASSETS / "built" if containerfile.is_relative_to(ASSETS) else containerfile.parent
        return Recipe(f"{program} ({suffix})", containerfile, context, f"wasmlab/{program}:{suffix}", variant)
    tag = "mywasm-image" if program == "seed" else f"localhost/{program}:latest"
    variant = "compat" if ".wasm" in containerfile.read_text(errors="replace") else "none"
    return Recipe(program, containerfile, containerfile.parent, tag, variant)


def recipes(assets: Path | None = None) -> list[Recipe]:
    """Every Containerfile under assets/containerfiles (ASSETS unless given), the seed's first."""
    assets = assets or ASSETS
    found = [recipe_for(p) for p in sorted((assets / "containerfiles").glob("*/Containerfile*"))]
    return sorted(found, key=lambda r: (r.containerfile.parent.name != "seed", r.label))


def presets(assets: Path | None = None) -> list[Preset]:
    """Every pod YAML under assets/pods (ASSETS unless given), by name (mixed-compat before mixed-compat-smart)."""
    assets = assets or ASSETS
    out = []
    for path in sorted((assets / "pods").glob("*.yaml"), key=lambda p: p.stem):
        lines: list[str] = [""]
        propagation, allow = "crio", ""
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            raw = line[1:].removeprefix(" ")
            text = raw.strip()
            if not text or raw[:1].isspace():  # a blank comment line, or an indented command: a line of its own
                lines += [text, ""] if text else ([""] if lines[-1] else [])
            else:
                lines[-1] = f"{lines[-1]} {text}".strip()
            if text.startswith("wasmlab kube play"):
                words = shlex.split(text)
                for flag, value in itertools.pairwise(words):
                    if flag == "--propagation":
                        propagation = value
                    elif flag == "--pod-annotations":
                        allow = value
        about = "\n".join(line for line in lines if line)
        out.append(Preset(path.stem, path, about, propagation, allow))
    return out
