"""A terminal for containers (-t/-i on run and exec), stop -t's SIGKILL notice, and signals during exec.

Each test drives the real `wasmlab` command: under a pty made with pty.fork() where a terminal is the point,
reading until a marker appears (with a timeout guard) rather than sleeping. Markers are computed by the shell
($((6*7)) prints 42) so that the echo of what was typed never matches them.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, need, need_root, package_links

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")

# fd_fdstat_get on fds 0, 1 and 2: prints each one's WASI filetype (2 is a character device, 0 unknown: a pipe).
ISATTY_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "filetypes 0 0 0\\n")
  (func $ft (param $fd i32) (param $at i32)
    (drop (call $fdstat (local.get $fd) (i32.const 200)))
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.load8_u (i32.const 200)))))
  (func (export "_start")
    (call $ft (i32.const 0) (i32.const 110))
    (call $ft (i32.const 1) (i32.const 112))
    (call $ft (i32.const 2) (i32.const 114))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))))
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    h = tmp_path_factory.mktemp("terminal") / "home"
    assert wl(h, "samples", "-q").returncode == 0
    yield h


def wl(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WASMLAB_HOME=str(home))
    return subprocess.run([WASMLAB, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def box(home: Path) -> Iterator[str]:
    """A running busybox container to exec into."""
    name = f"box{os.getpid()}{time.monotonic_ns() % 100000}"
    r = wl(home, "run", "-d", "--name", name, "wasmlab/busybox", "sleep", "600")
    assert r.returncode == 0, r.stderr
    yield name
    wl(home, "rm", "-f", name)


class Terminal:
    """`wasmlab ARGS` with a pty of its own as its terminal (the user's), rows x cols big."""

    def __init__(self, home: Path, *args: str, rows: int = 33, cols: int = 101,
                 command: tuple[str, ...] = (WASMLAB,), env: dict[str, str] | None = None) -> None:
        env = env or dict(os.environ, WASMLAB_HOME=str(home), TERM="dumb")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child becomes wasmlab
            os.execve(command[0], [*command, *args], env)
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: bytes) -> None:
        os.write(self.fd, text)

    def read_until(self, marker: bytes, timeout: float = 20) -> bytes:
        """Everything up to and including MARKER (what follows stays for the next read)."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.fd], [], [], max(0.0, left))
            assert readable, f"no {marker!r} within {timeout} s; the terminal showed {self.seen!r}"
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the command has exited
                chunk = b""
            assert chunk, f"the command ended before {marker!r}; the terminal showed {self.seen!r}"
            self.seen += chunk
        head, _, self.seen = self.seen.partition(marker)
        return head + marker

    def exit_code(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, f"wasmlab still running; the terminal showed {self.seen!r}"
            select.select([self.fd], [], [], 0.05)  # drain so that it never blocks on a full pty
            try:
                self.seen += os.read(self.fd, 4096)
            except OSError:
                pass

    def cooked(self) -> bool:
        """The terminal is back as wasmlab found it: echo and line editing on (raw mode turns them off)."""
        lflag = termios.tcgetattr(self.fd)[3]
        return bool(lflag & termios.ECHO) and bool(lflag & termios.ICANON)

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def test_exec_it_gives_a_shell_a_real_terminal(home: Path, box: str) -> None:
    """The first thing people type at workshops: a prompt, a pty, the window size, Ctrl-C, the exit code."""
    term = Terminal(home, "exec", "-it", box, "sh", rows=33, cols=101)
    try:
        term.read_until(b"# ")  # busybox's interactive prompt: it saw a terminal on stdin
        assert not term.cooked(), "the user's terminal is raw while the shell runs"
        term.type(b"echo tty=$(tty) size=$(stty size) mark-$((6*7))\r")
        line = term.read_until(b"mark-42")
        assert b"tty=/dev/pts/0" in line and b"size=33 101" in line, line
        term.resize(40, 120)  # SIGWINCH for wasmlab, which passes the size on
        term.type(b"echo size=$(stty size) mark-$((6*8))\r")
        assert b"size=40 120" in term.read_until(b"mark-48")
        # Ctrl-C reaches the job in the container's pty (raw mode sends ^C as a byte, the pty makes SIGINT).
        term.type(b"sh -c 'echo sleeping-$((2+3)); exec sleep 600'\r")
        term.read_until(b"sleeping-5")
        term.type(b"\x03")
        term.type(b"echo after-$((3+4))\r")
        term.read_until(b"after-7", timeout=10)  # not 600 s: the sleep was interrupted
        term.type(b"echo hi; exit 3\r")
        assert term.read_until(b"hi\r\n").endswith(b"hi\r\n")
        assert term.exit_code() == 3
        assert term.cooked(), "the terminal is restored on exit"
    finally:
        term.close()
    r = wl(home, "exec", box, "ps")
    assert r.returncode == 0 and "sleep 600" not in r.stdout.replace("sleep 600\n", "", 1), r.stdout


def test_exec_it_ctrl_d_ends_the_shell_and_a_killed_container_restores_the_terminal(home: Path, box: str) -> None:
    term = Terminal(home, "exec", "-it", box, "sh")
    try:
        term.read_until(b"# ")
        term.type(b"\x04")  # ^D at an empty prompt: end of input
        assert term.exit_code() == 0
        assert term.cooked()
    finally:
        term.close()
    term = Terminal(home, "exec", "-it", box, "sh")
    try:
        term.read_until(b"# ")
        assert not term.cooked()
        assert wl(home, "rm", "-f", box).returncode == 0  # on error: the container goes away under the shell
        assert term.exit_code() == 137
        assert term.cooked(), "the terminal is restored when the session ends badly"
    finally:
        term.close()


def test_run_it_linux_shell(home: Path) -> None:
    term = Terminal(home, "run", "-it", "--rm", "--name", "tty-run", "wasmlab/busybox", "sh", rows=24, cols=77)
    try:
        term.read_until(b"# ")
        term.type(b"echo tty=$(tty) size=$(stty size) pid=$$ mark-$((6*7))\r")
        line = term.read_until(b"mark-42")
        assert b"tty=/dev/pts/0" in line and b"size=24 77" in line and b"pid=1" in line, line
        term.type(b"exit 3\r")
        assert term.exit_code() == 3
        assert term.cooked()
    finally:
        term.close()
    assert "tty-run" not in wl(home, "ps", "-a").stdout  # --rm


@pytest.mark.parametrize("engine", ["wasmtime", "wasmer"])
def test_run_t_gives_a_wasm_guest_a_terminal_on_its_stdio(home: Path, tmp_path: Path, engine: str) -> None:
    """Measured: under -t wasmtime's guest sees fds 0-2 as character devices (pipes without -t); wasmer-sdk
    shows its guest character devices always, and its output comes through the pty."""
    import wasmtime

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "isatty.wasm").write_bytes(wasmtime.wat2wasm(ISATTY_WAT))
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY isatty.wasm /\nCMD ["/isatty.wasm"]\n')
    r = wl(home, "build", "-q", "--annotation", "module.wasm.image/variant=compat", "-t", "isatty", str(ctx))
    assert r.returncode == 0, r.stderr
    term = Terminal(home, "run", "-t", "--rm", "--engine", engine, "isatty")
    try:
        assert term.read_until(b"\n").endswith(b"filetypes 2 2 2\r\n")  # one \r: the pty made it, ours passed it
        assert term.exit_code() == 0
        assert term.cooked()
    finally:
        term.close()
    piped = wl(home, "run", "--rm", "--engine", engine, "isatty")
    assert piped.stdout == ("filetypes 0 0 0\n" if engine == "wasmtime" else "filetypes 2 2 2\n")


def test_detached_tty_is_refused_in_one_line(home: Path) -> None:
    r = wl(home, "run", "-dit", "--name", "nope", "wasmlab/busybox", "sh")
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "no terminal" in lines[0] and "exec -it" in lines[0], r.stderr
    assert "nope" not in wl(home, "ps", "-a").stdout


def test_ctrl_c_during_exec_ends_the_execd_process(home: Path, box: str) -> None:
    env = dict(os.environ, WASMLAB_HOME=str(home))
    proc = subprocess.Popen([WASMLAB, "exec", box, "sh", "-c", "echo started; sleep 777; echo not-interrupted"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends to its foreground job
        out, _err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "not-interrupted" not in out
    r = wl(home, "exec", box, "ps", "-o", "args")
    assert r.returncode == 0 and "sleep 777" not in r.stdout, r.stdout


def test_stop_t_of_a_pid1_ignoring_sigterm_says_sigkill_follows(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "deaf", "wasmlab/busybox", "sleep", "600").returncode == 0
    assert wl(home, "run", "-d", "--name", "deaf3", "wasmlab/busybox", "sleep", "600").returncode == 0
    assert wl(home, "run", "-d", "--name", "hears", "wasmlab/loop:compat").returncode == 0
    try:
        t0 = time.monotonic()
        r = wl(home, "stop", "-t", "1", "deaf")  # a Linux PID 1 without a handler ignores SIGTERM
        took = time.monotonic() - t0
        assert r.returncode == 0 and r.stdout == "deaf\n", r.stderr
        assert "did not stop on SIGTERM within 1 s: sending SIGKILL" in r.stderr, r.stderr
        assert took < 9, took  # -t 1 was heeded: the default (10 s) would have waited longer, whatever the load
        r = wl(home, "stop", "-t", "3", "deaf3")
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 2 and "SIGKILL follows in 2 s (at " in lines[0] and "stop -t" in lines[0], r.stderr
        r = wl(home, "stop", "hears")  # a Wasm guest ends on SIGTERM: nothing to say
        assert r.returncode == 0 and r.stderr == "", r.stderr
        rows = {p["name"]: p for p in json.loads(wl(home, "ps", "-a", "--json").stdout)}
        assert rows["deaf"]["status"] == "stopped" and rows["deaf"]["exit_code"] == 137
        assert rows["hears"]["status"] == "stopped" and rows["hears"]["exit_code"] == 143
    finally:
        wl(home, "rm", "-f", "deaf", "deaf3", "hears")


def test_ctrl_c_of_a_foreground_pid1_that_ignores_it_says_sigkill_follows(home: Path) -> None:
    env = dict(os.environ, WASMLAB_HOME=str(home))
    proc = subprocess.Popen([WASMLAB, "run", "--rm", "--name", "fgdeaf", "wasmlab/loop:linux", "/loop", "0", "50"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("tick")
        proc.send_signal(signal.SIGINT)
        notice = proc.stderr.readline()  # the handshake: said after a second without an exit
        assert "fgdeaf did not stop on SIGINT: SIGKILL follows in 9 s" in notice and "Ctrl-C again" in notice
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 137


def test_exec_into_a_wasm_container_says_what_it_can_exec(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "wloop", "wasmlab/loop:compat").returncode == 0
    try:
        for argv, words in ((["sh"], "sh is not in its image"),
                            (["/loop.wasm"], "/loop.wasm is a Wasm module")):
            r = wl(home, "exec", "wloop", *argv)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 127 and len(lines) == 1, r.stderr
            assert "runs one Wasm module under wasmtime" in lines[0] and words in lines[0], lines[0]
            assert "no shell" in lines[0] and "wasmlab logs wloop" in lines[0]
        term = Terminal(home, "exec", "-it", "wloop", "sh")
        try:
            assert b"runs one Wasm module" in term.read_until(b"\n")
            assert term.exit_code() == 127 and term.cooked()
        finally:
            term.close()
    finally:
        wl(home, "rm", "-f", "wloop")



def test_rootless_run_it_and_exec_it() -> None:
    """As an unprivileged user (its own user namespace), both terminals work; exec keeps to the namespace's
    setgroups "deny" (exec failed rootless with "Operation not permitted" before)."""
    import pwd

    need_root()
    need(Path("/usr/bin/python3").exists(), "Debian's python3 runs wasmlab as another user")
    pkg = package_links()
    d = Path(tempfile.mkdtemp(prefix="wasmlab-rootless-tty-"))  # pytest's own tmp is root's only
    d.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(d), "WASMLAB_HOME": str(d / "home"), "TERM": "dumb",
           "PYTHONPATH": f"{pkg}:{ROOT / '.venv' / 'lib' / 'python3.11' / 'site-packages'}"}
    command = ("/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "/usr/bin/python3", "-m", "wasmlab.lab.cli")

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120, cwd=d,
                              stdin=subprocess.DEVNULL)

    try:
        _rootless_terminals(d, command, env, as_nobody)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _rootless_terminals(d: Path, command: tuple[str, ...], env: dict[str, str],
                        as_nobody: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = as_nobody("samples", "-q")
    assert r.returncode == 0, r.stderr
    term = Terminal(d, "run", "-it", "--rm", "wasmlab/busybox", "sh", command=command, env=env)
    try:
        term.read_until(b"# ")
        term.type(b"echo tty=$(tty) uid=$(id -u) mark-$((6*7))\r")
        line = term.read_until(b"mark-42")
        assert b"tty=/dev/pts/0" in line and b"uid=0" in line, line
        term.type(b"exit 5\r")
        assert term.exit_code() == 5
    finally:
        term.close()
    assert as_nobody("run", "-d", "--name", "rl", "wasmlab/busybox", "sleep", "600").returncode == 0
    try:
        r = as_nobody("exec", "rl", "id", "-u")
        assert r.returncode == 0 and r.stdout == "0\n", r.stderr
        term = Terminal(d, "exec", "-it", "rl", "sh", command=command, env=env)
        try:
            term.read_until(b"# ")
            term.type(b"echo tty=$(tty) mark-$((6*7))\r")
            assert b"tty=/dev/pts/" in term.read_until(b"mark-42")
            term.type(b"exit 4\r")
            assert term.exit_code() == 4
        finally:
            term.close()
    finally:
        as_nobody("rm", "-f", "rl")
