"""The zygote: a lean single-threaded helper process that forks containers for the Runtime API, and its client."""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import SetupError, WasmlabError, ZygoteGone, error_from_dict
from wasmlab.runtime.lifecycle import RunResult
from wasmlab.runtime.store.state import ExitRecord, StateDir

MAX_MSG = 1 << 20
# The environment of the processes that become containers (never the workload's: that is process.env).
ENGINE_ENV = {
    "MALLOC_ARENA_MAX": "1",      # one malloc arena: a Wasm init's extra threads would each get their own
    "TOKIO_WORKER_THREADS": "1",  # wasmtime-wasi's and wasmer-sdk's tokio: one I/O worker, not one per core
}


# -- the server (runs in its own process) ---------------------------------------------------------------------


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
    exited: bool = False            # the exit was reported (possibly before the process is reaped)
    events: bool = True             # somebody subscribed: send created/reaped events too
    remove: bool = False            # `run` without keep: the zygote deletes the container itself
    settles: list[dict[str, int]] = field(default_factory=list)  # `settle` requests waiting on it (and others)


class Zygote:
    def __init__(self, sock: socket.socket, root: str, default_engine: str, prepare: tuple[str, ...] = ()) -> None:
        from wasmlab.runtime import launch, sandbox  # noqa: F401 - imported now, before any fork
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
        self.client_gone = False
        self.history: Any = None
        if os.environ.get("WASMLAB_HISTORY", "1") != "0":
            from wasmlab.runtime.metrics.history import History
            from wasmlab.runtime.store.home import lab_home

            self.history = History(lab_home() / "history.db")
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

    def send(self, msg: dict[str, Any]) -> None:
        if self.client_gone:
            return
        try:
            self.sock.send(json.dumps(msg).encode())
        except OSError:
            self.client_gone = True

    def serve(self) -> None:
        while not (self.client_gone and not self.live):
            for key, _ in self.sel.select(timeout=1.0 if self.client_gone else None):
                if key.data == "client":
                    self._on_client()
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
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MSG, 8)
        except OSError:
            data, fds = b"", []
        if not data:
            self.client_gone = True
            self.sel.unregister(self.sock)
            return
        msg = json.loads(data)
        try:
            if msg["op"] in ("create", "run"):
                self._create(msg, fds)
            elif msg["op"] == "settle":
                self._settle(msg["rid"], set(msg["ids"]))
            elif msg["op"] == "ping":
                self.send({"rid": msg["rid"], "ok": True, "pid": os.getpid()})
            else:
                self.send({"rid": msg["rid"], "ok": False,
                           "error": {"kind": "usage", "message": f"unknown op {msg['op']}", "hint": ""}})
        finally:
            for fd in fds:
                os.close(fd)

    def _settle(self, rid: int, ids: set[str]) -> None:
        """Answer once none of these containers has a process left, and each is recorded (or deleted)."""
        waiting = [live for live in self.live.values() if live.id in ids]
        if not waiting:
            self.send({"rid": rid, "ok": True})
            return
        token = {"rid": rid, "left": len(waiting)}
        for live in waiting:
            live.settles.append(token)

    def _plan(self, bundle: str, cid: str, annotations: dict[str, str]) -> Any:
        from wasmlab.runtime import sandbox
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
            cached = sandbox.plan(spec, cid)
            if key:
                if len(self.plans) > 256:
                    self.plans.clear()
                self.plans[key] = cached
        return cached.for_container(cid)

    def _create(self, msg: dict[str, Any], fds: list[int]) -> None:
        from wasmlab.runtime.handlers.detect import engines_wanted
        from wasmlab.runtime.launch import launch

        rid = msg["rid"]
        self._reap_now(msg["id"])
        try:
            plan = self._plan(msg["bundle"], msg["id"], msg.get("annotations") or {})
            for engine in engines_wanted(plan.annotations, self.default_engine):
                if engine not in self.prepared and engine in self.handlers:
                    self.handlers[engine].prepare()
                    self.prepared.add(engine)
                expect = getattr(self.handlers.get(engine), "expect", None)
                if expect is not None and plan.has_process:
                    expect(plan.args, plan.env)
            stdio = (fds[0], fds[1], fds[2]) if len(fds) >= 3 else None
            launched = launch(plan, StateDir(self.root, msg["id"]), handlers=self.handlers,
                              default_engine=self.default_engine, stdio=stdio,
                              console_socket=msg.get("console_socket"), pid_file=msg.get("pid_file"),
                              autostart=msg["op"] == "run", owner="zygote", record_exit=True,
                              result_fd=fds[3] if msg["op"] == "run" and len(fds) >= 4 else None,
                              close_in_child=self._own_fds())
        except WasmlabError as exc:
            self.send({"rid": rid, "ok": False, "error": exc.as_dict()})
            return
        except OSError as exc:
            err = SetupError(f"cannot create the container: {exc.strerror or exc}", "see `wasmlab doctor`")
            self.send({"rid": rid, "ok": False, "error": err.as_dict()})
            return
        live = _Live(msg["id"], launched.pid, StateDir(self.root, msg["id"]), launched.channel, launched.cgroup,
                     time.perf_counter_ns(), launched.timings, plan.annotations,
                     str((launched.decision or {}).get("handler") or ""), state=launched.state,
                     run_rid=rid if msg["op"] == "run" else None, remove=bool(msg.get("remove")),
                     events=bool(msg.get("events", True)))
        self.live[launched.pid] = live
        self.sel.register(launched.channel.sock, selectors.EVENT_READ, live)
        if live.run_rid is None:
            self.send({"rid": rid, "ok": True, "state": launched.state, "timings": launched.timings,
                       "decision": launched.decision})
        if live.events:
            self.send({"event": "created", "id": live.id, "pid": live.pid, "decision": launched.decision})

    def _own_fds(self) -> tuple[int, ...]:
        """What a new container must not inherit: this zygote's socket, wake-up pipe, selector and the other
        containers' channels (a Wasm init never execs, so O_CLOEXEC alone would not drop them)."""
        own = [self.sock.fileno(), self.wake_r, self.wake_w, self.sel.fileno()]
        own.extend(live.chan.sock.fileno() for live in self.live.values())
        return tuple(fd for fd in own if fd >= 0)

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
        if msg.get("t") == "reports":
            live.reports.update(msg["values"])
            if "exit_code" in msg and not live.exited:
                self._exited(live, ExitRecord(exit_code=int(msg["exit_code"]), finished_at=time.time(),
                                              max_rss_kb=int(msg.get("max_rss_kb") or 0)), {})
        elif msg.get("t") == "error":
            live.reports["error"] = msg["error"]
            self.send({"event": "error", "id": live.id, "error": msg["error"]})

    def _exited(self, live: _Live, rec: ExitRecord, memory: dict[str, int], *, reaped: bool = False) -> None:
        """Tell the caller the workload is over: a Wasm init says so itself, before the kernel's teardown
        of its namespaces and memory (a millisecond or more); others when they are reaped."""
        live.exited = True
        # The state says stopped from now on, so whoever hears of the exit and looks sees it stopped, never
        # running. A container about to be deleted needs that only when someone listens to events (a look
        # through the Runtime that ran it waits for the deletion anyway); the reaper refines the record.
        if not reaped and (not live.remove or live.events):
            try:
                live.sd.write_exit(rec)
            except OSError:
                pass
        event = {"event": "exit", "id": live.id, "exit": rec.__dict__, "reports": live.reports,
                 "timings": live.timings, "memory": memory}
        if live.run_rid is not None:
            # One message: the reply to `run` doubles as the exit event (the client publishes it).
            self.send({"rid": live.run_rid, "ok": True, "state": live.state, **event})
        else:
            self.send(event)  # `wait` needs it, whoever subscribes

    def _finish(self, pid: int, status: int, usage: Any) -> None:
        live = self.live.pop(pid, None)
        if live is None:
            return
        live.timings["reaped_ms"] = (time.perf_counter_ns() - live.created_ns) / 1e6 + live.timings.get(
            "create_ms", 0.0)
        self._drain(live)  # the last reports come before the exit record
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = 128 + sig if sig else os.WEXITSTATUS(status)
        oom = bool(live.cgroup and live.cgroup.oom_killed())
        if oom:
            code = 137
        rec = ExitRecord(exit_code=code, signal=sig, oom_killed=oom, finished_at=time.time(),
                         max_rss_kb=usage.ru_maxrss, user_ms=usage.ru_utime * 1e3, system_ms=usage.ru_stime * 1e3)
        memory = live.cgroup.memory() if live.cgroup else {}
        if not live.remove and os.path.isdir(live.sd.path):
            try:
                live.sd.write_exit(rec)  # before the answer: whoever it wakes reads a stopped state
            except OSError:
                pass  # deleted meanwhile
        if not live.exited:
            self._exited(live, rec, memory, reaped=True)
        elif live.events:
            self.send({"event": "reaped", "id": live.id, "exit": rec.__dict__, "memory": memory})
        if live.remove:
            # After the answer, off the caller's path; before this zygote reads its next request, so a new
            # container with the same id never meets the old one's folder or cgroup.
            if live.cgroup is not None:
                live.cgroup.remove()
            live.sd.remove()
        for token in live.settles:
            token["left"] -= 1
            if token["left"] == 0:
                self.send({"rid": token["rid"], "ok": True})
        self._warm(live.reports)
        self._record(live, rec, memory)

    def _record(self, live: _Live, rec: ExitRecord, memory: dict[str, int]) -> None:
        """Every run lands in the lab's history (after the exit event, off the caller's path)."""
        if self.history is None or rec.exit_code is None:
            return
        from wasmlab.runtime.metrics.history import RunRecord

        timings = dict(live.timings)
        for key in ("run_start_ms", "module_load_ms", "instantiate_ms"):
            if isinstance(live.reports.get(key), (int, float)):
                timings[key] = float(live.reports[key])
        timings["lifetime_ms"] = (time.perf_counter_ns() - live.created_ns) / 1e6 + timings.get("create_ms", 0.0)
        try:
            self.history.record(RunRecord(
                id=live.id, handler=live.handler, exit_code=rec.exit_code, started_at=time.time(),
                name=live.annotations.get("wasmlab.io/name", ""), image=live.annotations.get("wasmlab.io/image", ""),
                oom_killed=rec.oom_killed, create_ms=timings.get("create_ms", 0.0),
                total_ms=timings["lifetime_ms"], max_rss_kb=rec.max_rss_kb, cache=str(live.reports.get("cache", "")),
                timings=timings, memory=memory | {"max_rss_kb": rec.max_rss_kb}))
        except Exception:
            pass

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
        sock.send(json.dumps({"event": "fatal", "message": f"{type(exc).__name__}: {exc}"}).encode())
        return 1
    sock.send(json.dumps({"event": "hello", "pid": os.getpid()}).encode())
    zygote.serve()
    return 0


# -- the client (runs in the caller's process, any thread) ---------------------------------------------------


class ZygoteClient:
    """Talks to one zygote; safe to use from many threads at once."""

    def __init__(self, root: str, default_engine: str, publish: Callable[[dict[str, Any]], None],
                 home: str | None = None, prepare: tuple[str, ...] = (),
                 has_subscribers: Callable[[], bool] = lambda: True) -> None:
        self.root = root
        self.publish = publish
        self.has_subscribers = has_subscribers
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        if home:
            env["WASMLAB_HOME"] = home
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        env.update(ENGINE_ENV)
        os.makedirs(root, mode=0o711, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wasmlab.runtime.zygote", "--fd", str(theirs.fileno()), "--root", root,
             "--engine", default_engine, *(f"--prepare={engine}" for engine in prepare)],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            # It may outlive us as the reaper of detached containers: it must not hold our stdio open.
            stderr=None if os.environ.get("WASMLAB_DEBUG") else subprocess.DEVNULL)
        theirs.close()
        self.sock = mine
        # The zygote's death is seen through its pidfd, not only through the socket: a container it forked
        # could still hold a copy of the socket (one made before close_in_child) and hide the EOF.
        self._pidfd = os.pidfd_open(self.proc.pid)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[str, dict[str, Any]] = {}
        self._abandoned: set[int] = set()   # `run` replies made redundant by the result the init wrote itself
        # Containers whose `run` has returned while the zygote may still be reaping and deleting them
        # (it answers first): a later look at one of them waits for that (see settle).
        self._unsettled: dict[str, bool] = {}   # id -> the zygote was to delete it (run without keep)
        self._next = 0
        self._closed = False
        hello = json.loads(self.sock.recv(MAX_MSG) or b"{}")
        if hello.get("event") != "hello":
            self.proc.wait()
            raise SetupError(f"the wasmlab zygote did not start: {hello.get('message', 'no answer')}",
                             "run `wasmlab doctor`")
        self._reader = threading.Thread(target=self._read_loop, name="wasmlab-zygote-reader", daemon=True)
        self._reader.start()

    def alive(self) -> bool:
        return not self._closed and self.proc.poll() is None

    def dead(self) -> bool:
        """The zygote process itself is gone (not merely closed by us)."""
        return self.proc.poll() is not None

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._reader.join(1.0)
        if not self._reader.is_alive():
            os.close(self._pidfd)
        # The zygote exits by itself once it has no containers left (within milliseconds of seeing us
        # go); detached ones keep it (their reaper) alive after we are gone, so it is never killed here,
        # and waiting long for it would only delay `wasmlab run -d` (it used to wait 2 s).
        try:
            self.proc.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            pass

    def _read_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "sock")
        sel.register(self._pidfd, selectors.EVENT_READ, "died")
        try:
            while True:
                events = sel.select()
                if any(key.data == "died" for key, _ in events):
                    self._read_leftovers()  # what it sent before it died still counts
                    break
                try:
                    data = self.sock.recv(MAX_MSG)
                except OSError:
                    data = b""
                if not data:
                    break
                self._take(json.loads(data))
        finally:
            sel.close()
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _read_leftovers(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_MSG, socket.MSG_DONTWAIT)
            except OSError:
                return
            if not data:
                return
            self._take(json.loads(data))

    def _take(self, msg: dict[str, Any]) -> None:
        if "rid" in msg:
            if msg.get("event") == "exit" and self.has_subscribers():
                # A `run` reply is also the container's exit event (the zygote sends it once).
                self.publish({k: v for k, v in msg.items() if k not in ("rid", "ok", "state")})
            with self._cond:
                if msg["rid"] in self._abandoned:
                    self._abandoned.discard(msg["rid"])
                else:
                    self._replies[msg["rid"]] = msg
                    self._cond.notify_all()
            return
        if msg.get("event") == "exit":
            with self._cond:
                self._exits[msg["id"]] = msg  # kept for `wait`; bounded, oldest dropped first
                while len(self._exits) > 4096:
                    self._exits.pop(next(iter(self._exits)))
                self._cond.notify_all()
        self.publish(msg)

    def _send(self, msg: dict[str, Any], fds: list[int] | None = None) -> int:
        with self._cond:
            self._next += 1
            rid = self._next
        msg["rid"] = rid
        data = json.dumps(msg).encode()
        with self._send_lock:
            try:
                if fds:
                    socket.send_fds(self.sock, [data], fds)
                else:
                    self.sock.send(data)
            except OSError:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                raise ZygoteGone() from None
        return rid

    def _request(self, msg: dict[str, Any], fds: list[int] | None = None, timeout: float | None = 60) -> dict[str, Any]:
        return self._reply(self._send(msg, fds), timeout)

    def _reply(self, rid: int, timeout: float | None) -> dict[str, Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._replies or self._closed, timeout):
                raise SetupError("the wasmlab zygote did not answer", "it may be overloaded; try again")
            if rid not in self._replies:
                raise ZygoteGone()
            reply = self._replies.pop(rid)
        if not reply.get("ok"):
            raise error_from_dict(reply.get("error") or {})
        return reply

    def create(self, cid: str, bundle: str, *, stdio: tuple[int | None, int | None, int | None],
               annotations: dict[str, str] | None = None, pid_file: str | None = None,
               console_socket: str | None = None) -> dict[str, Any]:
        with self._cond:
            self._exits.pop(cid, None)
        reply = self._request({"op": "create", "id": cid, "bundle": bundle, "annotations": annotations or {},
                               "pid_file": pid_file, "console_socket": console_socket}, _stdio_fds(stdio))
        state: dict[str, Any] = reply["state"]
        state["timings"] = reply.get("timings") or {}
        return state

    def wait(self, cid: str, timeout: float | None = None) -> ExitRecord:
        msg = self._wait_exit(cid, timeout)
        return ExitRecord(**msg["exit"])

    def _wait_exit(self, cid: str, timeout: float | None) -> dict[str, Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: cid in self._exits or self._closed, timeout)
            if cid in self._exits:
                return self._exits.pop(cid)
        rec = StateDir(self.root, cid).read_exit()
        if rec is not None:
            return {"exit": rec.__dict__, "reports": {}, "timings": {}, "memory": {}}
        if not ok:
            raise TimeoutError(f"container {cid} still running after {timeout} s")
        raise ZygoteGone()  # the Runtime watches the container itself from here

    def run(self, cid: str, bundle: str, *, stdin: bytes | None, annotations: dict[str, str] | None,
            timeout: float | None, keep: bool = False) -> RunResult:
        """One request; output and, from a Wasm init, the result come through pipes drained meanwhile.

        A Wasm init writes its result to the caller directly: the zygote's reply (a hop through it and
        through this client's reader thread) is then only needed when setup failed or the init was native.
        """
        t0 = time.perf_counter_ns()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        in_fd: int | None = None
        in_w = -1
        if stdin is not None:
            in_fd, in_w = os.pipe2(os.O_CLOEXEC)
        try:
            rid = self._send({"op": "run", "id": cid, "bundle": bundle, "annotations": annotations or {},
                              "remove": not keep, "events": self.has_subscribers()},
                             [*_stdio_fds((in_fd, out_w, err_w)), res_w])
        except BaseException:
            for fd in (out_r, err_r, res_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for passed in (out_w, err_w, res_w, in_fd):
                if passed is not None:
                    os.close(passed)
        if stdin is not None:
            threading.Thread(target=_feed, args=(in_w, stdin), daemon=True).start()
        stdout, stderr, result = _drain(out_r, err_r, res_r, died=self._pidfd)
        with self._cond:
            self._exits.pop(cid, None)
            if not keep:
                self._unsettled[cid] = True  # until settled: if the zygote died, the Runtime deletes it
        if result:
            reply = json.loads(result)
            self._abandon(rid)
            rec = {"exit_code": int(reply["exit_code"]), "max_rss_kb": int(reply.get("max_rss_kb") or 0)}
            timings = dict(reply.get("timings") or {})
            timings.setdefault("create_ms", timings.get("ready", 0.0))
            decision = reply.get("decision") or {}
            reports = dict(reply.get("values") or {})
            memory: dict[str, int] = {}
        else:
            try:
                reply = self._reply(rid, timeout)
            except ZygoteGone:
                with self._cond:
                    self._unsettled.pop(cid, None)  # it may run on: the caller decides, not a later look
                raise ZygoteGone(f"the wasmlab zygote died while container {cid} ran: its exit status is lost",
                                 f"it may still be running: `wasmlab-oci --root {self.root} delete --force {cid}`"
                                 ) from None
            rec = reply["exit"]
            timings = dict(reply.get("timings") or {})
            decision = (reply.get("state") or {}).get("decision") or {}
            reports = dict(reply.get("reports") or {})
            memory = dict(reply.get("memory") or {})
        timings["total_ms"] = (time.perf_counter_ns() - t0) / 1e6
        with self._cond:
            self._unsettled[cid] = not keep
            while len(self._unsettled) > 4096:
                self._unsettled.pop(next(iter(self._unsettled)))
        memory["max_rss_kb"] = rec.get("max_rss_kb", 0)
        return RunResult(id=cid, exit_code=rec["exit_code"], stdout=stdout, stderr=stderr,
                         oom_killed=bool(rec.get("oom_killed", False)), signal=rec.get("signal"),
                         decision=decision, timings=timings, memory=memory, reports=reports)

    def settle(self, cid: str | None = None) -> list[str]:
        """Wait until the zygote has finished with containers whose `run` already returned (one, or all):
        reaped, exit recorded, deleted unless kept. What this process looks at next is then settled.

        Returns the ones the zygote was to delete but died first: the caller deletes them.
        Never waits on the reader thread itself (a subscriber's callback looking at a container): only
        that thread could deliver the answer."""
        if threading.current_thread() is self._reader:
            return []
        with self._cond:
            if cid is None:
                ids = dict(self._unsettled)
                self._unsettled.clear()
            elif cid in self._unsettled:
                ids = {cid: self._unsettled.pop(cid)}
            else:
                ids = {}
        if not ids:
            return []
        try:
            self._request({"op": "settle", "ids": list(ids)}, timeout=30)  # one round trip, however many
        except ZygoteGone:
            return [i for i, remove in ids.items() if remove]
        except WasmlabError:
            pass
        return []

    def _abandon(self, rid: int) -> None:
        """Nobody waits for this reply any more: drop it now, or when it comes."""
        with self._cond:
            if self._replies.pop(rid, None) is None:
                self._abandoned.add(rid)


def _stdio_fds(stdio: tuple[int | None, int | None, int | None]) -> list[int]:
    """The three fds to hand over: a missing stdin is /dev/null, a missing stdout or stderr is ours."""
    return [fd if fd is not None else (_devnull() if i == 0 else i) for i, fd in enumerate(stdio)]


_DEVNULL: int | None = None


def _devnull() -> int:
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _DEVNULL


def _feed(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError:
        pass
    finally:
        os.close(fd)


def _drain(*fds: int, died: int = -1) -> list[bytes]:
    """Read each pipe to its end (all at once, so none fills up and stalls the writer); closes them.

    The last pipe carries a Wasm init's result. With died (the zygote's pidfd): once the zygote is gone and
    that pipe has closed empty (a native init, whose exit only the zygote could have seen), stop at once;
    the container may run on, so its output is read and dropped by a thread instead of cut off."""
    bufs: dict[int, list[bytes]] = {fd: [] for fd in fds}
    open_fds = set(fds)
    result_fd = fds[-1]
    with selectors.DefaultSelector() as sel:
        for fd in open_fds:
            sel.register(fd, selectors.EVENT_READ)
        if died >= 0:
            sel.register(died, selectors.EVENT_READ)
        gone = False
        while open_fds:
            if gone and result_fd not in open_fds and not bufs[result_fd]:
                threading.Thread(target=_discard, args=(open_fds,), daemon=True).start()
                break
            for key, _ in sel.select():
                if key.fd == died:
                    sel.unregister(died)
                    gone = True
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    bufs[key.fd].append(chunk)
                else:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                    os.close(key.fd)
    return [b"".join(bufs[fd]) for fd in fds]


def _discard(fds: set[int]) -> None:
    """Read pipes to their end and drop what comes (a container whose caller gave up on it)."""
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                if not os.read(key.fd, 65536):
                    sel.unregister(key.fd)
                    os.close(key.fd)


if __name__ == "__main__":
    sys.exit(serve_main())
