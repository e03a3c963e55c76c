"""Namespace inspection: for each container of a pod, the inode of each namespace type and whether it is the
sandbox's, the host's, or its own (read from /proc/PID/ns, as `lsns` does); its pid tree, mounts and cgroups."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasmlab.runtime.pods.wasi import WasiView

# /proc/PID/ns names, in the order a table shows them.
TYPES = ("net", "ipc", "uts", "pid", "mnt", "cgroup", "user")


@dataclass
class NamespaceEntry:
    type: str
    inode: int
    shared: str  # "host" (the lab's own), "sandbox" (made by the pod's infra container), or "private"


@dataclass
class ProcessEntry:
    """One process of a container: its pid on the host and in the pod's (or its own) pid namespace."""

    host_pid: int
    pod_pid: int        # the last NSpid: as the container's processes see it
    ppid: int           # the host parent
    depth: int          # 0 for the container's init
    command: str


@dataclass
class MountEntry:
    """One line of /proc/PID/mountinfo: the mount point relative to the container's root."""

    target: str
    fstype: str
    source: str
    root: str           # the folder of the source mounted there (a bind's subfolder)
    options: str


@dataclass
class CgroupEntry:
    """One line of /proc/PID/cgroup: a hierarchy (its controllers; "" for the unified one) and the path in it."""

    hierarchy: int
    controllers: str
    path: str


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
    processes: list[ProcessEntry] = field(default_factory=list)
    mounts: list[MountEntry] = field(default_factory=list)
    cgroups: list[CgroupEntry] = field(default_factory=list)
    wasi: WasiView | None = None
    runtime_class: str | None = None  # the pod's runtimeClassName (recorded; a cluster picks the node handler)

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


def _ppids() -> dict[int, int]:
    """{pid: ppid} of every process (one pass over /proc)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                text = fh.read()
        except OSError:
            continue
        rest = text[text.rfind(b")") + 2:].split()
        out[int(name)] = int(rest[1])
    return out


def _nspid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except OSError:
        pass
    return 0


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return ""
    return " ".join(a.decode("utf-8", "replace") for a in argv)


def pid_tree(pid: int, ppids: dict[int, int] | None = None) -> list[ProcessEntry]:
    """PID and its descendants, depth first, each with its host pid and its pid in its own pid namespace."""
    if not pid or not os.path.exists(f"/proc/{pid}"):
        return []
    parents = _ppids() if ppids is None else ppids
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out: list[ProcessEntry] = []
    stack = [(pid, parents.get(pid, 0), 0)]
    while stack:
        p, parent, depth = stack.pop()
        out.append(ProcessEntry(p, _nspid(p), parent, depth, _command(p)))
        stack.extend((c, p, depth + 1) for c in sorted(children.get(p, ()), reverse=True))
    return out


def _unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    if "\\" not in field_text:
        return field_text
    out, i = [], 0
    while i < len(field_text):
        if field_text[i] == "\\" and field_text[i + 1:i + 4].isdigit():
            out.append(chr(int(field_text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


def mounts(pid: int) -> list[MountEntry]:
    """PID's mounts, in mountinfo order; targets are relative to PID's root, as the kernel writes them."""
    try:
        with open(f"/proc/{pid}/mountinfo") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        left, _, right = line.partition(" - ")
        f = left.split()
        fstype, source, _ = ([*right.split(), "", ""])[:3]
        out.append(MountEntry(_unescape(f[4]), fstype, _unescape(source), _unescape(f[3]), f[5]))
    return out


def cgroups(pid: int) -> list[CgroupEntry]:
    """PID's cgroup in every hierarchy (v1 controllers and the unified one)."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        out.append(CgroupEntry(int(hid), controllers, path))
    return out
