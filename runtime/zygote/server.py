"""The zygote's server: a lean single-threaded process that forks containers and reports their exits."""

from __future__ import annotations

import gc
import os
import select
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import SetupError, WasmlabError
from wasmlab.runtime.store.atomic import remove_tree
from wasmlab.runtime.store.state import ExitRecord, StateDir, decode_wait_status, remove_root_if_empty
from wasmlab.runtime.zygote import protocol as p

BATCH = 4  # creates forked together at most (a pod's app containers, sent side by side)
RM_LATER = 64  # `--rm` containers reaped while their caller lived, whose folders it is to remove: the last few


@dataclass
class _Live:
    id: str
    pid: int
    sd: StateDir
    chan: Any
    cgroup: Any
    created_ns: int
    timings: dict[str, float]
    annotations: dict[str, str] = field(default_factory=dict)
    handler: str = ""
    reports: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    run_rid: int | None = None      # a `run` request answered at exit, in one message
    reported: ExitRecord | None = None  # the exit the init reported itself (before it was reaped)
    exited: bool = False            # the caller was told the workload is over
    events: bool = True             # somebody subscribed: send created/reaped events too
    record: bool = False            # somebody records runs: send the final figures once reaped
    remove: bool = False            # `run` without keep: the zygote deletes the container itself
    rm_folder: str = ""             # `--rm`: its caller's folder for it, removed here if the caller is gone
    rm_link: str = ""               # `--rm`: its name's link, removed with that folder while it names this id
    with_caller: bool = False       # killed once its caller is gone (a build's RUN step)
    settles: list[dict[str, int]] = field(default_factory=list)  # `settle` requests waiting on it (and others)
    logs: list[int] = field(default_factory=list)  # read ends of its stdout and stderr, relayed into its log
    exit_memory: dict[str, int] = field(default_factory=dict)  # the cgroup's figures when the exit was reported


class Zygote:
    def __init__(self, sock: socket.socket, root: str, default_engine: str, prepare: tuple[str, ...] = ()) -> None:
        from wasmlab.runtime import init, launch  # noqa: F401 - imported now, before any fork
        from wasmlab.runtime.handlers import registry
        from wasmlab.runtime.linux import syscalls as sc

        self.sock = sock
        self.root = root
        self.default_engine = default_engine
        warm = tuple(dict.fromkeys(("wasmtime", *prepare)))
        self.handlers = registry.load(prepare=warm)
        self.prepared: set[str] = set(warm)
        self.plans: dict[tuple[Any, ...], Any] = {}
        self.live: dict[int, _Live] = {}
        self.logs: dict[int, _LogPipe] = {}  # read end -> where it goes (outlives the container until EOF)
        self.client_gone = False
        # `--rm` containers reaped while their caller lived (id -> what is left of them): the caller removes
        # them; if it dies first (before it could), they go when this zygote sees it gone (_lost_client).
        self.rm_later: dict[str, _RmLater] = {}
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        from wasmlab.runtime.handlers.wasmtime import install_stop_handlers

        install_stop_handlers()  # inherited by every Wasm init; execve resets them for native ones
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self.sock, selectors.EVENT_READ, "client")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "signal")
        # Objects that exist now are never collected: the GC then leaves their pages alone, so forked
        # containers share them instead of copying them.
        gc.collect()
        gc.freeze()

    def send(self, msg: p.Message) -> None:
        if self.client_gone:
            return
        try:
            self.sock.send(msg.encode())
        except OSError:
            self._lost_client()

    def _lost_client(self) -> None:
        """The caller is gone (killed, or done): its `--rm` containers that have ended and that it had not
        removed yet go now, as podman's conmon removes a --rm container whatever became of its client."""
        if self.client_gone:
            return
        self.client_gone = True
        for live in self.live.values():
            if live.with_caller:
                _kill_with_caller(live)
        for cid, left in list(self.rm_later.items()):
            del self.rm_later[cid]
            if os.path.lexists(left.folder):
                _remove_rest(cid, left)

    def serve(self) -> None:
        while not (self.client_gone and not self.live and not self.logs):
            for key, _ in self.sel.select(timeout=1.0 if self.client_gone else None):
                if key.data == "client":
                    self._on_client()
                elif isinstance(key.data, _LogPipe):
                    # An earlier event of this batch may have drained and closed it (an exit drains the
                    # container's logs), and the number may even name a new pipe by now: only the same one.
                    if self.logs.get(key.fd) is key.data:
                        self._relay(key.fd, key.data)
                elif key.data == "signal":
                    try:
                        os.read(self.wake_r, 512)
                    except BlockingIOError:
                        pass
                    self._reap()
                else:
                    self._on_container(key.data)
            if self.client_gone:
                self._reap()

    def _on_client(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, p.MAX_MSG, 8)
        except OSError:
            data, fds = b"", []
        self._on_message(data, fds, gather=True)

    def _create_together(self, first: p.Create, first_fds: list[int]) -> None:
        """A create, and the creates that arrive while its init sets up (a pod's containers, sent side by side
        from threads): each init is forked as soon as its create is read, and each is answered once it is ready,
        oldest first, so the inits set up at once instead of one after the other. Reading stops at the first
        other message (handled once the batch is answered, in order) or at BATCH creates."""
        pending: list[tuple[p.Create, Any]] = []
        after: tuple[bytes, list[int]] | None = None
        taken = 0

        def fork(msg: p.Create, fds: list[int]) -> None:
            nonlocal taken
            taken += 1
            try:
                forked = self._create_fork(msg, fds, [f for _, f in pending])
            finally:
                for fd in fds:
                    os.close(fd)
            if forked is not None:
                pending.append((msg, forked))

        fork(first, first_fds)
        while pending:
            waits: list[Any] = [self.sock] if after is None and taken < BATCH else []
            waits.append(pending[0][1][0].channel_fd)
            ready = select.select(waits, [], [])[0]
            if self.sock in ready:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, p.MAX_MSG, 8)
                except OSError:
                    data, fds = b"", []
                msg = p.decode(data) if data else None
                if isinstance(msg, p.Create):
                    fork(msg, fds)
                else:
                    after = (data, fds)
                continue
            msg, forked = pending.pop(0)
            self._create_finish(msg, forked)
        if after is not None:
            self._on_message(*after)

    def _on_message(self, data: bytes, fds: list[int], *, gather: bool = False) -> None:
        """One message from the client (its descriptors closed here). With GATHER, a create starts a batch of the
        creates that come while its init sets up; a message read while a batch was gathered is handled alone."""
        if not data:
            self._lost_client()
            try:
                self.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            return
        try:
            msg = p.decode(data)
            if gather and isinstance(msg, p.Create):
                owned, fds = fds, []  # closed by _create_together, once the inits are forked
                self._create_together(msg, owned)
                return
            if isinstance(msg, (p.Create, p.Run)):
                self._create(msg, fds)
            elif isinstance(msg, p.Settle):
                self._settle(msg.rid, set(msg.ids))
            elif isinstance(msg, p.Pin):
                self._pin(msg)
            elif isinstance(msg, p.Ping):
                self.send(p.Reply(msg.rid, pid=os.getpid(), modules=sorted(sys.modules) if msg.modules else []))
        finally:
            for fd in fds:
                os.close(fd)

    def _pin(self, msg: p.Pin) -> None:
        """A pod's namespaces, made here because unshare needs a single-threaded process (this one)."""
        from wasmlab.runtime.linux import nspin

        try:
            paths = nspin.pin(msg.folder, msg.hostname)
        except OSError as exc:
            err = SetupError(f"cannot make the pod's namespaces: {exc.strerror or exc}", "run as root")
            self.send(p.Reply(msg.rid, ok=False, error=err.as_dict()))
            return
        self.send(p.Reply(msg.rid, state=dict(paths)))

    def _settle(self, rid: int, ids: set[str]) -> None:
        waiting = [live for live in self.live.values() if live.id in ids]
        if not waiting:
            self.send(p.Reply(rid))
            return
        token = {"rid": rid, "left": len(waiting)}
        for live in waiting:
            live.settles.append(token)

    def _plan(self, bundle: str, cid: str, annotations: dict[str, str]) -> Any:
        from wasmlab.runtime import init
        from wasmlab.runtime.spec import runtime as spec_mod

        try:
            st = os.stat(os.path.join(bundle, "config.json"))
            key: tuple[Any, ...] | None = (bundle, st.st_mtime_ns, st.st_size, st.st_ino,
                                           tuple(sorted(annotations.items())))
        except OSError:
            key = None
        cached = self.plans.get(key) if key else None
        if cached is None:
            spec = spec_mod.load(bundle)
            if annotations:
                spec.raw["annotations"] = spec.annotations | annotations
            cached = init.plan(spec, cid)
            if key:
                if len(self.plans) > 256:
                    self.plans.clear()
                self.plans[key] = cached
        return cached.for_container(cid)

    def _own_fds(self) -> tuple[int, ...]:
        """What a new container must not inherit: this zygote's socket, wake-up pipe, selector and the other
        containers' channels (a Wasm init never execs, so O_CLOEXEC alone would not drop them)."""
        own = [self.sock.fileno(), self.wake_r, self.wake_w, self.sel.fileno()]
        own.extend(live.chan.sock.fileno() for live in self.live.values())
        own.extend(self.logs)
        own.extend(pipe.shared.writer.fd for pipe in self.logs.values())
        return tuple(fd for fd in own if fd >= 0)

    def _create(self, msg: p.Create | p.Run, fds: list[int]) -> None:
        pending = self._create_fork(msg, fds, [])
        if pending is not None:
            self._create_finish(msg, pending)

    def _create_fork(self, msg: p.Create | p.Run, fds: list[int], others: list[Any]) -> Any:
        """Fork the container's init (launch's first half); None once an error was answered. OTHERS are inits
        forked before it and not yet answered: this one must not inherit their channels."""
        from wasmlab.runtime.handlers.detect import engines_wanted
        from wasmlab.runtime.launch import fork_init

        run = isinstance(msg, p.Run)
        self._reap_now(msg.id)
        log_fds: list[int] = []
        try:
            plan = self._plan(msg.bundle, msg.id, msg.annotations)
            for engine in engines_wanted(plan.annotations, self.default_engine):
                if engine not in self.prepared and engine in self.handlers:
                    self.handlers[engine].prepare()
                    self.prepared.add(engine)
                expect = getattr(self.handlers.get(engine), "expect", None)
                if expect is not None and plan.has_process:
                    expect(plan.args, plan.env)
            stdio = (fds[0], fds[1], fds[2]) if len(fds) >= 3 else None
            if not run and msg.log and stdio is not None:  # type: ignore[union-attr]
                log_fds = self._open_log(msg.log, msg.log_max)  # type: ignore[union-attr]
                stdio = (stdio[0], log_fds[1], log_fds[3])
            forked = fork_init(plan, StateDir(self.root, msg.id), handlers=self.handlers,
                               default_engine=self.default_engine, stdio=stdio,
                               console_socket=None if run else msg.console_socket,  # type: ignore[union-attr]
                               pid_file=None if run else msg.pid_file,  # type: ignore[union-attr]
                               autostart=run, owner="zygote", record_exit=True,
                               result_fd=fds[3] if run and len(fds) >= 4 else None,
                               close_in_child=self._own_fds() + tuple(f.channel_fd for f, _, _ in others))
        except WasmlabError as exc:
            self._close_log(log_fds, failed=True)
            self.send(p.Reply(msg.rid, ok=False, error=exc.as_dict()))
            return None
        except OSError as exc:
            self._close_log(log_fds, failed=True)
            err = SetupError(f"cannot create the container: {exc.strerror or exc}", "see `wasmlab doctor`")
            self.send(p.Reply(msg.rid, ok=False, error=err.as_dict()))
            return None
        self._close_log(log_fds)  # the write ends are the init's alone: an init forked next must not hold them
        return forked, plan, log_fds

    def _create_finish(self, msg: p.Create | p.Run, pending: Any) -> None:
        """Launch's second half: the init reports ready; the container is live, and the caller answered."""
        from wasmlab.runtime.launch import finish

        forked, plan, log_fds = pending
        run = isinstance(msg, p.Run)
        try:
            launched = finish(forked)
        except (WasmlabError, OSError) as exc:
            for r in log_fds[0::2]:
                try:
                    self.sel.unregister(r)
                except (KeyError, ValueError):
                    pass
                self._end_log(r)
            err = exc if isinstance(exc, WasmlabError) else SetupError(
                f"cannot create the container: {exc.strerror or exc}", "see `wasmlab doctor`")
            self.send(p.Reply(msg.rid, ok=False, error=err.as_dict()))
            return
        live = _Live(msg.id, launched.pid, StateDir(self.root, msg.id), launched.channel, launched.cgroup,
                     time.perf_counter_ns(), launched.timings, plan.annotations,
                     str((launched.decision or {}).get("handler") or ""), state=launched.state,
                     run_rid=msg.rid if run else None, remove=run and msg.remove,  # type: ignore[union-attr]
                     events=msg.events, record=msg.record, rm_folder=msg.rm_folder, rm_link=msg.rm_link,
                     with_caller=getattr(msg, "with_caller", False))
        live.logs = log_fds[0::2]
        # The request's time on the monotonic clock every process shares: a caller's own figures (the first
        # byte its relay read) are measured from it too.
        live.timings.setdefault("request_s", live.created_ns / 1e9 - live.timings.get("create_ms", 0.0) / 1e3)
        self.live[launched.pid] = live
        self.sel.register(launched.channel.sock, selectors.EVENT_READ, live)
        if live.with_caller and self.client_gone:
            _kill_with_caller(live)  # its caller went while it was set up
        if not run:
            self.send(p.Reply(msg.rid, state=launched.state, timings=launched.timings,
                              decision=launched.decision or {}))
        if live.events:
            self.send(p.ContainerCreated(live.id, live.pid, launched.decision or {}))

    def _on_container(self, live: _Live) -> None:
        if live.chan.sock.fileno() < 0:
            return
        msg = live.chan.recv(0)
        if msg is None:
            self._drop_channel(live)
            return
        self._take(live, msg)

    def _drop_channel(self, live: _Live) -> None:
        try:
            self.sel.unregister(live.chan.sock)
        except (KeyError, ValueError):
            pass
        live.chan.sock.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._finish(pid, status, usage)

    def _reap_now(self, cid: str) -> None:
        """A new container wants the id of one whose exit was reported but not yet reaped: reap it first."""
        for pid, live in list(self.live.items()):
            # Only one that has said it is exiting: waiting for a running one would block this zygote (and
            # every caller) for as long as it runs. A live one makes the new create fail: ContainerExists.
            if live.id == cid and live.exited:
                try:
                    _, status, usage = os.wait4(pid, 0)
                except ChildProcessError:
                    self.live.pop(pid, None)
                    continue
                self._finish(pid, status, usage)

    def _drain(self, live: _Live) -> None:
        while live.chan.sock.fileno() >= 0:
            msg = live.chan.recv(0)
            if msg is None:
                self._drop_channel(live)
                return
            self._take(live, msg)

    def _take(self, live: _Live, msg: dict[str, Any]) -> None:
        """A message from a container's init (the init's own protocol: see init.Channel)."""
        if msg.get("t") == "reports":
            live.reports.update(msg["values"])
            if "exit_code" in msg and live.reported is None:
                live.reported = ExitRecord(exit_code=int(msg["exit_code"]), finished_at=time.time(),
                                           max_rss_kb=int(msg.get("max_rss_kb") or 0))
                self._exited(live, live.reported, {})
        elif msg.get("t") == "error":
            live.reports["error"] = msg["error"]
            self.send(p.ContainerError(live.id, msg["error"]))

    def _exited(self, live: _Live, rec: ExitRecord, memory: dict[str, int], *, reaped: bool = False) -> None:
        """Tell the caller the workload is over: a Wasm init says so itself, before the kernel's teardown
        of its namespaces and memory (a millisecond or more); others when they are reaped."""
        live.exited = True
        # From the create request (create_ms of it passed before created_ns) to the exit being known.
        live.timings["exit_ms"] = (time.perf_counter_ns() - live.created_ns) / 1e6 + live.timings.get("create_ms", 0.0)
        self._drain_logs(live)  # whoever hears of the exit finds every line in the log
        # The cgroup's figures now, in case a delete removes it before the reap. A detached container's exit
        # wakes callers that may delete it at once through another zygote: read before telling them. A `run`
        # request's caller deletes through this zygote, after this returns: read after its answer.
        keep = not reaped and live.cgroup is not None and (live.record or live.events)
        if keep and live.run_rid is None and live.cgroup is not None:
            live.exit_memory = live.cgroup.memory()
        # The state says stopped from now on, so whoever hears of the exit and looks sees it stopped, never
        # running. A container about to be deleted needs that only when someone listens to events (a look
        # through the Runtime that ran it waits for the deletion anyway); the reaper refines the record.
        if not reaped and (not live.remove or live.events):
            try:
                live.sd.write_exit(rec)
            except OSError:
                pass
        # One message for a `run`: the reply doubles as the exit event (the client publishes it).
        self.send(p.ContainerExited(live.id, rec, live.reports, live.timings, memory, rid=live.run_rid,
                                    state=live.state if live.run_rid is not None else None))
        if keep and live.run_rid is not None and live.cgroup is not None:
            live.exit_memory = live.cgroup.memory()

    def _finish(self, pid: int, status: int, usage: Any) -> None:
        live = self.live.pop(pid, None)
        if live is None:
            return
        live.timings["reaped_ms"] = (time.perf_counter_ns() - live.created_ns) / 1e6 + live.timings.get(
            "create_ms", 0.0)
        self._drain(live)  # the last reports come before the exit record
        self._drain_logs(live)
        oom = bool(live.cgroup and live.cgroup.oom_killed())
        if live.reported is not None:
            # The init said how its workload ended; what killed the process afterwards (a `--rm` delete,
            # SIGKILL during teardown) is not the workload's exit.
            code, sig = live.reported.exit_code, None
        else:
            code, sig = decode_wait_status(status)
            if oom:
                code = 137
        rec = ExitRecord(exit_code=code, signal=sig, oom_killed=oom, finished_at=time.time(),
                         max_rss_kb=usage.ru_maxrss, user_ms=usage.ru_utime * 1e3, system_ms=usage.ru_stime * 1e3)
        memory = live.cgroup.memory() if live.cgroup else {}
        if "peak" not in memory and live.exit_memory:
            memory = live.exit_memory  # its cgroup went with a delete that came before the reap
        # A `--rm` container whose caller is gone: nobody else will remove it (podman's conmon does the same).
        orphan = bool(live.rm_folder) and self.client_gone
        if not live.remove and not orphan and os.path.isdir(live.sd.path):
            try:
                live.sd.write_exit(rec)  # before the answer: whoever it wakes reads a stopped state
            except OSError:
                pass  # deleted meanwhile
        if not live.exited:
            self._exited(live, rec, memory, reaped=True)
        reaped: p.ContainerReaped | None = None
        if live.events or live.record:
            timings = dict(live.timings)
            timings["lifetime_ms"] = (time.perf_counter_ns() - live.created_ns) / 1e6 + timings.get("create_ms", 0.0)
            reaped = p.ContainerReaped(live.id, rec, memory, timings, live.reports, live.handler, live.annotations)
            if live.record and self.client_gone and not live.remove and not orphan:
                _leave(live.sd, reaped)  # its client exited (`run -d`): the next one records it
                reaped = None
        if live.remove or orphan:
            # After the answer, off the caller's path; before this zygote reads its next request, so a new
            # container with the same id never meets the old one's folder or cgroup.
            t_delete = time.perf_counter_ns()
            if live.cgroup is not None:
                live.cgroup.remove()
            live.sd.remove()
            if reaped is not None:
                reaped.timings["delete_ms"] = (time.perf_counter_ns() - t_delete) / 1e6
        if orphan:
            _remove_rest(live.id, _RmLater(live.rm_folder, live.rm_link))
        elif live.rm_folder:
            self.rm_later[live.id] = _RmLater(live.rm_folder, live.rm_link, pid,
                                              None if live.remove else live.sd, None if live.remove else live.cgroup)
            while len(self.rm_later) > RM_LATER:
                del self.rm_later[next(iter(self.rm_later))]
        if reaped is not None:
            self.send(reaped)
        for token in live.settles:
            token["left"] -= 1
            if token["left"] == 0:
                self.send(p.Reply(token["rid"]))
        self._warm(live.reports)

    # -- the container log: stdout and stderr relayed as k8s-file records by the process that outlives the CLI --
    def _open_log(self, folder: str, max_size: int) -> list[int]:
        """[out_r, out_w, err_r, err_w]: the write ends become the container's stdout and stderr."""
        from wasmlab.runtime.store.ctrlog import LogWriter

        writer = LogWriter(folder, max_size)
        fds: list[int] = []
        try:
            for _ in range(2):
                r, w = os.pipe2(os.O_CLOEXEC)
                os.set_blocking(r, False)
                fds += [r, w]
        except OSError:
            for fd in fds:
                os.close(fd)
            writer.close()
            raise
        shared = _LogWriters(writer, 2)
        self.logs[fds[0]] = _LogPipe(shared, b"stdout")
        self.logs[fds[2]] = _LogPipe(shared, b"stderr")
        return fds

    def _close_log(self, fds: list[int], *, failed: bool = False) -> None:
        """After the fork: the write ends are the container's alone. On failure the read ends go too."""
        if not fds:
            return
        os.close(fds[1])
        os.close(fds[3])
        for r in (fds[0], fds[2]):
            if failed:
                self._end_log(r)
            else:
                self.sel.register(r, selectors.EVENT_READ, self.logs[r])

    def _relay(self, fd: int, pipe: _LogPipe) -> bool:
        """Move what the pipe holds into the log; False once it is at EOF (and closed)."""
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            self._end_log(fd)
            return False
        pipe.shared.writer.write(pipe.stream, chunk)
        return True

    def _end_log(self, fd: int) -> None:
        pipe = self.logs.pop(fd, None)
        if pipe is None:
            return  # already ended: never close a number twice (it may be somebody else's by now)
        os.close(fd)
        pipe.shared.open -= 1
        if pipe.shared.open == 0:
            pipe.shared.writer.close()

    def _drain_logs(self, live: _Live) -> None:
        for fd in live.logs:
            pipe = self.logs.get(fd)
            while pipe is not None and self._relay(fd, pipe):
                try:  # stop at an empty pipe (a writer may still hold it: a daemon the pid namespace kept)
                    if not select.select([fd], [], [], 0)[0]:
                        break
                except (OSError, ValueError):
                    break
        live.logs = [fd for fd in live.logs if fd in self.logs]

    def _warm(self, reports: dict[str, Any]) -> None:
        """A container compiled, loaded or instantiated a module itself: the next fork gets it ready-made."""
        digest = reports.get("module_digest")
        engine = reports.get("engine")
        learned = reports.get("cache") != "instance" or reports.get("module_identity")
        if digest and learned and engine in self.handlers:
            handler = self.handlers[engine]
            warm = getattr(handler, "warm", None)
            if warm is not None:
                warm(digest, instantiate=bool(reports.get("preinstantiable")),
                     identity=reports.get("module_identity"))


@dataclass
class _RmLater:
    """What is left of a reaped `--rm` container: its caller's folder and name link, and (if not deleted yet)
    its state folder and cgroup, which are removed only while its state still names the process reaped."""

    folder: str
    link: str = ""
    pid: int = 0
    sd: StateDir | None = None
    cgroup: Any = None


def _kill_with_caller(live: _Live) -> None:
    """SIGKILL a container that dies with its caller: its init, and with it its whole pid namespace (it is this
    zygote's child and not yet reaped, so the pid still names it)."""
    try:
        os.kill(live.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_rest(cid: str, left: _RmLater) -> None:
    """Remove a `--rm` container's runtime state (if still the one reaped), then its caller's folder: renamed
    aside to a hidden name first, so that nobody lists it half removed, and its name's link."""
    if left.sd is not None:
        try:
            same = int(left.sd.read().get("pid") or 0) == left.pid
        except WasmlabError:
            same = False
        if same:
            if left.cgroup is not None:
                left.cgroup.remove()
            left.sd.remove()
    parent, base = os.path.split(left.folder.rstrip("/"))
    aside = os.path.join(parent, f".{base}.removed-{os.getpid()}")
    try:
        os.rename(left.folder, aside)
    except OSError:
        aside = left.folder
    if left.link:
        try:
            if os.readlink(left.link) == cid:
                os.unlink(left.link)
        except OSError:
            pass
    remove_tree(aside)


@dataclass
class _LogWriters:
    writer: Any         # store.ctrlog.LogWriter (imported on first use)
    open: int           # pipes still feeding it


@dataclass(eq=False)
class _LogPipe:
    shared: _LogWriters
    stream: bytes


def _serve_args(argv: list[str]) -> dict[str, Any]:
    """--fd N --root DIR [--engine NAME] [--prepare=NAME]...: the ZygoteClient's own command line. Not
    argparse: its help formatter imports shutil, and with it zlib, bz2 and lzma, into every fork."""
    args: dict[str, Any] = {"engine": "wasmtime", "prepare": []}
    items = iter(argv)
    for item in items:
        key, eq, value = item.partition("=")
        if key not in ("--fd", "--root", "--engine", "--prepare"):
            raise SystemExit(f"wasmlab-zygote: unknown argument {item!r} (it is started by ZygoteClient)")
        if not eq:
            value = next(items, "")
        if key == "--prepare":
            args["prepare"].append(value)
        else:
            args[key[2:]] = value
    if "fd" not in args or "root" not in args:
        raise SystemExit("wasmlab-zygote: --fd and --root are required (it is started by ZygoteClient)")
    return args


def serve_main(argv: list[str] | None = None) -> int:
    args = _serve_args(sys.argv[1:] if argv is None else argv)
    fd = int(args["fd"])
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    try:
        zygote = Zygote(sock, args["root"], args["engine"], tuple(args["prepare"]))
    except Exception as exc:
        sock.send(p.Fatal(f"{type(exc).__name__}: {exc}").encode())
        return 1
    sock.send(p.Hello(os.getpid()).encode())
    zygote.serve()
    remove_root_if_empty(args["root"])  # the last one out of a lab's state root takes it along
    return 0


def _leave(sd: StateDir, msg: p.ContainerReaped) -> None:
    """Write the final figures into the state folder, whole or not at all."""
    tmp = os.path.join(sd.path, f".{p.REAPED_FILE}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(msg.encode())
        os.rename(tmp, os.path.join(sd.path, p.REAPED_FILE))
    except OSError:
        pass  # deleted meanwhile
