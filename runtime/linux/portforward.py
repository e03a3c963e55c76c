"""Published ports: podman's -p [IP:]HOST:CTR, forwarded from a host socket into a container's network namespace
by a small process of its own (podman's rootlessport role) that lives exactly as long as the container."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

from wasmlab.runtime.errors import PortError, UsageError

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
CLONE_NEWNET = 0x40000000
_SPEC = re.compile(r"^(?:(?P<ip>\[[0-9A-Fa-f:.]+\]|[0-9.]+):)?(?P<host>\d+):(?P<ctr>\d+)(?:/(?P<proto>[a-z]+))?$")


@dataclass(frozen=True)
class PortMapping:
    """One -p: connections to host_ip:host_port reach 127.0.0.1:container_port inside the container."""

    host_ip: str
    host_port: int
    container_port: int

    def __str__(self) -> str:
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{ip}:{self.host_port}->{self.container_port}/tcp"


def parse_publish(spec: str) -> PortMapping:
    """podman's [IP:]HOST:CTR[/tcp]; the address defaults to 127.0.0.1 (a workshop machine stays closed)."""
    m = _SPEC.match(spec.strip())
    hint = "write -p 8080:80 (host port 8080 to the container's 80), or -p 127.0.0.1:8080:80"
    if not m:
        raise UsageError(f"cannot read the port mapping {spec!r}", hint)
    if m["proto"] not in (None, "tcp"):
        raise UsageError(f"-p {spec}: only tcp ports can be published here", "leave out /" + m["proto"])
    ip = (m["ip"] or "127.0.0.1").strip("[]")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise UsageError(f"-p {spec}: {ip!r} is not an IP address", hint) from None
    host, ctr = int(m["host"]), int(m["ctr"])
    for port in (host, ctr):
        if not 1 <= port <= 65535:
            raise UsageError(f"-p {spec}: port {port} is not between 1 and 65535", hint)
    return PortMapping(ip, host, ctr)


def listen(mapping: PortMapping) -> socket.socket:
    """The host side, bound and listening now, so a port in use is refused before the container exists."""
    family = socket.AF_INET6 if ":" in mapping.host_ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((mapping.host_ip, mapping.host_port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortError(f"port {mapping.host_ip}:{mapping.host_port} is already in use on this machine",
                            "pick another host port, e.g. -p 8081:" + str(mapping.container_port)) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise PortError(f"{mapping.host_ip} is not an address of this machine",
                            "leave the address out (127.0.0.1) or use one `ip addr` lists") from None
        raise PortError(f"cannot listen on {mapping.host_ip}:{mapping.host_port}: {exc.strerror}",
                        "pick another host port") from None
    return sock


_SHOWN = re.compile(r"^\[?(?P<ip>[0-9A-Fa-f.:]+?)\]?:(?P<host>\d+)->(?P<ctr>\d+)/tcp$")


def shown(text: str) -> PortMapping:
    """A mapping back from its str() (`127.0.0.1:8080->80/tcp`, as meta.json keeps it)."""
    m = _SHOWN.match(text)
    if not m:
        raise UsageError(f"cannot read the port mapping {text!r}", "it comes from a container's meta.json")
    return PortMapping(m["ip"], int(m["host"]), int(m["ctr"]))


def spawn(pid: int, mappings: list[PortMapping]) -> tuple[subprocess.Popen[bytes], int]:
    """Listen on each host port (a port in use fails here, in one line) and start the forwarder for the network
    namespace of process PID, which ends when that process does; returns it and the read end of its ready pipe
    (see answer)."""
    from wasmlab.runtime.store.state import proc_start_time

    socks = []
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        for m in mappings:
            socks.append(listen(m))
        argv = [sys.executable, "-m", "wasmlab.runtime.linux.portforward", "--pid", str(pid),
                "--start", str(proc_start_time(pid) or 0), "--ready", str(ready_w)]
        for sock, m in zip(socks, mappings, strict=True):
            argv += ["--listen", f"{sock.fileno()}:{m.container_port}"]
        proc = subprocess.Popen(argv, pass_fds=[ready_w, *(s.fileno() for s in socks)], start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=True)
    except BaseException:
        os.close(ready_r)
        raise
    finally:
        os.close(ready_w)
        for sock in socks:
            sock.close()
    return proc, ready_r


def answer(ready_r: int) -> str:
    """The forwarder's one line ("ok", or why not), then EOF (or EOF alone if it died); closes READY_R."""
    with os.fdopen(ready_r, "rb") as fh:
        return fh.read().decode(errors="replace").strip()


# -- the forwarder process ------------------------------------------------------------------------------------

def _setns(fd: int) -> None:
    from wasmlab.runtime.linux import syscalls as sc

    sc.setns(fd, CLONE_NEWNET)


def _in_netns(netns: int, hostns: int, family: int, kind: int) -> socket.socket:
    """A socket of the container's network namespace: a socket keeps the namespace it was made in."""
    _setns(netns)
    try:
        return socket.socket(family, kind | socket.SOCK_CLOEXEC)
    finally:
        _setns(hostns)


def loopback_up(netns: int, hostns: int) -> None:
    """`ip link set lo up` in the container's namespace: 127.0.0.1 works there from now on."""
    with _in_netns(netns, hostns, socket.AF_INET, socket.SOCK_DGRAM) as s:
        import fcntl

        req = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _pump(client: socket.socket, inner: socket.socket, port: int) -> None:
    """One connection: connect inside, then copy both ways until both sides have closed."""
    try:
        inner.connect(("127.0.0.1", port))
    except OSError:
        client.close()  # nothing listens there (yet): the client sees the connection closed
        inner.close()
        return
    peers = {client: inner, inner: client}
    try:
        while peers:
            ready, _, _ = select.select(list(peers), [], [])
            for s in ready:
                data = s.recv(65536)
                peer = peers[s]
                if data:
                    peer.sendall(data)
                    continue
                del peers[s]
                try:
                    peer.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
    except OSError:
        pass
    finally:
        client.close()
        inner.close()


def serve(listeners: list[tuple[socket.socket, int]], pid: int, start: int | None = None,
          ready: int | None = None) -> int:
    """Forward each listener's connections to its port inside PID's network namespace, until PID exits."""
    from wasmlab.runtime.linux.pidfd import open_process

    try:
        pidfd = open_process(pid, start)
        if pidfd is None:
            raise OSError(errno.ESRCH, "the container has no process")
        netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        hostns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        loopback_up(netns, hostns)
    except OSError as exc:
        if ready is not None:
            os.write(ready, f"cannot reach the container's network: {exc.strerror or exc}\n".encode())
            os.close(ready)
        return 1
    if ready is not None:
        os.write(ready, b"ok\n")
        os.close(ready)
    by_fd = {lsock.fileno(): (lsock, port) for lsock, port in listeners}
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == pidfd:
                return 0  # the container is gone: so are its ports (the kernel closes them as we exit)
            lsock, port = by_fd[fd]
            try:
                client, _addr = lsock.accept()
            except OSError:
                continue
            try:
                inner = _in_netns(netns, hostns, socket.AF_INET, socket.SOCK_STREAM)
            except OSError:
                client.close()
                continue
            threading.Thread(target=_pump, args=(client, inner, port), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """--pid PID [--start TICKS] [--ready FD] --listen FD:PORT...: what Lab.run starts for -p."""
    args = sys.argv[1:] if argv is None else argv
    pid, start, ready = 0, None, None
    listeners: list[tuple[socket.socket, int]] = []
    items = iter(args)
    for item in items:
        value = next(items, "")
        if item == "--pid":
            pid = int(value)
        elif item == "--start":
            start = int(value)
        elif item == "--ready":
            ready = int(value)
        elif item == "--listen":
            fd, _, port = value.partition(":")
            listeners.append((socket.socket(fileno=int(fd)), int(port)))
        else:
            raise SystemExit(f"wasmlab-portforward: unknown argument {item!r} (it is started by the Lab)")
    return serve(listeners, pid, start, ready)


if __name__ == "__main__":
    sys.exit(main())
