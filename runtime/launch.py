"""The parent side of create: fork the container init from a single-threaded process and drive it to 'created'."""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from wasmlab.runtime.errors import SetupError, WasmlabError, error_from_dict
from wasmlab.runtime.handlers.base import STOP_STATUS, Handler
from wasmlab.runtime.hooks import run_hooks
from wasmlab.runtime.init import Channel, Plan, container_main
from wasmlab.runtime.linux import cgroups, console, exitstubs
from wasmlab.runtime.linux import syscalls as sc
from wasmlab.runtime.store.state import OCI_VERSION, StateDir, proc_start_time

_OWN_PID_NS: int | None = None


def _own_pid_ns() -> int:
    global _OWN_PID_NS
    if _OWN_PID_NS is None:
        _OWN_PID_NS = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    return _OWN_PID_NS


@dataclass
class Launched:
    """A container that reached 'created' (or started, with autostart)."""

    id: str
    pid: int
    state: dict[str, Any]
    decision: dict[str, Any]
    timings: dict[str, float]
    channel: Channel
    cgroup: cgroups.Cgroup | None


def launch(p: Plan, sd: StateDir, *, handlers: dict[str, Handler], default_engine: str = "wasmtime",
           stdio: tuple[int, int, int] | None = None, console_socket: str | None = None,
           pid_file: str | None = None, autostart: bool = False, owner: str = "cli",
           extra_state: dict[str, Any] | None = None, record_exit: bool = False,
           result_fd: int | None = None, close_in_child: tuple[int, ...] = ()) -> Launched:
    """Create the container. Must be called from a single-threaded process. On failure nothing is left behind."""
    return finish(fork_init(p, sd, handlers=handlers, default_engine=default_engine, stdio=stdio,
                            console_socket=console_socket, pid_file=pid_file, autostart=autostart, owner=owner,
                            extra_state=extra_state, record_exit=record_exit, result_fd=result_fd,
                            close_in_child=close_in_child))


@dataclass
class Forked:
    """A container init forked and setting itself up; `finish` drives it to 'created'. Between the two, the forker
    may fork other inits (the zygote does, for creates that arrive together), which then set up side by side."""

    p: Plan
    sd: StateDir
    t0: int
    t_fork: int
    child: int
    pid_start: int | None
    inner_fork: bool
    chan: Channel
    cg: cgroups.Cgroup | None
    state: dict[str, Any]
    owner: str
    extra_state: dict[str, Any] | None
    pid_file: str | None
    written_pid_file: str | None

    @property
    def channel_fd(self) -> int:
        """The forker's end of the init's channel: an init forked after this one must not inherit it."""
        return self.chan.sock.fileno()


def fork_init(p: Plan, sd: StateDir, *, handlers: dict[str, Handler], default_engine: str = "wasmtime",
              stdio: tuple[int, int, int] | None = None, console_socket: str | None = None,
              pid_file: str | None = None, autostart: bool = False, owner: str = "cli",
              extra_state: dict[str, Any] | None = None, record_exit: bool = False,
              result_fd: int | None = None, close_in_child: tuple[int, ...] = ()) -> Forked:
    """The first half of launch: fork the init, which sets itself up meanwhile. On failure nothing is left."""
    t0 = time.perf_counter_ns()
    sd.make(fifo=not autostart)
    cg: cgroups.Cgroup | None = None
    child = 0
    parent_sock: socket.socket | None = None
    start_fd = -1
    written_pid_file: str | None = None
    state: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": p.id, "status": "creating",
                             "bundle": p.bundle, "annotations": p.annotations}
    try:
        if record_exit:
            p.state_dir_fd = os.open(sd.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if result_fd is not None:
            os.set_inheritable(result_fd, False)  # a native entrypoint's execve closes it: no result from there
            p.result_fd = result_fd
        # `run` does not wait for a start signal: nothing can fail after ready (the creation hooks ran
        # before it). `create` leaves the init blocked on the exec fifo.
        start_fd = -1 if autostart else os.open(sd.fifo, os.O_RDWR | os.O_CLOEXEC)
        exitstubs.stubs(STOP_STATUS)  # once per process: the init installs them first thing
        if p.cgroup_path is not None:
            cg = cgroups.create(p.cgroup_path, p.id, p.resources, rootless=p.rootless)
        console_fd = console.connect(console_socket) if console_socket else None
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        join_cgroup = cg.join_self if cg is not None else None
        inner_fork = p.user and (p.new_pid or bool(p.join_pid))
        restore = False
        if not inner_fork:
            restore = _enter_pid_ns(p)
        t_fork = time.perf_counter_ns()
        try:
            child = sc.fork()
        finally:
            if restore and child != 0:
                sc.setns(_own_pid_ns(), sc.CLONE_NEWPID)
        if child == 0:  # pragma: no cover - runs in the container
            parent_sock.close()
            # The forker's own descriptors (its client's socket, other containers' channels): a container
            # holding them would keep them open after the forker dies, hiding its death from both sides.
            for fd in close_in_child:
                try:
                    os.close(fd)
                except OSError:
                    pass
            chan = Channel(child_sock)
            if inner_fork:
                _child_fork_pid_ns(p, chan, join_cgroup)
                join_cgroup = None
            container_main(p, chan, start_fd, stdio, console_fd, handlers, default_engine, state, t0, join_cgroup)
            os._exit(1)
        child_sock.close()
        if p.state_dir_fd is not None:
            os.close(p.state_dir_fd)
            p.state_dir_fd = None
        if start_fd >= 0:
            os.close(start_fd)
        start_fd = -1
        if console_fd is not None:
            os.close(console_fd)
        # Read the start time while the init is still setting up: once it is ready it may be inside
        # execve, and /proc/PID/stat waits for that to finish (half a millisecond for busybox here).
        pid_start = proc_start_time(child)
        # The pid file is written as soon as the init's pid is known, before it can reach its workload (a
        # `run` does not wait for start): whoever reads it (podman's conmon) finds it in time.
        if pid_file and not inner_fork:
            written_pid_file = _write_pid_file(pid_file, child)
        return Forked(p, sd, t0, t_fork, child, pid_start, bool(inner_fork), Channel(parent_sock), cg, state, owner,
                      extra_state, pid_file, written_pid_file)
    except BaseException:
        if start_fd >= 0:
            os.close(start_fd)
        _undo(sd, {child} - {0}, cg, parent_sock, written_pid_file)
        raise


def finish(f: Forked) -> Launched:
    """The second half of launch: answer the init until it reports ready. On failure nothing is left."""
    p, state = f.p, f.state
    pid, pid_start, written_pid_file = f.child, f.pid_start, f.written_pid_file
    try:
        msg = _drive(p, f.chan, f.child, state)
        if msg.get("t") == "pid":
            _reap(f.child)
            pid = int(msg["pid"])
            pid_start = proc_start_time(pid)
            if f.pid_file:
                written_pid_file = _write_pid_file(f.pid_file, pid)
            msg = _drive(p, f.chan, f.child, state, pid)
        if msg.get("t") != "ready":
            raise _child_error(msg, pid)
        state.update(status="created", pid=pid, pid_start=pid_start, created=time.time(),
                     rootfs=p.rootfs, owner=f.owner, cgroup=f.cg.path if f.cg else None,
                     decision=msg.get("decision"), rootless=p.rootless, has_process=p.has_process,
                     **(f.extra_state or {}))
        f.sd.write(state)
        timings = dict(msg.get("timings") or {})
        timings["prefork"] = (f.t_fork - f.t0) / 1e6
        timings["create_ms"] = (time.perf_counter_ns() - f.t0) / 1e6
        timings["request_s"] = f.t0 / 1e9  # the origin of every moment above (and the init's), CLOCK_MONOTONIC
        return Launched(p.id, pid, state, msg.get("decision") or {}, timings, f.chan, f.cg)
    except BaseException:
        _undo(f.sd, {pid, f.child}, f.cg, f.chan.sock, written_pid_file)
        raise


def _undo(sd: StateDir, victims: set[int], cg: cgroups.Cgroup | None, parent_sock: socket.socket | None,
          written_pid_file: str | None) -> None:
    """What a failed create leaves: its processes, cgroup, channel, pid file and state folder."""
    for victim in victims - {0}:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(victim)
    if cg is not None:
        cg.remove()
    if parent_sock is not None:
        parent_sock.close()
    if written_pid_file is not None:
        try:
            os.unlink(written_pid_file)
        except OSError:
            pass
    sd.remove()


def _hook_state(state: dict[str, Any], status: str) -> dict[str, Any]:
    keys = ("ociVersion", "id", "bundle", "annotations", "pid")
    return {k: state[k] for k in keys if k in state} | {"status": status}


def _enter_pid_ns(p: Plan) -> bool:
    """Point this process's pid_for_children at the container's pid namespace (restored right after fork)."""
    if p.new_pid:
        sc.unshare(sc.CLONE_NEWPID)
        return True
    if p.join_pid:
        try:
            fd = os.open(p.join_pid, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SetupError(f"cannot open the pid namespace {p.join_pid}: {exc.strerror}",
                             "is the process that owned it still running?") from None
        try:
            sc.setns(fd, sc.CLONE_NEWPID)
        finally:
            os.close(fd)
        return True
    return False


def _child_fork_pid_ns(p: Plan, chan: Channel, join_cgroup: Any) -> None:  # pragma: no cover - in the child
    """With a user namespace, the pid namespace must be made inside it: enter, fork, and hand over the new pid."""
    from wasmlab.runtime.init import _enter_namespaces, _fail

    try:
        if join_cgroup is not None:
            join_cgroup()
        _enter_namespaces(p, chan)
        _enter_pid_ns(p)
        grandchild = sc.fork()
    except WasmlabError as exc:
        _fail(chan, exc)
        return
    except OSError as exc:
        _fail(chan, SetupError(f"cannot create the namespaces: {exc.strerror}", "see `wasmlab doctor`"))
        return
    if grandchild:
        chan.send({"t": "pid", "pid": grandchild})
        os._exit(0)
    # The grandchild has already entered every namespace but pid (which it is born into).
    p.namespaces_entered = True


def _drive(p: Plan, chan: Channel, child: int, state: dict[str, Any], pid: int | None = None) -> dict[str, Any]:
    """Answer the child's requests until it reports ready, an error, or its new pid."""
    while True:
        msg = chan.recv(30)
        if msg is None:
            return {"t": "died"}
        if msg.get("t") == "hooks":
            # The init has its namespaces and mounts and waits before pivot_root: the runtime's hooks now.
            hook_state = _hook_state(dict(state, pid=pid or child), "creating")
            for kind in ("prestart", "createRuntime"):
                if p.hooks.get(kind):
                    run_hooks(kind, p.hooks[kind], hook_state)  # a failure raises: launch kills the init
            chan.send({"t": "ok", "pid": pid or child})
            continue
        if msg.get("t") == "userns":
            try:
                _write_id_maps(child, p)
            except OSError as exc:
                chan.send({"t": "fail", "error": f"cannot write id maps: {exc.strerror}"})
                continue
            chan.send({"t": "ok"})
            continue
        return msg


def _write_id_maps(pid: int, p: Plan) -> None:
    if p.uid_map:
        with open(f"/proc/{pid}/uid_map", "w") as fh:
            fh.write(p.uid_map)
    if p.gid_map:
        if os.geteuid() != 0:
            with open(f"/proc/{pid}/setgroups", "w") as fh:
                fh.write("deny")
        with open(f"/proc/{pid}/gid_map", "w") as fh:
            fh.write(p.gid_map)


def _child_error(msg: dict[str, Any], pid: int) -> WasmlabError:
    if msg.get("t") == "error":
        return error_from_dict(msg.get("error") or {})
    status = _reap(pid)
    return SetupError(f"the container init died during setup ({status})", "run with --debug for details")


def _reap(pid: int) -> str:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _write_pid_file(path: str, pid: int) -> str:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(str(pid))
    os.rename(tmp, path)
    return path
