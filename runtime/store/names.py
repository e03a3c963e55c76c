"""Container names: an index of one symbolic link per name (NAME -> container id), so that claiming or finding a
name reads one link instead of every container's meta.json.

The index is a hint checked against the truth: a link counts only while its container's folder exists and its
meta.json still carries that name. So a link left behind by a crash, a removal that skipped the index, or a lab
made before the index existed never takes a name away; an index that is missing is rebuilt from the containers'
own records (under the names lock that every claim takes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Whether a container id still holds a name: its meta.json says so (the caller knows where that is).
Holds = Callable[[str, str], bool]


class NameIndex:
    """The index in FOLDER; HOLDS(cid, name) says whether container CID really carries NAME."""

    def __init__(self, folder: Path, holds: Holds) -> None:
        self.folder = folder
        self._holds = holds

    def owner(self, name: str) -> str | None:
        """The id of the container named NAME, or None (as far as the index knows: see :meth:`ensure`)."""
        try:
            cid = os.readlink(self.folder / name)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return cid if self._holds(cid, name) else None

    def ensure(self, metas: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """Make the index if it is missing, from the containers' records (call under the names lock)."""
        if self.folder.is_dir():
            return
        building = self.folder.with_name(self.folder.name + ".building")
        if building.exists():
            for stale in building.iterdir():
                stale.unlink()
        else:
            building.mkdir(mode=0o700)
        for meta in metas():
            name, cid = meta.get("name"), meta.get("id")
            if isinstance(name, str) and isinstance(cid, str) and "/" not in name and name not in (".", ".."):
                try:
                    os.symlink(cid, building / name)
                except FileExistsError:
                    pass  # two records of one name (made before names were locked): the first keeps it
        os.rename(building, self.folder)

    def claim(self, name: str, cid: str) -> bool:
        """Point NAME at CID unless another container holds it (call under the names lock); True if claimed."""
        link = self.folder / name
        try:
            os.symlink(cid, link)
            return True
        except FileExistsError:
            pass
        if self.owner(name) not in (None, cid):
            return False
        replacement = self.folder / f".{name}.{cid}"
        try:
            os.unlink(replacement)
        except FileNotFoundError:
            pass
        os.symlink(cid, replacement)
        os.rename(replacement, link)  # a stale link replaced in one step
        return True

    def release(self, name: str, cid: str) -> None:
        """Drop NAME if it still points at CID (a removed or renamed container)."""
        link = self.folder / name
        try:
            if os.readlink(link) == cid:
                os.unlink(link)
        except (FileNotFoundError, NotADirectoryError):
            pass


def meta_holds(containers: Path, removing: set[str]) -> Holds:
    """HOLDS for the lab's containers folder: CID's meta.json names NAME, and CID is not being removed."""

    def holds(cid: str, name: str) -> bool:
        if cid in removing or "/" in cid:
            return False
        try:
            return bool(json.loads((containers / cid / "meta.json").read_bytes()).get("name") == name)
        except (OSError, ValueError):
            return False

    return holds
