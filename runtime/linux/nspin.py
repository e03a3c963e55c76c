"""Pinned pod namespaces, as CRI-O's pinns makes them: a pod's network, IPC and UTS namespaces made ahead of its
containers and held by bind mounts of their /proc files, so every container of the pod (its infra container too)
joins them by path, and all of them can be created at once."""

from __future__ import annotations

import os
import sys

from wasmlab.runtime.linux import loopback
from wasmlab.runtime.linux import syscalls as sc

# /proc/PID/ns name -> the clone flag that makes one.
KINDS = {"net": sc.CLONE_NEWNET, "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS}
# What an OCI config.json calls each.
OCI_NAMES = {"net": "network", "ipc": "ipc", "uts": "uts"}


def pin(folder: str, hostname: str | None = None) -> dict[str, str]:
    """New network, IPC and UTS namespaces, pinned at FOLDER/{net,ipc,uts}: their loopback up, the hostname set.
    The caller's own namespaces are restored before this returns. Must run in a single-threaded process
    (unshare); the zygote does it. On failure nothing is left (the pins that were made are unmounted)."""
    own = {kind: os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in KINDS}
    made: list[str] = []
    try:
        os.mkdir(folder, 0o700)
    except OSError:
        for fd in own.values():
            os.close(fd)
        raise
    try:
        sc.unshare(KINDS["net"] | KINDS["ipc"] | KINDS["uts"])
        try:
            if hostname:
                sc.sethostname(hostname)
            loopback.up()
            for kind in KINDS:
                target = os.path.join(folder, kind)
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400))
                sc.mount(f"/proc/self/ns/{kind}", target, None, sc.MS_BIND)
                made.append(target)
        finally:
            for kind, fd in own.items():
                try:
                    sc.setns(fd, KINDS[kind])
                except OSError as exc:  # pragma: no cover - the kernel refusing our own namespace back
                    # Every container forked from here on would land in the pod's namespaces: stop instead.
                    print(f"wasmlab: cannot return to the {kind} namespace: {exc}", file=sys.stderr)
                    os._exit(70)
    except BaseException:
        unpin(folder)
        raise
    finally:
        for fd in own.values():
            os.close(fd)
    return pin_paths(folder)


def pin_paths(folder: str) -> dict[str, str]:
    """Where :func:`pin` pins a pod's namespaces under FOLDER, {OCI namespace type: path}: known before they are
    made, so that the containers' bundles can be written while the zygote makes them."""
    return {OCI_NAMES[kind]: os.path.join(folder, kind) for kind in KINDS}


def unpin(folder: str) -> None:
    """Unmount the pins (the namespaces end with the last process in them) and remove the folder."""
    for kind in KINDS:
        target = os.path.join(folder, kind)
        try:
            sc.umount2(target, 2)  # MNT_DETACH
        except OSError:
            pass
        try:
            os.unlink(target)
        except OSError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass
