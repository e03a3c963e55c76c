"""The warm helper: one lab home's `wasmlab` kept imported, with a zygote ready, serving commands over a socket.

Single-threaded (a select loop), so it may fork: each command runs in a forked copy that takes on the caller's
cwd, environment and stdio fds and runs the same code as the cold path (wasmlab.lab.cli.run_command). That copy
keeps the caller's connection: the caller signals it through the pidfd sent with "started", it reports its own
exit, and the kernel sends it SIGHUP (F_SETSIG on the connection) when the caller dies. The helper only reaps it
and says when it died of a signal. It exits when idle for --idle seconds, when its code key no longer matches a
caller's (it never runs stale code), when the lab home or its socket is removed, and at once on `wasmlab system
stop`: commands in flight need nothing from it, and end normally.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmlab.runtime as runtime
from wasmlab.lab.cli import _verb, parser, run_command, warm

TICK = 0.2  # seconds between looks at the lab home and the socket (both may be removed under us)


@dataclass
class Command:
    conn: socket.socket
    pid: int
    pidfd: int
    zygotes: list[Any]   # the spare it took: ours to reap once it has ended (in use until then)


@dataclass
class Helper:
    home: Path
    run_root: Path
    idle: float
    code: str
    listener: socket.socket
    parser: Any = None                                        # built once: argparse's setup is not free
    started: float = field(default_factory=time.time)
    last: float = field(default_factory=time.monotonic)
    commands: dict[int, Command] = field(default_factory=dict)   # pidfd -> the command it watches
    zygotes: list[Any] = field(default_factory=list)           # spares handed to commands: ours to reap
    stopping: bool = False
    served: int = 0
    spare: bool = False   # a zygote is ready (or loading) for the next command

    @property
    def socket_file(self) -> Path:
        return warm.socket_path(self.run_root)

    def fresh_spare(self) -> None:
        """A zygote for the next command (started now; it loads while nobody waits)."""
        self.spare = True
        try:
            runtime.prestart_zygote(str(self.run_root), os.environ.get("WASMLAB_ENGINE") or "wasmtime",
                                   home=str(self.home))
        except OSError:
            pass

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "home": str(self.home), "socket": str(self.socket_file), "idle": self.idle,
                "idle_for": round(time.monotonic() - self.last, 1) if not self.commands else 0.0,
                "running": len(self.commands), "served": self.served, "started": self.started,
                "code": self.code}

    # -- the loop --------------------------------------------------------------------------------------------
    def serve(self) -> None:
        home_id = _identity(self.home)
        sock_id = _identity(self.socket_file)
        # A removed folder keeps its open descriptor with no links left: that holds even when something makes a
        # new folder at the same path that the file system gives the same inode number (ext4 reuses them).
        home_fd = os.open(self.home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._serve(home_id, sock_id, home_fd)
        finally:
            os.close(home_fd)

    def _serve(self, home_id: tuple[int, int] | None, sock_id: tuple[int, int] | None, home_fd: int) -> None:
        while True:
            for proc in list(self.zygotes):
                if proc.poll() is not None:
                    self.zygotes.remove(proc)
            if self.stopping:
                return  # at once: each command in flight holds its caller's connection and ends by itself
            if not self.commands and time.monotonic() - self.last >= self.idle:
                return
            if (os.fstat(home_fd).st_nlink == 0 or _identity(self.home) != home_id
                    or _identity(self.socket_file) != sock_id):
                return  # the lab home (or our socket) was removed: never outlive it
            wait = TICK if self.commands else min(TICK, max(0.0, self.idle - (time.monotonic() - self.last)))
            # Not the callers' connections: their commands watch them (a dead caller is their SIGHUP).
            readers: list[Any] = [self.listener, *self.commands.keys()]
            ready, _, _ = select.select(readers, [], [], wait)
            for r in ready:
                if r is self.listener:
                    self.accept()
                elif r in self.commands:
                    self.finish(r)

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(5.0)  # a caller sends its request at once
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, warm.MAX_LINE, 3)
            lines = warm.Lines(conn)
            lines.buf = data
            while b"\n" not in lines.buf:
                more = conn.recv(65536)
                if not more:
                    raise OSError("short request")
                lines.buf += more
            request = lines.next() or {}
        except (OSError, ValueError):
            conn.close()
            return
        conn.settimeout(None)
        if request.get("status"):
            self.answer(conn, self.status())
        elif request.get("stop"):
            self.stopping = True
            self.answer(conn, {"stopping": os.getpid(), "running": len(self.commands)})
        elif request.get("code") != self.code or self.stopping or len(fds) != 3:
            # Another version of wasmlab (or a changed source file) is asking: it runs the command itself.
            self.answer(conn, {"stale": self.code})
            if request.get("code") != self.code:
                self.stopping = True
        else:
            self.start(conn, request, fds)
            return
        for fd in fds:
            os.close(fd)

    def answer(self, conn: socket.socket, msg: dict[str, Any]) -> None:
        try:
            warm.send(conn, msg)
        except OSError:
            pass
        conn.close()

    def start(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        self.last = time.monotonic()
        self.served += 1
        env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
        # Only `run` takes the spare zygote; the other verbs (ps, images, logs, ...) leave it for the next run.
        takes_spare = _verb([str(a) for a in request.get("argv") or []]) == "run"
        pid = os.fork()
        if pid == 0:
            if not takes_spare:
                runtime.drop_spare_zygotes()  # our copies of its socket: the helper keeps its own
            os._exit(self.child(conn, request, fds, env))
        for fd in fds:
            os.close(fd)
        # A `run` takes the spare (if any): its copy of the socket is the one in use, reaped once it has ended.
        pidfd = os.pidfd_open(pid)
        self.commands[pidfd] = Command(conn, pid, pidfd, runtime.drop_spare_zygotes() if takes_spare else [])
        try:
            # Its pidfd (ours stays valid until we reap it): the caller signals the command itself.
            socket.send_fds(conn, [json.dumps({"started": pid}).encode() + b"\n"], [pidfd])
        except OSError:
            pass  # the caller is gone already: the command sees that for itself (SIGHUP)
        if takes_spare:
            os.environ.clear()
            os.environ.update(env)  # the next spare is made for the environment of the last caller
            self.spare = False      # made once the command has ended: it would compete with it for the CPU

    def child(self, conn: socket.socket, request: dict[str, Any], fds: list[int], env: dict[str, str]) -> int:
        """In the forked copy: become the caller's command, run it, return its exit code."""
        try:
            self.listener.close()
            for c in self.commands.values():
                c.conn.close()
                os.close(c.pidfd)
            for spare in list(self.zygotes):
                self.zygotes.remove(spare)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            for signum in warm.FORWARDED:
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _hang_up_with(conn)
            os.chdir(str(request.get("cwd") or "/"))
            os.environ.clear()
            os.environ.update(env)
            _fresh_stdio()
        except Exception as exc:
            print(f"Error: the warm helper could not take the command: {exc} (hint: `wasmlab system stop`, "
                  "then run it again)", file=sys.stderr)
            return 125
        argv = [str(a) for a in request.get("argv") or []]
        try:
            code = run_command(argv, self.parser)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            code = 130
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        _report_exit(conn, int(code))
        return int(code)

    def finish(self, pidfd: int) -> None:
        command = self.commands.pop(pidfd)
        _, status = os.waitpid(command.pid, 0)
        os.close(pidfd)
        self.zygotes.extend(command.zygotes)  # its zygote ends now that its client has: reaped in the loop
        msg = {"killed": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.waitstatus_to_exitcode(status)}
        try:
            warm.send(command.conn, msg)  # the command said its exit itself; a death by a signal it cannot say
        except OSError:
            pass
        command.conn.close()
        self.last = time.monotonic()
        if not self.spare and not self.stopping:
            self.fresh_spare()

    def close(self) -> None:
        for path in (self.socket_file, self.run_root / warm.STATUS_NAME):
            try:
                if path == self.socket_file and _identity(path) != self.sock_id:
                    continue  # another helper's by now
                path.unlink()
            except (OSError, AttributeError):
                pass
        self.listener.close()
        # Not the zygotes of commands still running: they are in use, and end with their commands.
        for proc in runtime.drop_spare_zygotes() + self.zygotes:
            try:
                proc.wait(timeout=2.0)
            except Exception:
                pass

    sock_id: tuple[int, int] | None = None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _hang_up_with(conn: socket.socket) -> None:
    """In the command: SIGHUP from the kernel when the caller's end of CONN closes (the caller died), as a
    terminal's hang-up. The caller writes nothing after its request, so any event on CONN is that. Needs no
    helper: it holds when the helper was stopped or killed meanwhile."""
    fcntl.fcntl(conn, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(conn, fcntl.F_SETSIG, signal.SIGHUP)
    fcntl.fcntl(conn, fcntl.F_SETFL, fcntl.fcntl(conn, fcntl.F_GETFL) | os.O_ASYNC)
    probe = select.poll()
    probe.register(conn, select.POLLIN | select.POLLRDHUP)
    if probe.poll(0):  # it died before we were listening: the kernel's signal went to nobody
        os.kill(os.getpid(), signal.SIGHUP)


def _report_exit(conn: socket.socket, code: int) -> None:
    """In the command: its exit, said by itself (the helper may have been stopped or killed meanwhile). The
    caller closes its end on reading it: no SIGHUP for that."""
    try:
        fcntl.fcntl(conn, fcntl.F_SETFL, fcntl.fcntl(conn, fcntl.F_GETFL) & ~os.O_ASYNC)
        warm.send(conn, {"exit": code})
    except OSError:
        pass  # the caller is gone


def _fresh_stdio() -> None:
    """sys.stdin/stdout/stderr over fds 0-2 as Python makes them at start (line-buffered on a terminal)."""
    for fd, name, mode in ((0, "stdin", "rb"), (1, "stdout", "wb"), (2, "stderr", "wb")):
        tty = os.isatty(fd)
        raw = io.FileIO(fd, mode, closefd=False)
        buffered: Any = io.BufferedReader(raw) if mode == "rb" else io.BufferedWriter(raw)
        stream = io.TextIOWrapper(buffered, encoding=getattr(sys, name).encoding,
                                  errors="backslashreplace" if fd == 2 else getattr(sys, name).errors,
                                  line_buffering=tty or fd == 2, write_through=fd == 2)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    opts = {"--home": "", "--idle": str(warm.DEFAULT_IDLE), "--ready-fd": ""}
    while args:
        word = args.pop(0)
        if word in opts and args:
            opts[word] = args.pop(0)
    home = Path(opts["--home"])
    # Everything `run` imports, once: a command then only forks. And what the other verbs it serves read with
    # (pod ps, --format): the pods' records (not yaml: only a play parses YAML) and the templates.
    import wasmlab.lab.cli.containers
    import wasmlab.lab.cli.template  # noqa: F401

    _ = runtime.Lab, runtime.Runtime, runtime.ImageSummary  # the service, the lifecycle, the image service
    _ = runtime.PodInfo  # the pods' records (wasmlab.runtime.pods.play)
    home = runtime.open_home(home)  # as the Lab opens it: the home it watches exists from now on
    run_root = runtime.runtime_root(home)
    run_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    path = warm.socket_path(run_root)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    if warm.status(run_root) is not None:
        return 0  # one helper per lab home: another answers already
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    old = os.umask(0o077)  # the caller's stdio and environment go through it: the owner alone may connect
    try:
        try:
            listener.bind(os.fspath(path))
        except FileNotFoundError:  # a zygote leaving the root empty took it along just now
            run_root.mkdir(parents=True, exist_ok=True, mode=0o711)
            listener.bind(os.fspath(path))
    finally:
        os.umask(old)
    listener.listen(64)
    helper = Helper(home, run_root, float(opts["--idle"]), warm.code_key(), listener, parser())
    helper.sock_id = _identity(path)
    (run_root / warm.STATUS_NAME).write_text(json.dumps(helper.status()))
    signal.signal(signal.SIGTERM, lambda *_: setattr(helper, "stopping", True))
    # Not SIG_IGN: an ignored signal stays ignored through exec, in every zygote and container started here.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: None)
    helper.fresh_spare()
    if opts["--ready-fd"]:
        fd = int(opts["--ready-fd"])
        try:
            os.write(fd, b"ready\n")
        except BrokenPipeError:
            pass  # the starter did not wait (`run` leaving a helper behind): nobody reads, and that is fine
        os.close(fd)
    try:
        helper.serve()
    finally:
        helper.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
