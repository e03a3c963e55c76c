"""Installed distributions, read from their .dist-info folders: entry points and versions (no importlib.metadata)."""

from __future__ import annotations

import os
import sys

# importlib.metadata answers the same questions, but brings email, zipfile, csv, bz2 and lzma with it: some
# ninety memory mappings and 2 MB in the zygote, which every container fork then copies.


def _dist_infos() -> list[tuple[str, str, str]]:
    """(normalized name, version, folder) per distribution; the first on sys.path wins, as in importlib.metadata."""
    found: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for folder in sys.path:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info"):
                dist, _, version = name[:-len(".dist-info")].partition("-")
            elif name.endswith(".egg-info"):
                dist, _, version = name[:-len(".egg-info")].partition("-")
                version = version.split("-", 1)[0]
            else:
                continue
            key = normalize(dist)
            if key in seen:
                continue
            seen.add(key)
            found.append((key, version, os.path.join(folder or ".", name)))
    return found


def normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    key = normalize(dist)
    for name, ver, folder in _dist_infos():
        if name == key:
            return ver or _metadata_version(folder)
    return None


def _metadata_version(folder: str) -> str | None:
    """The Version header of METADATA (or an egg's PKG-INFO), for folders named without a version."""
    for meta in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, meta), encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip() or None
                    if not line.strip():
                        break
        except OSError:
            continue
    return None


def entry_points(group: str) -> list[tuple[str, str]]:
    """(name, "module:attr") for each entry point of a group, from the entry_points.txt files."""
    found: list[tuple[str, str]] = []
    for _name, _ver, folder in _dist_infos():
        try:
            with open(os.path.join(folder, "entry_points.txt"), encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        found.extend(_section(text, group))
    return found


def _section(text: str, group: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, value = (part.strip() for part in line.split("=", 1))
            out.append((name, value.split("[", 1)[0].strip()))
    return out
