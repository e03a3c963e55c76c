"""podman run's flags applied to a bundle: RunOptions parsed and checked once, then written into config.json."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import ImageError, UsageError
from wasmlab.runtime.handlers.detect import decide
from wasmlab.runtime.images.unpack import RootLayers
from wasmlab.runtime.linux.mounts import _inside
from wasmlab.runtime.options import ROOTLESS_REFUSED, RunOptions
from wasmlab.runtime.spec.runtime import clean_path, search_path

# Where --init's catatonit is mounted in the container (podman uses /run/podman-init).
INIT_PATH = "/run/wasmlab-init"
CATATONIT = ("/usr/bin/catatonit", "/usr/libexec/podman/catatonit")
MIN_MEMORY = 6 << 20     # podman's floor: below it not even the runtime's init fits
NETWORKS = ("none", "host")
PULL_POLICIES = ("never", "missing", "always")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_VOLUME_HINT = 'write -v /host/folder:/in/container[:ro] (or ./folder, relative to here), e.g. -v ./data:/data:ro'
_MOUNT_HINT = "write --mount type=bind,source=/host/folder,destination=/data[,ro] or type=tmpfs,destination=/tmp"


@dataclass(frozen=True)
class Mount:
    """One -v or --mount, checked: a bind of a host path, or a tmpfs."""

    kind: str               # "bind" or "tmpfs"
    destination: str
    source: str = ""
    readonly: bool = False
    size: int | None = None  # tmpfs bytes
    mode: int | None = None  # tmpfs mode

    def as_spec(self) -> dict[str, Any]:
        if self.kind == "tmpfs":
            opts = ["nosuid", "nodev"] + (["ro"] if self.readonly else [])
            opts += [f"size={self.size}"] if self.size else []
            opts += [f"mode={self.mode:o}"] if self.mode is not None else ["mode=1777"]
            return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": ["rbind", "ro" if self.readonly else "rw", "nosuid", "nodev"]}


@dataclass
class RunFlags:
    """RunOptions, parsed: every value checked, before anything is made on disk."""

    mounts: list[Mount] = field(default_factory=list)
    memory: int | None = None
    cpus: float | None = None
    workdir: str | None = None
    env: list[str] = field(default_factory=list)       # from --env-file, before -e
    user: str | None = None
    read_only: bool = False
    hostname: str | None = None
    network: str | None = None
    platform: tuple[str, str] | None = None
    pull: str | None = None
    init: str | None = None                            # the host's catatonit
    tls_verify: bool = True


def parse(options: RunOptions, *, rootless: bool) -> RunFlags:
    """Check every option (one UsageError line each); rootless, refuse those that cannot work, saying why."""
    if rootless:
        for name in options.given():
            why = ROOTLESS_REFUSED.get(name)
            if why and not (name == "user" and _is_root_user(options.user)):
                raise UsageError(f"{_flag(name)} does not work rootless: {why}",
                                 "run wasmlab as root, or leave the flag out (`wasmlab doctor` lists them)")
    flags = RunFlags(read_only=options.read_only, user=options.user or None, tls_verify=options.tls_verify)
    flags.mounts = [parse_volume(v) for v in options.volumes] + [parse_mount(m) for m in options.mounts]
    seen: set[str] = set()
    for m in flags.mounts:
        if m.destination in seen:
            raise UsageError(f"two mounts at {m.destination}", "give each mount its own destination")
        seen.add(m.destination)
    if options.memory is not None:
        flags.memory = parse_memory(options.memory)
    if options.cpus is not None:
        cpus = float(options.cpus)
        top = os.cpu_count() or 1
        if not 0.01 <= cpus <= top:
            raise UsageError(f"--cpus {options.cpus} is out of range", f"give a number from 0.01 to {top} (this "
                             f"machine's CPUs), e.g. --cpus 0.5")
        flags.cpus = cpus
    if options.workdir is not None:
        if not options.workdir.startswith("/"):
            raise UsageError(f"--workdir {options.workdir!r} is not an absolute path", "e.g. -w /data")
        flags.workdir = clean_path(options.workdir)
    flags.env = env_from_files(options.env_files)
    if options.hostname is not None:
        if not _HOSTNAME.match(options.hostname) or len(options.hostname) > 64:
            raise UsageError(f"invalid hostname {options.hostname!r}",
                             "letters, digits and '-', dot-separated, at most 64 characters")
        flags.hostname = options.hostname
    if options.network is not None:
        if options.network not in NETWORKS:
            raise UsageError(f"unknown network {options.network!r}",
                             "use --network none (the default: only lo) or --network host")
        flags.network = options.network
    if options.platform is not None:
        flags.platform = parse_platform(options.platform)
    if options.pull is not None:
        if options.pull not in PULL_POLICIES:
            raise UsageError(f"unknown pull policy {options.pull!r}", f"use one of {', '.join(PULL_POLICIES)}")
        flags.pull = options.pull
    if options.init:
        found = next((p for p in CATATONIT if os.path.isfile(p)), None)
        if found is None:
            raise UsageError("--init needs catatonit, which is not installed", "apt-get install catatonit")
        flags.init = found
    return flags


def _flag(name: str) -> str:
    return {"memory": "-m/--memory", "user": "-u/--user", "volumes": "-v/--volume"}.get(
        name, "--" + name.replace("_", "-"))


def _is_root_user(user: str | None) -> bool:
    return user in (None, "", "0", "0:0", "root", "root:root")


def parse_memory(text: str) -> int:
    """podman's -m: a number of bytes with an optional b, k, m or g (any case)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgBKMG]?)\s*", str(text))
    if not m:
        raise UsageError(f"invalid memory limit {text!r}", "write a size such as -m 32m, 512k or 1g")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < MIN_MEMORY:
        raise UsageError(f"memory limit {text} is below the 6 MiB minimum", "give at least -m 6m")
    return value


def parse_platform(text: str) -> tuple[str, str]:
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}", "write OS/ARCH, e.g. --platform linux/amd64 or wasi/wasm")
    return parts[0], parts[1]


def _container_path(text: str, what: str, hint: str) -> str:
    if not text.startswith("/"):
        raise UsageError(f"{what} {text!r} is not an absolute path in the container", hint)
    if ".." in text.split("/"):
        raise UsageError(f"{what} {text!r} contains '..'", hint)
    path = clean_path(text)
    if path == "/":
        raise UsageError(f"{what} cannot be the container's root", hint)
    return path


def _host_path(text: str, hint: str) -> str:
    if text.startswith("."):  # as podman: a source starting with / or . is a host path, . relative to the cwd
        text = os.path.abspath(text)
    if not text.startswith("/"):
        raise UsageError(f"the host path {text!r} is neither absolute nor relative with ./ (named volumes are "
                         "not supported)", hint)
    if not os.path.exists(text):
        raise UsageError(f"the host path {text} does not exist", "create it first (mkdir -p), then run again")
    return os.path.realpath(text)


def parse_volume(text: str) -> Mount:
    """-v HOST:CTR[:OPTIONS], OPTIONS a comma list of ro, rw, z, Z (the SELinux labels are accepted, unused)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {text!r}", _VOLUME_HINT)
    readonly = False
    for opt in (parts[2].split(",") if len(parts) == 3 else []):
        if opt in ("ro", "readonly"):
            readonly = True
        elif opt not in ("rw", "z", "Z", ""):
            raise UsageError(f"unknown volume option {opt!r} in {text!r}", "use ro or rw")
    return Mount("bind", _container_path(parts[1], "the volume's destination", _VOLUME_HINT),
                 _host_path(parts[0], _VOLUME_HINT), readonly)


def parse_mount(text: str) -> Mount:
    """--mount type=bind|tmpfs,source=...,destination=...[,ro][,tmpfs-size=64m][,tmpfs-mode=1777]."""
    values: dict[str, str] = {}
    readonly = False
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key in ("ro", "readonly"):
            if eq and value.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"invalid {key} value {value!r} in --mount", "write ro or ro=true")
            readonly = not eq or value.lower() in ("true", "1")
            continue
        if key in ("rw",):
            continue
        aliases = {"src": "source", "dst": "destination", "target": "destination"}
        key = aliases.get(key, key)
        if key not in ("type", "source", "destination", "tmpfs-size", "tmpfs-mode", "bind-propagation") or not eq:
            raise UsageError(f"unknown --mount option {item!r}", _MOUNT_HINT)
        values[key] = value
    kind = values.get("type")
    if kind not in ("bind", "tmpfs"):
        raise UsageError(f"--mount type {kind!r} is not supported" if kind else "--mount needs a type", _MOUNT_HINT)
    if "destination" not in values:
        raise UsageError("--mount needs a destination", _MOUNT_HINT)
    dest = _container_path(values["destination"], "the mount's destination", _MOUNT_HINT)
    if kind == "bind":
        if "source" not in values:
            raise UsageError("--mount type=bind needs a source", _MOUNT_HINT)
        return Mount("bind", dest, _host_path(values["source"], _MOUNT_HINT), readonly)
    size = None
    if "tmpfs-size" in values:
        m = re.fullmatch(r"(\d+)([bkmgBKMG]?)", values["tmpfs-size"])
        if not m:
            raise UsageError(f"invalid tmpfs-size {values['tmpfs-size']!r}", "e.g. tmpfs-size=64m")
        size = int(m.group(1)) * _UNITS[m.group(2).lower()]
    mode = None
    if "tmpfs-mode" in values:
        try:
            mode = int(values["tmpfs-mode"], 8)
        except ValueError:
            raise UsageError(f"invalid tmpfs-mode {values['tmpfs-mode']!r}", "an octal mode, e.g. 1777") from None
    return Mount("tmpfs", dest, readonly=readonly, size=size, mode=mode)


def env_from_files(paths: list[str]) -> list[str]:
    """--env-file: KEY=VALUE lines (blank lines and # comments skipped); a bare KEY passes this shell's value."""
    out: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read the env file {path}: {exc.strerror}", "check the path") from None
        except UnicodeDecodeError:
            raise UsageError(f"the env file {path} is not UTF-8 text", "write KEY=VALUE lines") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name = line.partition("=")[0]
            if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
                raise UsageError(f"{path}:{number}: invalid line {line[:40]!r}", "write KEY=VALUE, one per line")
            if "=" in line:
                out.append(line)
            elif name in os.environ:
                out.append(f"{name}={os.environ[name]}")
    return out


def is_wasm(config: dict[str, Any], root: RootLayers, default_engine: str = "wasmtime") -> bool:
    """Whether the container's init will hand it to a Wasm engine (the same rules, decided early)."""
    args = config["process"]["args"]
    path = search_path(args[0], config["process"]["env"], host=root.find)
    try:
        with open(root.find(path), "rb") as fh:
            head = fh.read(64)
    except OSError:
        head = None
    try:
        return decide(dict(config.get("annotations") or {}), path, head, default_engine=default_engine).wasm
    except Exception:
        return False


def apply(flags: RunFlags, config: dict[str, Any], root: RootLayers, *, wasm: bool, rootless: bool) -> None:
    """Write the flags into CONFIG (a config.json as unpacked), making what they need in the container's ROOT."""
    process = config["process"]
    linux = config.setdefault("linux", {})
    mounts = config.setdefault("mounts", [])
    if flags.init:
        if wasm:
            raise UsageError("--init is for Linux containers: a Wasm container needs no init",
                             "leave --init out: the engine itself ends the guest on SIGTERM")
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": flags.init,
                       "options": ["bind", "ro", "nosuid", "nodev"]})
        process["args"] = [INIT_PATH, "--", *process["args"]]
    taken = {m.destination for m in flags.mounts}
    mounts[:] = [m for m in mounts if m.get("destination") not in taken]
    mounts.extend(m.as_spec() for m in flags.mounts)
    if flags.read_only:
        config["root"]["readonly"] = True
        # As podman's --read-only-tmpfs (on by default): scratch space where programs expect it. A Wasm
        # container gets /tmp too (the wasmer handler needs a writable folder in it to map volumes live).
        for scratch in ("/tmp", "/var/tmp", "/run"):
            if scratch not in taken and (os.path.isdir(root.find(scratch)) or scratch == "/tmp"):
                mounts.append(Mount("tmpfs", scratch).as_spec())
    if flags.memory is not None:
        linux.setdefault("resources", {})["memory"] = {"limit": flags.memory, "swap": flags.memory}
    if flags.cpus is not None:
        period = 100000
        linux.setdefault("resources", {})["cpu"] = {"quota": int(flags.cpus * period), "period": period}
    if flags.workdir is not None:
        process["cwd"] = flags.workdir
        if not any(flags.workdir == m.destination or flags.workdir.startswith(m.destination + "/")
                   for m in flags.mounts):
            _make_folder(root.write, flags.workdir)
    if flags.user is not None:
        from wasmlab.runtime.images.unpack import resolve_user

        try:
            uid, gid, _ = resolve_user(flags.user, list(root.read))
        except ImageError as exc:
            raise UsageError(f"--user: {exc.message}", "give UID[:GID] numbers, or a user of the image's "
                             "/etc/passwd") from None
        if rootless and (uid or gid):
            raise UsageError("-u/--user does not work rootless: only your own user is mapped, as root",
                             "run as root, or leave --user out")
        process["user"] = {"uid": uid, "gid": gid}
    if flags.hostname is not None:
        config["hostname"] = flags.hostname
    if flags.network == "host":
        linux["namespaces"] = [ns for ns in linux.get("namespaces") or [] if ns.get("type") != "network"]
    elif flags.network == "none" and not any(ns.get("type") == "network" for ns in linux.get("namespaces") or []):
        linux.setdefault("namespaces", []).append({"type": "network"})


def _make_folder(rootfs: Path, path: str) -> None:
    """mkdir -p PATH in the container's rootfs, never through a link out of it (as podman makes a workdir)."""
    host = _inside(str(rootfs), path)
    try:
        os.makedirs(host, 0o755, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the working directory {path}: {exc.strerror}",
                         "pick a folder that exists in the image") from None
    if not os.path.isdir(host):
        raise UsageError(f"the working directory {path} is not a folder in the image", "pick a folder")


def catatonit() -> str | None:
    return next((p for p in CATATONIT if os.path.isfile(p)), None) or shutil.which("catatonit")
