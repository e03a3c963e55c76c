"""The embedded OCI image layout store: ``oci-layout``, ``index.json`` and ``blobs/sha256``.

Layout of ``<home>/images``::

    oci-layout            {"imageLayoutVersion": "1.0.0"}
    index.json            one manifest descriptor per image name (annotation
                          org.opencontainers.image.ref.name = "localhost/name:tag");
                          a descriptor without the annotation is a dangling image
    blobs/sha256/<hex>    content-addressed blobs, verified on every read
    .wasmlab/             not part of the OCI layout: lock files, staging areas (staging/) and the
                          work folders of builds and loads (work/), each held by its owner's lock

Writers work in a :class:`Transaction`: blobs are written (fsync'd) into a private
staging directory while a shared "writers" lock is held, and only on commit are they
renamed into ``blobs/`` and the index replaced atomically under the index lock.
Pruning takes the writers lock exclusively, so it never deletes a blob a writer is about
to reference. A writer that fails or is killed leaves neither a half-written blob nor a
corrupt index: a failure removes its staging directory, and a killed writer's staging
directory (whose owner lock died with it, see store/work.py) is swept by the next writer or prune.
A full disk met while writing raises DiskFull naming the store's folder; the store is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wasmlab.runtime.errors import ImageError, ImageNotFound, StoreError
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import TMP_PREFIX, Lock, canonical_json, fsync_dir, write_atomic, writing_into
from wasmlab.runtime.store.home import images_root
from wasmlab.runtime.store.reference import has_registry, is_digest, normalize, parse
from wasmlab.runtime.store.work import WorkFolder, claim, stop_signals_held, sweep

SMALL_BLOB = 64 << 10  # manifests and configs: read and hashed once per process, then kept
CHUNK = 1 << 20
_HEX = set("0123456789abcdef")

Descriptor = dict[str, Any]
ByteProgress = Callable[[int], None]


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of DATA."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> Descriptor:
    """An OCI content descriptor for DATA."""
    d: Descriptor = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def check_digest(digest: str) -> str:
    """Return the hex part of a ``sha256:`` digest, or raise StoreError."""
    if not isinstance(digest, str) or not is_digest(digest):
        raise StoreError(f"unsupported or malformed digest {str(digest)[:80]!r}",
                         "wasmlab stores sha256 digests written as sha256:<64 lowercase hex digits>")
    return digest[7:]


def manifest_blobs(manifest: Mapping[str, Any]) -> list[Descriptor]:
    """The config and layer descriptors a manifest references (subject excluded)."""
    out: list[Descriptor] = []
    config = manifest.get("config")
    if isinstance(config, dict):
        out.append(config)
    layers = manifest.get("layers")
    if isinstance(layers, list):
        out.extend(x for x in layers if isinstance(x, dict))
    return out


def parse_json(data: bytes, what: str, hint: str) -> dict[str, Any]:
    """Parse a JSON object or raise StoreError naming WHAT."""
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{what} is not valid JSON ({exc})", hint) from None
    if not isinstance(obj, dict):
        raise StoreError(f"{what} is not a JSON object", hint)
    return obj


@dataclass(frozen=True)
class StoredImage:
    """One image in the index: its manifest descriptor and the names that point at it."""

    digest: str
    size: int
    media_type: str
    names: tuple[str, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        """The first name, or None for a dangling image."""
        return self.names[0] if self.names else None


@dataclass
class PruneReport:
    """What a prune removed (``bytes``: blobs, by size, plus the disk space of swept staging folders)."""

    blobs: list[str] = field(default_factory=list)
    bytes: int = 0
    images: list[str] = field(default_factory=list)
    staging: int = 0


class _VerifyingReader:
    """Reads a blob file and raises StoreError at EOF if its digest or size is wrong."""

    def __init__(self, store: ImageStore, digest: str, fh: IO[bytes]) -> None:
        self._store, self._digest, self._fh = store, digest, fh
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if data:
            self._hash.update(data)
            self._size += len(data)
        elif not self._done and n != 0:
            self._done = True
            if "sha256:" + self._hash.hexdigest() != self._digest:
                raise self._store.corrupt(self._digest)
        return data

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> _VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageStore:
    """An OCI image layout on disk, with names, verification, locking and pruning."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else images_root()
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.index_path = self.root / "index.json"
        self.layout_path = self.root / media.OCI_LAYOUT_FILE
        self.state_dir = self.root / ".wasmlab"
        self.staging_dir = self.state_dir / "staging"
        self.work_dir = self.state_dir / "work"
        self._index_lock = self.state_dir / "index.lock"
        self._small: dict[str, tuple[tuple[int, int, int], bytes]] = {}  # digest -> (file identity, content)
        self._writers_lock = self.state_dir / "writers.lock"

    # -- layout ------------------------------------------------------------------------------

    def exists(self) -> bool:
        """True once the layout has been created."""
        return self.layout_path.is_file() and self.index_path.is_file()

    def init(self) -> None:
        """Create the layout if it does not exist yet (idempotent, safe to race)."""
        try:
            with writing_into(self.root):
                self.blobs_dir.mkdir(parents=True, exist_ok=True)
                self.staging_dir.mkdir(parents=True, exist_ok=True)
                self.work_dir.mkdir(parents=True, exist_ok=True)
                for lock in (self._index_lock, self._writers_lock):
                    if not lock.exists():
                        lock.touch()
                if not self.layout_path.exists():
                    layout = {"imageLayoutVersion": media.OCI_LAYOUT_VERSION}
                    write_atomic(self.layout_path, canonical_json(layout))
                if not self.index_path.exists():
                    with Lock(self._index_lock):
                        if not self.index_path.exists():
                            write_atomic(self.index_path, canonical_json(self._empty_index()))
        except OSError as exc:
            raise StoreError(f"cannot create the image store at {self.root}: {exc.strerror}",
                             "check that WASMLAB_HOME points to a writable directory") from None

    @staticmethod
    def _empty_index() -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": []}

    def read_index(self) -> dict[str, Any]:
        """The parsed ``index.json`` (an empty index if the store does not exist yet)."""
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            return self._empty_index()
        except OSError as exc:
            raise StoreError(f"cannot read {self.index_path}: {exc.strerror}",
                             "check the file permissions") from None
        hint = f"the image index {self.index_path} is damaged; move it aside to start with an empty store"
        index = parse_json(data, "the image index", hint)
        manifests = index.get("manifests")
        if not isinstance(manifests, list) or not all(
                isinstance(d, dict) and isinstance(d.get("digest"), str) for d in manifests):
            raise StoreError("the image index has no valid \"manifests\" list", hint)
        return index

    # -- blobs -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / check_digest(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def corrupt(self, digest: str) -> StoreError:
        return StoreError(f"blob {digest[:19]} in the image store is corrupt "
                          "(its content does not match its digest)",
                          "remove the images that use it (`wasmlab rmi`), then"
                          " pull, load or build them again")

    def missing(self, digest: str, what: str = "blob") -> StoreError:
        return StoreError(f"{what} {digest[:19]} is missing from the image store",
                          "remove the image (`wasmlab rmi`) and pull, load or build it again")

    def get_blob(self, digest: str, *, size: int | None = None) -> bytes:
        """Read a whole blob, verifying its digest (and SIZE, if given).

        Small blobs (manifests, configs: what every container start reads) are kept once verified, for as long
        as the file is the same one (a stat, instead of a read and a hash)."""
        path = self.blob_path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise self.missing(digest) from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {digest[:19]}: {exc.strerror}",
                             "check the file permissions") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        kept = self._small.get(digest)
        if kept is not None and kept[0] == key and (size is None or len(kept[1]) == size):
            return kept[1]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self.missing(digest) from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {digest[:19]}: {exc.strerror}",
                             "check the file permissions") from None
        if digest_of(data) != digest or (size is not None and len(data) != size):
            raise self.corrupt(digest)
        if len(data) <= SMALL_BLOB:
            if len(self._small) >= 512:
                self._small.clear()
            self._small[digest] = (key, data)
        return data

    def verify_blob(self, digest: str, *, size: int | None = None) -> int:
        """Hash a blob on disk without loading it; return its size or raise StoreError."""
        h = hashlib.sha256()
        total = 0
        try:
            with open(self.blob_path(digest), "rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    total += len(chunk)
        except FileNotFoundError:
            raise self.missing(digest) from None
        if "sha256:" + h.hexdigest() != digest or (size is not None and total != size):
            raise self.corrupt(digest)
        return total

    def open_blob(self, digest: str) -> _VerifyingReader:
        """A reader over a blob that raises StoreError at EOF if the content is corrupt."""
        try:
            fh = open(self.blob_path(digest), "rb")  # noqa: SIM115 - closed by the reader
        except FileNotFoundError:
            raise self.missing(digest) from None
        return _VerifyingReader(self, digest, fh)

    def get_json(self, digest: str, what: str, *, size: int | None = None) -> dict[str, Any]:
        return parse_json(self.get_blob(digest, size=size), f"{what} {digest[:19]}",
                          "remove the image (`wasmlab rmi`) and pull, load or build it again")

    def put_blob(self, data: bytes, digest: str | None = None) -> Descriptor:
        """Store DATA as a blob (verifying DIGEST if given). Returns ``{digest, size}``.

        The blob stays unreferenced until an image points at it, so a prune may remove it;
        use a :meth:`transaction` to add blobs and images together.
        """
        with self.transaction() as txn:
            d = txn.put_blob(data, digest)
        return d

    # -- images ------------------------------------------------------------------------------

    def images(self) -> list[StoredImage]:
        """All images in index order, one entry per manifest digest."""
        order: list[str] = []
        by_digest: dict[str, tuple[Descriptor, list[str]]] = {}
        for d in self.read_index()["manifests"]:
            digest = d["digest"]
            name = (d.get("annotations") or {}).get(media.REF_NAME)
            if digest not in by_digest:
                order.append(digest)
                by_digest[digest] = (d, [])
            if name:
                by_digest[digest][1].append(name)
        out = []
        for digest in order:
            d, names = by_digest[digest]
            ann = {k: v for k, v in (d.get("annotations") or {}).items() if k != media.REF_NAME}
            out.append(StoredImage(digest, int(d.get("size", 0)), str(d.get("mediaType", media.OCI_MANIFEST)),
                                   tuple(names), ann))
        return out

    def manifest(self, image: StoredImage) -> dict[str, Any]:
        """The image's manifest, verified."""
        return self.get_json(image.digest, "manifest", size=image.size or None)

    def config(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The image config a manifest points at, verified."""
        cfg = manifest.get("config")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("digest"), str):
            raise StoreError("the image manifest has no config descriptor",
                             "remove the image and pull, load or build it again")
        return self.get_json(cfg["digest"], "image config", size=cfg.get("size"))

    def config_digest(self, image: StoredImage) -> str:
        return str(self.manifest(image)["config"]["digest"])

    def resolve(self, name_or_id: str) -> StoredImage:
        """Find an image by name (podman-style short names work), digest or ID prefix."""
        return self.match(name_or_id)[0]

    def match(self, name_or_id: str) -> tuple[StoredImage, str | None]:
        """The image and the name that matched (None when matched by ID or digest)."""
        text = name_or_id.strip()
        images = self.images()
        hint = "run `wasmlab images` to list images, or build, pull or load it first"
        if not text:
            raise ImageError("no image name given", hint)
        try:
            ref = parse(text)
        except ImageError:
            ref = None
        if ref is not None and ref.digest:
            for img in images:
                if img.digest == ref.digest:
                    return img, None
        if ref is not None and not ref.digest:
            wanted = str(ref)
            for img in images:
                if wanted in img.names:
                    return img, wanted
            if not has_registry(text):
                tails = {f"{ref.repository}:{ref.tag}", f"library/{ref.repository}:{ref.tag}"}
                hits = [(img, n) for img in images for n in img.names if n.split("/", 1)[-1] in tails]
                if len(hits) == 1:
                    return hits[0]
                if len(hits) > 1:
                    names = ", ".join(sorted(n for _, n in hits))
                    raise ImageError(f"short name {text!r} matches several images: {names}",
                                     "use the full name, such as localhost/name:tag")
        prefix = text.removeprefix("sha256:")
        if len(prefix) >= 4 and set(prefix) <= _HEX:
            found = [img for img in images if img.digest[7:].startswith(prefix)]
            if not found:
                found = [img for img in images if self._safe_config_digest(img)[7:].startswith(prefix)]
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                raise ImageError(f"image ID {text!r} is ambiguous", "give more hex digits of the ID")
        raise ImageNotFound(f"image {text!r} not found in the store", hint)

    def _safe_config_digest(self, image: StoredImage) -> str:
        try:
            return self.config_digest(image)
        except (StoreError, KeyError, TypeError):
            return "sha256:"

    def tag(self, source: str, target: str) -> str:
        """Give the image SOURCE the additional name TARGET; returns the normalised name."""
        image = self.resolve(source)
        if parse(target).digest:
            raise ImageError(f"cannot tag with a digest reference ({target!r}): a digest names content, not a tag",
                             "give a name with an optional :tag, such as localhost/hello:v2")
        name: str = normalize(target)
        with self.transaction() as txn:
            txn.add_image(image.digest, name, media_type=image.media_type, size=image.size)
        return name

    def untag(self, name_or_id: str, *, collect: bool = True) -> StoredImage:
        """Remove a name; if it was the image's last name, or an ID was given, remove the image.

        Unreferenced blobs are then pruned if no writer is busy (else by a later prune).
        """
        image, wanted = self.match(name_or_id)
        drop_all = wanted is None
        self.init()
        with Lock(self._index_lock):
            index = self.read_index()
            kept = []
            for d in index["manifests"]:
                if d["digest"] == image.digest:
                    name = (d.get("annotations") or {}).get(media.REF_NAME)
                    if drop_all or name == wanted or not name:
                        continue
                kept.append(d)
            index["manifests"] = kept
            write_atomic(self.index_path, canonical_json(index))
        if collect:
            self.prune(blocking=False)
        return image

    # -- writing -----------------------------------------------------------------------------

    def transaction(self) -> Transaction:
        """Start a write: ``with store.transaction() as txn: txn.put_blob(...); txn.add_image(...)``."""
        return Transaction(self)

    def reachable(self, index: dict[str, Any]) -> set[str]:
        """Every blob digest the index references, following manifests and nested indexes."""
        seen: set[str] = set()
        todo: list[Descriptor] = list(index.get("manifests") or [])
        while todo:
            d = todo.pop()
            digest = d.get("digest")
            if not isinstance(digest, str) or digest in seen or not is_digest(digest):
                continue
            seen.add(digest)
            mt = d.get("mediaType", "")
            if mt in media.MANIFEST_TYPES or mt in media.INDEX_TYPES:
                try:
                    obj = self.get_json(digest, "manifest")
                except StoreError:
                    continue
                todo.extend(manifest_blobs(obj))
                todo.extend(x for x in obj.get("manifests") or [] if isinstance(x, dict))
        return seen

    def prune(self, *, dangling: bool = False, blocking: bool = True) -> PruneReport:
        """Delete unreferenced blobs, leftover temp files and stale staging areas.

        ``dangling=True`` first removes images that have no name (like ``podman image prune``).
        With ``blocking=False`` nothing happens if a writer is busy.
        """
        report = PruneReport()
        if not self.exists():
            return report
        writers = Lock(self._writers_lock)
        if not writers.acquire(blocking=blocking):
            return report
        try:
            with Lock(self._index_lock):
                index = self.read_index()
                if dangling:
                    named = [d for d in index["manifests"]
                             if (d.get("annotations") or {}).get(media.REF_NAME)]
                    named_digests = {d["digest"] for d in named}
                    report.images = sorted({d["digest"] for d in index["manifests"]} - named_digests)
                    if report.images:
                        index["manifests"] = named
                        write_atomic(self.index_path, canonical_json(index))
                keep = self.reachable(index)
                for entry in os.scandir(self.blobs_dir):
                    if entry.name.startswith(TMP_PREFIX) or f"sha256:{entry.name}" not in keep:
                        report.bytes += entry.stat(follow_symlinks=False).st_size
                        if not entry.name.startswith(TMP_PREFIX):
                            report.blobs.append(f"sha256:{entry.name}")
                        os.unlink(entry.path)
                # Under the exclusive writers lock no transaction is at work: every staging folder left is
                # a killed writer's (a live one's owner lock would keep it anyway).
                swept = sweep(self.staging_dir)
                report.staging = len(swept.folders)
                report.bytes += swept.bytes
                for entry in os.scandir(self.root):
                    if entry.name.startswith(TMP_PREFIX):
                        os.unlink(entry.path)
            fsync_dir(self.blobs_dir)
        finally:
            writers.release()
        report.blobs.sort()
        return report


class Transaction:
    """A batch of blob writes and image names, applied all at once on commit.

    Use it as a context manager: a clean exit commits, an exception rolls back and
    leaves the store exactly as it was.
    """

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self._staged: dict[str, Path] = {}
        self._images: list[tuple[str, str | None, str, int, dict[str, str]]] = []
        self._dir: Path | None = None
        self._work: WorkFolder | None = None
        self._writers: Lock | None = None
        self._created_store = False

    def __enter__(self) -> Transaction:
        self.begin()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def begin(self) -> None:
        self._created_store = not self.store.exists()
        self.store.init()
        self._writers = Lock(self.store._writers_lock, shared=True)
        self._writers.acquire()
        try:
            with writing_into(self.store.root):
                # A killed writer's staging (its owner lock died with it) goes now, not at the next prune.
                sweep(self.store.staging_dir)
                with stop_signals_held():  # a SIGINT lands after the assignment, and the except releases it
                    self._work = claim(self.store.staging_dir, "txn")
                    self._dir = self._work.path
        except BaseException:
            self._finish()  # the staging folder (if claimed) and the writers lock
            raise

    @property
    def staging(self) -> Path:
        if self._dir is None:
            raise StoreError("the store transaction was not started",
                             "use it as `with store.transaction() as txn:`")
        return self._dir

    # -- blobs -------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        return digest in self._staged or self.store.has_blob(digest)

    def blob_path(self, digest: str) -> Path:
        """Where the blob is readable now: staged, or already in the store."""
        return self._staged.get(digest) or self.store.blob_path(digest)

    def get_blob(self, digest: str) -> bytes:
        if digest in self._staged:
            data = self._staged[digest].read_bytes()
            if digest_of(data) != digest:
                raise self.store.corrupt(digest)
            return data
        return self.store.get_blob(digest)

    def put_blob(self, data: bytes, digest: str | None = None) -> Descriptor:
        """Stage DATA; if DIGEST is given it must match. Returns ``{digest, size}``."""
        actual = digest_of(data)
        if digest is not None and actual != digest:
            check_digest(digest)
            raise StoreError(f"content does not match its digest: expected {digest[:19]}, got {actual[:19]}",
                             "the source is corrupt or was truncated; fetch or build it again")
        if not self.has_blob(actual):
            path = self.staging / actual[7:]
            try:
                with writing_into(self.store.root), open(path, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                raise
            self._staged[actual] = path
        return {"digest": actual, "size": len(data)}

    def put_stream(self, stream: IO[bytes] | Any, digest: str | None = None, size: int | None = None,
                   progress: ByteProgress | None = None, *, max_size: int | None = None) -> Descriptor:
        """Stage a blob read from STREAM, hashing as it goes; verify DIGEST and SIZE if given."""
        if digest is not None:
            check_digest(digest)
            if self.has_blob(digest):
                self._drain(stream, size)
                return {"digest": digest, "size": size if size is not None else self._size_of(digest)}
        tmp = self.staging / f"{TMP_PREFIX}{secrets.token_hex(6)}"
        h = hashlib.sha256()
        total = 0
        limit = max_size if max_size is not None else (size if size is not None else None)
        try:
            with writing_into(self.store.root), open(tmp, "wb") as fh:
                while True:
                    want = CHUNK if limit is None else min(CHUNK, limit - total + 1)
                    chunk = stream.read(want)
                    if not chunk:
                        break
                    total += len(chunk)
                    if limit is not None and total > limit:
                        what = (digest or "content")[:19]
                        raise StoreError(f"blob {what} is larger than expected ({limit} bytes)",
                                         "the source is corrupt; fetch it again")
                    h.update(chunk)
                    fh.write(chunk)
                    if progress:
                        progress(total)
                fh.flush()
                os.fsync(fh.fileno())
            actual = "sha256:" + h.hexdigest()
            if size is not None and total != size:
                raise StoreError(f"blob {(digest or actual)[:19]} is truncated: got {total} of {size} bytes",
                                 "the source is incomplete; fetch or copy it again")
            if digest is not None and actual != digest:
                raise StoreError(f"content does not match its digest: expected {digest[:19]}, "
                                 f"got {actual[:19]}",
                                 "the source is corrupt or was truncated; fetch or build it again")
            if self.has_blob(actual):
                tmp.unlink()
            else:
                final = self.staging / actual[7:]
                os.replace(tmp, final)
                self._staged[actual] = final
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return {"digest": actual, "size": total}

    def put_file(self, path: str | os.PathLike[str], digest: str | None = None) -> Descriptor:
        """Stage a blob from a file on disk."""
        with open(path, "rb") as fh:
            return self.put_stream(fh, digest, os.fstat(fh.fileno()).st_size)

    @staticmethod
    def _drain(stream: Any, size: int | None) -> None:
        while stream.read(CHUNK):
            pass

    def _size_of(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    # -- images ------------------------------------------------------------------------------

    def add_image(self, manifest_digest: str, name: str | None, *, media_type: str = media.OCI_MANIFEST,
                  size: int | None = None, annotations: dict[str, str] | None = None) -> None:
        """Point NAME (normalised; None for a dangling image) at a manifest on commit."""
        check_digest(manifest_digest)
        normalised = normalize(name) if name else None
        if size is None:
            size = self._size_of(manifest_digest) if self.has_blob(manifest_digest) else 0
        self._images.append((manifest_digest, normalised, media_type, size, dict(annotations or {})))

    def _check_complete(self, digest: str, media_type: str) -> None:
        """The manifest and everything it references must be present and verified."""
        if not self.has_blob(digest):
            raise self.store.missing(digest, "manifest")
        manifest = parse_json(self.get_blob(digest), f"manifest {digest[:19]}",
                              "the image source is corrupt; fetch or build it again")
        if media_type in media.INDEX_TYPES:
            children = [d for d in manifest.get("manifests") or [] if isinstance(d, dict)]
            for child in children:
                child_type = str(child.get("mediaType", media.OCI_MANIFEST))
                self._check_complete(str(child.get("digest")), child_type)
            return
        refs = manifest_blobs(manifest)
        if not isinstance(manifest.get("config"), dict):
            raise StoreError(f"manifest {digest[:19]} has no config",
                             "the image source is corrupt; fetch it again")
        for ref in refs:
            ref_digest = ref.get("digest")
            if not isinstance(ref_digest, str) or not is_digest(ref_digest):
                bad = str(ref_digest)[:30]
                raise StoreError(f"manifest {digest[:19]} references an invalid digest {bad!r}",
                                 "the image source is corrupt; fetch it again")
            if not self.has_blob(ref_digest):
                raise self.store.missing(ref_digest)
            if "size" in ref and self._size_of(ref_digest) != ref["size"]:
                raise StoreError(f"blob {ref_digest[:19]} has size {self._size_of(ref_digest)}, "
                                 f"but the manifest says {ref['size']}",
                                 "the image source is corrupt or truncated; fetch it again")

    def commit(self) -> None:
        """Move staged blobs into the store and update the index atomically."""
        try:
            for digest, media_type in {(d, mt) for d, _, mt, _, _ in self._images}:
                self._check_complete(digest, media_type)
            store = self.store
            with writing_into(store.root), Lock(store._index_lock):
                for digest, path in self._staged.items():
                    target = store.blob_path(digest)
                    if target.exists():
                        path.unlink()
                    else:
                        os.replace(path, target)
                if self._staged:
                    fsync_dir(store.blobs_dir)
                if self._images:
                    index = store.read_index()
                    index["manifests"] = apply_names(index["manifests"], self._images)
                    write_atomic(store.index_path, canonical_json(index))
        except BaseException:
            self.rollback()
            raise
        self._finish()

    def rollback(self) -> None:
        """Drop everything staged; the store is left as it was."""
        self._finish()
        if self._created_store:
            store = self.store
            with contextlib.suppress(OSError):
                untouched = (not any(store.blobs_dir.iterdir()) and not any(store.staging_dir.iterdir())
                             and not any(store.work_dir.iterdir()) and not store.read_index()["manifests"])
                if untouched:
                    shutil.rmtree(store.root)

    def _finish(self) -> None:
        if self._work is not None:
            self._work.release()
            self._work = None
        self._dir = None
        self._staged.clear()
        if self._writers is not None:
            self._writers.release()
            self._writers = None


def apply_names(manifests: list[Descriptor],
                additions: Iterable[tuple[str, str | None, str, int, dict[str, str]]]) -> list[Descriptor]:
    """Return the index's manifest list with names (re)pointed at new digests.

    A name moves to its new image; an image that loses its last name stays as a dangling
    entry (no ref.name), as podman keeps ``<none>`` images.
    """
    out = [dict(d) for d in manifests]
    for digest, name, media_type, size, extra in additions:
        if name:
            for d in out:
                ann = d.get("annotations") or {}
                if ann.get(media.REF_NAME) == name:
                    rest = {k: v for k, v in ann.items() if k != media.REF_NAME}
                    if rest:
                        d["annotations"] = rest
                    else:
                        d.pop("annotations", None)
        new: Descriptor = {"mediaType": media_type, "digest": digest, "size": size}
        ann = dict(extra)
        if name:
            ann[media.REF_NAME] = name
        if ann:
            new["annotations"] = ann
        out.append(new)
    return _dedupe(out)


def _dedupe(manifests: list[Descriptor]) -> list[Descriptor]:
    """Drop repeated entries and dangling entries of images that still have a name."""
    named = {d["digest"] for d in manifests if (d.get("annotations") or {}).get(media.REF_NAME)}
    seen: set[tuple[str, str | None]] = set()
    out = []
    for d in manifests:
        name = (d.get("annotations") or {}).get(media.REF_NAME)
        if name is None and d["digest"] in named:
            continue
        key = (d["digest"], name)
        if key in seen:
            continue
        seen.add(key)
        out.append(d)
    return out
