"""Where wasmlab keeps its data: the lab home directory."""

from __future__ import annotations

import os
from pathlib import Path


def lab_home() -> Path:
    """The lab's data directory.

    ``$WASMLAB_HOME`` if set, else ``$XDG_DATA_HOME/wasmlab``, else ``~/.local/share/wasmlab``.
    The directory is not created here; whoever writes into it creates what it needs.
    """
    explicit = os.environ.get("WASMLAB_HOME")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(os.path.expanduser(xdg)):
        base = Path(xdg).expanduser()
    else:
        base = Path.home() / ".local" / "share"
    return (base / "wasmlab").absolute()


def images_root(home: Path | None = None) -> Path:
    """The OCI image layout that holds the lab's images: ``<home>/images``."""
    return (home if home is not None else lab_home()) / "images"
