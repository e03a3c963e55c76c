"""Image layers as a build writes them: entries, the tar writer, compression, and the diff of a root folder."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wasmlab.runtime.errors import BuildError
from wasmlab.runtime.images.unpack import decompressed
from wasmlab.runtime.store import media
from wasmlab.runtime.store.layout import descriptor


@dataclass
class LayerBlob:
    """A layer of the image being built: from the store, or produced by this build."""

    descriptor: dict[str, Any]
    diff_id: str
    data: bytes | None = None
    path: Path | None = None

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.path is None:
            raise BuildError("internal error: layer has no content", "report this as a wasmlab bug")
        return open(self.path, "rb")


@dataclass
class Entry:
    """A file system entry added by COPY/ADD/WORKDIR before any RUN."""

    kind: str  # "file", "dir", "symlink"
    mode: int
    uid: int = 0
    gid: int = 0
    source: Path | None = None
    data: bytes | None = None
    linkname: str = ""


@dataclass
class Meta:
    kind: str
    mode: int
    uid: int
    gid: int
    linkname: str = ""


def _tarinfo(name: str, entry: Entry | Meta, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = entry.mode & 0o7777
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = mtime
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
    elif entry.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = entry.linkname
    elif entry.kind == "whiteout":
        info.type = tarfile.REGTYPE
    else:
        info.type = tarfile.REGTYPE
        info.size = size
    return info


class LayerWriter:
    """Writes a deterministic tar (sorted by the caller, fixed mtime, no user names)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.tar = tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)

    def add(self, name: str, entry: Entry | Meta, mtime: int, content: IO[bytes] | None = None,
            size: int = 0) -> None:
        info = _tarinfo(name, entry, size, mtime)
        self.tar.addfile(info, content)

    def close(self) -> None:
        self.tar.close()


def spool_file(workdir: Path) -> IO[bytes]:
    return tempfile.TemporaryFile(dir=workdir)


def finish_layer(raw: IO[bytes], compression: str, workdir: Path | None) -> LayerBlob:
    """Hash the tar in RAW (diff_id), compress it if asked, and describe it."""
    raw.seek(0)
    h = hashlib.sha256()
    while chunk := raw.read(1 << 20):
        h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    raw.seek(0)
    if compression == "gzip":
        mt = media.OCI_LAYER_GZIP
        target: IO[bytes] = io.BytesIO() if workdir is None else spool_file(workdir)
        with gzip.GzipFile(fileobj=target, mode="wb", mtime=0, compresslevel=6, filename="") as gz:
            shutil.copyfileobj(raw, gz, 1 << 20)
        raw = target
        raw.seek(0)
    elif compression == "none":
        mt = media.OCI_LAYER
    else:
        raise BuildError(f"unknown layer compression {compression!r}", "use none or gzip")
    if isinstance(raw, io.BytesIO):
        data = raw.getvalue()
        return LayerBlob(descriptor(mt, data), diff_id, data=data)
    if workdir is None:
        raise BuildError("internal error: spooled layer without a work directory", "report this as a bug")
    fd, name = tempfile.mkstemp(dir=workdir, suffix=".layer")
    h = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        raw.seek(0)
        while chunk := raw.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
            out.write(chunk)
    raw.close()
    desc = {"mediaType": mt, "digest": "sha256:" + h.hexdigest(), "size": size}
    return LayerBlob(desc, diff_id, path=Path(name))


def listing(layers: Sequence[LayerBlob]) -> dict[str, Meta]:
    """Merge the tar listings of LAYERS, applying whiteouts, without extracting anything."""
    view: dict[str, Meta] = {}
    for layer in layers:
        seen: set[str] = set()
        with layer.open() as fh, decompressed(fh) as plain, tarfile.open(fileobj=plain, mode="r|") as tar:
            for m in tar:
                name = posixpath.normpath(m.name.lstrip("/")) if m.name.strip("/.") else ""
                if not name or name.startswith(".."):
                    continue
                base = posixpath.basename(name)
                parent = posixpath.dirname(name)
                if base == ".wh..wh..opq":
                    prefix = parent + "/" if parent else ""
                    for key in [k for k in view if k.startswith(prefix) and k not in seen]:
                        del view[key]
                    continue
                if base.startswith(".wh."):
                    victim = posixpath.join(parent, base[4:])
                    for key in [k for k in view if k == victim or k.startswith(victim + "/")]:
                        del view[key]
                    continue
                kind = ("dir" if m.isdir() else "symlink" if m.issym() else
                        "hardlink" if m.islnk() else "file")
                view[name] = Meta(kind, m.mode, m.uid, m.gid, m.linkname)
                seen.add(name)
    return view


def snapshot_tree(root: Path) -> dict[str, tuple[int, int, int, int, int, str]]:
    snap: dict[str, tuple[int, int, int, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            snap[os.path.relpath(full, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                 st.st_mtime_ns, link)
    return snap


def write_diff(writer: LayerWriter, root: Path,
                before: dict[str, tuple[int, int, int, int, int, str]], mtime: int) -> None:
    """Write what changed under ROOT since BEFORE: changed entries, their parents, and whiteouts."""
    now = snapshot_tree(root)
    changed = {rel for rel, meta in now.items() if before.get(rel) != meta}
    for rel in list(changed):
        parent = posixpath.dirname(rel)
        while parent:
            changed.add(parent)
            parent = posixpath.dirname(parent)
    # A directory that became a file or a link: the layer hides the old directory (a whiteout of the
    # path, which sorts before the new entry) instead of whiting out what was inside it.
    retyped = {rel for rel in changed if rel in before and rel in now
               and stat.S_ISDIR(before[rel][0]) and not stat.S_ISDIR(now[rel][0])}
    deleted = sorted(rel for rel in before if rel not in now)
    whiteouts: set[str] = set(retyped)
    for rel in deleted:
        if any(rel.startswith(w + "/") for w in whiteouts):
            continue
        whiteouts.add(rel)
    whiteout_names = {posixpath.join(posixpath.dirname(w), ".wh." + posixpath.basename(w)) for w in whiteouts}
    names = sorted(changed | whiteout_names)
    inodes: dict[tuple[int, int], str] = {}
    for rel in names:
        base = posixpath.basename(rel)
        if base.startswith(".wh.") and (rel not in now or rel in whiteout_names):
            writer.add(rel, Meta("whiteout", 0o600, 0, 0), mtime)
            continue
        full = root / rel
        st = os.lstat(full)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            writer.add(rel, Meta("dir", mode, st.st_uid, st.st_gid), mtime)
        elif stat.S_ISLNK(st.st_mode):
            writer.add(rel, Meta("symlink", mode, st.st_uid, st.st_gid, os.readlink(full)), mtime)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in inodes:
                writer.add(rel, Meta("hardlink", mode, st.st_uid, st.st_gid, inodes[key]), mtime)
                continue
            inodes[key] = rel
            with open(full, "rb") as fh:
                writer.add(rel, Meta("file", mode, st.st_uid, st.st_gid), mtime, fh, st.st_size)
        # sockets, fifos and devices made by RUN are not carried into the layer
