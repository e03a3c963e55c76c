"""Shared helpers for the image tests: a hello module, tar builders, store snapshots, schema checks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "data" / "image-spec"

# A WASI preview1 command that writes "hello from wasm\n" to fd 1.
HELLO_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasm\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""
SEED_CONTAINERFILE = 'FROM scratch\nCOPY hello.wasm /\nCMD ["/hello.wasm"]\n'
COMPAT = {"module.wasm.image/variant": "compat"}


@cache
def hello_wasm() -> bytes:
    import wasmtime

    return bytes(wasmtime.wat2wasm(HELLO_WAT))


def seed_context(root: Path) -> Path:
    """The workshop's seed build context: hello.wasm and a three-line Containerfile."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hello.wasm").write_bytes(hello_wasm())
    (root / "Containerfile").write_text(SEED_CONTAINERFILE)
    return root


def snapshot(root: Path) -> dict[str, Any]:
    """Every path under ROOT with its type and content hash (for byte-identical comparisons)."""
    out: dict[str, Any] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = ("symlink", os.readlink(full))
            elif full.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", hashlib.sha256(full.read_bytes()).hexdigest())
    return out


def tar_bytes(entries: Iterable[tuple[Any, ...]], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """Build a tar from (kind, name, ...) tuples.

    ("file", name, data[, mode]), ("dir", name[, mode]), ("symlink", name, target),
    ("hardlink", name, target), ("chr", name, major, minor), ("fifo", name).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for entry in entries:
            kind, name = entry[0], entry[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1
            if kind == "file":
                data = entry[2]
                info.size = len(data)
                info.mode = entry[3] if len(entry) > 3 else 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = entry[2] if len(entry) > 2 else 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry[2]
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = entry[2]
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = entry[2], entry[3]
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    return buf.getvalue()


def tar_names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return {m.name: m for m in tar.getmembers()}


def tar_file(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        fh = tar.extractfile(name)
        assert fh is not None, name
        return fh.read()


@cache
def _registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        resource = Resource.from_contents(schema, default_specification=DRAFT4)
        for base in ("https://opencontainers.org/schema/image/", "https://opencontainers.org/schema/",
                     "https://opencontainers.org/schema/image/descriptor/"):
            resources.append((base + path.name, resource))
        if "id" in schema:
            resources.append((schema["id"], resource))
    return Registry().with_resources(resources)


SCHEMAS = {
    "manifest": "image-manifest-schema.json",
    "index": "image-index-schema.json",
    "config": "config-schema.json",
    "layout": "image-layout-schema.json",
    "descriptor": "content-descriptor.json",
}


def validate(kind: str, document: Any) -> None:
    """Validate DOCUMENT (bytes or parsed JSON) against the vendored OCI image-spec schema KIND."""
    from jsonschema import Draft4Validator

    if isinstance(document, (bytes, str)):
        document = json.loads(document)
    schema = json.loads((SCHEMA_DIR / SCHEMAS[kind]).read_text())
    Draft4Validator(schema, registry=_registry()).validate(document)


def validate_layout(root: Path) -> None:
    """Check an OCI layout directory: oci-layout, index.json, and every manifest and config it names."""
    validate("layout", (root / "oci-layout").read_bytes())
    index = json.loads((root / "index.json").read_bytes())
    validate("index", index)
    for desc in index["manifests"]:
        blob = (root / "blobs" / "sha256" / desc["digest"][7:]).read_bytes()
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == desc["digest"]
        validate("manifest", blob)
        manifest = json.loads(blob)
        config = (root / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_bytes()
        if manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json":
            validate("config", config)


def store_image(store: Any, name: str | None, layers: list[bytes], section: dict[str, Any] | None = None, *,
                os_name: str = "linux", arch: str = "amd64", annotations: dict[str, str] | None = None,
                diff_ids: list[str] | None = None) -> str:
    """Put an image made of LAYERS (tar bytes, compressed or not) into STORE; return its manifest digest."""
    import gzip

    from wasmlab.runtime.store import media
    from wasmlab.runtime.store.atomic import canonical_json
    from wasmlab.runtime.store.layout import descriptor, digest_of

    descs, ids = [], []
    for data in layers:
        if data[:2] == b"\x1f\x8b":
            descs.append(descriptor(media.OCI_LAYER_GZIP, data))
            ids.append(digest_of(gzip.decompress(data)))
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            descs.append(descriptor(media.OCI_LAYER_ZSTD, data))
            ids.append(digest_of(zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()))
        else:
            descs.append(descriptor(media.OCI_LAYER, data))
            ids.append(digest_of(data))
    config = canonical_json({"architecture": arch, "os": os_name, "config": section or {},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids or ids}})
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                                "config": descriptor(media.OCI_CONFIG, config), "layers": descs}
    if annotations:
        manifest["annotations"] = annotations
    with store.transaction() as txn:
        for data in layers:
            txn.put_blob(data)
        txn.put_blob(config)
        m = txn.put_blob(canonical_json(manifest))
        txn.add_image(m["digest"], name)
    return str(m["digest"])
