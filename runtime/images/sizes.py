"""An image's two sizes, defined once: on disk in the lab's store, and compressed as it would travel."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from wasmlab.runtime.store.atomic import write_atomic

GZIP_LEVEL = 6  # as podman and buildah push a layer


def image_sizes(blob_path: Any, manifest: dict[str, Any], manifest_bytes: int, cache: Path) -> tuple[int, int]:
    """(on disk, compressed) of one image, in bytes.

    - On disk: its manifest, config and layer blobs as the store holds them (what `wasmlab images` shows as SIZE).
    - Compressed: its manifest and config, and each layer gzip-compressed (level 6, as a push sends it; a layer
      stored compressed already counts as it is).

    BLOB_PATH(digest) is a blob's file; CACHE keeps each layer's gzip size by digest (blobs never change)."""
    layers = list(manifest.get("layers") or [])
    meta = manifest_bytes + int((manifest.get("config") or {}).get("size", 0))
    compressed = meta + sum(gzip_size(Path(blob_path(str(layer["digest"]))), cache) for layer in layers)
    return on_disk(manifest_bytes, manifest), compressed


def on_disk(manifest_bytes: int, manifest: dict[str, Any]) -> int:
    """An image's size on disk (see image_sizes), without reading a layer."""
    parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    return manifest_bytes + sum(int(d.get("size", 0)) for d in parts)


def gzip_size(blob: Path, cache: Path) -> int:
    """The gzip size of one layer blob (the blob's own size when it is gzip already), kept in CACHE by its name."""
    kept = cache / f"{blob.name}.gz-size"
    try:
        return int(kept.read_text())
    except (OSError, ValueError):
        pass
    with open(blob, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            return os.fstat(fh.fileno()).st_size
        fh.seek(0)
        comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        total = 0
        while chunk := fh.read(1 << 20):
            total += len(comp.compress(chunk))
        total += len(comp.flush())
    try:
        cache.mkdir(parents=True, exist_ok=True)
        write_atomic(kept, str(total).encode(), sync=False)
    except OSError:
        pass  # measured again next time
    return total
