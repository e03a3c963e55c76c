"""The container lifecycle (create, start, state, kill, delete, run) over the state root, and the Runtime API."""

from __future__ import annotations

import builtins
import errno
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from wasmlab.runtime.errors import ContainerNotFound, InvalidState, UsageError, WasmlabError, ZygoteGone
from wasmlab.runtime.hooks import run_hooks
from wasmlab.runtime.linux import cgroups, pidfd
from wasmlab.runtime.recording import Recorder
from wasmlab.runtime.store.history import History, RunRecord
from wasmlab.runtime.store.state import (
    ExitRecord,
    StateDir,
    check_id,
    default_root,
    list_ids,
    oci_state,
    status_of,
)
from wasmlab.runtime.zygote import protocol as p
from wasmlab.runtime.zygote.client import Event, RunResult, ZygoteClient

__all__ = ["Containers", "RunResult", "Runtime", "namespaces_of", "parse_kill_signal", "parse_signal"]

SIGNALS = {name[3:]: int(getattr(signal, name)) for name in dir(signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(signal, name), int)}


def parse_signal(value: str | int) -> int:
    """A signal number from 9, KILL or SIGKILL (0 too: kill(2)'s "is it there?")."""
    text = str(value).strip().upper()
    if text.isascii() and text.isdigit():  # "²" is a digit to str.isdigit, not to int()
        number = int(text)
        if number > signal.SIGRTMAX:  # else kill(2) answers "Invalid argument", which names nothing
            raise UsageError(f"there is no signal {number}", f"signals are numbered 1 to {int(signal.SIGRTMAX)}; "
                             "or use a name like TERM or KILL")
        return number
    num = SIGNALS.get(text.removeprefix("SIG"))
    if num is None:
        raise UsageError(f"unknown signal {value!r}", "use a name like TERM or KILL, or a number")
    return num


def parse_kill_signal(value: str | int) -> int:
    """The signal of podman's kill and pod kill: as parse_signal, but 0 is refused as podman refuses it ("invalid
    signal: 0"): it delivers nothing, so a learner's `kill -s 0` would seem to work and do nothing."""
    signum = parse_signal(value)
    if signum == 0:
        raise UsageError(f"invalid signal: {value}", "give a signal that does something: TERM, KILL, HUP, or 1 to "
                         f"{int(signal.SIGRTMAX)} (0 only asks whether a process is there)")
    return signum


class Containers:
    """Verbs that only read or signal existing containers; shared by the CLI and the Runtime API."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())

    def _dir(self, container_id: str) -> StateDir:
        check_id(container_id)
        self._settle(container_id)
        return StateDir(self.root, container_id)

    def _settle(self, container_id: str | None) -> None:
        """Let pending work on that container (or all) finish before it is looked at. Nothing here."""

    def _load(self, container_id: str) -> tuple[StateDir, dict[str, Any], str]:
        sd = self._dir(container_id)
        state = sd.read()
        return sd, state, status_of(state, sd)

    def state(self, container_id: str) -> dict[str, Any]:
        """The runtime-spec state, plus wasmlab's extras under 'wasmlab'."""
        sd, state, status = self._load(container_id)
        out = oci_state(state, status)
        extra: dict[str, Any] = {"handler": (state.get("decision") or {}).get("handler"),
                                 "decision": state.get("decision"), "created": state.get("created"),
                                 "owner": state.get("owner"), "cgroup": state.get("cgroup"),
                                 "rootfs": state.get("rootfs")}
        rec = sd.read_exit()
        if rec is not None:
            extra["exit"] = rec.__dict__
        if status in ("created", "running"):
            extra["namespaces"] = namespaces_of(int(state["pid"]))
        out["wasmlab"] = extra
        return out

    def list(self) -> list[dict[str, Any]]:
        out = []
        self._settle(None)
        for cid in list_ids(self.root):
            try:
                out.append(self.state(cid))
            except WasmlabError:
                continue
        return out

    def start(self, container_id: str) -> None:
        sd = self._dir(container_id)
        with sd.lock():
            state = sd.read()
            status = status_of(state, sd)
            if status != "created":
                raise InvalidState(f"container {container_id} is {status}, not created",
                                   "only a created container can be started; `create` a new one")
            if state.get("has_process") is False:
                raise InvalidState(f"container {container_id} has no process to start",
                                   "add a process to its config.json and create it again")
            try:
                fd = os.open(sd.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno in (errno.ENXIO, errno.ENOENT):
                    raise InvalidState(f"container {container_id} init process is gone",
                                       f"`delete {container_id}` and create it again") from None
                raise
            hooks = _bundle_hooks(state)
            try:
                os.write(fd, b"0")
                if hooks.get("poststart"):
                    _wait_started(fd, int(state["pid"]), wasm=bool((state.get("decision") or {}).get("wasm")))
            finally:
                os.close(fd)
            os.unlink(sd.fifo)
            if hooks.get("poststart"):
                run_hooks("poststart", hooks["poststart"], oci_state(state, "running"), strict=False)

    def kill(self, container_id: str, sig: str | int = "TERM", *, all_processes: bool = False) -> None:
        """Signal the init (or, with all_processes, every process in the container's cgroup), as runc does.

        `kill --all` of a stopped container succeeds and signals whatever is left in its cgroup (nothing,
        with a pid namespace): containerd's shim sends it on every exit, and a failure there keeps the
        container running in the CRI's view. A plain `kill` of a stopped container fails, as runc's does.
        SIGKILL thaws a paused container (runc too): a frozen process would not die until `resume`.
        """
        signum = parse_signal(sig)
        sd = self._dir(container_id)
        with sd.lock():
            state = sd.read()
            status = status_of(state, sd)
            cg = cgroups.open_existing(state["cgroup"]) if state.get("cgroup") else None
            if status not in ("created", "running", "paused"):
                if not all_processes:
                    raise InvalidState(f"container {container_id} is {status}: there is nothing to signal",
                                       f"`delete {container_id}` removes it")
                for pid in cg.pids() if cg is not None else ():
                    _signal(pid, signum)
                return
            if all_processes and cg is not None:
                for pid in cg.pids():
                    _signal(pid, signum)
            else:
                _signal(int(state["pid"]), signum)
            if status == "paused" and signum == signal.SIGKILL and cg is not None:
                cg.freeze(False)
                state["paused"] = False
                sd.write(state)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        sd = self._dir(container_id)
        with sd.lock():
            try:
                state = sd.read()
            except ContainerNotFound:
                if os.path.isdir(sd.path):  # a half-made folder from a crash: clean it up
                    sd.remove()
                    return
                raise
            status = status_of(state, sd)
            if status in ("running", "paused") and not force:
                raise InvalidState(f"container {container_id} is {status}",
                                   f"stop it first (`kill {container_id} KILL`) or use `delete --force`")
            pid, start = int(state.get("pid") or 0), state.get("pid_start")
            if status in ("created", "running", "paused"):
                if status == "paused" and state.get("cgroup"):
                    cgroups.open_existing(state["cgroup"]).freeze(False)  # a frozen task cannot die
                _signal(pid, signal.SIGKILL)
            # Stopped too: a Wasm init reports its exit before its teardown, and its cgroup can only go once
            # it is gone. Waited for on a pidfd, not in sleeps.
            pidfd.wait_gone(pid, start, timeout=5.0)
            if state.get("cgroup"):
                cg = cgroups.open_existing(state["cgroup"])
                cg.kill_all()
                cg.remove()
            sd.remove()
            hooks = _bundle_hooks(state)
            if hooks.get("poststop"):
                run_hooks("poststop", hooks["poststop"], oci_state(state, "stopped"), strict=False)

    def pause(self, container_id: str) -> None:
        """Freeze every process of a running or created container (its cgroup's freezer), as runc does.

        A created container that is paused stays paused (not created) until `resume`: `start` refuses it.
        """
        self._freeze(container_id, True)

    def resume(self, container_id: str) -> None:
        self._freeze(container_id, False)

    def _freeze(self, container_id: str, frozen: bool) -> None:
        sd = self._dir(container_id)
        with sd.lock():
            state = sd.read()
            status = status_of(state, sd)
            wanted = ("running", "created") if frozen else ("paused",)
            if status not in wanted:
                verb = "pause" if frozen else "resume"
                raise InvalidState(f"container {container_id} is {status}: only a {' or '.join(wanted)} one can "
                                   f"{verb}", f"check `state {container_id}`")
            if not state.get("cgroup"):
                raise InvalidState(f"container {container_id} has no cgroup to freeze",
                                   "give it a cgroupsPath (podman and containerd always do)")
            cgroups.open_existing(state["cgroup"]).freeze(frozen)
            state["paused"] = frozen
            sd.write(state)

    def wait_stopped(self, container_id: str, timeout: float | None = None) -> bool:
        """Wait until the container's process has exited (through a pidfd: no polling, and whoever forked
        it); True once it has, False when TIMEOUT seconds passed first. Its exit record may follow."""
        _sd, state, status = self._load(container_id)
        if status not in ("created", "running", "paused"):
            return True
        return pidfd.wait_gone(int(state.get("pid") or 0), state.get("pid_start"), timeout)

    def exit_record(self, container_id: str, timeout: float = 2.0) -> ExitRecord | None:
        """The exit record of a container whose process has ended: its reaper (a zygote, this process's or
        another's) writes it just after reaping, so it may take a moment to appear; None if it never does."""
        sd = StateDir(self.root, container_id)
        deadline = time.monotonic() + timeout
        while (rec := sd.read_exit()) is None and time.monotonic() < deadline and sd.exists():
            time.sleep(0.002)  # a file another process writes: no event to wait on here
        return rec

    def ps(self, container_id: str) -> builtins.list[int]:
        """The pids in the container's cgroup (runc's answer, for a stopped container too: what is left)."""
        _sd, state, status = self._load(container_id)
        if state.get("cgroup"):
            pids = cgroups.open_existing(state["cgroup"]).pids()
            if pids or status not in ("created", "running", "paused"):
                return pids
        if status not in ("created", "running", "paused"):
            return []
        return [int(state["pid"])]


def namespaces_of(pid: int) -> dict[str, str]:
    """Each namespace of a process as its /proc link text, e.g. {"net": "net:[4026532833]"}.

    Two processes share a namespace exactly when these strings are equal (what a pod view compares).
    """
    out: dict[str, str] = {}
    try:
        names = os.listdir(f"/proc/{pid}/ns")
    except OSError:
        return out
    for name in sorted(names):
        try:
            out[name] = os.readlink(f"/proc/{pid}/ns/{name}")
        except OSError:
            continue
    return out


def _bundle_hooks(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    import json

    try:
        with open(os.path.join(state["bundle"], "config.json")) as fh:
            hooks: dict[str, list[dict[str, Any]]] = json.load(fh).get("hooks") or {}
            return hooks
    except (OSError, ValueError, AttributeError):
        return {}


def _wait_started(fifo_fd: int, pid: int, *, wasm: bool, timeout: float = 1.0) -> None:
    """Wait until the init has handed over to its workload, for poststart hooks.

    The init closes the fifo once it has read the start byte: from then on a write fails with EPIPE.
    A native init then execs, which changes /proc/PID/exe; a Wasm init runs the guest itself.
    """
    deadline = time.monotonic() + timeout
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return
    while time.monotonic() < deadline:
        try:
            os.write(fifo_fd, b"0")  # lands in the pipe buffer while the init still holds the fifo
        except BrokenPipeError:
            break
        except OSError:
            return
        time.sleep(0.0005)
    while not wasm and time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/exe") != exe:
                return
        except OSError:
            return
        time.sleep(0.0005)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


class Runtime(Containers):
    """The embedded runtime: OCI verbs as methods, safe from threads and Jupyter kernels.

    Containers are forked by a single-threaded helper process (the zygote), never by the caller.
    """

    def __init__(self, root: str | None = None, *, default_engine: str | None = None, home: str | None = None) -> None:
        super().__init__(root)
        self.default_engine = default_engine or os.environ.get("WASMLAB_ENGINE") or "wasmtime"
        self.home = home
        self._zygotes: dict[str, ZygoteClient] = {}  # "main", and "wasmer" once a container may need it
        self._owners: dict[str, ZygoteClient] = {}   # container id -> the zygote that forked it
        # Runs whose request is sent and whose answer is not in: the zygote may not have written their state
        # yet (their workload starts first). A look at one of them waits for that (see _settle).
        self._running: dict[str, ZygoteClient] = {}
        # Runs are recorded only when there is a lab home to record them in (the Lab always gives one).
        self._recorder = Recorder(History(os.path.join(home, "history.db")), self._recorded) if home else None
        self._pools: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []

    # -- events ------------------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call callback(event) for every lifecycle event; returns an unsubscribe function.

        Callbacks run on the runtime's reader thread: a UI should hand them to its own loop
        (Textual's call_from_thread, a queue, ...), never block in them.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _publish(self, msg: Event) -> None:
        if self._recorder is not None and isinstance(msg, p.ContainerReaped):
            self._recorder.take(msg)
        if self._subscribers:
            self._deliver(p.as_event(msg))

    def enrich_records(self, enrich: Callable[[RunRecord], None] | None) -> None:
        """Let ENRICH(row) add what only the caller knows to each run's row, on the recorder's thread (off every
        caller's path), before it is written."""
        if self._recorder is not None:
            self._recorder.enrich = enrich

    def _recorded(self, row: RunRecord) -> None:
        if self._subscribers:
            self._deliver({"event": "recorded", "id": row.id, "seq": row.seq, "exit_code": row.exit_code,
                           "signal": row.signal, "record": row})

    def _deliver(self, event: dict[str, Any]) -> None:
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception:
                continue

    def collect_runs(self) -> int:
        """Record the runs that ended while no Runtime listened (a detached container whose caller exited);
        returns how many. The history then has them: call it before reading the history."""
        if self._recorder is None:
            return 0
        found = self._recorder.collect(self.root)
        self._recorder.flush()
        return found

    def flush_records(self) -> None:
        """Wait until every run that has ended is in the history (its final figures arrived and were written)."""
        if self._recorder is not None:
            self._settle(None)
            self._recorder.flush()

    def zygote(self, pool: str = "main") -> ZygoteClient:
        """The helper process for a pool of containers.

        wasmer-sdk adds ~40 MB to the process that forks, which slows every fork; containers that may
        use it get a zygote of their own, so Linux and wasmtime containers keep forking from a lean one.
        """
        with self._lock:
            zyg = self._zygotes.get(pool)
            if zyg is None or not zyg.alive():
                prepare = ("wasmer",) if pool == "wasmer" else ()
                zyg = ZygoteClient(self.root, self.default_engine, self._publish, home=self.home, prepare=prepare,
                                   has_subscribers=lambda: bool(self._subscribers),
                                   record=self._recorder is not None)
                self._zygotes[pool] = zyg
            return zyg

    def _pool_for(self, bundle: str, annotations: dict[str, str] | None) -> str:
        from wasmlab.runtime.handlers.detect import engines_wanted

        path = os.path.join(bundle, "config.json")
        try:
            key = (path, os.stat(path).st_mtime_ns)
        except OSError:
            return "main"
        pool = None if annotations else self._pools.get(key)
        if pool is None:
            import json

            try:
                with open(path) as fh:
                    anns = dict(json.load(fh).get("annotations") or {})
            except (OSError, ValueError, AttributeError):
                anns = {}
            anns.update(annotations or {})
            pool = "wasmer" if "wasmer" in engines_wanted(anns, self.default_engine) else "main"
            if not annotations:
                self._pools[key] = pool
        return pool

    def _settle(self, container_id: str | None) -> None:
        """`run` returns as soon as the workload's exit is known; the zygote reaps and deletes right after.
        Looking at such a container through this Runtime waits for that, so it is seen deleted (or stopped,
        when kept), never half-gone.

        At the other end, a `run` starts its workload before the zygote writes its state: a look at a container
        whose run is in flight (a signal passed on, at once, by a foreground run) waits until that state is
        written. Only a look during that window pays (one round trip); the start path pays nothing."""
        if self._running:
            self._sync_running(container_id)
        for zyg in list(self._zygotes.values()):
            for orphan in zyg.settle(container_id):
                self._delete_orphan(orphan)

    def _sync_running(self, container_id: str | None) -> None:
        waiting: dict[int, ZygoteClient] = {}
        for cid, zyg in list(self._running.items()):
            if container_id in (None, cid) and not os.path.exists(StateDir(self.root, cid).state_file):
                waiting[id(zyg)] = zyg
        for zyg in waiting.values():
            try:
                zyg.sync()
            except WasmlabError:
                pass  # gone or stuck: the look finds what there is

    def _delete_orphan(self, container_id: str) -> None:
        """A `run` container its zygote was to delete, but the zygote died first: delete it here, once its
        process is gone (it reported its exit already; the host's init reaps it)."""
        sd = StateDir(self.root, container_id)
        try:
            state = sd.read()
        except WasmlabError:
            return
        pidfd.wait_gone(int(state.get("pid") or 0), state.get("pid_start"), timeout=5.0)
        try:
            Containers.delete(self, container_id, force=True)
        except WasmlabError:
            pass
        self._owners.pop(container_id, None)

    def _wait_unowned(self, container_id: str, timeout: float | None) -> ExitRecord:
        """wait() for a container whose zygote died: watch its process through a pidfd. A Wasm init writes
        its own exit record then; a native one's status went to the host's init, so it is recorded unknown."""
        sd = StateDir(self.root, container_id)
        state = sd.read()
        rec = sd.read_exit()
        if rec is not None:
            return rec
        if not pidfd.wait_gone(int(state.get("pid") or 0), state.get("pid_start"), timeout):
            raise TimeoutError(f"container {container_id} still running after {timeout} s")
        with sd.lock():
            rec = sd.read_exit()
            if rec is None:
                rec = ExitRecord(exit_code=None, finished_at=time.time())
                sd.write_exit(rec)
        return rec

    def close(self) -> None:
        if self._recorder is not None:
            self._settle(None)  # the final figures of every run that ended arrive before the answer
            self._recorder.flush()  # while the zygotes still serve: enriching a row may run a baseline's hello
        with self._lock:
            for zyg in self._zygotes.values():
                zyg.close()
            self._zygotes.clear()
            self._owners.clear()
        if self._recorder is not None:
            self._recorder.flush()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- verbs that fork ---------------------------------------------------------------------------------------
    def create(self, container_id: str, bundle: str, *, stdin: int | None = None, stdout: int | None = None,
               stderr: int | None = None, annotations: dict[str, str] | None = None,
               pid_file: str | None = None, console_socket: str | None = None,
               log: str | None = None, log_max: int = 0, rm_with: tuple[str, str] = ("", ""),
               with_caller: bool = False) -> dict[str, Any]:
        """Create a container from a bundle; returns its state (status 'created').

        With LOG (a folder), stdout and stderr go to LOG/ctr.log as k8s-file records, written by the zygote
        (which outlives this process), under a cap of LOG_MAX bytes (0: none); stdout and stderr are ignored.
        RM_WITH (a `--rm` container's own folder outside the runtime, and its name's link): if it ends after
        this process is gone, its zygote deletes it and removes those (as podman's conmon does).
        WITH_CALLER: it dies with this process (a build's RUN step): its zygote kills it once this process is gone.
        Creates sent from several threads at once are forked side by side by the zygote."""
        check_id(container_id)
        bundle = os.path.abspath(bundle)
        zyg = self.zygote(self._pool_for(bundle, annotations))
        self._owners[container_id] = zyg
        return dict(zyg.create(container_id, bundle, stdio=(stdin, stdout, stderr),
                                         annotations=annotations, pid_file=pid_file, console_socket=console_socket,
                               log=log, log_max=log_max, rm_with=rm_with, with_caller=with_caller))

    def pin_namespaces(self, folder: str, hostname: str | None = None) -> dict[str, str]:
        """A pod's network, IPC and UTS namespaces, made by the zygote and pinned under FOLDER (as CRI-O's pinns):
        {OCI namespace type: path}; its loopback is up and its hostname set. Undo with nspin.unpin(FOLDER)."""
        return self.zygote().pin(os.path.abspath(folder), hostname)

    def wait(self, container_id: str, timeout: float | None = None) -> ExitRecord:
        """Block until the container exits; returns its exit record."""
        check_id(container_id)
        zyg = self._owners.get(container_id) or self.zygote()
        try:
            return zyg.wait(container_id, timeout)
        except ZygoteGone:
            return self._wait_unowned(container_id, timeout)

    def run(self, container_id: str, bundle: str, *, stdin: bytes | None = None,
            annotations: dict[str, str] | None = None, timeout: float | None = None,
            keep: bool = False, stdio: tuple[int | None, int | None, int | None] | None = None,
            on_output: Callable[[int, bytes], None] | None = None,
            on_sent: Callable[[], None] | None = None, rm_with: tuple[str, str] = ("", "")) -> RunResult:
        """Create, start, wait for and delete a container; returns its output, exit code and timings.

        With stdio (stdin, stdout, stderr descriptors, which stay the caller's), the container writes there
        instead, and the result carries no output. With on_output, its output is handed to on_output(1 for
        stdout or 2, bytes) as it comes, from the calling thread (no relay thread to start), and not kept.

        on_sent() is called (on the calling thread) once the request is on its way: from then on this Runtime
        finds the container (kill, state, wait_stopped wait until the zygote has recorded it, if need be). If
        the run is interrupted (KeyboardInterrupt), the container is recorded when this raises: the caller can
        kill it. RM_WITH: as create's (a `--rm` container's folder and name link, removed with it by its zygote
        if it ends after this process is gone)."""
        check_id(container_id)
        bundle = os.path.abspath(bundle)
        zyg = self.zygote(self._pool_for(bundle, annotations))
        self._running[container_id] = zyg
        try:
            result: RunResult = zyg.run(container_id, bundle, stdin=stdin, annotations=annotations,
                                        timeout=timeout, keep=keep, stdio=stdio, on_output=on_output,
                                        on_sent=on_sent, rm_with=rm_with)
        except BaseException as exc:
            if not isinstance(exc, WasmlabError):
                self._sync_running(container_id)
            raise
        finally:
            self._running.pop(container_id, None)
        if zyg.dead():
            self._settle(container_id)  # nobody else will delete it (or know when it is done)
        return result

    def delete(self, container_id: str, *, force: bool = False) -> None:
        if self._recorder is not None:  # a detached run whose caller exited: its record goes with the folder
            self._recorder.collect_one(str(self._dir(container_id).path))
        super().delete(container_id, force=force)
        self._owners.pop(container_id, None)

    def exec(self, container_id: str, args: list[str], *, env: list[str] | tuple[str, ...] = (),
             cwd: str | None = None, user: tuple[int, int] | None = None,
             stdio: tuple[int, int, int] | None = None, tty: bool = False, interactive: bool = True,
             sig_proxy: bool = False) -> int:
        """Run a new process in a running container (podman exec); returns its exit status.

        This process has threads (the zygote's reader), so it never forks into a container itself: a
        fresh single-threaded helper (`python -m wasmlab.runtime.execute`) joins the container, with
        STDIO (default: this process's 0, 1, 2). A typed error comes back through a pipe and is raised.

        With TTY the process gets a pty of the container's devpts, handed over the OCI console socket: the
        user's terminal (STDIO[0], when it is one) is put in raw mode and restored, the window size follows,
        and, with INTERACTIVE, what is typed goes to the process (^C and ^D included). The helper runs in a
        session of its own; with SIG_PROXY (from the main thread) SIGINT, SIGTERM and SIGHUP sent to this
        process reach the exec'd process's group, and a second one kills it.
        """
        import json
        import subprocess
        import sys

        from wasmlab.runtime.errors import error_from_dict
        from wasmlab.runtime.execute import check_running, process_for

        state = self.state(container_id)
        check_running(state["status"], container_id)
        request: dict[str, Any] = {"state": state,
                                   "process": process_for(state, list(args), env=env, cwd=cwd, user=user)}
        sinks = stdio or (0, 1, 2)
        console = None
        if tty:
            from wasmlab.runtime.terminal import ConsoleSocket

            console = ConsoleSocket()
            request["console_socket"] = console.path
            request["process"]["terminal"] = True
        req_r, req_w = os.pipe2(os.O_CLOEXEC)
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        try:
            helper = subprocess.Popen([sys.executable, "-m", "wasmlab.runtime.execute", str(req_r), str(rep_w)],
                                      stdin=subprocess.DEVNULL if tty else sinks[0], stdout=sinks[1],
                                      stderr=sinks[2], pass_fds=(req_r, rep_w), close_fds=True,
                                      start_new_session=True)
        except BaseException:
            os.close(req_w)
            os.close(rep_r)
            if console is not None:
                console.close()
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        proxy = None
        if sig_proxy and threading.current_thread() is threading.main_thread():
            from wasmlab.runtime.signals import Forwarder

            proxy = Forwarder((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
            proxy.target(helper.send_signal)  # the helper passes them on, and escalates
        try:
            with os.fdopen(req_w, "wb") as fh:
                fh.write(json.dumps(request).encode())
            if console is not None:
                self._attach_console(console, helper.pid, sinks, interactive)
            with os.fdopen(rep_r, "rb") as fh:
                report = fh.read()
        finally:
            if console is not None:
                console.close()
            code = helper.wait()
            if proxy is not None:
                proxy.close()
        if report:
            raise error_from_dict(json.loads(report))
        return code & 0xFF if code >= 0 else 128 - code

    @staticmethod
    def _attach_console(console: Any, helper_pid: int, sinks: tuple[int, int, int], interactive: bool) -> None:
        """The exec'd process's terminal, to the user's until the process ends (the helper exits with it)."""
        from wasmlab.runtime import terminal

        watch = os.pidfd_open(helper_pid)
        try:
            try:
                master = console.receive(30, watch)
            except WasmlabError:
                return  # the helper ended first: its report says why
            user = sinks[0] if os.isatty(sinks[0]) else sinks[1] if os.isatty(sinks[1]) else None
            try:
                with terminal.raw_mode(sinks[0] if interactive else None, output=sinks[1]), \
                        terminal.window_follower(master, user):
                    terminal.relay(master, sinks[0] if interactive else None, (sinks[1],), watch)
            finally:
                os.close(master)
        finally:
            os.close(watch)
