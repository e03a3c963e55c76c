"""The quick start of `wasmlab run`: hand the command to the lab's warm helper, else start the zygote at once.

The warm helper (wasmlab.lab.cli.warm_server, podman's `system service` as model) listens on a unix socket in
the lab's runtime folder. A command sent there carries this process's argv, cwd, environment and stdio (the fds
themselves, SCM_RIGHTS); the helper forks a copy of itself that runs the command exactly as the cold path would.
That command holds the connection itself: it reports its own exit, and it gets SIGHUP from the kernel when this
process dies (so it never depends on the helper staying up). The helper answers "started" with the command's
pidfd: signals sent to this process (Ctrl-C, SIGTERM, SIGHUP, a window resize) go straight to the command.
A helper whose code differs from ours (version, or a source file changed since it started) refuses the command
and exits; the command then runs here, cold. This module imports only what that needs: it runs before argparse.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
from pathlib import Path

from wasmlab.runtime.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the client stays thin)
if TYPE_CHECKING:
    from typing import Any

SOCKET_NAME = "warm.sock"
STATUS_NAME = "warm.json"
DEFAULT_IDLE = 300.0  # seconds a helper stays after its last command (`wasmlab system service --idle`)
OFF = ("0", "off", "no", "false")  # WASMLAB_WARM values for no helper: none is used, none is started
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH, signal.SIGUSR1,
             signal.SIGUSR2)
MAX_LINE = 1 << 20


def code_key() -> str:
    """What the helper's code must equal ours in: wasmlab's version, the interpreter, and every source file's
    size and mtime (an editable install changes under a running helper; a reinstall changes the files too)."""
    import hashlib

    import wasmlab.lab
    import wasmlab.runtime

    interpreter = f"{os.path.realpath(sys.executable)}\0{sys.prefix}\0{sys.version}"  # python = python3
    h = hashlib.sha256(f"{wasmlab.runtime.__version__}\0{interpreter}".encode())
    for package in (wasmlab.runtime, wasmlab.lab):
        top = os.path.dirname(os.path.abspath(package.__file__ or ""))
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        stack.append(e.path)
                elif e.name.endswith(".py"):
                    st = e.stat(follow_symlinks=False)
                    h.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def lab_paths() -> tuple[Path, Path] | None:
    """(lab home, runtime folder) of this environment, or None when the home is unusable (the cold path says
    why, in its own words)."""
    from wasmlab.runtime import lab_home, runtime_root
    from wasmlab.runtime.errors import WasmlabError

    # A relative WASMLAB_HOME is left as it is: the command (here or in the helper, which takes our cwd) makes
    # it absolute and says so, once.
    try:
        home = lab_home()
    except WasmlabError:
        return None
    return home, runtime_root(home)


def socket_path(run_root: Path) -> Path:
    return run_root / SOCKET_NAME


def connect(run_root: Path) -> socket.socket | None:
    path = socket_path(run_root)
    if len(os.fsencode(path)) >= 108:
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(os.fspath(path))
    except OSError:
        s.close()
        return None
    return s


class Lines:
    """JSON messages, one a line, read from a stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except InterruptedError:
                continue
            if not data:
                return None
            self.buf += data
            if len(self.buf) > MAX_LINE:
                return None
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError:
            return None
        return msg if isinstance(msg, dict) else None


def send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(json.dumps(msg).encode() + b"\n")


def run_quickly(argv: list[str]) -> int | None:
    """Run `wasmlab ARGV` through the warm helper and return its exit code; None when it must run here.
    Starts the zygote now, in parallel with the imports still to come, when it will run here."""
    try:
        idle = idle_setting(os.environ.get("WASMLAB_WARM", ""))
    except UsageError as exc:
        print(f"Error: {exc.one_line()}", file=sys.stderr)
        return 125  # as the command line's own errors (PODMAN_ERROR)
    paths = lab_paths()
    if paths is None:
        return None
    home, run_root = paths
    if idle is not None:  # WASMLAB_WARM=0: no helper at all, not even one that is up already
        sock = connect(run_root)
        if sock is not None:
            try:
                code = through_helper(sock, argv)
            finally:
                sock.close()
            if code is not None:
                return code
    if asks_for_help(argv):
        return None  # it prints the usage: no container, so neither a zygote nor a helper to leave behind
    if idle is not None:  # the next `run` finds it warm; it leaves after IDLE seconds without a command
        start_helper(home, run_root, idle=idle, wait=False)
    prestart_zygote(home, run_root, argv)
    return None


def run_if_warm(argv: list[str]) -> int | None:
    """Run `wasmlab ARGV` through the lab's warm helper when one is up, and return its exit code; None when it
    must run here (no helper, a stale one, or WASMLAB_WARM=0). Unlike `run`, never starts a helper."""
    try:
        if idle_setting(os.environ.get("WASMLAB_WARM", "")) is None:
            return None  # WASMLAB_WARM=0: no helper at all, not even one that is up already
    except UsageError:
        return None  # the command says so itself, cold (run_quickly refuses the setting for `run`)
    paths = lab_paths()
    if paths is None:
        return None
    sock = connect(paths[1])
    if sock is None:
        return None
    try:
        return through_helper(sock, argv)
    finally:
        sock.close()


def idle_setting(text: str) -> float | None:
    """WASMLAB_WARM: seconds a helper `run` starts stays idle (unset: DEFAULT_IDLE); None for 0/off (no helper)."""
    word = text.strip().lower()
    if not word:
        return DEFAULT_IDLE
    if word in OFF:
        return None
    try:
        value = float(word)
    except ValueError:
        value = math.nan
    if value == 0:
        return None
    if not 0 < value < math.inf:
        raise UsageError(f"WASMLAB_WARM={text!r} is neither a number of seconds above 0 nor 0",
                         "WASMLAB_WARM=300 keeps the warm helper 300 s after the last `run`; WASMLAB_WARM=0 "
                         "uses none")
    return value


def asks_for_help(argv: list[str]) -> bool:
    """`run -h`/`--help` (before a `--`): only the usage, which argparse prints. A --help that belongs to the
    container's command counts too: that run is then cold and leaves no helper, which is merely slower."""
    for word in argv:
        if word == "--":
            return False
        if word in ("-h", "--help"):
            return True
    return False


def prestart_zygote(home: Path, run_root: Path, argv: list[str]) -> None:
    """The zygote `run` will need, started before the command line's own imports (they overlap). With an
    --engine (or anything this cannot read without argparse), the Lab starts its own, as before."""
    if any(a == "--engine" or a.startswith("--engine=") for a in argv) or not home.is_dir():
        return
    from wasmlab.runtime import prestart_zygote

    engine = os.environ.get("WASMLAB_ENGINE") or "wasmtime"
    try:
        prestart_zygote(str(run_root), engine, home=str(home))
    except OSError:
        return


def through_helper(sock: socket.socket, argv: list[str]) -> int | None:
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "code": code_key()}
    pending: list[int] = []   # signals that came before the command started: sent once it has
    command: list[int] = []   # the command's pidfd, from its "started": signals go to it, not through the helper

    def forward(signum: int, _frame: Any) -> None:
        if not command:
            pending.append(signum)
            return
        try:
            signal.pidfd_send_signal(command[0], signum)
        except OSError:
            pass  # it has ended: its exit is on its way

    previous: dict[int, Any] = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        try:
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
            data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
        except OSError:
            return None
        lines = Lines(sock)
        lines.buf = data
        reply = lines.next() if data else None
        if reply is not None and "exit" in reply:
            # The helper died between forking the command and saying so: the command ran, and said how it ended.
            return int(reply["exit"])
        if reply is None or "started" not in reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            if pending:  # it will run here, where these signals would have stopped it
                signal.signal(pending[0], previous[pending[0]])
                os.kill(os.getpid(), pending[0])
            return None  # a stale or stopping helper: the command runs here
        command.append(fds[0])
        for signum in pending:
            forward(signum, None)
        while True:
            # The command reports its own exit on this connection (the helper, while it is up, also says
            # when the command died of a signal): EOF means both have closed it without a word.
            msg = lines.next()
            if msg is None:
                print("Error: the command ended without reporting its exit status: it was killed while no warm "
                      "helper watched it (hint: `wasmlab ps -a` shows whether its container is still there)",
                      file=sys.stderr)
                return 125
            if "exit" in msg:
                return int(msg["exit"])
            if "killed" in msg:
                signum = int(msg["killed"])
                for s, handler in previous.items():
                    signal.signal(s, handler)
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)  # died of it, as the command did
                return 128 + signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for fd in command:
            os.close(fd)


def start_helper(home: Path, run_root: Path, *, idle: float, wait: bool) -> int | None:
    """Start a warm helper for this lab home (detached, in a session of its own); its pid once it listens
    when wait, else None at once. Started with subprocess: this process may already run threads."""
    import subprocess

    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wasmlab.lab.cli.warm_server", "--home", str(home), "--idle", str(idle),
             "--ready-fd", str(write)],
            pass_fds=[write], cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=None if os.environ.get("WASMLAB_DEBUG") else subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(write)
    try:
        if not wait:
            return None
        with os.fdopen(read, "rb", closefd=False) as fh:
            ready = fh.readline()
        return proc.pid if ready.startswith(b"ready") else None
    finally:
        os.close(read)


def status(run_root: Path) -> dict[str, Any] | None:
    """The helper's own account of itself, asked over its socket; None when none answers."""
    sock = connect(run_root)
    if sock is None:
        return None
    try:
        send(sock, {"status": True})
        return Lines(sock).next()
    except OSError:
        return None
    finally:
        sock.close()


def stop(run_root: Path, timeout: float = 10.0) -> int | None:
    """Stop the helper; its pid once it is gone, None when none ran (stop_helper says more)."""
    stopped = stop_helper(run_root, timeout)
    return None if stopped is None else stopped[0]


def stop_helper(run_root: Path, timeout: float = 10.0) -> tuple[int, int] | None:
    """Stop the helper at once; (its pid, how many of its commands still run) once it is gone, None when none
    ran. Those commands go on in their own processes, with their callers' stdio and connections, and end
    normally. Raises WarmHelperNotStopped when it is still there after TIMEOUT seconds."""
    info = status(run_root)
    if info is None:
        return None
    pid = int(info["pid"])
    running = int(info.get("running") or 0)
    try:
        fd: int | None = os.pidfd_open(pid)
    except OSError:
        fd = None  # gone already
    try:
        sock = connect(run_root)
        if sock is not None:
            try:
                send(sock, {"stop": True})
                reply = Lines(sock).next() or {}
                running = int(reply.get("running", running))
            except OSError:
                pass
            finally:
                sock.close()
        if fd is not None:
            import select

            if not select.select([fd], [], [], timeout)[0]:
                from wasmlab.runtime.errors import WarmHelperNotStopped

                raise WarmHelperNotStopped(f"the warm helper {pid} has not stopped within {timeout:g} s",
                                           f"`wasmlab system status` shows it; `kill {pid}` ends it (the commands "
                                           "it started finish on their own)")
    finally:
        if fd is not None:
            os.close(fd)
    return pid, running
