"""A process table from /proc: what `top` shows of a container's processes (pids as the container sees them)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_HZ = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessRow:
    """One process, with podman top's default columns (USER PID PPID %CPU ELAPSED TTY TIME COMMAND)."""

    user: str
    pid: int          # in the container's pid namespace
    ppid: int         # in the container's pid namespace; 0 when its parent is outside the container
    cpu_percent: float  # CPU time over the time since it started, as ps's %CPU
    elapsed: float    # seconds since it started
    tty: str          # "?" when it has no terminal, else pts/N
    cpu_seconds: float
    command: str
    host_pid: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"user": self.user, "pid": self.pid, "ppid": self.ppid, "cpu_percent": round(self.cpu_percent, 3),
                "elapsed": round(self.elapsed, 3), "tty": self.tty, "cpu_seconds": round(self.cpu_seconds, 2),
                "command": self.command, "host_pid": self.host_pid}


def processes(pids: list[int]) -> list[ProcessRow]:
    """Rows for the host PIDS that still exist, sorted by the container's pid (gone ones are left out)."""
    found: dict[int, tuple[dict[str, str], list[str], str]] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
                status = dict(line.rstrip("\n").partition(":\t")[::2] for line in fh)
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read()
        except OSError:
            continue  # it ended meanwhile
        comm = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
        fields = stat[stat.rfind(b")") + 2:].decode().split()
        command = " ".join(a.decode(errors="replace") for a in argv.split(b"\0") if a) or f"[{comm}]"
        found[pid] = (status, fields, command)
    inner = {pid: _inner_pid(st, pid) for pid, (st, _f, _c) in found.items()}
    uptime = _uptime()
    rows = []
    for pid, (status, fields, command) in found.items():
        ppid = int(status.get("PPid", "0") or 0)
        cpu = (int(fields[11]) + int(fields[12])) / _HZ  # utime + stime
        elapsed = max(0.0, uptime - int(fields[19]) / _HZ)
        uid = int(status.get("Uid", "0").split()[0])
        rows.append(ProcessRow(user="root" if uid == 0 else str(uid), pid=inner[pid], ppid=inner.get(ppid, 0),
                               cpu_percent=100.0 * cpu / elapsed if elapsed > 0 else 0.0, elapsed=elapsed,
                               tty=_tty(int(fields[4])), cpu_seconds=cpu, command=command, host_pid=pid))
    return sorted(rows, key=lambda r: r.pid)


def _inner_pid(status: dict[str, str], pid: int) -> int:
    """The pid in the innermost pid namespace (the last of NSpid): the container's view."""
    ns = status.get("NSpid", "").split()
    return int(ns[-1]) if ns else pid


def _tty(nr: int) -> str:
    if nr == 0:
        return "?"
    major, minor = (nr >> 8) & 0xFFF, (nr & 0xFF) | ((nr >> 12) & 0xFFF00)
    return f"pts/{minor}" if 136 <= major <= 143 else f"tty{minor}" if major == 4 else f"{major}:{minor}"


def _uptime() -> float:
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError):
        return time.monotonic()

