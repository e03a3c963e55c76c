"""Paths inside an image's root: resolved with symbolic links followed inside it only, and entries written there."""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Callable
from pathlib import Path

from wasmlab.runtime.errors import BuildError, ImageError
from wasmlab.runtime.images.layers import Entry

_MAX_SYMLINKS = 40



def resolve_in_root(path: str, readlink: Callable[[str], str | None], *, follow_last: bool = True) -> str:
    """Resolve a container path against symlinks as if the image root were ``/``.

    Returns a root-relative path with no ``..``; it can never leave the root.
    """
    pending = deque(p for p in path.split("/") if p and p != ".")
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.popleft()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        if not pending and not follow_last:
            resolved.append(part)
            break
        target = readlink("/".join([*resolved, part]))
        if target is None:
            resolved.append(part)
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            raise BuildError(f"too many levels of symbolic links in {path!r}",
                             "fix the symlink loop in the image")
        if target.startswith("/"):
            resolved = []
        pending.extendleft(reversed([p for p in target.split("/") if p and p != "."]))
    return "/".join(resolved)


def disk_readlink(root: Path) -> Callable[[str], str | None]:
    def readlink(rel: str) -> str | None:
        p = root / rel
        return os.readlink(p) if p.is_symlink() else None

    return readlink


def write_entry(root: Path, rel: str, entry: Entry) -> None:
    """Write one entry under ROOT; REL is already resolved, so parents are real directories."""
    target = root / rel
    parent = target.parent
    # Defence in depth (resolution inside the image should make this impossible): the deepest existing
    # ancestor must really be inside the root before anything is made under it.
    existing = parent
    while not os.path.lexists(existing) and existing != root:
        existing = existing.parent
    real_root, real = os.path.realpath(root), os.path.realpath(existing)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise ImageError(f"refusing to write {rel!r}: it would land outside the image, in {real}",
                         "the build context or archive uses symbolic links to leave the image")
    if not parent.exists():
        parent.mkdir(parents=True, mode=0o755)
    if entry.kind == "dir":
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        target.mkdir(mode=0o755, exist_ok=True)
    else:
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if entry.kind == "symlink":
            os.symlink(entry.linkname, target)
        elif entry.data is not None:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(entry.data)
        elif entry.source is not None:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out, open(entry.source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    if os.geteuid() == 0:
        os.chown(target, entry.uid, entry.gid, follow_symlinks=False)
    if entry.kind != "symlink":
        os.chmod(target, entry.mode & 0o7777)
