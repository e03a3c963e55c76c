"""The container's console: connect to the caller's --console-socket, hand it a pty master, take the slave."""

from __future__ import annotations

import fcntl
import os
import pty
import socket
import termios

from wasmlab.runtime.errors import SetupError


def connect(path: str) -> int:
    """An fd connected to the console socket (opened by the runtime before fork)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise SetupError(f"cannot connect to the console socket {path}: {exc.strerror}",
                         "start the console receiver first, or drop --console-socket") from None
    return sock.detach()


def attach(console_fd: int | None, pair: tuple[int, int] | None = None) -> None:
    """Send a pty's master down the console socket; make the slave our controlling terminal and stdio."""
    if console_fd is None:
        raise SetupError("terminal is true but no --console-socket was given",
                         "pass --console-socket, or set process.terminal to false")
    master, slave = pair or pty.openpty()
    sock = socket.socket(fileno=console_fd)
    socket.send_fds(sock, [b"console"], [master])
    sock.close()
    os.close(master)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
