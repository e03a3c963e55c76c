"""The zygote's client: starts the zygote and talks to it from the caller's process, from any thread."""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import SetupError, WasmlabError, ZygoteGone, error_from_dict
from wasmlab.runtime.store.state import ExitRecord, StateDir
from wasmlab.runtime.zygote import protocol as p

# The environment of the processes that become containers (never the workload's: that is process.env).
ENGINE_ENV = {
    "MALLOC_ARENA_MAX": "1",      # one malloc arena: a Wasm init's extra threads would each get their own
    "TOKIO_WORKER_THREADS": "1",  # wasmtime-wasi's and wasmer-sdk's tokio: one I/O worker, not one per core
}

Event = p.ContainerCreated | p.ContainerExited | p.ContainerReaped | p.ContainerError


@dataclass
class RunResult:
    """What one container run produced, with its timings (ms) and memory facts."""

    id: str
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    oom_killed: bool = False
    signal: int | None = None
    decision: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)


class ZygoteClient:
    """Talks to one zygote; safe to use from many threads at once.

    publish(event) gets every container event (on the reader thread); has_subscribers() says whether
    anybody listens, so the zygote can skip events nobody wants. record: ask for each container's final
    figures (a ContainerReaped, also published) so that the caller can keep a run history.
    """

    def __init__(self, root: str, default_engine: str, publish: Callable[[Event], None],
                 home: str | None = None, prepare: tuple[str, ...] = (),
                 has_subscribers: Callable[[], bool] = lambda: True, record: bool = False) -> None:
        self.root = root
        self.publish = publish
        self.has_subscribers = has_subscribers
        self.record = record
        self.proc, self.sock = _claim_spare(root, default_engine, home, prepare) or _spawn(root, default_engine,
                                                                                          home, prepare)
        # The zygote's death is seen through its pidfd, not only through the socket: a container it forked
        # could still hold a copy of the socket (one made before close_in_child) and hide the EOF.
        self._pidfd = os.pidfd_open(self.proc.pid)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, p.Message] = {}
        self._exits: dict[str, p.ContainerExited] = {}
        self._abandoned: set[int] = set()   # `run` replies made redundant by the result the init wrote itself
        # Containers whose `run` has returned while the zygote may still be reaping and deleting them
        # (it answers first): a later look at one of them waits for that (see settle).
        self._unsettled: dict[str, bool] = {}   # id -> the zygote was to delete it (run without keep)
        self._unreaped: set[str] = set()        # exited, final figures not in yet (recorded runs only)
        self._next = 0
        self._closed = False
        try:
            hello = p.decode(self.sock.recv(p.MAX_MSG))
        except ValueError:
            hello = p.Fatal("no answer")
        if not isinstance(hello, p.Hello):
            self.proc.wait()
            raise SetupError(f"the wasmlab zygote did not start: {getattr(hello, 'message', hello)}",
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

    # -- the reader thread ----------------------------------------------------------------------------------
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
                    data = self.sock.recv(p.MAX_MSG)
                except OSError:
                    data = b""
                if not data:
                    break
                self._take(p.decode(data))
        finally:
            sel.close()
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _read_leftovers(self) -> None:
        while True:
            try:
                data = self.sock.recv(p.MAX_MSG, socket.MSG_DONTWAIT)
            except OSError:
                return
            if not data:
                return
            self._take(p.decode(data))

    def _take(self, msg: p.Message) -> None:
        rid = getattr(msg, "rid", None)
        if self.record and isinstance(msg, (p.ContainerExited, p.ContainerReaped)):
            with self._cond:
                if isinstance(msg, p.ContainerExited):
                    self._unreaped.add(msg.id)
                else:
                    self._unreaped.discard(msg.id)
        if isinstance(msg, p.ContainerExited) and rid is not None and self.has_subscribers():
            self.publish(msg)  # a `run` reply is also the container's exit event (the zygote sends it once)
        if rid is not None:
            with self._cond:
                if rid in self._abandoned:
                    self._abandoned.discard(rid)
                else:
                    self._replies[rid] = msg
                    self._cond.notify_all()
            return
        if isinstance(msg, p.ContainerExited):
            with self._cond:
                self._exits[msg.id] = msg  # kept for `wait`; bounded, oldest dropped first
                while len(self._exits) > 4096:
                    self._exits.pop(next(iter(self._exits)))
                self._cond.notify_all()
        if isinstance(msg, Event):
            self.publish(msg)

    # -- requests -------------------------------------------------------------------------------------------
    def _rid(self) -> int:
        with self._cond:
            self._next += 1
            return self._next

    def _send(self, msg: p.Message, fds: list[int] | None = None) -> None:
        data = msg.encode()
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

    def _reply(self, rid: int, timeout: float | None) -> p.Message:
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._replies or self._closed, timeout):
                raise SetupError("the wasmlab zygote did not answer", "it may be overloaded; try again")
            if rid not in self._replies:
                raise ZygoteGone()
            reply = self._replies.pop(rid)
        if isinstance(reply, p.Reply) and not reply.ok:
            raise error_from_dict(reply.error or {})
        return reply

    def create(self, cid: str, bundle: str, *, stdio: tuple[int | None, int | None, int | None],
               annotations: dict[str, str] | None = None, pid_file: str | None = None,
               console_socket: str | None = None, log: str | None = None, log_max: int = 0,
               rm_with: tuple[str, str] = ("", ""), with_caller: bool = False) -> dict[str, Any]:
        with self._cond:
            self._exits.pop(cid, None)
        rid = self._rid()
        self._send(p.Create(rid, cid, bundle, annotations or {}, pid_file, console_socket,
                            events=self.has_subscribers(), record=self.record, log=log, log_max=log_max,
                            rm_folder=rm_with[0], rm_link=rm_with[1], with_caller=with_caller),
                   _stdio_fds(stdio))
        reply = self._reply(rid, 60)
        assert isinstance(reply, p.Reply)
        state: dict[str, Any] = reply.state or {}
        state["timings"] = reply.timings
        return state

    def pin(self, folder: str, hostname: str | None = None) -> dict[str, str]:
        """A pod's network, IPC and UTS namespaces pinned under FOLDER: {OCI type: path}."""
        rid = self._rid()
        self._send(p.Pin(rid, folder, hostname))
        reply = self._reply(rid, 30)
        assert isinstance(reply, p.Reply)
        return dict(reply.state or {})

    def modules(self) -> list[str]:
        """The modules the zygote process has imported: what every container it forks starts with."""
        rid = self._rid()
        self._send(p.Ping(rid, modules=True))
        reply = self._reply(rid, 30)
        assert isinstance(reply, p.Reply)
        return reply.modules

    def wait(self, cid: str, timeout: float | None = None) -> ExitRecord:
        with self._cond:
            ok = self._cond.wait_for(lambda: cid in self._exits or self._closed, timeout)
            if cid in self._exits:
                return self._exits.pop(cid).exit
        rec = StateDir(self.root, cid).read_exit()
        if rec is not None:
            return rec
        if not ok:
            raise TimeoutError(f"container {cid} still running after {timeout} s")
        raise ZygoteGone()  # the Runtime watches the container itself from here

    def run(self, cid: str, bundle: str, *, stdin: bytes | None, annotations: dict[str, str] | None,
            timeout: float | None, keep: bool = False,
            stdio: tuple[int | None, int | None, int | None] | None = None,
            on_output: Callable[[int, bytes], None] | None = None,
            on_sent: Callable[[], None] | None = None, rm_with: tuple[str, str] = ("", "")) -> RunResult:
        """One request; output and, from a Wasm init, the result come through pipes drained meanwhile.

        A Wasm init writes its result to the caller directly: the zygote's reply (a hop through it and
        through this client's reader thread) is then only needed when setup failed or the init was native.
        With stdio, the container gets those descriptors (the caller's: it keeps and closes them) and its
        output is not collected here. With on_output, its stdout and stderr are pipes drained here all the
        same, each piece handed to on_output(1 or 2, bytes) as it comes, in the order read (stdin: stdio's,
        if given); nothing is collected. on_sent() is called once the request is on its way: from then on,
        sync() returns only after the zygote has handled it (the container is recorded, or was refused).
        """
        t0 = time.perf_counter_ns()
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        mine: list[int] = [res_w]      # closed once sent
        drained: list[int] = [res_r]   # read to their end here
        in_w = -1
        if stdio is None or on_output is not None:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            in_fd: int | None = stdio[0] if stdio is not None else None
            if stdin is not None and stdio is None:
                in_fd, in_w = os.pipe2(os.O_CLOEXEC)
                mine.append(in_fd)
            mine += [out_w, err_w]
            drained = [out_r, err_r, res_r]
            given = _stdio_fds((in_fd, out_w, err_w))
        else:
            given = _stdio_fds(stdio)
        rid = self._rid()
        try:
            self._send(p.Run(rid, cid, bundle, annotations or {}, remove=not keep, events=self.has_subscribers(),
                             record=self.record, rm_folder=rm_with[0], rm_link=rm_with[1]), [*given, res_w])
        except BaseException:
            for fd in drained:
                os.close(fd)
            if in_w >= 0:
                os.close(in_w)
            raise
        finally:
            for fd in mine:
                os.close(fd)
        if in_w >= 0:
            threading.Thread(target=_feed, args=(in_w, stdin), daemon=True).start()
        if on_sent is not None:
            try:
                on_sent()
            except BaseException:
                self._abandon(rid)
                for fd in drained:
                    os.close(fd)
                raise
        try:
            *outputs, result = _drain(*drained, died=self._pidfd, on_output=on_output)
        except BaseException:
            self._abandon(rid)  # its answer, when it comes, is nobody's
            raise
        stdout, stderr = outputs if outputs else (b"", b"")
        with self._cond:
            self._exits.pop(cid, None)
        if result:
            reported = json.loads(result)  # the init's own report (see init._run_in_process)
            self._abandon(rid)
            rec = ExitRecord(exit_code=int(reported["exit_code"]), max_rss_kb=int(reported.get("max_rss_kb") or 0))
            timings = dict(reported.get("timings") or {})
            timings.setdefault("create_ms", timings.get("ready", 0.0))
            decision = reported.get("decision") or {}
            reports = dict(reported.get("values") or {})
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
            assert isinstance(reply, p.ContainerExited)
            rec = reply.exit
            timings = dict(reply.timings)
            decision = (reply.state or {}).get("decision") or {}
            reports = dict(reply.reports)
            memory = dict(reply.memory)
        timings["total_ms"] = (time.perf_counter_ns() - t0) / 1e6
        with self._cond:
            # Only now that its exit is known: a look at it while it runs must not wait for its end (a stop
            # signal's follow-up looks at it to know when to send SIGKILL).
            self._unsettled[cid] = not keep
            while len(self._unsettled) > 4096:
                self._unsettled.pop(next(iter(self._unsettled)))
        memory["max_rss_kb"] = rec.max_rss_kb
        assert rec.exit_code is not None  # only a dead zygote's containers have unknown exits
        return RunResult(id=cid, exit_code=rec.exit_code, stdout=stdout, stderr=stderr,
                         oom_killed=rec.oom_killed, signal=rec.signal,
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
                ids = dict.fromkeys(self._unreaped, False) | self._unsettled
                self._unsettled.clear()
            elif cid in self._unsettled:
                ids = {cid: self._unsettled.pop(cid)}
            else:
                ids = {}
        if not ids:
            return []
        rid = self._rid()
        try:
            self._send(p.Settle(rid, list(ids)))  # one round trip, however many
            self._reply(rid, 30)
        except ZygoteGone:
            return [i for i, remove in ids.items() if remove]
        except WasmlabError:
            pass
        return []

    def sync(self, timeout: float = 10.0) -> None:
        """Return once the zygote has handled every request sent before this one (it takes them in order).

        A `run` creates and starts at once, and its workload may run (and print) before the zygote has written
        the container's state: after sync() the state is there, or the run was refused. Not from the reader
        thread (a subscriber's callback), which alone could deliver the answer: there it returns at once."""
        if threading.current_thread() is self._reader:
            return
        rid = self._rid()
        self._send(p.Ping(rid))
        self._reply(rid, timeout)

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


def _drain(*fds: int, died: int = -1, on_output: Callable[[int, bytes], None] | None = None) -> list[bytes]:
    """Read each pipe to its end (all at once, so none fills up and stalls the writer); closes them.

    The last pipe carries a Wasm init's result. With died (the zygote's pidfd): once the zygote is gone and
    that pipe has closed empty (a native init, whose exit only the zygote could have seen), stop at once;
    the container may run on, so its output is read and dropped by a thread instead of cut off. With
    on_output, what the other pipes bring goes to on_output(1 + their index, bytes) instead of being kept."""
    bufs: dict[int, list[bytes]] = {fd: [] for fd in fds}
    relayed = {fd: i + 1 for i, fd in enumerate(fds[:-1])} if on_output is not None else {}
    open_fds = set(fds)
    result_fd = fds[-1]
    with selectors.DefaultSelector() as sel, _closing_on_error(open_fds):
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
                if chunk and key.fd in relayed:
                    on_output(relayed[key.fd], chunk)  # type: ignore[misc]  # relayed only with on_output
                elif chunk:
                    bufs[key.fd].append(chunk)
                else:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                    os.close(key.fd)
    return [b"".join(bufs[fd]) for fd in fds]


@contextlib.contextmanager
def _closing_on_error(fds: set[int]) -> Iterator[None]:
    """Close the pipes still open when the drain is cut short (on_output raised, or an interrupt)."""
    try:
        yield
    except BaseException:
        for fd in fds:
            os.close(fd)
        fds.clear()
        raise


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


# -- a zygote started ahead of its client (issue 16) ---------------------------------------------------------
# The zygote's own start (a Python with wasmtime) is the longest step of a cold `wasmlab run`. The command line
# starts one before its own imports (they then overlap), and the warm helper keeps one ready for its next
# command; the first ZygoteClient made with the same arguments and the same environment takes it over.


@dataclass
class _Spare:
    key: tuple[Any, ...]
    proc: Any
    sock: socket.socket
    parent: int   # the process that started it (its parent, which alone can wait for it)


_spares: list[_Spare] = []


class ForeignZygote:
    """A zygote that another process started (the warm helper, before it forked the command that uses it):
    watched through a pidfd, as Popen watches a child. Its parent reaps it; its exit status is not ours."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._fd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None and _readable(self._fd, 0):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not _readable(self._fd, timeout):
            raise subprocess.TimeoutExpired("wasmlab zygote", timeout or 0)
        self.returncode = 0
        return 0


def _readable(fd: int, timeout: float | None) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def _zygote_env(home: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if home:
        env["WASMLAB_HOME"] = home
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    env.update(ENGINE_ENV)
    return env


def _key(root: str, default_engine: str, home: str | None, prepare: tuple[str, ...]) -> tuple[Any, ...]:
    return (root, default_engine, tuple(prepare), sorted(_zygote_env(home).items()))


def _spawn(root: str, default_engine: str, home: str | None, prepare: tuple[str, ...]) -> tuple[Any, socket.socket]:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    os.makedirs(root, mode=0o711, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wasmlab.runtime.zygote", "--fd", str(theirs.fileno()), "--root", root,
         "--engine", default_engine, *(f"--prepare={engine}" for engine in prepare)],
        pass_fds=[theirs.fileno()], env=_zygote_env(home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        # It may outlive us as the reaper of detached containers: it must not hold our stdio open.
        stderr=None if os.environ.get("WASMLAB_DEBUG") else subprocess.DEVNULL)
    theirs.close()
    return proc, mine


def prestart_zygote(root: str, default_engine: str, home: str | None = None, prepare: tuple[str, ...] = ()) -> None:
    """Start a zygote now, for the first ZygoteClient made later with these arguments and this environment.
    One that nobody takes ends by itself when its socket closes (at the latest, when this process exits)."""
    proc, sock = _spawn(root, default_engine, home, prepare)
    _spares.append(_Spare(_key(root, default_engine, home, prepare), proc, sock, os.getpid()))


def drop_spare_zygotes(*, keep_children: bool = False) -> list[Any]:
    """Close every spare not taken (its zygote then exits); returns their processes (for their parent to reap).
    keep_children: only forget them (a forked command leaves its parent's spare to its parent)."""
    procs = []
    while _spares:
        spare = _spares.pop()
        if not keep_children:
            spare.sock.close()
        procs.append(spare.proc)
    return procs


def _claim_spare(root: str, default_engine: str, home: str | None,
                 prepare: tuple[str, ...]) -> tuple[Any, socket.socket] | None:
    if not _spares:
        return None
    key = _key(root, default_engine, home, prepare)
    for spare in list(_spares):
        if spare.key == key:
            _spares.remove(spare)
            proc = spare.proc if spare.parent == os.getpid() else ForeignZygote(spare.proc.pid)
            return proc, spare.sock
    return None
