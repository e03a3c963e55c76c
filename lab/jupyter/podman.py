"""podman with wasmlab-oci as its OCI runtime, on a storage of its own: a lab image saved, loaded and run, as
the seed article runs its image with crun (`podman run mywasm-image`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wasmlab.runtime import Lab

# podman here needs these (the runtime's setrlimit of podman's defaults is refused on this machine).
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


@dataclass(frozen=True)
class PodmanRun:
    command: list[str]   # the podman run command line, as a learner would type it
    exit_code: int
    stdout: str
    stderr: str


def oci_runtime() -> str:
    """The wasmlab-oci beside this Python (the lab's virtual environment), else on PATH."""
    beside = Path(sys.executable).with_name("wasmlab-oci")
    return str(beside) if beside.exists() else (shutil.which("wasmlab-oci") or "wasmlab-oci")


def podman_available() -> bool:
    return shutil.which("podman") is not None


def podman_run(lab: Lab, image: str, *, annotations: dict[str, str] | None = None, timeout: float = 120) -> PodmanRun:
    """Save IMAGE from the lab, load it into a throwaway podman storage, `podman run --rm --runtime wasmlab-oci`
    it, and remove the storage again."""
    if not podman_available():
        raise FileNotFoundError("podman is not installed (apt-get install podman)")
    base = Path(tempfile.mkdtemp(prefix="wasmlab-podman-"))
    storage = ["--root", str(base / "root"), "--runroot", str(base / "runroot"), "--storage-driver", "vfs",
               "--tmpdir", str(base / "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    try:
        archive = base / "image.tar"
        lab.save(image, archive, format="oci-archive")
        loaded = subprocess.run(["podman", *storage, "load", "-i", str(archive)], capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if loaded.returncode != 0:
            return PodmanRun(["podman", "load"], loaded.returncode, loaded.stdout, loaded.stderr)
        ref = loaded.stdout.strip().splitlines()[-1].split(": ", 1)[-1] if loaded.stdout.strip() else image
        flags = [a for k, v in (annotations or {}).items() for a in ("--annotation", f"{k}={v}")]
        argv = ["podman", *storage, "--runtime", oci_runtime(), "run", "--rm", *ULIMITS, *flags, ref]
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             env={**os.environ})
        shown = ["podman", "--runtime", "wasmlab-oci", "run", "--rm", *flags, ref]
        return PodmanRun(shown, ran.returncode, ran.stdout, ran.stderr)
    finally:
        subprocess.run(["podman", *storage, "system", "reset", "-f"], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
