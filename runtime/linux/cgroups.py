"""cgroups v1, v2 and hybrid: create a container's cgroup, set memory, pids and cpu limits, read usage, remove it."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import SetupError

CGROUP_ROOT = "/sys/fs/cgroup"
# The v1 controllers wasmlab places a container in (only those mounted are used).
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio")


@dataclass(frozen=True)
class Layout:
    """What this machine has: 'v2', 'v1' or 'hybrid', and where each hierarchy lives."""

    mode: str
    v1: dict[str, str] = field(default_factory=dict)   # controller -> mount point
    v2: str | None = None                             # the unified mount point

    @property
    def controllers(self) -> list[str]:
        if self.v2 and self.mode == "v2":
            try:
                with open(os.path.join(self.v2, "cgroup.controllers")) as fh:
                    return fh.read().split()
            except OSError:
                return []
        return sorted(self.v1)


_LAYOUT: Layout | None = None


def layout() -> Layout:
    """Detect (once) how cgroups are mounted, from /proc/self/mountinfo."""
    global _LAYOUT
    if _LAYOUT is not None:
        return _LAYOUT
    v1: dict[str, str] = {}
    v2: str | None = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            pre, _, post = line.partition(" - ")
            fstype, _src, opts = [*post.split(), "", "", ""][:3]
            mnt = pre.split()[4]
            if fstype == "cgroup2":
                v2 = mnt
            elif fstype == "cgroup":
                for opt in opts.split(","):
                    if opt in V1_CONTROLLERS:
                        v1.setdefault(opt, mnt)
    mode = "v2" if v2 and not v1 else ("hybrid" if v2 and v1 else ("v1" if v1 else "none"))
    _LAYOUT = Layout(mode, v1, v2)
    return _LAYOUT


def _write(path: str, value: str) -> None:
    """One write(2) into a cgroup file: three system calls, where open(path, "w") makes seven and a file object
    (allocations a forked init pays for in copied pages: joining the cgroup is on every container's start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


@dataclass
class Cgroup:
    """A container's cgroup: one folder per hierarchy, named by the spec's cgroupsPath."""

    path: str                     # relative, e.g. "wasmlab/abc"
    dirs: dict[str, str]          # hierarchy name ("memory", ..., "unified") -> absolute folder

    @property
    def memory_dir(self) -> str | None:
        return self.dirs.get("memory") or (self.dirs.get("unified") if layout().mode == "v2" else None)

    def add(self, pid: int) -> None:
        for d in self.dirs.values():
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def join_self(self) -> None:
        """Move the calling single-threaded process in. On v1 it writes "0" to each hierarchy's `tasks`:
        the kernel then skips the global threadgroup lock, whose writer waits for an RCU grace period
        (13 ms here, the bulk of a container's start). v2 has no such path (cgroup.procs)."""
        for name, d in self.dirs.items():
            _write(os.path.join(d, "cgroup.procs" if name == "unified" else "tasks"), "0")

    def pids(self) -> list[int]:
        for d in self.dirs.values():
            try:
                return [int(x) for x in _read(os.path.join(d, "cgroup.procs")).split()]
            except OSError:
                continue
        return []

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed something in this cgroup."""
        mem = self.dirs.get("memory")
        try:
            if mem and layout().mode != "v2":
                for line in _read(os.path.join(mem, "memory.oom_control")).splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1]) > 0
            uni = self.dirs.get("unified")
            if uni and layout().mode == "v2":
                for line in _read(os.path.join(uni, "memory.events")).splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1]) > 0
        except OSError:
            return False
        return False

    def memory(self) -> dict[str, int]:
        """Current and peak memory use in bytes, where the kernel reports them."""
        out: dict[str, int] = {}
        mem = self.dirs.get("memory")
        try:
            if mem and layout().mode != "v2":
                out["current"] = int(_read(os.path.join(mem, "memory.usage_in_bytes")))
                out["peak"] = int(_read(os.path.join(mem, "memory.max_usage_in_bytes")))
            elif self.dirs.get("unified"):
                out["current"] = int(_read(os.path.join(self.dirs["unified"], "memory.current")))
                peak = os.path.join(self.dirs["unified"], "memory.peak")
                if os.path.exists(peak):
                    out["peak"] = int(_read(peak))
        except (OSError, ValueError):
            pass
        return out

    def freeze(self, frozen: bool) -> None:
        """Stop (or let go on) every process of the cgroup: the v1 freezer, or cgroup.freeze on v2."""
        if "freezer" in self.dirs and layout().mode != "v2":
            path = os.path.join(self.dirs["freezer"], "freezer.state")
            _write(path, "FROZEN" if frozen else "THAWED")
            want = "FROZEN" if frozen else "THAWED"
            deadline = time.monotonic() + 2
            while _read(path).strip() != want and time.monotonic() < deadline:
                time.sleep(0.001)  # FREEZING: the kernel is still catching every task
            return
        unified = self.dirs.get("unified")
        if unified and os.path.exists(os.path.join(unified, "cgroup.freeze")):
            _write(os.path.join(unified, "cgroup.freeze"), "1" if frozen else "0")
            return
        raise SetupError("this container's cgroup has no freezer", "pause needs the freezer controller (cgroup v1) "
                         "or cgroup v2")

    def kill_all(self) -> None:
        import signal

        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout: float = 2.0) -> None:
        """Remove every folder; waits briefly for dying processes to leave."""
        deadline = time.monotonic() + timeout
        for d in sorted(self.dirs.values(), key=len, reverse=True):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        break
                    self.kill_all()
                    time.sleep(0.005)
            _prune_empty_parents(d)


def _prune_empty_parents(d: str) -> None:
    """Remove the wasmlab-made parents of a cgroup folder if they are now empty."""
    parent = os.path.dirname(d)
    while os.path.basename(parent) in ("wasmlab",):
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = os.path.dirname(parent)


PARENT_ENV = "WASMLAB_CGROUP_PARENT"
DEFAULT_PARENT = "wasmlab"


def default_parent() -> str:
    """Where containers without a cgroupsPath (and the lab's containers) go: ``$WASMLAB_CGROUP_PARENT`` or wasmlab.

    As podman's --cgroup-parent: a relative path under each hierarchy. A test suite gives each of its sessions
    its own parent, so that suites running side by side never share (or count) each other's cgroups.
    """
    parent = (os.environ.get(PARENT_ENV) or "").strip("/")
    if not parent:
        return DEFAULT_PARENT
    if ".." in parent.split("/"):
        raise SetupError(f"{PARENT_ENV} must not contain '..' (got {parent!r}): it would leave the cgroup tree",
                         f"set it to a relative path such as wasmlab/workshop, or unset {PARENT_ENV}")
    return parent


def normalize_path(cgroups_path: str, container_id: str) -> str:
    """The relative cgroup path for a spec's cgroupsPath (systemd 'slice:prefix:name' form included)."""
    if not cgroups_path:
        return f"{default_parent()}/{container_id}"
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        slice_, prefix, name = [*cgroups_path.split(":"), "", ""][:3]
        unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        return f"{slice_ or 'system.slice'}/{unit}".strip("/")
    return cgroups_path.strip("/")


def create(cgroups_path: str, container_id: str, resources: dict[str, Any], *, rootless: bool) -> Cgroup | None:
    """Create the container's cgroup and apply its limits. Returns None when there is nothing to do rootless."""
    lay = layout()
    rel = normalize_path(cgroups_path, container_id)
    dirs: dict[str, str] = {}
    if lay.mode == "v2" and lay.v2:
        dirs["unified"] = os.path.join(lay.v2, rel)
    else:
        cpu = resources.get("cpu") or {}
        wanted = {"cpuset": bool(cpu.get("cpus") or cpu.get("mems")), "blkio": bool(resources.get("blockIO"))}
        for ctrl, mnt in lay.v1.items():
            # cpuset and blkio only when asked for: a new cpuset folder must first copy its parent's cpus and
            # mems, and neither limits anything unless set. Every folder made and joined is on the start path.
            if wanted.get(ctrl, True):
                dirs.setdefault(ctrl, os.path.join(mnt, rel))
        # Hybrid: the unified hierarchy holds no controller here, and joining it (cgroup.procs) would cost
        # an RCU grace period per container for nothing. Only the v1 hierarchies are used.
    # cpu and cpuacct often share one mount: keep one folder per mount.
    unique: dict[str, str] = {}
    seen: set[str] = set()
    for name, d in dirs.items():
        if d not in seen:
            unique[name] = d
            seen.add(d)
    cg = Cgroup(rel, unique)
    made: list[str] = []
    try:
        for d in unique.values():
            if not os.path.isdir(d):
                os.makedirs(d)
                made.append(d)
        if "cpuset" in unique:
            _inherit_cpuset(unique["cpuset"])
        apply(cg, resources)
    except PermissionError:
        _undo(made)
        if rootless:
            return None
        raise SetupError(f"cannot create cgroup {rel}: permission denied", "run as root, or drop linux.resources")
    except OSError as exc:
        _undo(made)
        raise SetupError(f"cannot set up cgroup {rel}: {exc.strerror} ({exc.filename})",
                         "check linux.resources in config.json") from None
    except SetupError:
        _undo(made)
        raise
    return cg


def _undo(made: list[str]) -> None:
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:
            pass
        _prune_empty_parents(d)


def _inherit_cpuset(d: str) -> None:
    """A new v1 cpuset folder starts empty; copy cpus and mems down from the nearest set parent."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        target = os.path.join(d, name)
        if _read(target).strip():
            continue
        chain = []
        parent = d
        while parent != CGROUP_ROOT and _read(os.path.join(parent, name)).strip() == "":
            chain.append(parent)
            parent = os.path.dirname(parent)
        value = _read(os.path.join(parent, name)).strip()
        for folder in reversed(chain):
            _write(os.path.join(folder, name), value)


# What every container may use whatever its rules say (as runc does): creating any node, and the
# default devices the runtime-spec requires, plus ptys.
DEFAULT_ALLOWED_DEVICES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                           "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm")


def device_rule(rule: dict[str, Any]) -> str:
    """A runtime-spec device rule as the v1 devices controller writes it: 'c 1:3 rwm', 'a'."""
    kind = rule.get("type") or "a"
    major, minor = rule.get("major"), rule.get("minor")
    access = rule.get("access") or "rwm"
    if kind == "a" and major is None and minor is None:
        return "a"
    def num(value: Any) -> str:
        return "*" if value is None or int(value) < 0 else str(int(value))
    return f"{kind} {num(major)}:{num(minor)} {access}"


def apply_devices(cg: Cgroup, rules: list[dict[str, Any]]) -> None:
    """linux.resources.devices, in order, then the defaults (v1 devices controller).

    Without this, a container with CAP_MKNOD could make a node for the host's disk and read it.
    """
    d = cg.dirs.get("devices")
    if d is None or layout().mode == "v2":
        return  # cgroup v2 controls devices with eBPF programs, which wasmlab does not load yet
    for rule in rules:
        _write(os.path.join(d, "devices.allow" if rule.get("allow") else "devices.deny"), device_rule(rule))
    for text in DEFAULT_ALLOWED_DEVICES:
        _write(os.path.join(d, "devices.allow"), text)


def apply(cg: Cgroup, resources: dict[str, Any]) -> None:
    mem = resources.get("memory") or {}
    pids = resources.get("pids") or {}
    cpu = resources.get("cpu") or {}
    v2 = layout().mode == "v2"
    if resources.get("devices"):
        apply_devices(cg, list(resources["devices"]))
    if mem.get("limit") is not None:
        limit = int(mem["limit"])
        if v2:
            _write(os.path.join(cg.dirs["unified"], "memory.max"), "max" if limit < 0 else str(limit))
            if mem.get("swap") is not None and int(mem["swap"]) >= 0:
                _write(os.path.join(cg.dirs["unified"], "memory.swap.max"), str(max(0, int(mem["swap"]) - limit)))
        elif "memory" in cg.dirs:
            d = cg.dirs["memory"]
            _write(os.path.join(d, "memory.limit_in_bytes"), str(limit))
            swap = mem.get("swap", limit)
            try:
                _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(swap))
            except OSError:
                pass
    if not v2 and "memory" in cg.dirs:
        d = cg.dirs["memory"]
        if mem.get("reservation") is not None:
            _write(os.path.join(d, "memory.soft_limit_in_bytes"), str(int(mem["reservation"])))
        if mem.get("swappiness") is not None:
            _write(os.path.join(d, "memory.swappiness"), str(int(mem["swappiness"])))
        if mem.get("disableOOMKiller"):
            _write(os.path.join(d, "memory.oom_control"), "1")
    elif v2 and mem.get("reservation") is not None:
        _write(os.path.join(cg.dirs["unified"], "memory.low"), str(int(mem["reservation"])))
    if pids.get("limit") is not None:
        limit = int(pids["limit"])
        pids_dir = cg.dirs.get("unified") if v2 else cg.dirs.get("pids")
        if pids_dir:
            _write(os.path.join(pids_dir, "pids.max"), "max" if limit <= 0 else str(limit))
    if cpu:
        if v2:
            d = cg.dirs["unified"]
            if cpu.get("quota") is not None or cpu.get("period") is not None:
                quota = cpu.get("quota")
                period = cpu.get("period") or 100000
                _write(os.path.join(d, "cpu.max"), f"{'max' if not quota or quota < 0 else quota} {period}")
            if cpu.get("shares"):
                weight = 1 + ((int(cpu["shares"]) - 2) * 9999) // 262142
                _write(os.path.join(d, "cpu.weight"), str(max(1, min(10000, weight))))
        else:
            d2 = cg.dirs.get("cpu")
            if d2:
                if cpu.get("shares"):
                    _write(os.path.join(d2, "cpu.shares"), str(cpu["shares"]))
                if cpu.get("period"):
                    _write(os.path.join(d2, "cpu.cfs_period_us"), str(cpu["period"]))
                if cpu.get("quota") is not None:
                    _write(os.path.join(d2, "cpu.cfs_quota_us"), str(cpu["quota"]))
            d3 = cg.dirs.get("cpuset")
            if d3:
                if cpu.get("cpus"):
                    _write(os.path.join(d3, "cpuset.cpus"), str(cpu["cpus"]))
                if cpu.get("mems"):
                    _write(os.path.join(d3, "cpuset.mems"), str(cpu["mems"]))


def open_existing(rel: str) -> Cgroup:
    """The Cgroup for a relative path made earlier (by create), for usage and removal."""
    lay = layout()
    dirs: dict[str, str] = {}
    seen: set[str] = set()
    candidates = list(lay.v1.items()) + ([("unified", lay.v2)] if lay.v2 else [])
    for name, mnt in candidates:
        d = os.path.join(mnt, rel)
        if d not in seen and os.path.isdir(d):
            dirs[name] = d
            seen.add(d)
    return Cgroup(rel, dirs)
