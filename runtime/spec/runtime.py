"""The OCI runtime-spec config.json: loading, validation that names the field, and typed access."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from wasmlab.runtime.errors import SpecError

# Beside a bundle's config.json, from the lab (never from an image): the overlay the init mounts as the root.
OVERLAY_FILE = "rootfs-overlay.json"
# The PATH a container gets when its image says none (as runc's and podman's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
RLIMIT_RE = re.compile(r"^RLIMIT_[A-Z]+$")
_SEMVER = re.compile(r"^1\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")

Validator = Callable[[Any, str], None]


def _fail(path: str, problem: str, hint: str = "") -> NoReturn:
    raise SpecError(path, problem, hint)


def _type(expected: type | tuple[type, ...], name: str) -> Validator:
    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) and expected in (int, (int, float)):
            _fail(path, f"must be {name}, got a boolean")
        if not isinstance(value, expected):
            _fail(path, f"must be {name}, got {type(value).__name__} {json.dumps(value)[:40]}")

    return check


_str = _type(str, "a string")
_bool = _type(bool, "a boolean")
_int = _type(int, "an integer")
_num = _type((int, float), "a number")


def _uint(value: Any, path: str) -> None:
    _int(value, path)
    if value < 0:
        _fail(path, f"must not be negative, got {value}")


def _uint_upto(top: int, what: str, hint: str = "") -> Validator:
    """A whole number from 0 to top: what the kernel takes, so that nothing overflows in the container's init."""
    def check(value: Any, path: str) -> None:
        _uint(value, path)
        if value > top:
            _fail(path, f"must be at most {top} ({what}), got {value}", hint)

    return check


# uid_t and gid_t are 32 bits, and (uid_t)-1 = 4294967295 tells setresuid "leave it as it is": the process
# would stay root. So an id stops one short.
_id = _uint_upto(2**32 - 2, "a Linux user or group id", "use an id from 0 to 4294967294, e.g. 1000")
_u32 = _uint_upto(2**32 - 1, "a 32-bit number")
_u64 = _uint_upto(2**64 - 1, "a 64-bit number")
_u16 = _uint_upto(2**16 - 1, "a terminal's largest size")
# rlim_t is 64 bits; its largest value, 18446744073709551615, is RLIM_INFINITY.
_rlim = _uint_upto(2**64 - 1, "RLIM_INFINITY, the largest limit", "use 18446744073709551615 for no limit")


def _list_of(item: Validator) -> Validator:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            _fail(path, f"must be a list, got {type(value).__name__}")
        for i, v in enumerate(value):
            item(v, f"{path}[{i}]")

    return check


def _map_of_str(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        _fail(path, f"must be an object, got {type(value).__name__}")
    for k, v in value.items():
        _str(v, f"{path}.{k}")


def _object(fields: Mapping[str, Validator], required: tuple[str, ...] = ()) -> Validator:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            _fail(path, f"must be an object, got {type(value).__name__}")
        for key in required:
            if key not in value:
                _fail(f"{path}.{key}", "is required")
        for key, v in value.items():
            if key in fields and v is not None:
                fields[key](v, f"{path}.{key}")

    return check


def _env_entry(value: Any, path: str) -> None:
    _str(value, path)
    if "=" not in value:
        _fail(path, f"must look like KEY=VALUE, got {value!r}")


def _abs_path(value: Any, path: str) -> None:
    _str(value, path)
    if not value.startswith("/"):
        _fail(path, f"must be an absolute path, got {value!r}")


def _dest(value: Any, path: str) -> None:
    _str(value, path)
    if not value:
        _fail(path, "must not be empty")
    if ".." in value.split("/"):
        _fail(path, f"must not contain '..', got {value!r}", "mount destinations are paths inside the container")


def _rlimit(value: Any, path: str) -> None:
    _object({"type": _str, "hard": _rlim, "soft": _rlim}, ("type", "hard", "soft"))(value, path)
    if not RLIMIT_RE.match(value["type"]):
        _fail(f"{path}.type", f"unknown rlimit {value['type']!r}", "use names like RLIMIT_NOFILE")
    if value["soft"] > value["hard"]:
        _fail(path, "soft limit is above the hard limit")


def _capability_list(value: Any, path: str) -> None:
    _list_of(_str)(value, path)
    for i, cap in enumerate(value):
        if not cap.startswith("CAP_"):
            _fail(f"{path}[{i}]", f"unknown capability {cap!r}", "capabilities look like CAP_NET_ADMIN")


def _namespace(value: Any, path: str) -> None:
    _object({"type": _str, "path": _str}, ("type",))(value, path)
    if value["type"] not in NAMESPACE_TYPES:
        _fail(f"{path}.type", f"unknown namespace type {value['type']!r}", f"use one of {', '.join(NAMESPACE_TYPES)}")
    if "path" in value and value["path"] and not value["path"].startswith("/"):
        _fail(f"{path}.path", "must be an absolute path to a namespace file such as /proc/PID/ns/net")


def _namespaces(value: Any, path: str) -> None:
    _list_of(_namespace)(value, path)
    seen: set[str] = set()
    for i, ns in enumerate(value):
        if ns["type"] in seen:
            _fail(f"{path}[{i}].type", f"namespace {ns['type']!r} is listed twice")
        seen.add(ns["type"])


def _id_mapping(value: Any, path: str) -> None:
    _object({"containerID": _u32, "hostID": _u32, "size": _u32}, ("containerID", "hostID", "size"))(value, path)


def clean_path(path: str) -> str:
    """A container path made absolute and cleaned lexically: no empty or `.` parts, and `..` stops at `/`."""
    out: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if out:
                out.pop()
        elif part and part != ".":
            out.append(part)
    return "/" + "/".join(out)


def _device(value: Any, path: str) -> None:
    _object({"path": _abs_path, "type": _str, "major": _major, "minor": _minor, "fileMode": _u32,
             "uid": _id, "gid": _id},
            ("path", "type"))(value, path)
    if value["type"] not in ("c", "b", "u", "p"):
        _fail(f"{path}.type", f"unknown device type {value['type']!r}", "use c, b, u or p")
    if clean_path(value["path"]) == "/":
        _fail(f"{path}.path", f"{value['path']!r} names the container's root, not a device",
              "give the node's path inside the container, e.g. /dev/fuse")


# Linux device numbers: a 12-bit major and a 20-bit minor (what mknod(2) can encode).
_major = _uint_upto(4095, "the largest major device number", "see /proc/devices for the majors in use")
_minor = _uint_upto(2**20 - 1, "the largest minor device number")

_hook = _object({"path": _abs_path, "args": _list_of(_str), "env": _list_of(_env_entry), "timeout": _int}, ("path",))

_user = _object({"uid": _id, "gid": _id, "umask": _u32,
                 "additionalGids": _list_of(_id), "username": _str},
                ("uid", "gid"))

_process = _object({
    "terminal": _bool,
    "consoleSize": _object({"height": _u16, "width": _u16}, ("height", "width")),
    "user": _user,
    "args": _list_of(_str),
    "commandLine": _str,
    "env": _list_of(_env_entry),
    "cwd": _abs_path,
    "capabilities": _object({k: _capability_list for k in CAPABILITY_SETS}),
    "rlimits": _list_of(_rlimit),
    "noNewPrivileges": _bool,
    "apparmorProfile": _str,
    "oomScoreAdj": _int,
    "selinuxLabel": _str,
}, ("cwd",))

_mount = _object({"destination": _dest, "type": _str, "source": _str, "options": _list_of(_str),
                  "uidMappings": _list_of(_id_mapping), "gidMappings": _list_of(_id_mapping)}, ("destination",))

_resources = _object({
    "memory": _object({"limit": _int, "reservation": _int, "swap": _int, "kernel": _int, "kernelTCP": _int,
                       "swappiness": _uint, "disableOOMKiller": _bool, "useHierarchy": _bool}),
    "cpu": _object({"shares": _uint, "quota": _int, "period": _uint, "realtimeRuntime": _int,
                    "realtimePeriod": _uint, "cpus": _str, "mems": _str, "idle": _int}),
    "pids": _object({"limit": _int}, ("limit",)),
    "devices": _list_of(_object({"allow": _bool, "type": _str, "major": _int, "minor": _int, "access": _str},
                                ("allow",))),
    "blockIO": _object({}),
    "hugepageLimits": _list_of(_object({"pageSize": _str, "limit": _uint}, ("pageSize", "limit"))),
    "network": _object({}),
    "unified": _map_of_str,
})

_seccomp = _object({
    "defaultAction": _str, "defaultErrnoRet": _u32, "architectures": _list_of(_str), "flags": _list_of(_str),
    "listenerPath": _str, "listenerMetadata": _str,
    "syscalls": _list_of(_object({"names": _list_of(_str), "action": _str, "errnoRet": _u32,
                                  "args": _list_of(_object({"index": _uint_upto(5, "the last argument's index"),
                                                            "value": _u64, "valueTwo": _u64,
                                                            "op": _str}, ("index", "value", "op")))},
                                 ("names", "action"))),
}, ("defaultAction",))

_linux = _object({
    "namespaces": _namespaces,
    "uidMappings": _list_of(_id_mapping),
    "gidMappings": _list_of(_id_mapping),
    "devices": _list_of(_device),
    "cgroupsPath": _str,
    "resources": _resources,
    "sysctl": _map_of_str,
    "seccomp": _seccomp,
    "rootfsPropagation": _str,
    "maskedPaths": _list_of(_abs_path),
    "readonlyPaths": _list_of(_abs_path),
    "mountLabel": _str,
    "timeOffsets": _object({}),
    "personality": _object({"domain": _str}),
})

_config = _object({
    "ociVersion": _str,
    "root": _object({"path": _str, "readonly": _bool}, ("path",)),
    "mounts": _list_of(_mount),
    "process": _process,
    "hostname": _str,
    "domainname": _str,
    "hooks": _object({k: _list_of(_hook) for k in HOOK_KINDS}),
    "annotations": _map_of_str,
    "linux": _linux,
}, ("ociVersion",))


def validate(raw: Any) -> None:
    """Raise SpecError naming the first field that breaks the runtime-spec."""
    _config(raw, "$")
    if not _SEMVER.match(raw["ociVersion"]):
        _fail("$.ociVersion", f"must be a 1.x semantic version such as 1.0.2, got {raw['ociVersion']!r}")
    proc = raw.get("process")
    if proc is not None and not proc.get("args") and not proc.get("commandLine"):
        _fail("$.process.args", "must name the program to run", "set process.args to e.g. [\"/hello.wasm\"]")
    rootfs = raw.get("root")
    if rootfs is not None and not rootfs["path"]:
        _fail("$.root.path", "must not be empty")
    for i, m in enumerate(raw.get("mounts") or []):
        if not m["destination"].startswith("/"):
            _fail(f"$.mounts[{i}].destination", f"must be an absolute path, got {m['destination']!r}")
    linux = raw.get("linux") or {}
    types = {ns["type"] for ns in linux.get("namespaces") or []}
    if (linux.get("uidMappings") or linux.get("gidMappings")) and "user" not in types:
        _fail("$.linux.uidMappings", "uid/gid mappings need a user namespace",
              "add {\"type\": \"user\"} to linux.namespaces")
    if raw.get("hostname") and "uts" not in types:
        _fail("$.hostname", "setting a hostname needs a uts namespace", "add {\"type\": \"uts\"} to linux.namespaces")
    if proc is not None and proc.get("args") and not proc["args"][0]:
        _fail("$.process.args[0]", "must not be empty: it is the program to run", "set it to e.g. \"/hello.wasm\"")
    for key in linux.get("sysctl") or {}:
        _check_sysctl(key, types)
    cgroups_path = linux.get("cgroupsPath")
    if cgroups_path and ".." in cgroups_path.split("/"):
        _fail("$.linux.cgroupsPath", f"must not contain '..' (got {cgroups_path!r}): it would leave the cgroup tree",
              "give a path such as wasmlab/mycontainer")


# Namespaced sysctls, and the namespace that must be the container's own for each (as runc has it):
# anything else would change the host, for every process on it.
_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def _check_sysctl(key: str, types: set[str]) -> None:
    field = f"$.linux.sysctl[{key!r}]"
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        need = "ipc"
    elif key.startswith("net."):
        need = "network"
    elif key == "kernel.domainname":
        need = "uts"
    elif key == "kernel.hostname":
        _fail(field, "sets the host name behind the hostname field's back", "use the hostname field instead")
    else:
        _fail(field, f"{key} is not isolated by any namespace: setting it would change the host",
              "set it on the host if you mean to; a container may only set ipc, net and uts sysctls")
    if need not in types:
        _fail(field, f"{key} belongs to the {need} namespace, and this container shares the host's",
              f"add {{\"type\": \"{need}\"}} to linux.namespaces")


@dataclass(frozen=True)
class Namespace:
    type: str
    path: str = ""


@dataclass
class Spec:
    """A validated config.json with typed access to the parts the runtime uses on every start."""

    raw: dict[str, Any]
    bundle: str
    rootfs: str
    namespaces: list[Namespace] = field(default_factory=list)

    @property
    def has_process(self) -> bool:
        return bool(self.raw.get("process"))

    @property
    def process(self) -> dict[str, Any]:
        return self.raw.get("process") or {}

    @property
    def args(self) -> list[str]:
        return list(self.process.get("args") or [])

    @property
    def env(self) -> list[str]:
        return list(self.process.get("env") or [])

    @property
    def cwd(self) -> str:
        return str(self.process.get("cwd") or "/")

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.raw.get("annotations") or {})

    @property
    def linux(self) -> dict[str, Any]:
        return self.raw.get("linux") or {}

    @property
    def mounts(self) -> list[dict[str, Any]]:
        return list(self.raw.get("mounts") or [])

    @property
    def hooks(self) -> dict[str, list[dict[str, Any]]]:
        return self.raw.get("hooks") or {}

    @property
    def root_readonly(self) -> bool:
        return bool((self.raw.get("root") or {}).get("readonly"))

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


def from_dict(raw: Any, bundle: str) -> Spec:
    """Validate a parsed config and resolve its root against the bundle."""
    validate(raw)
    if "root" not in raw:
        raise SpecError("$.root", "is required to run a container", "add \"root\": {\"path\": \"rootfs\"}")
    bundle = os.path.abspath(bundle)
    root_path = raw["root"]["path"]
    rootfs = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isabs(root_path) and not (rootfs == bundle or rootfs.startswith(bundle + os.sep)):
        raise SpecError("$.root.path", f"{root_path!r} escapes the bundle directory",
                        "keep the root inside the bundle, e.g. \"rootfs\"")
    if not os.path.isdir(rootfs):
        raise SpecError("$.root.path", f"{rootfs} is not a directory", "create the rootfs or fix root.path")
    listed = (raw.get("linux") or {}).get("namespaces") or []
    namespaces = [Namespace(ns["type"], ns.get("path") or "") for ns in listed]
    return Spec(raw=raw, bundle=bundle, rootfs=rootfs, namespaces=namespaces)


def load(bundle: str) -> Spec:
    """Load and validate BUNDLE/config.json."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise SpecError("$", f"no config.json in bundle {bundle}",
                        "run `wasmlab-oci spec` in the bundle to write a default one") from None
    except IsADirectoryError:
        raise SpecError("$", f"{path} is a directory") from None
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise SpecError("$", f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return from_dict(raw, bundle)


def default_config(args: list[str] | None = None, *, rootless: bool = False, terminal: bool = False) -> dict[str, Any]:
    """A config.json like `runc spec` writes, for a rootfs folder next to it."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    cfg: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "wasmlab",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        uid, gid = os.getuid(), os.getgid()
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        cfg["linux"]["resources"] = {}
        cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] not in ("sysfs",)] + [
            {"destination": "/sys", "type": "none", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    return cfg


def search_path(prog: str, env: list[str], host: Callable[[str], str] = lambda path: path) -> str:
    """The path at which the container finds PROG (args[0]): as given when it has a slash, else the first
    executable file on the process's PATH, else the first file of that name (a Wasm module needs no
    executable bit), else PROG itself. HOST maps a container path to one that can be checked from here."""
    if "/" in prog:
        return prog
    path = DEFAULT_PATH
    for entry in env:
        if entry.startswith("PATH="):
            path = entry[5:]
    found = [os.path.join(d or ".", prog) for d in path.split(":")]
    for cand in found:
        checked = host(cand)
        if os.path.isfile(checked) and os.access(checked, os.X_OK):
            return cand
    return next((cand for cand in found if os.path.isfile(host(cand))), prog)


_LOWER_NAME = re.compile(r"^[0-9a-f]{12}/fs$")


def load_overlay(bundle: str) -> tuple[str, str] | None:
    """The overlay a bundle asks for as its root (OVERLAY_FILE), as (folder of the lower layers, mount
    options), or None. Checked here, before any fork: the lower layers are names of the snapshot store,
    and the upper and work folders must lie inside the bundle, so no bundle can make the container's
    writes land elsewhere on the host."""
    path = os.path.join(bundle, OVERLAY_FILE)
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SpecError(OVERLAY_FILE, f"cannot be read: {exc}", "remove it, or make the bundle again") from None
    hint = "the lab writes this file; make the container again with `wasmlab run`"
    if not isinstance(raw, dict):
        raise SpecError(OVERLAY_FILE, "is not an object", hint)
    root, lowers = str(raw.get("root") or ""), str(raw.get("lowerdir") or "")
    if not os.path.isabs(root) or not lowers or not all(_LOWER_NAME.match(n) for n in lowers.split(":")):
        raise SpecError(OVERLAY_FILE, "names lower layers that are not snapshots", hint)
    inside = os.path.realpath(bundle) + "/"
    dirs = []
    for key in ("upperdir", "workdir"):
        value = str(raw.get(key) or "")
        if not os.path.isabs(value) or not os.path.realpath(value).startswith(inside) or "," in value:
            raise SpecError(f"{OVERLAY_FILE}: {key}", "must be a folder inside the bundle", hint)
        dirs.append(os.path.realpath(value))
    return root, f"lowerdir={lowers},upperdir={dirs[0]},workdir={dirs[1]}"
