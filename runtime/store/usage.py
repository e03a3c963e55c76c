"""What the lab home takes on disk (podman's `system df`), and emptying it (`system reset`): files, not processes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class DiskUsage:
    """One line of `system df`: a kind of thing, how many, how many in use, bytes on disk, bytes freed by removing
    the unused ones."""

    kind: str
    total: int
    active: int
    size: int
    reclaimable: int


def allocated(paths: Iterable[str | os.PathLike[str]], *, skip: Callable[[str], bool] = lambda name: False,
              seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes the files under PATHS take on disk (blocks, as `du -B1`): a hard link counts once, links are not
    followed, sparse files count what they hold. SKIP(name) leaves files out by name."""
    seen = set() if seen is None else seen
    total = 0
    stack = [os.fspath(p) for p in paths]
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_blocks * 512
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                names = os.listdir(path)
            except OSError:
                continue
            stack.extend(os.path.join(path, n) for n in names if not skip(n))
    return total


def mounts_under(root: str) -> list[str]:
    """Mount points at or under ROOT in this mount namespace, deepest first."""
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                point = line.split()[4].replace("\\040", " ")
                if point == root or point.startswith(root.rstrip("/") + "/"):
                    found.append(point)
    except OSError:
        return []
    return sorted(found, key=len, reverse=True)


def empty_folder(root: str) -> None:
    """Remove everything inside ROOT (not ROOT itself). Whatever is mounted there must be unmounted first."""
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
