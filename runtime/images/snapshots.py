"""Layer snapshots: each layer unpacked once per chain into the lab home, shared as overlayfs lower folders."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.linux.overlay import root_mode
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import Lock, remove_tree, write_atomic
from wasmlab.runtime.store.layout import ImageStore, StoredImage
from wasmlab.runtime.store.usage import allocated


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI ChainID of each layer: a layer's content depends on the layers below (whiteouts, links)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


@dataclass(frozen=True)
class Layers:
    """The snapshots of one image, bottom first, and the folder their names are relative to."""

    root: Path
    names: list[str]           # "<12 hex>/fs" each, bottom first

    def lowerdir(self) -> str:
        """overlayfs's lowerdir option: top first, relative to root (short enough for many layers)."""
        return ":".join(reversed(self.names))


class Snapshots:
    """``<home>/snapshots``: one folder per layer chain (``<12 hex>/fs``), made whole or not at all."""

    def __init__(self, home: Path) -> None:
        self.root = home / "snapshots"

    def mode(self) -> str:
        """OVERLAY, or COPY where overlayfs is not allowed or the lab is told so (WASMLAB_ROOTFS=copy)."""
        return root_mode(self.root)[0]

    def _name(self, chain_id: str) -> str:
        return chain_id.split(":", 1)[-1][:12]

    def prepare(self, store: ImageStore, manifest: Mapping[str, Any], config: Mapping[str, Any],
                progress: Callable[[str], None] | None = None) -> Layers:
        """The image's layers as snapshots, unpacking those not made yet (each once, under a lock)."""
        from wasmlab.runtime.images.unpack import ExtractLimits, ExtractReport, extract_layers

        layers = list(manifest.get("layers") or [])
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise ImageError(f"the image config lists {len(diff_ids)} layers but the manifest has {len(layers)}",
                             "the image is damaged; pull, load or build it again")
        self.root.mkdir(parents=True, exist_ok=True)
        names: list[str] = []
        lowers: list[Path] = []  # top first, for the extractor
        report = ExtractReport()  # one budget for the whole image, as when extracting it in one go
        for i, (layer, chain) in enumerate(zip(layers, chain_ids(diff_ids), strict=True)):
            name = self._name(chain)
            final = self.root / name
            if not (final / "fs").is_dir():
                mt = layer.get("mediaType", media.OCI_LAYER)
                if mt not in media.LAYER_TYPES:
                    raise ImageError(f"layer {layer['digest'][:19]} has media type {mt!r}, which cannot be unpacked",
                                     "only tar layers (plain, gzip or zstd) can be unpacked into a rootfs")
                with Lock(self.root / f".{name}.lock"):
                    if not (final / "fs").is_dir():
                        self.sweep()  # what a killed unpack left: never used, removed before more is made
                        if progress is not None:
                            progress(f"unpacking layer {i + 1}/{len(layers)} once")
                        self._make(store, layer, diff_ids[i], chain, final, lowers, report,
                                   ExtractLimits(), extract_layers)
            names.append(f"{name}/fs")
            lowers.insert(0, final / "fs")
        return Layers(self.root, names)

    def _make(self, store: ImageStore, layer: Mapping[str, Any], diff_id: str, chain: str, final: Path,
              lowers: list[Path], report: Any, limits: Any, extract: Any) -> None:
        """Extract into a work folder held by our lock, then rename it into place: a crash leaves only a
        work folder, which nobody uses and the next sweep removes."""
        work = self.root / f".work-{secrets.token_hex(6)}"
        lock = Lock(self.root / f"{work.name}.lock")
        lock.acquire()
        try:
            (work / "fs").mkdir(parents=True)
            store.verify_blob(layer["digest"], size=layer.get("size"))
            path = store.blob_path(layer["digest"])
            extract([functools.partial(open, path, "rb")], work / "fs", diff_ids=[diff_id], limits=limits,
                    lowers=list(lowers), report=report)
            os.chmod(work / "fs", 0o755)
            write_atomic(work / "meta.json", json.dumps({"chain_id": chain, "diff_id": diff_id,
                                                         "layer": layer["digest"]}).encode(), sync=False)
            os.rename(work, final)
        finally:
            if work.exists():
                remove_tree(str(work))
            lock.release()
            with contextlib.suppress(OSError):
                os.unlink(lock.path)

    def sweep(self) -> int:
        """Remove work folders whose owner is gone (killed mid-unpack); returns how many."""
        removed = 0
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0
        for entry in entries:
            if not entry.name.startswith(".work-") or entry.name.endswith(".lock"):
                continue
            lock = Lock(self.root / f"{entry.name}.lock")
            if not lock.acquire(blocking=False):
                continue  # its owner is still at work
            try:
                remove_tree(entry.path)
                removed += 1
            finally:
                lock.release()
                with contextlib.suppress(OSError):
                    os.unlink(lock.path)
        return removed

    def folders(self) -> list[Path]:
        """The snapshots made (whole): one folder per layer chain."""
        try:
            return sorted(Path(e.path) for e in os.scandir(self.root)
                          if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
        except OSError:
            return []

    def work(self) -> list[tuple[Path, bool]]:
        """Unpacks in progress (True) or left by a killed one (False: the next unpack or prune removes it)."""
        out: list[tuple[Path, bool]] = []
        try:
            entries = [e for e in os.scandir(self.root) if e.name.startswith(".work-") and not e.name.endswith(".lock")]
        except OSError:
            return out
        for entry in entries:
            try:  # never made here: looking must not create lock files
                fd = os.open(self.root / f"{entry.name}.lock", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                out.append((Path(entry.path), False))
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                out.append((Path(entry.path), False))
            except BlockingIOError:
                out.append((Path(entry.path), True))
            finally:
                os.close(fd)
        return out

    def used_by(self, store: ImageStore, images: Iterable[StoredImage]) -> set[str]:
        """The snapshot folders these images need."""
        wanted: set[str] = set()
        for image in images:
            try:
                manifest = store.manifest(image)
                if manifest.get("layers") is None:
                    continue
                diff_ids = list((store.config(manifest).get("rootfs") or {}).get("diff_ids") or [])
            except Exception:
                continue  # an index (multi-platform) or a damaged image: it holds no snapshot of its own
            wanted.update(self._name(c) for c in chain_ids(diff_ids))
        return wanted

    def prune(self, keep: set[str]) -> tuple[int, int]:
        """Remove the snapshots not in KEEP (their last image is gone) and stale work; (count, bytes)."""
        self.sweep()
        count = freed = 0
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0, 0
        for entry in entries:
            if entry.name.startswith(".") or entry.name in keep or not entry.is_dir(follow_symlinks=False):
                continue
            with Lock(self.root / f".{entry.name}.lock"):
                freed += allocated([entry.path])
                remove_tree(entry.path)
            with contextlib.suppress(OSError):
                os.unlink(self.root / f".{entry.name}.lock")
            count += 1
        return count, freed
