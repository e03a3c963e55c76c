"""Namespace inspection: for each container of a pod, the inode of each namespace type and whether it is the
sandbox's, the host's, or its own (read from /proc/PID/ns, as `lsns` does)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

# /proc/PID/ns names, in the order a table shows them.
TYPES = ("net", "ipc", "uts", "pid", "mnt", "cgroup", "user")


@dataclass
class NamespaceEntry:
    type: str
    inode: int
    shared: str  # "host" (the lab's own), "sandbox" (made by the pod's infra container), or "private"


@dataclass
class ContainerNamespaces:
    """One container's namespaces (empty when it has no process: stopped)."""

    pod: str
    container: str
    role: str
    pid: int
    status: str
    cgroup: str = ""
    namespaces: list[NamespaceEntry] = field(default_factory=list)

    def entry(self, kind: str) -> NamespaceEntry:
        for e in self.namespaces:
            if e.type == kind:
                return e
        raise KeyError(kind)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def inodes(pid: int) -> dict[str, int]:
    """{type: inode} of PID's namespaces; {} once it is gone."""
    out = {}
    for kind in TYPES:
        try:
            out[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except OSError:
            return {}
    return out


def cgroup_path(pid: int) -> str:
    """PID's cgroup: the memory hierarchy's path (v1 and hybrid), else the unified one."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ""
    unified = ""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
        if controllers == "":
            unified = path
    return unified


def classify(pid: int, sandbox: dict[str, int], host: dict[str, int]) -> list[NamespaceEntry]:
    mine = inodes(pid)
    out = []
    for kind, inode in mine.items():
        # The host's first: a namespace the sandbox did not make (user, as root) is the host's, not the pod's.
        shared = "host" if host.get(kind) == inode else ("sandbox" if sandbox.get(kind) == inode else "private")
        out.append(NamespaceEntry(kind, inode, shared))
    return out


def host_namespaces() -> dict[str, int]:
    """The host's namespaces, as the lab sees them: its own process's (PID 1's may be out of reach: in a
    container, /proc/1/ns is not readable)."""
    return inodes(os.getpid())
