"""Unpacking images into OCI bundles: safe layer extraction and the image-to-config.json mapping.

Layer extraction refuses entries that would land outside the rootfs: ``..`` components,
absolute names, writes through symlinks and hard links to paths outside the rootfs.
Files stored sparse (GNU and PAX sparse headers) are written sparse: holes stay holes.
It applies whiteouts (``.wh.NAME``) and opaque directories (``.wh..wh..opq``), reads
plain, gzip and zstd layers, checks each layer against the config's ``diff_ids``, and
stops archive bombs with size and entry-count limits. Device nodes are skipped when not
running as root.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import zstandard
from wasmlab.runtime.errors import ImageError, SpecError
from wasmlab.runtime.handlers.detect import HANDLER_ANNOTATION
from wasmlab.runtime.images.snapshots import Snapshots
from wasmlab.runtime.linux.overlay import OVERLAY
from wasmlab.runtime.spec.runtime import DEFAULT_PATH, OVERLAY_FILE, default_config, validate
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import remove_tree, write_atomic
from wasmlab.runtime.store.layout import ImageStore, StoredImage

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExtractLimits:
    """Ceilings that stop archive bombs: total bytes (apparent sizes, holes included), entries, path length."""

    max_bytes: int = 8 << 30
    max_entries: int = 1_000_000
    max_path: int = 4096


@dataclass
class ExtractReport:
    """What an extraction did: entries written, bytes (apparent sizes), and entries skipped (and why)."""

    entries: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)


def unsafe(name: str, why: str) -> ImageError:
    return ImageError(f"layer entry {name[:120]!r} {why}",
                      "the image or archive is malformed or malicious; do not use it")


# -- decompression --------------------------------------------------------------------------


class _HashingReader:
    """Passes reads through and hashes what went by."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


@contextlib.contextmanager
def decompressed(fh: IO[bytes]) -> Iterator[Any]:
    """A reader of the uncompressed tar inside FH (plain, gzip or zstd, detected by magic)."""
    head = fh.read(4)
    fh.seek(0)
    if head[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            yield gz
    elif head == b"\x28\xb5\x2f\xfd":
        with zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as zr:
            yield zr
    elif head[:3] in (b"BZh", b"\xfd7zX"):
        raise ImageError("layer uses bzip2 or xz compression, which OCI images do not allow",
                         "rebuild the image with gzip or zstd layers")
    else:
        yield fh


# -- safe extraction ------------------------------------------------------------------------


def _clean_name(name: str) -> list[str]:
    if "\x00" in name:
        raise unsafe(name, "contains a NUL byte")
    if name.startswith("/"):
        raise unsafe(name, "has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise unsafe(name, "escapes the root with '..'")
    return parts


class _Extractor:
    """Writes tar members under ROOT, one layer at a time, refusing unsafe entries.

    With LOWERS (the layers below, top first), ROOT holds one layer alone, as an overlayfs lower
    directory: whiteouts become overlay whiteouts (0:0 character devices), an opaque marker the
    overlay's opaque attribute, and a hard link may point into a layer below.
    """

    def __init__(self, root: Path, limits: ExtractLimits, report: ExtractReport,
                 lowers: Sequence[Path] | None = None) -> None:
        self.root = root
        self.limits = limits
        self.report = report
        self.is_root = os.geteuid() == 0
        self.dir_meta: dict[str, tuple[int, int]] = {}
        self.layer_paths: set[str] = set()
        self.lowers = list(lowers) if lowers is not None else None

    def _in_lowers(self, rel: str) -> Path | None:
        """Where a path of the merged image below this layer lives (None if nowhere or whited out)."""
        for lower in self.lowers or ():
            path = lower / rel
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # a whiteout hides everything below
            return path
        return None

    def _parent(self, parts: list[str], name: str) -> Path:
        """Create missing parent directories, never following a symlink."""
        cur = self.root
        for i, part in enumerate(parts[:-1]):
            cur = cur / part
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                if self.lowers is not None:
                    below = self._in_lowers("/".join(parts[:i + 1]))
                    if below is not None and below.is_symlink():  # as the merged extraction refuses it
                        raise unsafe(name, f"would write through the symlink /{'/'.join(parts[:i + 1])}") from None
                os.mkdir(cur, 0o755)
                self.layer_paths.add("/".join(parts[:i + 1]))
                if self.lowers is not None:
                    self._copy_dir_attributes("/".join(parts[:i + 1]), cur)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise unsafe(name, f"would write through the symlink /{'/'.join(parts[:i + 1])}")
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(cur)
                os.mkdir(cur, 0o755)
        return cur

    def _copy_dir_attributes(self, rel: str, target: Path) -> None:
        """An overlay takes a merged folder's owner and mode from its upper layer: a folder made here only
        to hold an entry keeps what the layers below say (/tmp stays 1777)."""
        below = self._in_lowers(rel)
        if below is None or not below.is_dir() or below.is_symlink():
            return
        st = os.lstat(below)
        with contextlib.suppress(OSError):
            if self.is_root:
                os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, stat.S_IMODE(st.st_mode))
        self.dir_meta.setdefault(rel, (stat.S_IMODE(st.st_mode), int(st.st_mtime)))

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            _make_writable_tree(path)
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def _opaque(self, dir_parts: list[str]) -> None:
        """Empty a directory of everything lower layers put there."""
        base = self.root.joinpath(*dir_parts)
        if not base.is_dir() or base.is_symlink():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in list(dirnames) + filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if rel not in self.layer_paths:
                    self._remove(Path(dirpath) / name)
                    if name in dirnames:
                        dirnames.remove(name)

    def extract(self, tar: tarfile.TarFile) -> None:
        self.layer_paths = set()
        for member in tar:
            self.report.entries += 1
            if self.report.entries > self.limits.max_entries:
                raise ImageError(f"layer has more than {self.limits.max_entries} entries",
                                 "the archive looks like an archive bomb; refusing to extract it")
            if len(member.name) > self.limits.max_path:
                raise unsafe(member.name, "has a path that is too long")
            parts = _clean_name(member.name)
            if not parts:
                continue
            base = parts[-1]
            if base == OPAQUE:
                parent = self._parent(parts, member.name)
                if self.lowers is not None:
                    os.setxattr(parent, "trusted.overlay.opaque", b"y", follow_symlinks=False)
                else:
                    self._opaque(parts[:-1])
                continue
            if base.startswith(WHITEOUT):
                victim = base[len(WHITEOUT):]
                if victim in ("", ".", ".."):
                    raise unsafe(member.name, "is a whiteout for an invalid name")
                parent = self._parent(parts, member.name)
                self._remove(parent / victim)
                if self.lowers is not None:
                    os.mknod(parent / victim, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                continue
            self._write(tar, member, parts)

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str]) -> None:
        rel = "/".join(parts)
        parent = self._parent(parts, member.name)
        target = parent / parts[-1]
        existing: os.stat_result | None
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            existing = None
        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(target)
                existing = None
            if existing is None:
                os.mkdir(target, 0o755)
            self.layer_paths.add(rel)
            self.dir_meta[rel] = (member.mode & 0o7777, int(member.mtime))
            self._own(target, member)
            return
        if member.isdev() and not member.isfifo() and not self.is_root:
            self.report.skipped.append(f"/{rel}: device node (needs root)")
            return
        if existing is not None:
            self._remove(target)
        if member.isreg():
            self._file(tar, member, target)
        elif member.issym():
            os.symlink(member.linkname, target)
        elif member.islnk():
            self._hardlink(member, target)
        elif member.isfifo():
            os.mkfifo(target, 0o600)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            self.report.skipped.append(f"/{rel}: unsupported tar entry type {member.type!r}")
            return
        self.layer_paths.add(rel)
        if member.islnk():
            return  # a hard link shares its target's inode: its owner and mode are already set
        self._own(target, member)
        if not member.issym():
            os.chmod(target, member.mode & 0o7777)
        with contextlib.suppress(OSError):
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)

    def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
        # The limit counts apparent bytes (a sparse file's holes too), so holes cannot hide a bomb.
        if self.report.bytes + member.size > self.limits.max_bytes:
            raise ImageError(f"layers expand to more than {self.limits.max_bytes} bytes",
                             "the archive looks like an archive bomb; refusing to extract it")
        segments = _sparse_map(tar, member) if member.sparse is not None else None
        src = tar.extractfile(member) if segments is None else None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            if segments is not None:
                self._sparse(tar, member, segments, out)
                return
            if src is None:
                return
            while chunk := src.read(CHUNK):
                self.report.bytes += len(chunk)
                if self.report.bytes > self.limits.max_bytes:
                    raise ImageError(f"layers expand to more than {self.limits.max_bytes} bytes",
                                     "the archive looks like an archive bomb; refusing to extract it")
                out.write(chunk)

    def _sparse(self, tar: tarfile.TarFile, member: tarfile.TarInfo, segments: list[tuple[int, int]],
                out: IO[bytes]) -> None:
        """Write a sparse member as the tar stores it: the file's length, then only its data segments.

        The holes are never written, so they stay holes (they read as zeros). The data segments
        follow each other in the archive from ``offset_data``, as GNU tar writes them.
        """
        out.truncate(member.size)
        raw = tar.fileobj
        assert raw is not None
        raw.seek(member.offset_data)
        for offset, length in segments:
            out.seek(offset)
            left = length
            while left:
                chunk = raw.read(min(CHUNK, left))
                if not chunk:
                    raise tarfile.ReadError(f"unexpected end of data in the sparse file {member.name!r}")
                out.write(chunk)
                left -= len(chunk)
        self.report.bytes += member.size

    def _hardlink(self, member: tarfile.TarInfo, target: Path) -> None:
        link_parts = _clean_name(member.linkname)
        if not link_parts:
            raise unsafe(member.name, "is a hard link to the root directory")
        cur = self.root
        for part in link_parts[:-1]:
            cur = cur / part
            if os.path.islink(cur):
                raise unsafe(member.name, f"is a hard link through the symlink {member.linkname!r}")
        source = cur / link_parts[-1]
        if self.lowers is not None and not os.path.lexists(source):
            # A link to a file of a layer below: the layers share a file system, so share the inode.
            below = self._in_lowers("/".join(link_parts))
            source = below if below is not None else source
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise unsafe(member.name, f"links to {member.linkname!r}, which does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            raise unsafe(member.name, "is a hard link to a directory")
        os.link(source, target, follow_symlinks=False)

    def _own(self, target: Path, member: tarfile.TarInfo) -> None:
        if self.is_root:
            with contextlib.suppress(OSError):
                os.chown(target, member.uid, member.gid, follow_symlinks=False)

    def finish(self) -> None:
        """Apply directory modes and times last, deepest first, so writes could go in."""
        for rel in sorted(self.dir_meta, key=lambda r: r.count("/"), reverse=True):
            mode, mtime = self.dir_meta[rel]
            path = self.root / rel
            if path.is_symlink() or not path.is_dir():
                continue
            with contextlib.suppress(OSError):
                os.chmod(path, mode)
                os.utime(path, (mtime, mtime))


def _sparse_map(tar: tarfile.TarFile, member: tarfile.TarInfo) -> list[tuple[int, int]]:
    """The data segments of a sparse member (GNU or PAX 0.0, 0.1, 1.0), checked against its sizes.

    tarfile reads every GNU sparse form into ``member.sparse``; the map comes from the archive,
    so it is checked here: segments in order, not overlapping, inside the file's apparent size,
    and holding no more data than the archive stores for the member. Empty segments (GNU tar
    ends each map with one at the file's end, and the old format pads with zeros) are dropped.
    """
    declared = cast("list[tuple[int, int]]", member.sparse or [])  # typeshed's type for it is wrong
    segments = [(int(o), int(n)) for o, n in declared if n]
    end = 0
    for offset, length in segments:
        if offset < end or length < 0 or offset + length > member.size:
            raise unsafe(member.name, "has a sparse map that overlaps itself or runs past the file's size")
        end = offset + length
    stored = tar.offset - member.offset_data  # the data the archive holds for the member, padded to blocks
    if sum(length for _, length in segments) > stored:
        raise unsafe(member.name, "has a sparse map that claims more data than the archive holds")
    return segments


def _make_writable_tree(path: Path) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                with contextlib.suppress(OSError):
                    os.chmod(p, 0o755)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o755)


def extract_layers(layers: Sequence[Callable[[], IO[bytes]]], rootfs: str | os.PathLike[str], *,
                   diff_ids: Sequence[str] | None = None, limits: ExtractLimits | None = None,
                   progress: Progress | None = None, lowers: Sequence[Path] | None = None,
                   report: ExtractReport | None = None) -> ExtractReport:
    """Extract layer streams in order into ROOTFS (which must exist).

    Each item of LAYERS opens one layer blob (compressed or not). If DIFF_IDS is given,
    each layer's uncompressed digest must match. With LOWERS, ROOTFS receives one layer as an
    overlayfs lower directory over those (top first).
    """
    root = Path(rootfs)
    report = report if report is not None else ExtractReport()
    extractor = _Extractor(root, limits or ExtractLimits(), report, lowers)
    for i, open_layer in enumerate(layers):
        if progress:
            progress(f"extracting layer {i + 1}/{len(layers)}")
        with open_layer() as fh, decompressed(fh) as plain:
            hashing = _HashingReader(plain)
            try:
                with tarfile.open(fileobj=cast(IO[bytes], hashing), mode="r|") as tar:
                    extractor.extract(tar)
                hashing.drain()
            except (tarfile.TarError, EOFError, zstandard.ZstdError, gzip.BadGzipFile) as exc:
                raise ImageError(f"layer {i + 1} is not a valid tar archive ({exc})",
                                 "the image is damaged; pull, load or build it again") from None
            except OSError as exc:
                raise ImageError(f"cannot write layer {i + 1} into {root}: {exc.strerror or exc}",
                                 "check free space and permissions of the target directory") from None
        report.diff_ids.append(hashing.digest)
        if diff_ids is not None and i < len(diff_ids) and diff_ids[i] != hashing.digest:
            raise ImageError(f"layer {i + 1} does not match the image config (diff_id {diff_ids[i][:19]})",
                             "the image is damaged; pull, load or build it again")
    extractor.finish()
    return report


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    def open_blob() -> IO[bytes]:
        return open(path, "rb")

    return open_blob


def extract_image(store: ImageStore, manifest: Mapping[str, Any], config: Mapping[str, Any],
                  rootfs: str | os.PathLike[str], *, limits: ExtractLimits | None = None,
                  progress: Progress | None = None) -> ExtractReport:
    """Verify and extract every layer of a stored image into ROOTFS."""
    openers: list[Callable[[], IO[bytes]]] = []
    for layer in manifest.get("layers") or []:
        digest = layer["digest"]
        mt = layer.get("mediaType", media.OCI_LAYER)
        if mt not in media.LAYER_TYPES:
            raise ImageError(f"layer {digest[:19]} has media type {mt!r}, which cannot be unpacked",
                             "only tar layers (plain, gzip or zstd) can be unpacked into a rootfs")
        store.verify_blob(digest, size=layer.get("size"))
        openers.append(_opener(store.blob_path(digest)))
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if isinstance(diff_ids, list) and len(diff_ids) != len(openers):
        raise ImageError(f"the image config lists {len(diff_ids)} layers but the manifest has {len(openers)}",
                         "the image is damaged; pull, load or build it again")
    return extract_layers(openers, rootfs, diff_ids=diff_ids if isinstance(diff_ids, list) else None,
                          limits=limits, progress=progress)


# -- image config -> runtime config ---------------------------------------------------------


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_env(*layers: Sequence[str] | Mapping[str, str] | None) -> list[str]:
    """Merge KEY=VALUE lists (or mappings); later ones override earlier keys, order is kept."""
    merged: dict[str, str] = {}
    for layer in layers:
        if not layer:
            continue
        items = [f"{k}={v}" for k, v in layer.items()] if isinstance(layer, Mapping) else list(layer)
        for entry in items:
            merged[_env_key(entry)] = entry
    return list(merged.values())


def _read_db(rootfs: Path | Sequence[Path], name: str) -> list[list[str]]:
    """An /etc database of the image: from its rootfs, or from its layers (top first) without merging them."""
    for root in [rootfs] if isinstance(rootfs, Path) else rootfs:
        path = root / "etc" / name
        if path.is_symlink() or (root / "etc").is_symlink():
            return []
        if path.exists():
            break
    else:
        return []
    if not path.is_file():
        return []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(user: str, rootfs: Path | Sequence[Path] | None) -> tuple[int, int, list[int]]:
    """Map an image ``User`` (``uid``, ``uid:gid``, ``name``, ``name:group``) to numbers."""
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")
    passwd = _read_db(rootfs, "passwd") if rootfs else []
    groups = _read_db(rootfs, "group") if rootfs else []
    hint = "use numeric IDs (USER 1000:1000) or add the user to /etc/passwd in the image"
    uid: int | None = None
    gid: int | None = None
    if name.isdigit():
        uid = int(name)
        for row in passwd:
            if len(row) > 3 and row[2] == name and row[3].isdigit():
                gid = int(row[3])
    else:
        for row in passwd:
            if len(row) > 3 and row[0] == name and row[2].isdigit() and row[3].isdigit():
                uid, gid = int(row[2]), int(row[3])
                break
        if uid is None:
            raise ImageError(f"user {name!r} is not in the image's /etc/passwd", hint)
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = [int(r[2]) for r in groups if len(r) > 2 and r[0] == group and r[2].isdigit()]
            if not found:
                raise ImageError(f"group {group!r} is not in the image's /etc/group", hint)
            gid = found[0]
    return uid, gid if gid is not None else 0, []


def runtime_config(image_config: Mapping[str, Any], *, manifest: Mapping[str, Any] | None = None,
                   args: Sequence[str] | None = None, entrypoint: Sequence[str] | None = None,
                   env: Sequence[str] | Mapping[str, str] | None = None,
                   annotations: Mapping[str, str] | None = None, rootfs: Path | Sequence[Path] | None = None,
                   readonly: bool = False, rootless: bool | None = None) -> dict[str, Any]:
    """Build config.json for an image, as podman does.

    ``process.args`` is Entrypoint + Cmd; ARGS replaces Cmd and ENTRYPOINT replaces the
    Entrypoint. Env is the default PATH and TERM, then the image's Env, then ENV.
    Annotations are the config labels, then the manifest annotations, then ANNOTATIONS.
    """
    cfg_section = image_config.get("config") or {}
    image_entry = list(entrypoint) if entrypoint is not None else list(cfg_section.get("Entrypoint") or [])
    command = list(args) if args is not None else list(cfg_section.get("Cmd") or [])
    if entrypoint is not None and args is None:
        command = []
    argv = image_entry + command
    if not argv:
        raise ImageError("the image has no command to run (no Entrypoint and no Cmd)",
                         "pass a command, or add CMD [\"/module.wasm\"] to the Containerfile")
    if rootless is None:
        rootless = os.geteuid() != 0
    spec: dict[str, Any] = default_config(argv, rootless=rootless)
    process = spec["process"]
    process["env"] = merge_env(process["env"], cfg_section.get("Env"), env)
    if not any(_env_key(e) == "PATH" for e in process["env"]):
        process["env"].insert(0, f"PATH={DEFAULT_PATH}")
    process["cwd"] = cfg_section.get("WorkingDir") or "/"
    if not process["cwd"].startswith("/"):
        process["cwd"] = "/" + process["cwd"]
    uid, gid, extra_gids = resolve_user(str(cfg_section.get("User") or ""), rootfs)
    if rootless and (uid or gid):
        who = cfg_section.get("User")
        raise ImageError(f"the image runs as user {who!r}, which rootless mode cannot map",
                         "run as root, or rebuild the image without USER")
    process["user"] = {"uid": uid, "gid": gid}
    if extra_gids:
        process["user"]["additionalGids"] = extra_gids
    notes: dict[str, str] = {}
    notes.update({str(k): str(v) for k, v in (cfg_section.get("Labels") or {}).items()})
    if cfg_section.get("StopSignal"):
        notes["org.opencontainers.image.stopSignal"] = str(cfg_section["StopSignal"])
    if cfg_section.get("ExposedPorts"):
        notes["org.opencontainers.image.exposedPorts"] = ",".join(sorted(cfg_section["ExposedPorts"]))
    for key in ("os", "architecture", "author", "created"):
        if image_config.get(key):
            notes[f"org.opencontainers.image.{key}"] = str(image_config[key])
    if manifest:
        notes.update({str(k): str(v) for k, v in (manifest.get("annotations") or {}).items()})
    notes.update(annotations or {})
    if _wasi_platform(image_config) and not (notes.keys() & {media.WASM_VARIANT, HANDLER_ANNOTATION}):
        # Built for wasi/wasm but not annotated: it can only mean Wasm, so run it as such.
        notes[media.WASM_VARIANT] = media.WASM_VARIANT_COMPAT
    spec["annotations"] = notes
    spec["root"] = {"path": "rootfs", "readonly": readonly}
    try:
        validate(spec)
    except SpecError as exc:
        raise ImageError(f"the image config gives an invalid runtime config: {exc.message}",
                         exc.hint) from None
    return spec


def _wasi_platform(image_config: Mapping[str, Any]) -> bool:
    return image_config.get("architecture") == "wasm" or str(image_config.get("os", "")).startswith("wasi")


# -- image -> bundle ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnpackResult:
    """A bundle made from an image."""

    bundle: str
    rootfs: str
    image: str
    digest: str
    args: list[str]
    annotations: dict[str, str]
    entries: int
    bytes: int
    skipped: list[str]
    root: str = "copy"          # "overlay" when the root is an overlay of snapshots (see prepare_bundle)


def unpack(store: ImageStore, image: str | StoredImage, bundle_dir: str | os.PathLike[str], *,
           args: Sequence[str] | None = None, entrypoint: Sequence[str] | None = None,
           env: Sequence[str] | Mapping[str, str] | None = None,
           annotations: Mapping[str, str] | None = None, readonly: bool = False,
           limits: ExtractLimits | None = None, progress: Progress | None = None) -> Path:
    """Unpack IMAGE into BUNDLE_DIR (``rootfs/`` and ``config.json``); return the bundle path.

    BUNDLE_DIR must be missing or empty. On failure nothing is left in it.
    """
    result = unpack_bundle(store, image, bundle_dir, args=args, entrypoint=entrypoint, env=env,
                           annotations=annotations, readonly=readonly, limits=limits, progress=progress)
    return Path(result.bundle)


ConfigEdit = Callable[[dict[str, Any], "RootLayers"], None]
"""``edit(config, root)``: the caller's changes to config.json before it is written (once), with where the
container's root is read (its layers, top first) and written."""


@dataclass(frozen=True)
class RootLayers:
    """Where a container's root is read before it runs (its layers, top first; a copied root is one), and
    written (the overlay's upper folder, or the copied root)."""

    read: tuple[Path, ...]
    write: Path

    def find(self, path: str) -> str:
        """Where PATH of the container is to be read on the host (links followed inside each layer)."""
        from wasmlab.runtime.linux.mounts import _inside

        for root in self.read:
            host = _inside(str(root), path)
            if os.path.lexists(host):
                return host
        return _inside(str(self.write), path)


def _image_for(store: ImageStore, image: str | StoredImage) -> tuple[StoredImage, dict[str, Any], dict[str, Any]]:
    """The image (a runnable one: not a Wasm artifact), its manifest and its config."""
    stored = store.resolve(image) if isinstance(image, str) else image
    manifest = store.manifest(stored)
    if (manifest.get("config") or {}).get("mediaType") == media.WASM_CONFIG:
        raise ImageError("this is a Wasm OCI artifact, not a container image",
                         "import it with `wasmlab load`, which converts it to a runnable image")
    return stored, manifest, store.config(manifest)


def _bundle_for(store: ImageStore, image: str | StoredImage, bundle_dir: str | os.PathLike[str]
                ) -> tuple[StoredImage, dict[str, Any], dict[str, Any], Path, bool]:
    """The image (a runnable one: not a Wasm artifact), its manifest and config, and the bundle folder, which
    must be missing or empty (whether it was missing, so a failure removes only what was made)."""
    stored, manifest, config = _image_for(store, image)
    bundle = Path(bundle_dir).absolute()
    created = not bundle.exists()
    if not created and (not bundle.is_dir() or any(bundle.iterdir())):
        raise ImageError(f"bundle directory {bundle} is not empty",
                         "choose a new directory, or remove the old bundle first")
    return stored, manifest, config, bundle, created


def unpack_bundle(store: ImageStore, image: str | StoredImage, bundle_dir: str | os.PathLike[str], *,
                  args: Sequence[str] | None = None, entrypoint: Sequence[str] | None = None,
                  env: Sequence[str] | Mapping[str, str] | None = None,
                  annotations: Mapping[str, str] | None = None, readonly: bool = False,
                  limits: ExtractLimits | None = None, progress: Progress | None = None,
                  edit: ConfigEdit | None = None) -> UnpackResult:
    """Like :func:`unpack`, returning the details as well as the path."""
    stored, manifest, config, bundle, created = _bundle_for(store, image, bundle_dir)
    rootfs = bundle / "rootfs"
    try:
        bundle.mkdir(parents=True, exist_ok=True)
        rootfs.mkdir(mode=0o755)
        report = extract_image(store, manifest, config, rootfs, limits=limits, progress=progress)
        spec = runtime_config(config, manifest=manifest, args=args, entrypoint=entrypoint, env=env,
                              annotations=annotations, rootfs=rootfs, readonly=readonly)
        if edit is not None:
            edit(spec, RootLayers((rootfs,), rootfs))
        write_atomic(bundle / "config.json", json.dumps(spec, indent=2).encode() + b"\n")
    except BaseException as exc:
        _clear(bundle, remove_self=created)
        if isinstance(exc, OSError):
            raise ImageError(f"cannot unpack into {bundle}: {exc.strerror or exc}",
                             "check free space and permissions of the bundle directory") from None
        raise
    return UnpackResult(str(bundle), str(rootfs), stored.name or stored.digest, stored.digest,
                        list(spec["process"]["args"]), dict(spec["annotations"]), report.entries,
                        report.bytes, list(report.skipped))


# An overlay bundle's folders and files, which make_bundle_skeleton makes ahead (when idle) and
# prepare_bundle(ahead=True) fills: each creation is a journal entry on the start path otherwise.
SKELETON_DIRS = ("rootfs", "upper", "work")
SKELETON_FILES = ("config.json", OVERLAY_FILE)


def make_bundle_skeleton(bundle: Path) -> None:
    """An empty overlay bundle, for prepare_bundle(ahead=True): its folders and its files, still empty. BUNDLE
    may exist already, empty."""
    bundle.mkdir(parents=True, exist_ok=True)
    for sub in SKELETON_DIRS:
        (bundle / sub).mkdir(mode=0o755)
    for name in SKELETON_FILES:
        os.close(os.open(bundle / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))


def fresh_writable_layer(bundle: Path) -> bool:
    """Empty an overlay bundle's upper and work folders, so that its container starts again from the image alone,
    as a container the kubelet makes anew after a crash does. False for a bundle whose root is a copy (no
    overlay: where overlayfs is not allowed), which keeps what its container wrote. Symbolic links a guest left
    in the upper folder are removed, never followed."""
    try:
        overlay = json.loads((bundle / OVERLAY_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    if overlay.get("upperdir") != str(bundle / "upper") or overlay.get("workdir") != str(bundle / "work"):
        return False
    for sub in ("upper", "work"):
        remove_tree(str(bundle / sub))
        (bundle / sub).mkdir(mode=0o755)
    return True


def _skeleton_ok(bundle: Path) -> bool:
    """BUNDLE is exactly a skeleton: real folders and empty regular files, nothing else."""
    try:
        entries = {e.name: e.stat(follow_symlinks=False) for e in os.scandir(bundle)}
    except OSError:
        return False
    if set(entries) != {*SKELETON_DIRS, *SKELETON_FILES}:
        return False
    return (all(stat.S_ISDIR(entries[d].st_mode) for d in SKELETON_DIRS)
            and all(stat.S_ISREG(entries[f].st_mode) and entries[f].st_size == 0 for f in SKELETON_FILES))


def _fill(path: Path, data: bytes) -> None:
    """Write DATA into a skeleton's empty file, in place (no new directory entry: the bundle is not in use yet,
    and a failure removes it whole). Not O_TRUNC: ext4 flushes a file truncated to nothing when it is closed
    (auto_da_alloc), 25 us more per file here; the file must be empty instead."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size:
            raise ImageError(f"{path} is not empty", "make the container again")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def prepare_bundle(store: ImageStore, image: str | StoredImage, bundle_dir: str | os.PathLike[str],
                   snapshots: Snapshots, *, args: Sequence[str] | None = None,
                   entrypoint: Sequence[str] | None = None, env: Sequence[str] | Mapping[str, str] | None = None,
                   annotations: Mapping[str, str] | None = None, readonly: bool = False,
                   progress: Progress | None = None, edit: ConfigEdit | None = None,
                   ahead: bool = False) -> UnpackResult:
    """A bundle whose root is an overlay of the image's snapshots and a private upper folder.

    Layers not yet unpacked are unpacked once, into the snapshot store; config.json is made from the
    image's config alone. The init mounts the overlay in the container's own mount namespace, so no
    mount is ever left on the host. Where overlayfs is not allowed, falls back to unpack_bundle (a copy).
    With AHEAD, bundle_dir is a skeleton from make_bundle_skeleton, made ahead: its files are filled in place.
    """
    if ahead and not _skeleton_ok(Path(bundle_dir)):
        raise ImageError(f"{bundle_dir} is not an empty bundle made ahead",
                         "make the container again; `wasmlab system reset` clears a damaged lab home")
    if snapshots.mode() != OVERLAY:
        if ahead:
            _clear(Path(bundle_dir), remove_self=False)
        return unpack_bundle(store, image, bundle_dir, args=args, entrypoint=entrypoint, env=env,
                             annotations=annotations, readonly=readonly, progress=progress, edit=edit)
    if ahead:
        stored, manifest, config = _image_for(store, image)
        bundle, created = Path(bundle_dir).absolute(), False
    else:
        stored, manifest, config, bundle, created = _bundle_for(store, image, bundle_dir)
    try:
        layers = snapshots.prepare(store, manifest, config, progress)
        if not ahead:
            make_bundle_skeleton(bundle)
        tops = [layers.root / name for name in reversed(layers.names)]
        spec = runtime_config(config, manifest=manifest, args=args, entrypoint=entrypoint, env=env,
                              annotations=annotations, rootfs=tops, readonly=readonly)
        _fill(bundle / OVERLAY_FILE, json.dumps({
            "root": str(layers.root), "lowerdir": layers.lowerdir(),
            "upperdir": str(bundle / "upper"), "workdir": str(bundle / "work")}).encode())
        if edit is not None:
            edit(spec, RootLayers((bundle / "upper", *tops), bundle / "upper"))
        _fill(bundle / "config.json", json.dumps(spec).encode())
    except BaseException as exc:
        _clear(bundle, remove_self=created)
        if isinstance(exc, OSError):
            raise ImageError(f"cannot prepare {bundle}: {exc.strerror or exc}",
                             "check free space and permissions of the lab home") from None
        raise
    return UnpackResult(str(bundle), str(bundle / "rootfs"), stored.name or stored.digest, stored.digest,
                        list(spec["process"]["args"]), dict(spec["annotations"]), 0, 0, [], OVERLAY)


def _clear(bundle: Path, *, remove_self: bool) -> None:
    if not bundle.exists():
        return
    _make_writable_tree(bundle)
    if remove_self:
        shutil.rmtree(bundle, ignore_errors=True)
        return
    for entry in bundle.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
