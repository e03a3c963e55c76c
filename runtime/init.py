"""The container init: from a precomputed Plan, build the sandbox in a forked child and hand over to a handler."""

from __future__ import annotations

import errno
import gc
import json
import os
import pty
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import HandlerError, PrivilegeError, SetupError, SpecError, WasmlabError
from wasmlab.runtime.handlers.base import (
    EXIT_NO_ENTRYPOINT,
    EXIT_NOT_EXECUTABLE,
    STOP_STATUS,
    Handler,
    Preopen,
    Workload,
)
from wasmlab.runtime.handlers.detect import CPU_TIME_ANNOTATION, WASM_ENGINES, Decision, classify, decide
from wasmlab.runtime.hooks import run_hooks
from wasmlab.runtime.linux import console, exitstubs, loopback, seccomp
from wasmlab.runtime.linux import mounts as mnt
from wasmlab.runtime.linux import process as proc
from wasmlab.runtime.linux import syscalls as sc
from wasmlab.runtime.spec.runtime import Spec, load_overlay, search_path
from wasmlab.runtime.store.state import ExitRecord, StateDir

_NEW_NS_ORDER = ("user", "ipc", "uts", "network", "cgroup", "mount", "time")


@dataclass
class Plan:
    """Everything a container start needs, decided once before fork so the child only makes system calls."""

    id: str
    bundle: str
    rootfs: str
    args: list[str]
    env: list[str]
    cwd: str
    terminal: bool
    annotations: dict[str, str]
    unshare_flags: int                       # new namespaces the child creates (pid excluded)
    new_pid: bool
    join: list[tuple[str, str]]              # (type, path) to setns, pid excluded
    join_pid: str
    user: bool                               # a user namespace is involved (new or joined)
    new_user: bool
    uid_map: str
    gid_map: str
    hostname: str | None
    domainname: str | None
    mounts: list[mnt.MountStep]
    devices: list[mnt.DeviceStep]
    has_dev_mount: bool
    masked: list[str]
    readonly_paths: list[str]
    root_readonly: bool
    root_propagation: int
    sysctl: dict[str, str]
    creds: proc.Credentials
    seccomp: dict[str, Any] | None
    hooks: dict[str, list[dict[str, Any]]]
    memory_limit: int | None
    cpu_time_ms: int | None
    cgroup_path: str | None
    resources: dict[str, Any]
    preopens: list[Preopen] = field(default_factory=list)
    no_pivot: bool = False
    rootless: bool = False
    namespaces_entered: bool = False         # set in a grandchild that was born inside them
    own_mounts: bool = True                  # a mount namespace of its own (else: chroot, and no mounts)
    state_dir_fd: int | None = None          # set by wasmlab-oci: a Wasm init records its own exit there
    result_fd: int | None = None             # set for `run`: a Wasm init writes its result there, for the caller
    has_process: bool = True                 # a config without process can be created, never started
    overlay: tuple[str, str] | None = None   # the root as an overlay: (folder of the lowers, mount options)

    def for_container(self, cid: str) -> Plan:
        """A shallow copy for one container (copy.copy costs five times as much on the hot path)."""
        clone = object.__new__(Plan)
        clone.__dict__.update(self.__dict__)
        clone.id = cid
        return clone


def _id_map(entries: list[dict[str, Any]]) -> str:
    return "".join(f"{e['containerID']} {e['hostID']} {e['size']}\n" for e in entries)


def plan(spec: Spec, container_id: str, *, no_pivot: bool = False, rootless: bool | None = None) -> Plan:
    """Turn a validated spec into a Plan (all parsing and option decoding happen here, not in the child)."""
    linux = spec.linux
    rootless = os.geteuid() != 0 if rootless is None else rootless
    flags = 0
    join: list[tuple[str, str]] = []
    new_pid = False
    join_pid = ""
    user = new_user = False
    for ns in spec.namespaces:
        if ns.type == "pid":
            if ns.path:
                join_pid = ns.path
            else:
                new_pid = True
            continue
        if ns.type == "user":
            user = True
            new_user = not ns.path
        if ns.path:
            join.append((ns.type, ns.path))
        elif ns.type != "user":
            flags |= sc.NAMESPACE_FLAGS[ns.type]
    if rootless and not user:
        raise SpecError("$.linux.namespaces", "a rootless container needs a user namespace",
                        "add {\"type\": \"user\"} with uidMappings, or run `wasmlab-oci spec --rootless`")
    own_mounts = bool(flags & sc.CLONE_NEWNS) or any(t == "mount" for t, _ in join)
    proc_cfg = spec.process
    mount_list = spec.mounts
    has_dev = any(m["destination"] == "/dev" for m in mount_list)
    devices = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666}
               for p, ma, mi in mnt.DEFAULT_DEVICES]
    devices += list(linux.get("devices") or [])
    resources = dict(linux.get("resources") or {})
    memory = resources.get("memory") or {}
    cpu_ms = spec.annotations.get(CPU_TIME_ANNOTATION)
    try:
        cpu_time_ms = int(cpu_ms) if cpu_ms else None
    except ValueError:
        cpu_time_ms = -1
    if cpu_time_ms is not None and cpu_time_ms <= 0:
        raise SpecError(f"$.annotations.{CPU_TIME_ANNOTATION}",
                        f"must be a positive whole number of milliseconds, got {cpu_ms!r}",
                        "for example \"2000\"; leave the annotation out for no limit")
    propagation = {"private": sc.MS_PRIVATE, "shared": sc.MS_SHARED, "slave": sc.MS_SLAVE,
                   "unbindable": sc.MS_UNBINDABLE}.get(linux.get("rootfsPropagation") or "", sc.MS_SLAVE)
    steps = mnt.plan_mounts(mount_list, spec.bundle, rootless=rootless)
    preopens = [Preopen("/", "/", spec.root_readonly)]
    preopens += [Preopen(s.target, s.target, s.readonly) for s in steps if _preopened(s)]
    if spec.cwd != "/":
        # WASI has no working directory; wasi-libc resolves relative paths through a "." preopen. It is
        # read-only as the mount it lies on is (the deepest bind mount holding it, else the root).
        holders = [s for s in steps if _preopened(s)
                   and (spec.cwd == s.target or spec.cwd.startswith(s.target.rstrip("/") + "/"))]
        holder = max(holders, key=lambda s: len(s.target), default=None)
        preopens.append(Preopen(spec.cwd, ".", holder.readonly if holder else spec.root_readonly))
    if linux.get("seccomp") is not None and seccomp.library() is None:
        raise SpecError("$.linux.seccomp", "a seccomp filter is configured but libseccomp is not installed",
                        "apt-get install libseccomp2, or remove linux.seccomp")
    needs_cgroup = bool(linux.get("cgroupsPath")) or any(resources.get(k) for k in ("memory", "pids", "cpu"))
    overlay = load_overlay(spec.bundle)
    if overlay is not None and not own_mounts:
        raise SpecError("$.linux.namespaces", "an overlay root needs a mount namespace of its own",
                        "add {\"type\": \"mount\"} to linux.namespaces")
    return Plan(
        id=container_id, bundle=spec.bundle, rootfs=spec.rootfs,
        args=spec.args, env=spec.env, cwd=spec.cwd, terminal=bool(proc_cfg.get("terminal")),
        annotations=spec.annotations,
        unshare_flags=flags, new_pid=new_pid, join=join, join_pid=join_pid,
        user=user, new_user=new_user,
        uid_map=_id_map(linux.get("uidMappings") or []), gid_map=_id_map(linux.get("gidMappings") or []),
        hostname=spec.raw.get("hostname"), domainname=spec.raw.get("domainname"),
        mounts=steps, devices=mnt.plan_devices(devices), has_dev_mount=has_dev,
        masked=list(linux.get("maskedPaths") or []), readonly_paths=list(linux.get("readonlyPaths") or []),
        root_readonly=spec.root_readonly, root_propagation=propagation,
        sysctl=dict(linux.get("sysctl") or {}), creds=proc.plan_credentials(proc_cfg),
        seccomp=linux.get("seccomp"), hooks=spec.hooks,
        memory_limit=int(memory["limit"]) if memory.get("limit") and int(memory["limit"]) > 0 else None,
        cpu_time_ms=cpu_time_ms,
        cgroup_path=(linux.get("cgroupsPath") or "") if needs_cgroup else None,
        resources=resources, preopens=preopens, no_pivot=no_pivot, rootless=rootless, own_mounts=own_mounts,
        has_process=spec.has_process, overlay=overlay,
    )


def _preopened(step: mnt.MountStep) -> bool:
    """A mount a Wasm guest sees as a preopen: a bind of a folder, or a tmpfs (a -v, a --mount), but not the
    runtime's own /dev, /proc and /sys."""
    if step.bind:
        return not step.is_file
    return step.fstype == "tmpfs" and not any(step.target == top or step.target.startswith(top + "/")
                                              for top in ("/dev", "/proc", "/sys"))


# -- the child side --------------------------------------------------------------------------------------------


class Channel:
    """Framed JSON messages over the SOCK_SEQPACKET socket between the runtime and a container init."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, msg: dict[str, Any], fds: list[int] | None = None) -> bool:
        data = json.dumps(msg).encode()
        try:
            if fds:
                socket.send_fds(self.sock, [data], fds)
            else:
                self.sock.send(data)
            return True
        except OSError:
            return False

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (TimeoutError, OSError):
            return None
        finally:
            self.sock.settimeout(None)
        if not data:
            return None
        msg: dict[str, Any] = json.loads(data)
        return msg


def _read_head(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, 64)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _run_hooks(kind: str, hooks: dict[str, list[dict[str, Any]]], state: dict[str, Any]) -> None:
    run_hooks(kind, hooks.get(kind) or [], state)


def container_main(p: Plan, chan: Channel, start_fd: int, stdio: tuple[int, int, int] | None,
                   console_fd: int | None, handlers: dict[str, Handler], default_engine: str,
                   state: dict[str, Any], t_fork: int, after_ns: Any = None) -> int:
    """Runs in the forked child (pid 1 of the container when it has a pid namespace). Never returns normally."""
    timings: dict[str, float] = {}
    started = False
    step = "preparing stdio"

    def mark(name: str) -> None:
        timings[name] = (time.perf_counter_ns() - t_fork) / 1e6

    mark("forked")
    exitstubs.install_early(STOP_STATUS)
    gc.disable()
    try:
        if stdio is not None:
            for target, fd in enumerate(stdio):
                if fd != target:
                    os.dup2(fd, target)
            for fd in set(stdio) - {0, 1, 2}:
                os.close(fd)  # only fds 0-2 may hold the caller's pipes, so closing them ends its output
        os.setsid()
        mark("setsid")
        if p.cgroup_path is not None and after_ns is not None:
            after_ns()
        step = "entering namespaces"
        _enter_namespaces(p, chan)
        mark("namespaces")
        # Without a devpts of its own the container has no /dev/ptmx: take the pty from the host side now.
        early_pty = pty.openpty() if p.terminal and not any(m.fstype == "devpts" for m in p.mounts) else None
        step = "building the root filesystem"
        _build_root(p, state, lambda: _creation_hooks(p, chan, state))
        mark("rootfs")
        step = "choosing the handler"
        if not p.has_process:
            decision, workload = Decision("native", False, "no process in config.json"), Workload("", [], [], "/", b"")
        else:
            decision, workload = _decide(p, handlers, default_engine)
            _check_entrypoint(workload, native=not handlers[decision.handler].wasm)
        step = "setting rlimits and the console"
        mark("decided")
        proc.apply_rlimits(p.creds)
        proc.apply_oom_score(p.creds)
        if p.terminal:
            console.attach(console_fd, early_pty)
        elif console_fd is not None:
            os.close(console_fd)
        try:
            if p.has_process:
                os.chdir(p.cwd)
        except OSError:
            raise SetupError(f"the working directory {p.cwd} does not exist in the container",
                             "create it in the image or fix process.cwd") from None
        if p.seccomp is not None and not p.creds.no_new_privs:
            step = "loading the seccomp filter"
            seccomp.apply(p.seccomp, no_new_privs=False)  # needs CAP_SYS_ADMIN, so before the switch
        step = "switching user and capabilities"
        proc.apply_identity(p.creds, setgroups_allowed=not (p.new_user and p.rootless))
        mark("ready")
        chan.send({"t": "ready", "decision": decision.as_dict(), "timings": timings})
        # Wait for `start`: one byte down the exec fifo (or the run pipe). A `run` with nothing left to
        # fail in the parent does not wait at all.
        while start_fd >= 0:
            try:
                if os.read(start_fd, 1):
                    break
                raise SetupError("the start signal never came", "the runtime went away before `start`")
            except InterruptedError:
                continue
        if start_fd >= 0:
            os.close(start_fd)
        started = True
        mark("started")
        if not p.has_process:
            raise SpecError("$.process", "there is no process to start", "add a process to config.json")
        if p.hooks.get("startContainer"):
            state = dict(state, status="running", pid=os.getpid())
            _run_hooks("startContainer", p.hooks, state)
        # The moment the workload begins, for its run record (a native program cannot say so after execve; a
        # Wasm guest killed before its final report would not): one small message, before the filter, which
        # a learner's profile may make deny sendto.
        chan.send({"t": "reports", "values": {"run_start_ms": (time.perf_counter_ns() - t_fork) / 1e6}})
        if p.seccomp is not None and p.creds.no_new_privs:
            seccomp.apply(p.seccomp)  # as late as possible: the fewest syscalls made under the filter
        handler = handlers[decision.handler]
        if handler.wasm:
            _run_in_process(handler, workload, chan, t_fork, p.state_dir_fd, p.result_fd, decision, timings)
        else:
            _execve(handler, workload)
    except WasmlabError as exc:
        _fail(chan, exc, started=started)
    except OSError as exc:
        _fail(chan, SetupError(f"container setup failed while {step}: {exc.strerror or exc}"
                               + (f" ({exc.filename})" if exc.filename else ""), "see the bundle's config.json"),
              started=started)
    except BaseException as exc:
        _fail(chan, SetupError(f"container setup failed: {type(exc).__name__}: {exc}", "this is a wasmlab bug"),
              started=started)
    return 1


def _check_entrypoint(workload: Workload, *, native: bool) -> None:
    """At create, as runc does, so that `start` has nothing left to fail: the entrypoint exists, and a native
    one is an executable file (a Wasm module needs no executable bit)."""
    if not os.path.exists(workload.path):
        raise HandlerError(f"the entrypoint {workload.path} does not exist in the container",
                           "check process.args[0] (the image's CMD or ENTRYPOINT)", exit_code=EXIT_NO_ENTRYPOINT)
    if not native:
        return
    if os.path.isdir(workload.path):
        raise HandlerError(f"the entrypoint {workload.path} is a directory, not a program",
                           "check process.args[0] (the image's CMD or ENTRYPOINT)", exit_code=EXIT_NOT_EXECUTABLE)
    if not os.access(workload.path, os.X_OK):
        kind = classify(workload.head)
        hint = "is it a Wasm module? add the annotation module.wasm.image/variant=compat" \
            if kind in ("module", "component", "wat") else f"make it executable (chmod +x {workload.path})"
        raise HandlerError(f"the entrypoint {workload.path} is not executable", hint, exit_code=EXIT_NOT_EXECUTABLE)


def _execve(handler: Handler, workload: Workload) -> None:
    """Replace this process with the native entrypoint (returns only by raising)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; the workload must not inherit that
    kind = classify(workload.head)
    if kind == "missing":
        raise HandlerError(f"the entrypoint {workload.path} does not exist in the container",
                           "check process.args[0] (the image's CMD or ENTRYPOINT)", exit_code=EXIT_NO_ENTRYPOINT)
    try:
        handler.run(workload)
    except OSError as exc:
        hint = "is it a Wasm module? add the annotation module.wasm.image/variant=compat" \
            if kind in ("module", "component", "wat") else "check process.args[0]"
        raise HandlerError(f"cannot execute {workload.path}: {exc.strerror}", hint,
                           exit_code=EXIT_NO_ENTRYPOINT if exc.errno == errno.ENOENT else EXIT_NOT_EXECUTABLE) from None
    raise HandlerError(f"the {handler.name} handler returned instead of executing {workload.path}",
                       "this is a bug in that handler")


def _record_exit(dir_fd: int | None, code: int, peak_kb: int) -> None:
    """Nobody listens on the channel (wasmlab-oci created us and exited): leave the exit in the state."""
    if dir_fd is None:
        return
    try:
        StateDir.write_exit_at(dir_fd, ExitRecord(exit_code=code, finished_at=time.time(), max_rss_kb=peak_kb))
    except OSError:
        pass  # deleted meanwhile


def _run_in_process(handler: Handler, workload: Workload, chan: Channel, t_fork: int,
                    p_state_dir_fd: int | None = None, result_fd: int | None = None,
                    decision: Decision | None = None, timings: dict[str, float] | None = None) -> None:
    """Run a Wasm workload in this process, report, and exit with its status."""
    sc.set_name(os.path.basename(workload.path))  # `ps` shows the module, not "python"
    reports: dict[str, Any] = {"run_start_ms": (time.perf_counter_ns() - t_fork) / 1e6}
    workload.report = reports.__setitem__  # sent in one message when the guest is done
    code = handler.run(workload) & 0xFF
    reports["guest_done_ms"] = (time.perf_counter_ns() - t_fork) / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _flush()
    report = {"t": "reports", "values": reports, "exit_code": code, "max_rss_kb": peak}
    if result_fd is not None:
        # The caller of `run` reads this with the output: one hop, not two (through the zygote).
        try:
            os.write(result_fd, json.dumps(report | {"decision": decision.as_dict() if decision else {},
                                                     "timings": timings or {}}).encode())
        except OSError:
            pass
        os.close(result_fd)
    # Close stdio now: readers see EOF at once, not after the kernel has torn down this process.
    os.closerange(0, 3)
    if not chan.send(report):
        _record_exit(p_state_dir_fd, code, peak)
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _fail(chan: Channel, exc: WasmlabError, *, started: bool = False) -> None:
    """Report a failure and exit. After start the container's stderr is where its user looks, so write it there too."""
    if os.environ.get("WASMLAB_DEBUG"):
        import traceback

        traceback.print_exc()
    sent = chan.send({"t": "error", "error": exc.as_dict()})
    if started or not sent:
        try:
            os.write(2, f"wasmlab: {exc.one_line()}\n".encode())
        except OSError:
            pass
    os._exit(exc.exit_code if 0 < exc.exit_code < 256 else 1)


def _enter_namespaces(p: Plan, chan: Channel) -> None:
    """setns into the namespaces given by path, then unshare the new ones (pid is handled by the parent)."""
    if p.namespaces_entered:
        return
    if p.user:
        for kind, path in p.join:
            if kind == "user":
                _setns(kind, path)
        if p.new_user:
            try:
                sc.unshare(sc.CLONE_NEWUSER)
            except OSError as exc:
                raise PrivilegeError(f"this machine does not allow user namespaces ({exc.strerror})",
                                     "allow them with `sysctl -w user.max_user_namespaces=15000` (and, on Debian, "
                                     "`sysctl -w kernel.unprivileged_userns_clone=1`), or run as root") from None
            chan.send({"t": "userns"})
            reply = chan.recv(10)
            if not reply or reply.get("t") != "ok":
                raise SetupError("the runtime did not write the user namespace's id maps",
                                 (reply or {}).get("error", "check uidMappings and gidMappings"))
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    for kind, path in p.join:
        if kind not in ("user", "mount"):
            _setns(kind, path)
    for kind, path in p.join:
        if kind == "mount":
            _setns(kind, path)
    if p.unshare_flags:
        sc.unshare(p.unshare_flags)
        if p.unshare_flags & sc.CLONE_NEWNET:
            _loopback_up()


def _loopback_up() -> None:
    """A new network namespace gets its loopback up, as runc does (a server in the container reaches itself)."""
    try:
        loopback.up()
    except OSError as exc:
        raise SetupError(f"cannot bring up the container's loopback interface: {exc.strerror}",
                         "the container needs CAP_NET_ADMIN in its network namespace's user namespace") from None


def _setns(kind: str, path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SetupError(f"cannot open the {kind} namespace {path}: {exc.strerror}",
                         "is the process that owned it still running?") from None
    try:
        sc.setns(fd, sc.NAMESPACE_FLAGS[kind])
    except OSError as exc:
        raise SetupError(f"cannot join the {kind} namespace {path}: {exc.strerror}",
                         f"check that {path} is a {kind} namespace") from None
    finally:
        os.close(fd)


_CREATION_HOOKS = ("prestart", "createRuntime", "createContainer")


def _creation_hooks(p: Plan, chan: Channel, state: dict[str, Any]) -> None:
    """Before pivot_root, in the spec's order: prestart and createRuntime in the runtime's namespaces (the
    parent runs them while this init waits), then createContainer here, in the container's."""
    if not any(p.hooks.get(kind) for kind in _CREATION_HOOKS):
        return
    chan.send({"t": "hooks"})
    reply = chan.recv(None)  # each hook has its own timeout; the parent kills us if one fails
    if not reply or reply.get("t") != "ok":
        raise SetupError("the runtime did not finish the prestart and createRuntime hooks",
                         "see the hooks in config.json")
    if p.hooks.get("createContainer"):
        _run_hooks("createContainer", p.hooks, dict(state, pid=reply.get("pid")))


def _build_root(p: Plan, state: dict[str, Any], before_pivot: Any = None) -> None:
    if not p.own_mounts:
        # Sharing the host's mount namespace: any mount would land on the host, so none is made.
        if before_pivot is not None:
            before_pivot()
        os.chroot(p.rootfs)
        os.chdir("/")
        if p.hostname is not None:
            sc.sethostname(p.hostname)
        return
    # Nothing we mount may propagate back to the host.
    sc.mount(None, "/", None, sc.MS_REC | p.root_propagation)
    shared = bool(p.root_propagation & sc.MS_SHARED)
    if shared:
        # pivot_root refuses a shared new root or parent: make both private here, share again after.
        sc.mount(None, mnt.mount_point_of(p.rootfs), None, sc.MS_PRIVATE)
    if p.overlay is not None:
        # The layers are snapshots, shared read-only; the container writes to its own upper folder. Mounted
        # in this mount namespace only: it goes with the container, nothing is left on the host.
        os.chdir(p.overlay[0])  # lower layers by relative name: the options stay within a page
        sc.mount("overlay", p.rootfs, "overlay", 0, p.overlay[1])
    else:
        sc.mount(p.rootfs, p.rootfs, None, sc.MS_BIND | sc.MS_REC)
    if shared:
        sc.mount(None, p.rootfs, None, sc.MS_PRIVATE)
    mnt.mount_all(p.rootfs, p.mounts, p.devices, bind_devices=p.user, has_dev_mount=p.has_dev_mount)
    if before_pivot is not None:
        before_pivot()
    mnt.pivot_into(p.rootfs, no_pivot=p.no_pivot)
    if shared:
        sc.mount(None, "/", None, sc.MS_SHARED | sc.MS_REC)
    # Hostname and sysctls first: /proc/sys is usually among the read-only paths made just below.
    if p.hostname is not None:
        sc.sethostname(p.hostname)
    if p.domainname is not None:
        sc.setdomainname(p.domainname)
    if p.sysctl:
        proc.apply_sysctl(p.sysctl)
    if p.masked or p.readonly_paths:
        mnt.mask_paths(p.masked, p.readonly_paths)
    if p.root_readonly:
        mnt.readonly_root()


def _decide(p: Plan, handlers: dict[str, Handler], default_engine: str) -> tuple[Decision, Workload]:
    path = search_path(p.args[0], p.env)
    head = _read_head(path)
    extra = tuple(name for name, h in handlers.items() if name == h.name and name not in ("native", *WASM_ENGINES))
    decision = decide(p.annotations, path, head, default_engine=default_engine, extra_engines=extra)
    if decision.handler not in handlers:
        raise HandlerError(f"the {decision.handler} handler is not available here",
                           "install it (pip install wasmtime / wasmer-sdk) or pick another engine")
    workload = Workload(path=path, args=p.args, env=p.env, cwd=p.cwd, head=head or b"", preopens=p.preopens,
                        memory_limit=p.memory_limit, cpu_time_ms=p.cpu_time_ms, annotations=p.annotations)
    return decision, workload
