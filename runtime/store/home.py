"""Where wasmlab keeps its data: the lab home directory, made absolute and checked before anything uses it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from wasmlab.runtime.errors import HomeError

# Kernel file systems: nothing the lab writes belongs there, and writes there can change the host.
KERNEL_ROOTS = ("/proc", "/sys")
HINT = "point WASMLAB_HOME at a folder on a disk, e.g. export WASMLAB_HOME=$HOME/wasmlab, or unset it"


def lab_home() -> Path:
    """The lab's data directory, absolute and checked (see :func:`checked_home`).

    ``$WASMLAB_HOME`` if set, else ``$XDG_DATA_HOME/wasmlab``, else ``~/.local/share/wasmlab``.
    A relative ``$WASMLAB_HOME`` is taken from the current directory (the CLI pins it once,
    with :func:`absolute_home_env`). The directory is not created here; whoever writes into
    it creates what it needs.
    """
    explicit = os.environ.get("WASMLAB_HOME")
    if explicit:
        return checked_home(explicit, "WASMLAB_HOME")
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(os.path.expanduser(xdg)):
        base = Path(xdg).expanduser()
    else:
        base = Path.home() / ".local" / "share"
    return checked_home(base / "wasmlab", "the lab home")


def checked_home(path: str | os.PathLike[str], source: str = "the lab home") -> Path:
    """PATH made absolute, or a one-line :class:`HomeError` if it cannot hold the lab's data.

    Refused: a path under ``/proc`` or ``/sys`` (as written, or once its symbolic links are
    followed), a path that exists and is not a folder (``/etc/passwd``), a path inside a file,
    and a symbolic link to nothing. SOURCE names where the path came from, for the message.
    """
    home = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    for seen in (str(home), os.path.realpath(home)):
        for root in KERNEL_ROOTS:
            if seen == root or seen.startswith(root + "/"):
                raise HomeError(f"{source} {home} is under {root}, which holds kernel files, not lab data", HINT)
    for probe in (home, *home.parents):
        try:
            st = os.stat(probe)
        except OSError as exc:
            if exc.errno == errno.ENOENT and os.path.islink(probe):
                raise HomeError(f"{source} {home} cannot be used: {probe} is a symbolic link to nothing",
                                HINT) from None
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise HomeError(f"{source} {home} cannot be used: {exc.strerror or exc}", HINT) from None
        if stat.S_ISDIR(st.st_mode):
            break
        if probe == home:
            raise HomeError(f"{source} {home} exists and is not a folder", HINT)
        raise HomeError(f"{source} {home} is inside {probe}, which is not a folder", HINT)
    _writable(home, source)
    return home


def _writable(home: Path, source: str) -> None:
    """The home, or the folder it would be made in, must be writable by this user: every command writes there
    (locks, records, the history). Another user's lab home (root's, at a workshop) is refused in one line."""
    existing = next((p for p in (home, *home.parents) if os.path.isdir(p)), None)
    if existing is None or os.access(existing, os.W_OK | os.X_OK):
        return
    who = f"uid {os.getuid()}"
    if existing == home:
        raise HomeError(f"{source} {home} is not writable by you ({who}): it belongs to another user or a "
                        "read-only disk", "each user keeps a lab home of their own: " + HINT)
    raise HomeError(f"{source} {home} cannot be made: {existing} is not writable by you ({who})",
                    "each user keeps a lab home of their own: " + HINT)


def absolute_home_env() -> str | None:
    """Make a relative ``$WASMLAB_HOME`` absolute in this process's environment; return a note saying so.

    Everything started from here (the zygote, build steps) then sees the same home, whatever
    its working directory. Returns None when there is nothing to say.
    """
    explicit = os.environ.get("WASMLAB_HOME")
    if not explicit or os.path.isabs(os.path.expanduser(explicit)):
        return None
    absolute = os.path.abspath(os.path.expanduser(explicit))
    os.environ["WASMLAB_HOME"] = absolute
    return f"WASMLAB_HOME is relative; using {absolute}"


def images_root(home: Path | None = None) -> Path:
    """The OCI image layout that holds the lab's images: ``<home>/images``."""
    return (home if home is not None else lab_home()) / "images"



def runtime_root(home: Path) -> Path:
    """Where the lab's containers keep their runtime state: on a tmpfs, as runc's /run/runc and podman's
    /run/libpod (state is gone with the machine's boot, like the processes it describes), one folder per
    lab home. As root /run/wasmlab-labs/<id>; rootless $XDG_RUNTIME_DIR/wasmlab-labs/<id>; else <home>/run."""
    import hashlib

    legacy = home / "run"  # before wasmlab kept state on a tmpfs: used while it still holds containers
    try:
        with os.scandir(legacy) as entries:
            if any(not e.name.startswith(".") for e in entries):
                return legacy
    except OSError:
        pass
    key = hashlib.sha256(os.fsencode(home)).hexdigest()[:16]
    if os.geteuid() == 0 and os.path.isdir("/run"):
        return Path("/run/wasmlab-labs") / key
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return Path(xdg) / "wasmlab-labs" / key
    return home / "run"
