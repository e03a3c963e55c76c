"""How container roots are made here: an overlay of shared snapshots, or a copy where overlayfs is not allowed."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from wasmlab.runtime.store.atomic import remove_tree

# "overlay": the image's layers, unpacked once as snapshots, under a private upper folder (as containerd's
# overlayfs snapshotter). "copy": every layer extracted into a folder of the container's own.
OVERLAY = "overlay"
COPY = "copy"
MODE_ENV = "WASMLAB_ROOTFS"  # "copy" forces copies (to compare the two, or where overlays misbehave)


def root_mode(probe_dir: Path) -> tuple[str, str]:
    """(OVERLAY or COPY, why) for roots made under probe_dir."""
    asked = os.environ.get(MODE_ENV, "")
    if asked == COPY:
        return COPY, f"{MODE_ENV}=copy"
    if asked not in ("", OVERLAY):
        from wasmlab.runtime.errors import UsageError

        raise UsageError(f"{MODE_ENV}={asked!r} is not a way to make container roots",
                         f"set {MODE_ENV}=copy (copies) or {MODE_ENV}=overlay (the default where allowed), or unset it")
    if os.geteuid() != 0:
        return COPY, "rootless: overlay whiteouts are 0:0 devices and trusted.* attributes, which need root"
    if not overlay_supported(probe_dir):
        return COPY, "this kernel refuses an overlay mount here"
    return OVERLAY, "layers unpacked once, shared; a private upper folder per container"


def overlay_supported(root: Path) -> bool:
    """Whether an overlay with whiteouts mounts under ROOT (which is created). Checked once by mounting one
    for real in a private mount namespace of a child process (no mount is ever left on the host)."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / ".overlay-ok"
    if marker.exists():
        return True
    try:
        with open("/proc/filesystems") as fh:
            if "overlay" not in fh.read():
                return False
    except OSError:
        return False
    import subprocess
    import sys

    probe = root / f".probe-{secrets.token_hex(4)}"
    try:
        for sub in ("lower", "upper", "work", "merged"):
            (probe / sub).mkdir(parents=True)
        os.mknod(probe / "lower" / "gone", 0o020600, os.makedev(0, 0))
        code = ("import ctypes,os,sys; libc=ctypes.CDLL(None,use_errno=True); os.chdir(sys.argv[1]);"
                "libc.unshare(0x20000) == 0 or sys.exit(2);"
                "libc.mount(b'none', b'/', None, 0x4000|0x40000, None);"  # MS_REC|MS_PRIVATE
                "sys.exit(0 if libc.mount(b'overlay', b'merged', b'overlay', 0,"
                " b'lowerdir=lower,upperdir=upper,workdir=work') == 0 and not os.path.exists('merged/gone') else 1)")
        ok = subprocess.run([sys.executable, "-c", code, str(probe)], timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    finally:
        remove_tree(str(probe))
    if ok:
        with contextlib.suppress(OSError):
            marker.touch()
    return ok
