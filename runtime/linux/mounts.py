"""The container's filesystem: mount options, rootfs mounts, device nodes, pivot_root, masked and read-only paths."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from wasmlab.runtime.errors import SetupError
from wasmlab.runtime.linux import syscalls as sc
from wasmlab.runtime.spec.runtime import clean_path

# Mount options: name -> (clear?, flag).
_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, sc.MS_RDONLY), "rw": (True, sc.MS_RDONLY),
    "nosuid": (False, sc.MS_NOSUID), "suid": (True, sc.MS_NOSUID),
    "nodev": (False, sc.MS_NODEV), "dev": (True, sc.MS_NODEV),
    "noexec": (False, sc.MS_NOEXEC), "exec": (True, sc.MS_NOEXEC),
    "sync": (False, sc.MS_SYNCHRONOUS), "async": (True, sc.MS_SYNCHRONOUS),
    "dirsync": (False, sc.MS_DIRSYNC), "remount": (False, sc.MS_REMOUNT),
    "mand": (False, sc.MS_MANDLOCK), "nomand": (True, sc.MS_MANDLOCK),
    "atime": (True, sc.MS_NOATIME), "noatime": (False, sc.MS_NOATIME),
    "diratime": (True, sc.MS_NODIRATIME), "nodiratime": (False, sc.MS_NODIRATIME),
    "bind": (False, sc.MS_BIND), "rbind": (False, sc.MS_BIND | sc.MS_REC),
    "relatime": (False, sc.MS_RELATIME), "norelatime": (True, sc.MS_RELATIME),
    "strictatime": (False, sc.MS_STRICTATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "nosymfollow": (False, sc.MS_NOSYMFOLLOW), "symfollow": (True, sc.MS_NOSYMFOLLOW),
    "defaults": (False, 0),
}
_PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# The device nodes every container gets (runtime-spec "Default Devices").
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)


@dataclass(frozen=True)
class MountStep:
    """One mount, fully decided before fork: the child only calls mount(2)."""

    source: str | None
    target: str            # path inside the container, absolute
    fstype: str | None
    flags: int
    data: str | None
    propagation: int
    bind: bool
    readonly: bool         # bind mounts need a read-only remount after the bind
    is_file: bool = False  # a bind of a file needs a file, not a folder, at the target


@dataclass(frozen=True)
class DeviceStep:
    path: str
    kind: str
    major: int
    minor: int
    mode: int
    uid: int
    gid: int


def parse_options(options: list[str]) -> tuple[int, int, list[str]]:
    """Split mount options into (flags, propagation flags, data options)."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        elif opt in ("tmpcopyup", "idmap", "ridmap", "copy-symlink"):
            continue
        else:
            data.append(opt)
    return flags, propagation, data


def plan_mounts(mounts: list[dict[str, Any]], bundle: str, *, rootless: bool) -> list[MountStep]:
    steps: list[MountStep] = []
    for m in mounts:
        fstype = m.get("type") or None
        flags, propagation, data = parse_options(list(m.get("options") or []))
        bind = bool(flags & sc.MS_BIND) or fstype == "bind"
        source = m.get("source")
        if bind:
            flags |= sc.MS_BIND
            if source and not os.path.isabs(source):
                source = os.path.join(bundle, source)
            is_file = source is not None and os.path.exists(source) and not os.path.isdir(source)
            fstype = None
        else:
            is_file = False
        if fstype == "cgroup" and rootless:
            # A rootless container cannot mount a fresh cgroup tree; bind the host's read-only instead.
            fstype, source, bind, flags = None, "/sys/fs/cgroup", True, flags | sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY
        steps.append(MountStep(
            source=source, target=m["destination"], fstype=fstype,
            flags=flags, data=",".join(data) or None, propagation=propagation,
            bind=bind, readonly=bool(flags & sc.MS_RDONLY), is_file=is_file,
        ))
    return steps


def plan_devices(devices: list[dict[str, Any]]) -> list[DeviceStep]:
    """Device entries with their paths cleaned (`..` stops at the container's `/`), once, before fork."""
    steps = []
    for d in devices:
        steps.append(DeviceStep(clean_path(d["path"]), d["type"], int(d.get("major", 0)), int(d.get("minor", 0)),
                                int(d.get("fileMode", 0o666)), int(d.get("uid", 0)), int(d.get("gid", 0))))
    return steps


# Linux follows at most 40 symbolic links while resolving one path (MAXSYMLINKS); so do we.
MAX_SYMLINKS = 40


def _inside(rootfs: str, target: str) -> str:
    """The host path of a container path, resolved as the kernel would with the rootfs as `/`.

    Each symbolic link is followed inside the rootfs (an absolute one from the rootfs, a relative one from
    its folder), and `..` stops at the rootfs, so the result is always the rootfs or below it (as runc's
    securejoin). A loop (rootfs/etc -> /etc, then /etc/x) is a SetupError, not a RecursionError.
    """
    todo = [p for p in reversed(target.split("/")) if p and p != "."]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        try:
            link = os.readlink(os.path.join(rootfs, *done, part))
        except OSError:          # not a link (EINVAL), or not there yet
            done.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise SetupError(f"cannot resolve {target} in the container's root filesystem: "
                             "too many levels of symbolic links",
                             "a symbolic link in the rootfs points back into itself (as rootfs/etc -> /etc "
                             "does); fix the image, or mount somewhere else")
        if link.startswith("/"):
            done = []
        todo.extend(p for p in reversed(link.split("/")) if p and p != ".")
    return os.path.join(rootfs, *done)


def _ensure_target(path: str, is_file: bool) -> None:
    if os.path.lexists(path):
        return
    if is_file:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.makedirs(path, exist_ok=True)


def mount_all(rootfs: str, steps: list[MountStep], devices: list[DeviceStep], *, bind_devices: bool,
              has_dev_mount: bool) -> None:
    """Mount everything under rootfs (still before pivot_root)."""
    for step in steps:
        target = _inside(rootfs, step.target)
        if step.bind and (not step.source or not os.path.exists(step.source)):
            raise SetupError(f"bind mount source {step.source!r} does not exist", "create it or fix mounts[].source")
        try:
            _ensure_target(target, step.is_file)
            if step.bind:
                sc.mount(step.source, target, None, step.flags & (sc.MS_BIND | sc.MS_REC))
                if step.flags & ~(sc.MS_BIND | sc.MS_REC):
                    sc.mount(None, target, None, step.flags | sc.MS_REMOUNT | sc.MS_BIND)
            elif step.fstype == "cgroup":
                _mount_cgroup(target, step.flags)
            else:
                try:
                    sc.mount(step.source, target, step.fstype, step.flags, step.data)
                except OSError:
                    if step.fstype not in ("sysfs", "mqueue"):
                        raise
                    # Without a network (or ipc) namespace of our own, bind the host's instead, read-only.
                    host = "/sys" if step.fstype == "sysfs" else "/dev/mqueue"
                    sc.mount(host, target, None, sc.MS_BIND | sc.MS_REC)
                    sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | step.flags)
            if step.propagation:
                sc.mount(None, target, None, step.propagation)
        except OSError as exc:
            raise SetupError(f"cannot mount {step.fstype or 'bind'} on {step.target}: {exc.strerror}",
                             "check mounts[] in config.json") from None
    if not has_dev_mount:
        # No /dev mount in the spec. Never write into the image: an empty /dev gets a small tmpfs with the
        # default nodes; a populated one gets the host's nodes bound over the entries it already has.
        dev_dir = os.path.join(rootfs, "dev")
        if not os.path.isdir(dev_dir) or os.path.islink(dev_dir):
            return
        if not os.listdir(dev_dir):
            sc.mount("tmpfs", dev_dir, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=755,size=64k")
            for dev in devices:
                _make_device(rootfs, dev, bind_devices)
        else:
            for dev in devices:
                if os.path.lexists(_inside(rootfs, dev.path)):
                    _make_device(rootfs, dev, bind=True)
        return
    for dev in devices:
        _make_device(rootfs, dev, bind_devices)
    dev_dir = _inside(rootfs, "/dev")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        try:
            os.symlink(target, os.path.join(dev_dir, name))
        except FileExistsError:
            pass
    if os.path.isdir(os.path.join(dev_dir, "pts")):
        try:
            os.symlink("pts/ptmx", os.path.join(dev_dir, "ptmx"))
        except FileExistsError:
            pass


_NODE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _host_node(dev: DeviceStep) -> int | None:
    """An O_PATH descriptor of the host's node at dev.path when it is a device of the same type, major and
    minor; else None. The bind is made from this descriptor, so what was checked is what gets mounted,
    even if someone swaps the path meanwhile. A fifo is never taken from the host: it is made instead."""
    if dev.kind == "p":
        return None
    try:
        fd = os.open(dev.path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if stat.S_IFMT(st.st_mode) != _NODE_TYPES[dev.kind] or st.st_rdev != os.makedev(dev.major, dev.minor):
        os.close(fd)
        return None
    return fd


def _make_device(rootfs: str, dev: DeviceStep, bind: bool) -> None:
    target = _inside(rootfs, dev.path)   # at or below rootfs, whatever `..` and symlinks the path holds
    if bind and dev.kind != "p":
        if os.path.isdir(target):
            return
        source = _host_node(dev)
        if source is None:
            return                       # never bind a host file that is not this very device
        try:
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
            sc.mount(f"/proc/self/fd/{source}", target, None, sc.MS_BIND)
        finally:
            os.close(source)
        return
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.mknod(target, _NODE_TYPES[dev.kind] | (dev.mode & 0o7777), os.makedev(dev.major, dev.minor))
    os.chmod(target, dev.mode & 0o7777)
    os.chown(target, dev.uid, dev.gid)


def _mount_cgroup(target: str, flags: int) -> None:
    """Mount the cgroup hierarchy the way the host has it (v2, or v1 controllers on a tmpfs)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        sc.mount("cgroup2", target, "cgroup2", flags)
        return
    sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    for name in sorted(os.listdir("/sys/fs/cgroup")):
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        if name == "unified":
            sc.mount("cgroup2", sub, "cgroup2", flags)
        else:
            sc.mount("cgroup", sub, "cgroup", flags, "none,name=systemd" if name == "systemd" else name)
    if flags & sc.MS_RDONLY:
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_BIND)


def mount_point_of(path: str) -> str:
    """The mount point that holds path (the longest matching one in /proc/self/mountinfo)."""
    best = "/"
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def pivot_into(rootfs: str, *, no_pivot: bool) -> None:
    """Make rootfs the container's /, via pivot_root or (with --no-pivot) MS_MOVE plus chroot."""
    os.chdir(rootfs)
    if no_pivot:
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    sc.pivot_root(".", ".")
    # The old root is now stacked on /; detach it. (It is already a slave of the host: / was made rslave
    # before anything was mounted, so the unmount cannot propagate back.)
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def mask_paths(masked: list[str], readonly: list[str]) -> None:
    """After pivot_root: hide masked paths, make read-only paths read-only."""
    for path in masked:
        try:
            if os.path.isdir(path):
                sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
            else:
                sc.mount("/dev/null", path, None, sc.MS_BIND)
        except (FileNotFoundError, OSError):
            continue
    for path in readonly:
        try:
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)
        except (FileNotFoundError, OSError):
            continue


def readonly_root() -> None:
    sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)
