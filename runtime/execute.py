"""exec: a new process inside a running container's namespaces, cgroup and root (podman exec, ctr task exec)."""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

from wasmlab.runtime.errors import (
    InvalidState,
    SetupError,
    SpecError,
    WasmExecRefused,
    WasmlabError,
    error_from_dict,
)
from wasmlab.runtime.linux import cgroups, console
from wasmlab.runtime.linux import process as proc
from wasmlab.runtime.linux import syscalls as sc
from wasmlab.runtime.spec import runtime as spec_mod
from wasmlab.runtime.store.state import decode_wait_status

# Joined in this order: the user namespace first (it owns the others), the mount namespace last
# (after it, paths are the container's).
_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
_KIND = {"net": "network", "mnt": "mount"}


def load_process(path: str) -> dict[str, Any]:
    """A process.json as `exec --process` gives it, validated like config.json's process."""
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SpecError("$", f"cannot read the process file {path}: {exc}", "pass a runtime-spec process object")
    spec_mod.validate({"ociVersion": "1.0.2", "process": raw})
    return dict(raw)


def exec_process(state: dict[str, Any], process: dict[str, Any], *, detach: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None) -> int:
    """Run PROCESS in the container; returns its exit status, or 0 once started with detach.

    Called from a single-threaded process (wasmlab-oci). The process joins the container's namespaces
    and cgroup, gets its credentials and limits, and replaces a forked child by execve.
    """
    target = int(state["pid"])
    if process.get("terminal") and not console_socket:
        raise SpecError("$.process.terminal", "a terminal needs --console-socket", "pass --console-socket")
    creds = proc.plan_credentials(process)
    joins = [(name, f"/proc/{target}/ns/{name}") for name in _ORDER
             if os.path.exists(f"/proc/{target}/ns/{name}")
             and os.readlink(f"/proc/{target}/ns/{name}") != os.readlink(f"/proc/self/ns/{name}")]
    # `state` is what `state` prints: the cgroup is among wasmlab's extras.
    cgroup_path = state.get("cgroup") or (state.get("wasmlab") or {}).get("cgroup")
    cg = cgroups.open_existing(cgroup_path) if cgroup_path else None
    console_fd = console.connect(console_socket) if process.get("terminal") and console_socket else None
    report_r, report_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    wasm = _wasm_handler(state)
    # Installed before the fork: a Ctrl-C that comes before the process's pid is known is passed on after.
    relay = None if detach else StopRelay()
    child = sc.fork()
    if child == 0:  # pragma: no cover - runs in the exec'd process's parent
        report_r.close()
        if relay is not None:
            relay.reset()
        _join_and_exec(joins, cg, creds, process, report_w, console_fd, detach, wasm, _name_of(state),
                       _setgroups_allowed(target))
    report_w.close()
    if console_fd is not None:
        os.close(console_fd)
    try:
        msg = json.loads(report_r.recv(1 << 16) or b'{"t": "died"}')
        if msg.get("t") == "error":
            raise error_from_dict(msg["error"])
        if msg.get("t") != "pid":
            raise SetupError("the exec'd process died before it started", "run with --debug")
        pid = int(msg["pid"])
        if relay is not None:
            relay.target(pid)
        if pid_file:
            with open(pid_file + ".tmp", "w") as fh:
                fh.write(str(pid))
            os.rename(pid_file + ".tmp", pid_file)
        after = json.loads(report_r.recv(1 << 16) or b'{"t": "execd"}')
        if after.get("t") == "error":
            raise error_from_dict(after["error"])
    except BaseException:
        _, status = os.waitpid(child, 0)
        raise
    finally:
        report_r.close()
    try:
        _, status = os.waitpid(child, 0)
    finally:
        if relay is not None:
            relay.reset()
    return 0 if detach else decode_wait_status(status)[0]


class StopRelay:
    """SIGINT, SIGTERM and SIGHUP sent to the exec'ing process go to the exec'd process's group (it is a
    session leader, so its children too, as a terminal's ^C would); a second one is SIGKILL, for a process
    that ignores the first. Without it, Ctrl-C of `wasmlab exec` left the process running in the container."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.pid = 0
        self.pending: list[int] = []
        self.stops = 0
        self.previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.pid:
            self.pending.append(signum)
            return
        self._pass_on(signum)

    def _pass_on(self, signum: int) -> None:
        self.stops += 1
        if self.stops > 1:
            signum = signal.SIGKILL
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def target(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._pass_on(signum)
        self.pending.clear()

    def reset(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _setgroups_allowed(pid: int) -> bool:
    """A rootless container's user namespace denies setgroups (its maps were written so): exec keeps to that."""
    try:
        with open(f"/proc/{pid}/setgroups") as fh:
            return fh.read().strip() != "deny"
    except OSError:
        return True


def _name_of(state: dict[str, Any]) -> str:
    """The name the lab gave the container (its annotation), else its id."""
    return str((state.get("annotations") or {}).get("wasmlab.io/name") or state.get("id") or "")


def _wasm_handler(state: dict[str, Any]) -> str | None:
    """The engine running a Wasm container (from its state, as Runtime.state or the zygote wrote it), else None."""
    decision = (state.get("wasmlab") or {}).get("decision") or state.get("decision") or {}
    return str(decision.get("handler") or "wasm") if decision.get("wasm") else None


def _join_and_exec(joins: list[tuple[str, str]], cg: cgroups.Cgroup | None, creds: proc.Credentials,
                   process: dict[str, Any], report: socket.socket, console_fd: int | None,
                   detach: bool, wasm: str | None = None, container: str = "",
                   setgroups_allowed: bool = True) -> None:  # pragma: no cover - in the child
    def fail(exc: WasmlabError) -> None:
        report.send(json.dumps({"t": "error", "error": exc.as_dict()}).encode())
        os._exit(exc.exit_code if 0 < exc.exit_code < 126 else 1)

    try:
        if cg is not None:
            cg.join_self()
        for name, path in joins:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sc.setns(fd, sc.NAMESPACE_FLAGS[_KIND.get(name, name)])
            finally:
                os.close(fd)
        # setns(pid) only places children in the namespace: the process itself is a grandchild.
        grandchild = sc.fork()
    except OSError as exc:
        fail(SetupError(f"cannot enter the container: {exc.strerror}", "is it still running?"))
        return
    if grandchild:
        report.send(json.dumps({"t": "pid", "pid": grandchild}).encode())
        report.close()  # from now on only the process itself holds it, until execve closes it
        if detach:
            os._exit(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _, status = os.waitpid(grandchild, 0)
        os._exit(decode_wait_status(status)[0])
    try:
        os.setsid()
        if console_fd is not None:
            console.attach(console_fd)
        proc.apply_rlimits(creds)
        cwd = str(process.get("cwd") or "/")
        try:
            os.chdir(cwd)
        except OSError:
            raise SetupError(f"the working directory {cwd} does not exist in the container",
                             "pass an existing --cwd") from None
        proc.apply_identity(creds, setgroups_allowed=setgroups_allowed)
        env = dict(e.split("=", 1) for e in process.get("env") or [])
        args = list(process.get("args") or [])
        if not args:
            raise SpecError("$.process.args", "there is nothing to run", "give exec a command")
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        report.set_inheritable(False)
        os.execvpe(args[0], args, env)
    except WasmlabError as exc:
        fail(exc)
    except OSError as exc:
        program = str((process.get("args") or ["?"])[0])
        if wasm is not None:
            fail(WasmExecRefused.of(container, wasm, program, _is_wasm_module(program, process)))
        fail(SetupError(f"cannot execute {program}: {exc.strerror}",
                        "check the command: it must exist inside the container"))


def _is_wasm_module(program: str, process: dict[str, Any]) -> bool:  # pragma: no cover - in the child
    """Whether PROGRAM (looked up as execvp would, inside the container) is a Wasm module."""
    if "/" in program:
        candidates = [program]
    else:
        env = dict(e.split("=", 1) for e in process.get("env") or [] if "=" in e)
        candidates = [os.path.join(d, program) for d in env.get("PATH", "/usr/bin:/bin").split(":") if d]
    for path in candidates:
        try:
            with open(path, "rb") as fh:
                return fh.read(4) == b"\0asm"
        except OSError:
            continue
    return False


def check_running(status: str, container_id: str) -> None:
    if status != "running":
        raise InvalidState(f"container {container_id} is {status}: exec needs a running container",
                           f"`start {container_id}` first, or run a new one")


def process_for(state: dict[str, Any], args: list[str], *, env: list[str] | tuple[str, ...] = (),
                cwd: str | None = None, user: tuple[int, int] | None = None) -> dict[str, Any]:
    """The process `exec ARGS` runs: the container's own process (user, env, cwd, limits) with ARGS,
    ENV added and, if given, CWD and USER (uid, gid) instead."""
    bundle = state.get("bundle") or ""
    try:
        with open(os.path.join(bundle, "config.json")) as fh:
            base = dict(json.load(fh).get("process") or {})
    except (OSError, ValueError):
        base = {}
    process = dict(base, args=list(args), terminal=False)
    process["env"] = list(base.get("env") or []) + list(env)
    if cwd:
        process["cwd"] = cwd
    if user is not None:
        process["user"] = {"uid": user[0], "gid": user[1]}
    return process


def serve(argv: list[str]) -> int:
    """`python -m wasmlab.runtime.execute REQUEST_FD REPORT_FD`: the single-threaded helper `Runtime.exec` starts.

    It reads {"state", "process"} from REQUEST_FD, runs the process in the container with this helper's
    stdio, and on a typed error writes it to REPORT_FD (the caller raises it) instead of printing it.
    """
    request_fd, report_fd = int(argv[0]), int(argv[1])
    os.set_inheritable(report_fd, False)  # never into the container's process
    with os.fdopen(request_fd, "rb") as fh:
        request = json.loads(fh.read())
    try:
        return exec_process(request["state"], request["process"], console_socket=request.get("console_socket"))
    except WasmlabError as exc:
        os.write(report_fd, json.dumps(exc.as_dict()).encode())
        return exc.exit_code if 0 < exc.exit_code < 126 else 1


if __name__ == "__main__":
    import sys

    sys.exit(serve(sys.argv[1:]))
