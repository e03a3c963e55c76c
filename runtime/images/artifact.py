"""CNCF Wasm OCI artifacts: one compat image's module written as an artifact, and an artifact made a runnable image."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.images.archive import LoadResult, SaveResult, TarOut, load, open_source
from wasmlab.runtime.images.unpack import decompressed
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import atomic_writer, canonical_json
from wasmlab.runtime.store.layout import ImageStore, Transaction, descriptor, digest_of, parse_json


def _module_kind(data: bytes) -> str:
    """``wasip1`` for a core module, ``wasip2`` for a component (by the binary's version field)."""
    if data[:4] != b"\0asm" or len(data) < 8:
        raise ImageError("the Wasm layer is not a WebAssembly binary (no \\0asm header)",
                         "the artifact is damaged; fetch it again")
    return "wasip2" if data[4:8] == b"\x0d\x00\x01\x00" else "wasip1"


def wasm_artifact_to_image(txn: Transaction, manifest: Mapping[str, Any]) -> tuple[str, int]:
    """Turn a Wasm OCI artifact (its blobs already in TXN) into a runnable compat image."""
    layers = [x for x in manifest.get("layers") or [] if x.get("mediaType") == media.WASM_LAYER]
    if len(layers) != 1:
        raise ImageError(f"the Wasm artifact has {len(layers)} application/wasm layers; expected exactly one",
                         "only single-module Wasm artifacts can be converted")
    layer = layers[0]
    module = txn.get_blob(str(layer["digest"]))
    kind = _module_kind(module)
    title = str((layer.get("annotations") or {}).get(media.TITLE) or "module.wasm")
    title = posixpath.basename(title) or "module.wasm"
    if not title.endswith(".wasm"):
        title += ".wasm"
    raw = io.BytesIO()
    with tarfile.TarFile(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(title)
        info.size, info.mode, info.mtime = len(module), 0o755, 0
        tar.addfile(info, io.BytesIO(module))
    layer_bytes = raw.getvalue()
    artifact_config = parse_json(txn.get_blob(str(manifest["config"]["digest"])), "Wasm config",
                                 "the artifact is damaged; fetch it again")
    config = {
        "created": artifact_config.get("created") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "architecture": "wasm",
        "os": str(artifact_config.get("os") or kind),
        "config": {"Cmd": [f"/{title}"]},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(layer_bytes)]},
        "history": [{"created_by": "wasmlab: converted from a Wasm OCI artifact"}],
    }
    if artifact_config.get("author"):
        config["author"] = artifact_config["author"]
    config_bytes = canonical_json(config)
    txn.put_blob(layer_bytes)
    txn.put_blob(config_bytes)
    annotations = dict(manifest.get("annotations") or {})
    annotations[media.WASM_VARIANT] = media.WASM_VARIANT_COMPAT
    image_manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": descriptor(media.OCI_CONFIG, config_bytes),
        "layers": [descriptor(media.OCI_LAYER, layer_bytes)],
        "annotations": annotations,
    }
    m = txn.put_blob(canonical_json(image_manifest))
    return m["digest"], m["size"]


def _find_module(store: ImageStore, manifest: Mapping[str, Any],
                 config: Mapping[str, Any]) -> tuple[str, bytes]:
    section = config.get("config") or {}
    argv = list(section.get("Entrypoint") or []) + list(section.get("Cmd") or [])
    wanted = next((a.lstrip("/") for a in argv if a.endswith(".wasm")), None)
    found: dict[str, bytes] = {}
    for layer in manifest.get("layers") or []:
        store.verify_blob(layer["digest"], size=layer.get("size"))
        with open(store.blob_path(layer["digest"]), "rb") as fh, decompressed(fh) as plain, \
                tarfile.open(fileobj=plain, mode="r|") as tar:
            for m in tar:
                name = posixpath.normpath(m.name.lstrip("./").lstrip("/"))
                if m.isreg() and name.endswith(".wasm") and (wanted is None or name == wanted):
                    src = tar.extractfile(m)
                    found[name] = src.read() if src else b""
    if wanted and wanted in found:
        return wanted, found[wanted]
    if len(found) == 1:
        return next(iter(found.items()))
    if not found:
        raise ImageError("the image contains no .wasm module", "only Wasm images can become Wasm artifacts")
    raise ImageError(f"the image contains several .wasm modules ({', '.join(sorted(found))})",
                     "set CMD to the module to export")


def export_wasm_artifact(store: ImageStore, name: str, path: str | os.PathLike[str], *,
                         author: str | None = None) -> SaveResult:
    """Write image NAME's Wasm module as a CNCF Wasm OCI artifact.

    PATH ending in ``.tar`` gives an oci-archive; otherwise an OCI layout directory.
    """
    image = store.resolve(name)
    manifest = store.manifest(image)
    config = store.config(manifest)
    module_name, module = _find_module(store, manifest, config)
    kind = _module_kind(module)
    layer_desc = descriptor(media.WASM_LAYER, module, {media.TITLE: posixpath.basename(module_name)})
    wasm_config: dict[str, Any] = {
        "created": config.get("created") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "architecture": "wasm",
        "os": kind,
        "layerDigests": [layer_desc["digest"]],
    }
    if author:
        wasm_config["author"] = author
    config_bytes = canonical_json(wasm_config)
    annotations = {k: v for k, v in (manifest.get("annotations") or {}).items()
                   if k not in (media.WASM_VARIANT, media.BASE_NAME, media.BASE_DIGEST)}
    artifact: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "artifactType": media.WASM_CONFIG,
        "config": descriptor(media.WASM_CONFIG, config_bytes),
        "layers": [layer_desc],
    }
    if annotations:
        artifact["annotations"] = annotations
    manifest_bytes = canonical_json(artifact)
    ref_name = image.name if name not in image.names else name
    index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [
        {"mediaType": media.OCI_MANIFEST, "digest": digest_of(manifest_bytes), "size": len(manifest_bytes),
         "artifactType": media.WASM_CONFIG,
         **({"annotations": {media.REF_NAME: ref_name}} if ref_name else {})}]}
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": media.OCI_LAYOUT_VERSION}),
        "index.json": canonical_json(index),
        f"blobs/sha256/{digest_of(manifest_bytes)[7:]}": manifest_bytes,
        f"blobs/sha256/{digest_of(config_bytes)[7:]}": config_bytes,
        f"blobs/sha256/{layer_desc['digest'][7:]}": module,
    }
    dest = Path(path)
    if dest.suffix == ".tar":
        with atomic_writer(dest) as fh:
            out = TarOut(fh)
            for rel in ("oci-layout", "index.json"):
                out.file(rel, files.pop(rel))
            out.dir("blobs/")
            out.dir("blobs/sha256/")
            for rel in sorted(files):
                out.file(rel, files[rel])
            out.close()
        fmt = "oci-archive"
    else:
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise ImageError(f"{dest} exists and is not an empty directory", "choose a new directory")
        (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            (dest / rel).write_bytes(data)
        fmt = "oci-dir"
    size = dest.stat().st_size if dest.is_file() else sum(len(v) for v in files.values())
    return SaveResult(str(dest), f"wasm-artifact ({fmt})", [ref_name or image.digest], size)


def import_wasm_artifact(store: ImageStore, path: str | os.PathLike[str],
                         name: str | None = None) -> LoadResult:
    """Load a Wasm OCI artifact (layout directory or archive) as a compat image, optionally named NAME."""
    if not is_wasm_artifact(path):
        raise ImageError(f"{Path(path).name} is not a Wasm OCI artifact",
                         "use `wasmlab load` for container image archives")
    return load(store, path, name=name)


def is_wasm_artifact(path: str | os.PathLike[str]) -> bool:
    """True if PATH (layout directory or archive) holds Wasm OCI artifacts only."""
    with open_source(Path(path)) as source:
        if not source.exists("index.json"):
            return False
        index = source.read_json("index.json", "index.json")
        manifests = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
        if not manifests:
            return False
        for desc in manifests:
            if desc.get("artifactType") == media.WASM_CONFIG:
                continue
            rel = source.blob_path(str(desc.get("digest")))
            if not source.exists(rel):
                return False
            manifest = source.read_json(rel, "manifest")
            if (manifest.get("config") or {}).get("mediaType") != media.WASM_CONFIG:
                return False
        return True
