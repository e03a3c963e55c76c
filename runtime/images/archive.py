"""Moving images in and out as files: oci-archive, docker-archive, OCI layout directories, Wasm artifacts.

``save`` writes what ``podman save --format oci-archive`` writes (a tar of an OCI image
layout whose index names each image with ``org.opencontainers.image.ref.name``), or a
docker-archive, or a plain OCI layout directory. ``load`` reads all of those, as written by
podman, buildah, skopeo or docker. Every blob is checked against its digest and size, and
every archive entry name is checked before anything reaches the store; a bad archive leaves
the store unchanged.

Wasm OCI artifacts (the CNCF TAG-runtime layout: config ``application/vnd.wasm.config.v0+json``
and one ``application/wasm`` layer) are converted to runnable "compat" images on load, and
`images/artifact.py` writes one from a compat image.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard
from wasmlab.runtime.errors import ImageError, StoreError
from wasmlab.runtime.handlers.detect import HANDLER_ANNOTATION
from wasmlab.runtime.images.platform import host_platform_default
from wasmlab.runtime.images.unpack import decompressed
from wasmlab.runtime.images.work import Work, stopping_cleanly, sweep_work
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import atomic_writer, canonical_json, writing_into
from wasmlab.runtime.store.layout import (
    ImageStore,
    StoredImage,
    Transaction,
    check_digest,
    manifest_blobs,
    parse_json,
)
from wasmlab.runtime.store.reference import DOCKER_HUB, parse

FORMATS = ("oci-archive", "docker-archive", "oci-dir")
MAX_JSON = 16 << 20
Progress = Callable[[str], None]
_BAD_ARCHIVE = "the archive is damaged or was not written by podman, buildah, skopeo or docker"


@dataclass(frozen=True)
class SaveResult:
    path: str
    format: str
    images: list[str]
    bytes: int
    # What the format could not carry, one line each with its hint, for a face to show as a warning.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedImage:
    name: str | None
    digest: str
    converted_from: str | None = None


@dataclass(frozen=True)
class LoadResult:
    path: str
    format: str
    images: list[LoadedImage] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [img.name for img in self.images if img.name]


# -- reading sources ------------------------------------------------------------------------


class _Source:
    """Files inside an archive or a layout directory, addressed by relative path."""

    kind = "archive"

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def open(self, rel: str) -> IO[bytes]:
        raise NotImplementedError

    def size(self, rel: str) -> int:
        raise NotImplementedError

    def read_json(self, rel: str, what: str) -> dict[str, Any]:
        if self.size(rel) > MAX_JSON:
            raise ImageError(f"{what} in the archive is too large", _BAD_ARCHIVE)
        with self.open(rel) as fh:
            data = fh.read()
        try:
            obj: dict[str, Any] = parse_json(data, what, _BAD_ARCHIVE)
        except StoreError as exc:
            raise ImageError(exc.message, exc.hint) from None
        return obj

    def blob_path(self, digest: str) -> str:
        return f"blobs/sha256/{check_digest(digest)}"


def _clean_member(name: str) -> str:
    if "\x00" in name or name.startswith("/"):
        raise ImageError(f"archive entry {name[:100]!r} has an absolute path",
                         "refusing a tar-slip archive; " + _BAD_ARCHIVE)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"archive entry {name[:100]!r} escapes the archive with '..'",
                         "refusing a tar-slip archive; " + _BAD_ARCHIVE)
    return "/".join(parts)


class _TarSource(_Source):
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            name = _clean_member(m.name)
            if m.issym() or m.islnk():
                target = m.linkname if m.islnk() else posixpath.join(posixpath.dirname(name), m.linkname)
                if m.linkname.startswith("/") or posixpath.normpath(target).startswith(".."):
                    raise ImageError(f"archive entry {m.name[:100]!r} links outside the archive",
                                     "refusing a tar-slip archive; " + _BAD_ARCHIVE)
            if name:
                self.members[name] = m

    def _member(self, rel: str, depth: int = 0) -> tarfile.TarInfo:
        m = self.members.get(rel)
        if m is None:
            raise FileNotFoundError(rel)
        if m.issym() and depth < 8:
            return self._member(posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.linkname)),
                                depth + 1)
        if m.islnk() and depth < 8:
            return self._member(_clean_member(m.linkname), depth + 1)
        if not m.isreg():
            raise FileNotFoundError(rel)
        return m

    def exists(self, rel: str) -> bool:
        try:
            self._member(rel)
        except FileNotFoundError:
            return False
        return True

    def open(self, rel: str) -> IO[bytes]:
        fh = self.tar.extractfile(self._member(rel))
        if fh is None:
            raise FileNotFoundError(rel)
        return fh

    def size(self, rel: str) -> int:
        return self._member(rel).size


class _DirSource(_Source):
    kind = "directory"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, rel: str) -> Path:
        path = (self.root / _clean_member(rel)).resolve()
        if path != self.root and self.root not in path.parents:
            raise ImageError(f"layout entry {rel!r} points outside the layout directory",
                             "refusing to follow the symlink; " + _BAD_ARCHIVE)
        return path

    def exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def open(self, rel: str) -> IO[bytes]:
        return open(self._path(rel), "rb")

    def size(self, rel: str) -> int:
        return self._path(rel).stat().st_size


@contextlib.contextmanager
def open_source(path: Path, work: Work | None = None) -> Iterator[_Source]:
    if path.is_dir():
        yield _DirSource(path)
        return
    if not path.is_file():
        raise ImageError(f"{path} does not exist", "give the path of an image archive or OCI layout")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    try:
        if magic == b"\x28\xb5\x2f\xfd":
            with tempfile.TemporaryFile(dir=work.path if work is not None else None) as tmp:
                with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr:
                    shutil.copyfileobj(zr, tmp, 1 << 20)
                tmp.seek(0)
                with tarfile.open(fileobj=tmp, mode="r:") as tar:
                    yield _TarSource(tar)
            return
        with tarfile.open(path, mode="r:*") as tar:
            yield _TarSource(tar)
    except (tarfile.TarError, EOFError, zstandard.ZstdError, gzip.BadGzipFile) as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(":") if str(exc).strip() else type(exc).__name__
        raise ImageError(f"{path.name} is not a readable image archive ({reason})",
                         "give a tar written by podman save, skopeo copy or docker save") from None


# -- loading --------------------------------------------------------------------------------


def _default_platform() -> tuple[str, str]:
    plat = host_platform_default()
    return plat.os, plat.architecture


def _pick_from_index(index: Mapping[str, Any], platform: tuple[str, str] | None) -> Mapping[str, Any]:
    children = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    images = [d for d in children if d.get("mediaType", media.OCI_MANIFEST) in media.MANIFEST_TYPES]
    if not images:
        raise ImageError("the image index lists no image manifests", _BAD_ARCHIVE)
    if len(images) == 1:
        return images[0]
    wanted = platform or _default_platform()
    for d in images:
        plat = d.get("platform") or {}
        if (plat.get("os"), plat.get("architecture")) == wanted:
            return d
    have = ", ".join(f"{(d.get('platform') or {}).get('os')}/{(d.get('platform') or {}).get('architecture')}"
                     for d in images)
    raise ImageError(f"no image for platform {wanted[0]}/{wanted[1]} in the index (has {have})",
                     "choose one of the listed platforms")


def _name_from(annotations: Mapping[str, str], default_registry: str) -> str | None:
    for key in (media.REF_NAME, media.CONTAINERD_NAME):
        value = annotations.get(key)
        if value:
            try:
                return str(parse(value, default_registry=default_registry))
            except ImageError:
                continue
    return None


class _Importer:
    """Copies verified blobs from a source into a store transaction, converting as needed."""

    def __init__(self, txn: Transaction, source: _Source, progress: Progress | None) -> None:
        self.txn = txn
        self.source = source
        self.progress = progress

    def blob(self, desc: Mapping[str, Any]) -> dict[str, Any]:
        digest = desc.get("digest")
        if not isinstance(digest, str):
            raise ImageError("a descriptor in the archive has no digest", _BAD_ARCHIVE)
        try:
            rel = self.source.blob_path(digest)
        except StoreError:
            raise ImageError(f"a descriptor in the archive has an invalid digest {digest[:40]!r}",
                             _BAD_ARCHIVE) from None
        if self.txn.has_blob(digest):
            return {"digest": digest, "size": desc.get("size")}
        if not self.source.exists(rel):
            raise ImageError(f"the archive's index points at blob {digest[:19]}, which is not in the archive",
                             _BAD_ARCHIVE)
        if self.progress:
            self.progress(f"copying blob {digest[:19]}")
        size = desc.get("size") if isinstance(desc.get("size"), int) else None
        with self.source.open(rel) as fh:
            try:
                stored: dict[str, Any] = self.txn.put_stream(fh, digest, size)
            except StoreError as exc:
                raise ImageError(f"archive {exc.message}", _BAD_ARCHIVE) from None
        return stored

    def json_blob(self, desc: Mapping[str, Any], what: str) -> dict[str, Any]:
        self.blob(desc)
        try:
            obj: dict[str, Any] = parse_json(self.txn.get_blob(str(desc["digest"])), what, _BAD_ARCHIVE)
        except StoreError as exc:
            raise ImageError(exc.message, exc.hint) from None
        return obj

    def manifest(self, desc: Mapping[str, Any],
                 platform: tuple[str, str] | None) -> tuple[str, int, str | None]:
        """Import the image a descriptor points at; returns (manifest digest, size, converted_from)."""
        mt = desc.get("mediaType", media.OCI_MANIFEST)
        if mt in media.INDEX_TYPES:
            index = self.json_blob(desc, "image index")
            return self.manifest(_pick_from_index(index, platform), platform)
        if mt not in media.MANIFEST_TYPES:
            raise ImageError(f"the archive holds a {mt!r}, not an image manifest", _BAD_ARCHIVE)
        manifest = self.json_blob(desc, "image manifest")
        if mt == media.DOCKER_MANIFEST or manifest.get("mediaType") == media.DOCKER_MANIFEST:
            return self._docker_manifest(manifest)
        config = manifest.get("config")
        if not isinstance(config, dict):
            raise ImageError("the image manifest has no config", _BAD_ARCHIVE)
        if config.get("mediaType") == media.WASM_CONFIG:
            for ref in manifest_blobs(manifest):
                self.blob(ref)
            from wasmlab.runtime.images.artifact import wasm_artifact_to_image  # it builds on this module

            digest, size = wasm_artifact_to_image(self.txn, manifest)
            return digest, size, "wasm-artifact"
        for ref in manifest_blobs(manifest):
            self.blob(ref)
        return str(desc["digest"]), int(self.txn.blob_path(str(desc["digest"])).stat().st_size), None

    def _docker_manifest(self, manifest: Mapping[str, Any]) -> tuple[str, int, str | None]:
        """Rewrite a Docker schema 2 manifest with OCI media types."""
        converted = convert_docker_manifest(manifest)
        for ref in manifest_blobs(manifest):
            self.blob(ref)
        m = self.txn.put_blob(canonical_json(converted))
        return m["digest"], m["size"], "docker"


def convert_docker_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI equivalent of a Docker schema 2 manifest (same blobs, OCI media types)."""

    def conv(d: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(d)
        out["mediaType"] = media.DOCKER_TO_OCI.get(str(d.get("mediaType")), str(d.get("mediaType")))
        return out

    result: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": conv(manifest["config"]),
        "layers": [conv(x) for x in manifest.get("layers") or []],
    }
    if manifest.get("annotations"):
        result["annotations"] = dict(manifest["annotations"])
    return result


def _load_oci(txn: Transaction, source: _Source, platform: tuple[str, str] | None,
              progress: Progress | None, rename: str | None) -> list[LoadedImage]:
    index = source.read_json("index.json", "index.json")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise ImageError("the archive's index.json lists no images", _BAD_ARCHIVE)
    importer = _Importer(txn, source, progress)
    loaded = []
    for desc in manifests:
        if not isinstance(desc, dict):
            raise ImageError("the archive's index.json has an invalid entry", _BAD_ARCHIVE)
        name = rename or _name_from(desc.get("annotations") or {}, "localhost")
        digest, size, converted = importer.manifest(desc, platform)
        extra = {k: v for k, v in (desc.get("annotations") or {}).items() if k != media.REF_NAME}
        txn.add_image(digest, name, media_type=media.OCI_MANIFEST, size=size,
                      annotations=extra if converted is None else {})
        loaded.append(LoadedImage(name, digest, converted))
    return loaded


def _load_docker(txn: Transaction, source: _Source, progress: Progress | None,
                 rename: str | None) -> list[LoadedImage]:
    try:
        with source.open("manifest.json") as fh:
            entries = json.loads(fh.read(MAX_JSON))
    except json.JSONDecodeError as exc:
        raise ImageError(f"manifest.json is not valid JSON ({exc})", _BAD_ARCHIVE) from None
    if not isinstance(entries, list) or not entries:
        raise ImageError("manifest.json lists no images", _BAD_ARCHIVE)
    loaded = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ImageError("manifest.json has an entry without Config or Layers", _BAD_ARCHIVE)
        config_rel = _clean_member(entry["Config"])
        if not source.exists(config_rel):
            raise ImageError(f"manifest.json points at {config_rel}, which is not in the archive",
                             _BAD_ARCHIVE)
        with source.open(config_rel) as fh:
            config_bytes = fh.read(MAX_JSON)
        config = parse_json(config_bytes, "the image config", _BAD_ARCHIVE)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(entry["Layers"]):
            raise ImageError(f"the image config lists {len(diff_ids)} layers but manifest.json has "
                             f"{len(entry['Layers'])}", _BAD_ARCHIVE)
        layers = []
        for rel, diff_id in zip(entry["Layers"], diff_ids, strict=True):
            layer_rel = _clean_member(str(rel))
            if not source.exists(layer_rel):
                raise ImageError(f"manifest.json points at layer {layer_rel}, which is not in the archive",
                                 _BAD_ARCHIVE)
            if progress:
                progress(f"copying layer {layer_rel}")
            with source.open(layer_rel) as fh:
                head = fh.read(4)
            with source.open(layer_rel) as fh:
                if head[:2] == b"\x1f\x8b":
                    d = txn.put_stream(fh, None, source.size(layer_rel))
                    mt = media.OCI_LAYER_GZIP
                elif head == b"\x28\xb5\x2f\xfd":
                    d = txn.put_stream(fh, None, source.size(layer_rel))
                    mt = media.OCI_LAYER_ZSTD
                else:
                    try:
                        d = txn.put_stream(fh, str(diff_id), source.size(layer_rel))
                    except StoreError as exc:
                        raise ImageError(f"layer {layer_rel} does not match the image config: {exc.message}",
                                         _BAD_ARCHIVE) from None
                    mt = media.OCI_LAYER
            layers.append({"mediaType": mt, "digest": d["digest"], "size": d["size"]})
        c = txn.put_blob(config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                    "config": {"mediaType": media.OCI_CONFIG, "digest": c["digest"], "size": c["size"]},
                    "layers": layers}
        m = txn.put_blob(canonical_json(manifest))
        tags = [str(t) for t in entry.get("RepoTags") or []]
        names: list[str | None] = []
        for tag in tags:
            try:
                names.append(str(parse(tag, default_registry=DOCKER_HUB)))
            except ImageError:
                continue
        for name in [rename] if rename else names or [None]:
            txn.add_image(m["digest"], name, size=m["size"])
            loaded.append(LoadedImage(name, m["digest"], "docker-archive"))
    return loaded


def load(store: ImageStore, path: str | os.PathLike[str], *, platform: tuple[str, str] | None = None,
         name: str | None = None, progress: Progress | None = None) -> LoadResult:
    """Load every image from an oci-archive, docker-archive or OCI layout directory.

    Names come from ``org.opencontainers.image.ref.name`` (or docker's RepoTags), unless
    NAME is given (then the archive must hold one image). Wasm OCI artifacts are converted
    to compat images. On any error the store is unchanged; a full disk raises DiskFull. SIGINT,
    SIGTERM and SIGHUP stop it cleanly; after a SIGKILL, the next load, build or prune removes
    what it staged.
    """
    with stopping_cleanly(), writing_into(store.root):
        sweep_work(store)
        with Work(store, "load") as work:
            return _load(store, Path(path), platform=platform, name=name, progress=progress, work=work)


def _load(store: ImageStore, src_path: Path, *, platform: tuple[str, str] | None, name: str | None,
          progress: Progress | None, work: Work) -> LoadResult:
    rename = str(parse(name)) if name else None
    with open_source(src_path, work) as source:
        if source.exists("oci-layout") and source.exists("index.json"):
            layout = source.read_json("oci-layout", "oci-layout")
            if not str(layout.get("imageLayoutVersion", "")).startswith("1."):
                raise ImageError(f"unsupported OCI layout version {layout.get('imageLayoutVersion')!r}",
                                 "wasmlab reads image layouts of version 1.x")
            fmt = "oci-dir" if source.kind == "directory" else "oci-archive"
            with store.transaction() as txn:
                images = _load_oci(txn, source, platform, progress, rename)
                _check_rename(images, rename)
        elif source.exists("manifest.json"):
            fmt = "docker-archive"
            with store.transaction() as txn:
                images = _load_docker(txn, source, progress, rename)
                _check_rename(images, rename)
        else:
            raise ImageError(f"{src_path.name} is neither an OCI archive nor a docker archive",
                             "it has no oci-layout/index.json and no manifest.json; " + _BAD_ARCHIVE)
    return LoadResult(str(src_path), fmt, images)


def _check_rename(images: list[LoadedImage], rename: str | None) -> None:
    if rename and len({img.digest for img in images}) > 1:
        raise ImageError(f"the archive holds {len(images)} images, so it cannot be loaded under one name",
                         "load it without a name, then tag the image you want")


# -- saving ---------------------------------------------------------------------------------


def _image_blobs(store: ImageStore, image: StoredImage) -> list[tuple[str, int]]:
    manifest = store.manifest(image)
    blobs = [(image.digest, image.size)]
    for ref in manifest_blobs(manifest):
        blobs.append((str(ref["digest"]), int(ref.get("size", 0))))
    return blobs


class TarOut:
    """A deterministic tar writer for archives (root-owned, fixed mtime)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.tar = tarfile.TarFile(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mode = mode
        info.mtime = 0
        info.uname = info.gname = ""
        return info

    def dir(self, name: str) -> None:
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode=0o755))

    def file(self, name: str, data: bytes) -> None:
        self.tar.addfile(self._info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))

    def stream(self, name: str, fh: IO[bytes], size: int) -> None:
        self.tar.addfile(self._info(name, tarfile.REGTYPE, size), fh)

    def close(self) -> None:
        self.tar.close()


def _index_for(store: ImageStore, images: list[tuple[StoredImage, str | None]]) -> dict[str, Any]:
    manifests = []
    for image, name in images:
        d: dict[str, Any] = {"mediaType": image.media_type, "digest": image.digest, "size": image.size}
        ann = dict(image.annotations)
        if name:
            ann[media.REF_NAME] = name
        if ann:
            d["annotations"] = ann
        manifests.append(d)
    return {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": manifests}


def _select(store: ImageStore, names: Sequence[str]) -> list[tuple[StoredImage, str | None]]:
    if not names:
        raise ImageError("no images to save", "name at least one image")
    chosen: list[tuple[StoredImage, str | None]] = []
    for text in names:
        image, matched = store.match(text)
        name = matched or image.name
        if (image, name) not in chosen:
            chosen.append((image, name))
    return chosen


def save(store: ImageStore, names: Sequence[str], path: str | os.PathLike[str], *,
         format: str = "oci-archive", progress: Progress | None = None) -> SaveResult:
    """Write images to PATH as an ``oci-archive`` (default), ``docker-archive`` or ``oci-dir``.

    Blobs are verified while they are copied. The file appears atomically.
    """
    if format not in FORMATS:
        raise ImageError(f"unknown archive format {format!r}", f"use one of {', '.join(FORMATS)}")
    chosen = _select(store, names)
    dest = Path(path)
    if format == "oci-dir":
        return _save_dir(store, chosen, dest, progress)
    if dest.is_dir():
        raise ImageError(f"{dest} is a directory", "give a file name such as image.tar")
    if not dest.parent.is_dir():
        raise ImageError(f"directory {dest.parent} does not exist", "create it first or choose another path")
    warnings: list[str] = []
    with atomic_writer(dest) as fh:
        out = TarOut(fh)
        if format == "oci-archive":
            _write_oci(store, chosen, out, progress)
        else:
            _write_docker(store, chosen, out, progress, warnings)
        out.close()
    return SaveResult(str(dest), format, [n or img.digest for img, n in chosen], dest.stat().st_size,
                      tuple(warnings))


def _write_oci(store: ImageStore, chosen: list[tuple[StoredImage, str | None]], out: TarOut,
               progress: Progress | None) -> None:
    blobs: dict[str, int] = {}
    for image, _ in chosen:
        for digest, size in _image_blobs(store, image):
            blobs[digest] = size
    out.file("oci-layout", canonical_json({"imageLayoutVersion": media.OCI_LAYOUT_VERSION}))
    out.file("index.json", canonical_json(_index_for(store, chosen)))
    out.dir("blobs/")
    out.dir("blobs/sha256/")
    for digest in sorted(blobs):
        if progress:
            progress(f"writing blob {digest[:19]}")
        size = store.verify_blob(digest)
        with open(store.blob_path(digest), "rb") as fh:
            out.stream(f"blobs/sha256/{digest[7:]}", fh, size)


def _write_docker(store: ImageStore, chosen: list[tuple[StoredImage, str | None]], out: TarOut,
                  progress: Progress | None, warnings: list[str]) -> None:
    entries = []
    written: set[str] = set()
    repositories: dict[str, dict[str, str]] = {}
    for image, name in chosen:
        manifest = store.manifest(image)
        config_desc = manifest["config"]
        config_bytes = store.get_blob(config_desc["digest"])
        config = parse_json(config_bytes, "image config", "")
        if lost := _lost_wasm_annotations(manifest, config):
            warnings.append(f"docker-archive has no place for annotations: {name or image.digest[:19]} loses {lost} "
                            "and, loaded again, runs as a Linux container (hint: save it as oci-archive, the "
                            "default, which keeps annotations; or build it with --platform wasi/wasm, which the "
                            "image config carries)")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        config_name = f"{config_desc['digest'][7:]}.json"
        if config_name not in written:
            out.file(config_name, config_bytes)
            written.add(config_name)
        layer_names = []
        for layer, diff_id in zip(manifest.get("layers") or [], diff_ids, strict=False):
            layer_name = f"{diff_id[7:]}.tar"
            layer_names.append(layer_name)
            if layer_name in written:
                continue
            if progress:
                progress(f"writing layer {diff_id[:19]}")
            store.verify_blob(layer["digest"], size=layer.get("size"))
            with tempfile.TemporaryFile() as tmp:
                with open(store.blob_path(layer["digest"]), "rb") as raw, decompressed(raw) as plain:
                    shutil.copyfileobj(plain, tmp, 1 << 20)
                size = tmp.tell()
                tmp.seek(0)
                out.stream(layer_name, tmp, size)
            written.add(layer_name)
        tags = [name] if name else []
        entries.append({"Config": config_name, "RepoTags": tags, "Layers": layer_names})
        if name:
            ref = parse(name)
            repositories.setdefault(ref.name, {})[ref.tag or "latest"] = diff_ids[-1][7:] if diff_ids else ""
    out.file("manifest.json", json.dumps(entries).encode())
    out.file("repositories", json.dumps(repositories).encode())


def _lost_wasm_annotations(manifest: dict[str, Any], config: dict[str, Any]) -> str:
    """The Wasm annotations a docker-archive would drop ("K=V, ..."), or "" when the config's platform
    (wasi/wasm) says Wasm anyway or there is nothing to lose."""
    if config.get("architecture") == "wasm" or str(config.get("os", "")).startswith("wasi"):
        return ""
    notes = manifest.get("annotations") or {}
    return ", ".join(f"{k}={notes[k]}" for k in (media.WASM_VARIANT, HANDLER_ANNOTATION) if k in notes)


def _save_dir(store: ImageStore, chosen: list[tuple[StoredImage, str | None]], dest: Path,
              progress: Progress | None) -> SaveResult:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ImageError(f"{dest} exists and is not an empty directory", "choose a new directory")
    created = not dest.exists()
    try:
        blobs_dir = dest / "blobs" / "sha256"
        blobs_dir.mkdir(parents=True, exist_ok=True)
        total = 0
        for image, _ in chosen:
            for digest, _size in _image_blobs(store, image):
                target = blobs_dir / digest[7:]
                if target.exists():
                    continue
                if progress:
                    progress(f"writing blob {digest[:19]}")
                store.verify_blob(digest)
                shutil.copyfile(store.blob_path(digest), target)
                total += target.stat().st_size
        (dest / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": media.OCI_LAYOUT_VERSION}))
        (dest / "index.json").write_bytes(canonical_json(_index_for(store, chosen)))
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return SaveResult(str(dest), "oci-dir", [n or img.digest for img, n in chosen], total)
