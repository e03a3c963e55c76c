"""The caller's side of a container's terminal: the console socket, raw mode, the copy both ways, window sizes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import shutil
import signal
import socket
import struct
import tempfile
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Any

from wasmlab.runtime.errors import SetupError

# What a pty's line discipline takes as end-of-file at the start of a line (VEOF, ^D by default).
EOF_BYTE = b"\x04"


class ConsoleSocket:
    """The listening end of the OCI console-socket protocol (what conmon gives runc as --console-socket):
    the container's side connects, sends its pty master with SCM_RIGHTS, and keeps the slave as its stdio."""

    def __init__(self) -> None:
        # A folder of its own, 0700, with a short path (sun_path holds 108 bytes).
        self.folder = tempfile.mkdtemp(prefix="wasmlab-console-")
        self.path = os.path.join(self.folder, "sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind(self.path)
            self.sock.listen(1)
        except BaseException:
            self.close()
            raise

    def receive(self, timeout: float, watch: int | None = None) -> int:
        """The pty master, once it has been sent; SetupError if WATCH (a pidfd) ends first or time runs out."""
        waiting = [self.sock.fileno()] + ([watch] if watch is not None else [])
        readable, _, _ = select.select(waiting, [], [], timeout)
        if self.sock.fileno() not in readable:
            raise SetupError("the container's terminal never came" if not readable else
                             "the process ended before its terminal was ready", "run with --debug for details")
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 4)
        if not fds:
            raise SetupError("the container sent no terminal down the console socket", "this is a wasmlab bug")
        for extra in fds[1:]:
            os.close(extra)
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ConsoleSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on FD, or None when it is not one."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Give the pty on FD a size (the kernel sends SIGWINCH to its foreground job)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@contextlib.contextmanager
def raw_mode(fd: int | None, *, output: int | None = None) -> Iterator[None]:
    """The user's terminal in raw mode (keys, ^C and ^D included, go to the container as bytes); restored on
    the way out however that happens. Without FD (no -i) only OUTPUT's newline translation is turned off,
    since the container's pty already made "\r\n" (the keyboard stays the user's, Ctrl-C included).
    Nothing on what is not a terminal."""
    saved: list[tuple[int, list[Any]]] = []
    try:
        if fd is not None and os.isatty(fd):
            saved.append((fd, termios.tcgetattr(fd)))
            tty.setraw(fd, termios.TCSANOW)
        elif output is not None and os.isatty(output):
            attrs = termios.tcgetattr(output)
            saved.append((output, list(attrs)))
            attrs[1] &= ~termios.OPOST
            termios.tcsetattr(output, termios.TCSANOW, attrs)
        yield
    finally:
        for where, attrs in saved:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(where, termios.TCSADRAIN, attrs)


@contextlib.contextmanager
def window_follower(master: int, user: int | None) -> Iterator[None]:
    """The pty takes the user's window size now and on every SIGWINCH (when called from the main thread)."""
    if user is None or window_size(user) is None:
        yield
        return

    def copy(*_: object) -> None:
        size = window_size(user)
        if size is not None:
            with contextlib.suppress(OSError):
                set_window_size(master, *size)

    copy()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGWINCH, copy)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def relay(master: int, stdin: int | None, outputs: tuple[int, ...], done: int | None = None) -> None:
    """Copy STDIN to the pty and the pty to OUTPUTS until the pty's last user has gone (EIO) or DONE (a pidfd
    or a pipe) is readable; then what is left is drained. At the end of a non-terminal STDIN, the pty gets
    ^D (what a pty takes as end-of-file), so `echo cmd | wasmlab exec -it NAME sh` ends."""
    watched = [master] + ([stdin] if stdin is not None else []) + ([done] if done is not None else [])
    while True:
        readable, _, _ = select.select(watched, [], [])
        if done is not None and done in readable:
            # The process has ended, so all it wrote is in the pty already: take that, without waiting for
            # a background child that may hold the slave on.
            _drain(master, outputs)
            return
        if master in readable:
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:
                if exc.errno == errno.EIO:  # no process holds the slave any more
                    return
                raise
            if not chunk:
                return
            for fd in outputs:
                _write_all(fd, chunk, quiet=True)
        if stdin is not None and stdin in readable:
            data = os.read(stdin, 65536)
            if data:
                _write_all(master, data)
            else:
                watched.remove(stdin)
                if not os.isatty(stdin):
                    _write_all(master, EOF_BYTE)
                stdin = None


def _drain(master: int, outputs: tuple[int, ...]) -> None:
    os.set_blocking(master, False)
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EAGAIN: nothing left; EIO: nobody holds the slave
                return
            if not chunk:
                return
            for fd in outputs:
                _write_all(fd, chunk, quiet=True)
    finally:
        os.set_blocking(master, True)


def _write_all(fd: int, data: bytes, *, quiet: bool = False) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except OSError:
            if quiet:
                return
            raise
        view = view[written:]
