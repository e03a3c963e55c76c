"""Face-neutral presentation: sizes, ages, plurals and progress lines, the same in the CLI, the TUI and notebooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasmlab.runtime import ContainerInfo, Progress


def size(n: float) -> str:
    """Bytes as podman shows them: 512 B, 1.5 kB, 27.3 MB (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return str(n)


def stat_size(n: float) -> str:
    """Bytes as podman stats shows them (go-units' HumanSize): 0B, 472B, 1.006kB, 507.9kB, 25.28GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return str(n)


def _epoch(when: float | str) -> float | None:
    """Seconds since the epoch, from a number or an RFC 3339 string; None for a string that is not one."""
    if not isinstance(when, str):
        return when
    from datetime import datetime

    try:
        return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ago(when: float | str, *, short: bool = False) -> str:
    """How long ago a time (seconds since the epoch, or an RFC 3339 string) was: "3 minutes ago" ("3m ago")."""
    ts = _epoch(when)
    if ts is None:
        return str(when) or "-"
    delta = max(0.0, time.time() - ts)
    for secs, unit, letter in ((86400, "day", "d"), (3600, "hour", "h"), (60, "minute", "m"), (1, "second", "s")):
        if delta >= secs or unit == "second":
            n = int(delta // secs)
            return f"{n}{letter} ago" if short else f"{plural(n, unit)} ago"
    return "-"


def short_id(image_id: str) -> str:
    """An image or container id as every listing shows it: 12 hex digits, without "sha256:"."""
    return image_id.removeprefix("sha256:")[:12]


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """ "1 image", "2 images"."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def status(info: ContainerInfo) -> str:
    """A container's status as `ps` shows it: Running, Paused, Exited (0)."""
    if info.status == "stopped" and info.exit_code is not None:
        return f"Exited ({info.exit_code})"
    return str(info.status).title()


def progress_line(p: Progress, *, width: int = 30) -> str:
    """One line for a Progress: a bar when the total is known ("[####......] 1.2 MB/3 MB what")."""
    fraction = p.fraction
    if fraction is None:
        return p.what
    filled = int(width * fraction)
    amount = f"{size(p.done)}/{size(p.total)}" if p.unit == "bytes" else f"{p.done}/{p.total}"
    return f"[{'#' * filled}{'.' * (width - filled)}] {amount} {p.what}"


# A run's three memory figures, named alike in every face (see RunRecord): never call the first "peak memory".
INIT_RSS = "init RSS"        # init_max_rss_kb: the container's init process's own peak RSS (for Wasm, Python's)
CGROUP_PEAK = "cgroup peak"  # cgroup_peak_bytes: what the whole container cost the machine
GUEST = "guest"              # guest_bytes: the cgroup peak minus the same engine's hello baseline
# What each means, in one line a face can show beside them.
MEMORY_LEGEND = (f"{CGROUP_PEAK}: what the container's cgroup used at most; {GUEST}: that peak minus the same "
                 f"engine's hello; {INIT_RSS}: the container's init process alone (for Wasm, Python and the engine)")
# And the times: every one a moment in ms from the same origin.
TIMES_LEGEND = "times: ms from the create request (create: ready; start: the workload began; exited: its exit known)"
# The history's columns, named alike in the CLI and the TUI: CODE is the exit code, EXITED the moment of the exit.
CODE, CREATE, START, FIRST_BYTE, EXITED = "CODE", "CREATE", "START", "1ST BYTE", "EXITED"


def memory(n: float | None) -> str:
    """Memory in the bench's unit family (powers of 1024: 512 B, 4.0 KiB, 76.4 MiB, 596 KiB, 1.2 GiB; at most 8
    cells), or "-" when the figure is unknown (no cgroup, no baseline). Image sizes stay podman's (size(): kB)."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 99.95 else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def ms(value: float | None) -> str:
    """A duration in ms as listings show it ("12.3"), or "-" when it is not known (a detached run's first byte)."""
    return "-" if value is None else f"{value:.1f}"


def middle(text: str, width: int) -> str:
    """TEXT in WIDTH cells, cut in the middle when longer (both ends of default_mixed-compat_sidecar tell)."""
    if len(text) <= width or width < 5:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


# The keys of a document whose values are moments (epoch seconds or RFC 3339): dated() shows them as when() does.
MOMENT_KEYS = frozenset({"created", "started", "started_at", "finished", "finished_at", "exited_at", "next_restart"})


def dated(document: object) -> object:
    """DOCUMENT (dicts and lists, as JSON) with every moment under MOMENT_KEYS as a date and an age, for reading."""
    if isinstance(document, dict):
        return {k: when(v) if k in MOMENT_KEYS and isinstance(v, (int, float, str)) and v and not isinstance(v, bool)
                else dated(v) for k, v in document.items()}
    if isinstance(document, list):
        return [dated(v) for v in document]
    return document


def when(ts: float | str) -> str:
    """A moment as a local date and its age: "2026-12-01 14:03:07 (3 minutes ago)"."""
    moment = _epoch(ts)
    if moment is None:
        return str(ts) or "-"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(moment))} ({ago(moment)})"


# -- podman stats' figures, the same for `stats` (a container's) and `pod stats` (a pod's cgroup parent) ---------

def mem_usage(s: Any) -> str:
    """podman's `507.9kB / 25.28GB`; the limit is "-" when there is none (podman shows the machine's memory)."""
    limit = "-" if s.memory_limit_bytes is None else stat_size(s.memory_limit_bytes)
    return f"{stat_size(s.memory_bytes)} / {limit}"


def mem_percent(s: Any) -> str:
    return "-" if not s.memory_limit_bytes else f"{s.memory_bytes / s.memory_limit_bytes * 100:.2f}%"


def pair(read: int | None, written: int | None) -> str:
    """podman's `in / out` of two byte totals; "-" when unknown (a container on the host's network)."""
    return "-" if read is None or written is None else f"{stat_size(read)} / {stat_size(written)}"


def cpu_percent(s: Any) -> str:
    return f"{s.cpu_percent:.2f}%"


def pids(s: Any) -> str:
    return "-" if s.pids is None else str(s.pids)


# The columns a sample of either kind shows (their --format names and headers).
_SAMPLE_FIELDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "Name": ("NAME", lambda s: s.name),
    "CPUPerc": ("CPU %", cpu_percent),
    "MemUsage": ("MEM USAGE / LIMIT", mem_usage),
    "MemUsageBytes": ("MEM USAGE / LIMIT", mem_usage),
    "MemPerc": ("MEM %", mem_percent),
    "NetIO": ("NET IO", lambda s: pair(s.net_rx_bytes, s.net_tx_bytes)),
    "BlockIO": ("BLOCK IO", lambda s: pair(s.block_read_bytes, s.block_write_bytes)),
    "PIDS": ("PIDS", pids),
    "MemPeak": ("MEM PEAK", lambda s: stat_size(s.memory_peak_bytes)),
}
# podman stats' columns and wasmlab's own two (ENGINE, and the POD a container belongs to).
STATS_FIELDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "ID": ("ID", lambda s: s.id[:12]), **_SAMPLE_FIELDS,
    "Engine": ("ENGINE", lambda s: s.engine or "-"),
    "Pod": ("POD", lambda s: s.pod or "-"),
}
STATS_TABLE = "table " + "\t".join("{{." + name + "}}" for name in (
    "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDS", "MemPeak", "Engine"))
# podman pod stats' columns: one row per pod (POD is its id, NAME its NAMESPACE/NAME); podman's own names for
# the figures (.CPU, .Mem) and those of `stats` (.CPUPerc, .MemPerc) both work.
POD_STATS_FIELDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "Pod": ("POD", lambda s: s.id[:12]), "ID": ("POD", lambda s: s.id[:12]), **_SAMPLE_FIELDS,
    "CPU": ("CPU %", cpu_percent), "Mem": ("MEM %", mem_percent),
}
POD_STATS_TABLE = "table " + "\t".join("{{." + name + "}}" for name in (
    "Pod", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDS"))


def stats_row(s: Any) -> dict[str, Any]:
    """One sample as podman's stats JSON names it (its strings), plus the figures as numbers (None: unknown)."""
    return {"id": s.id, "name": s.name, "cpu_percent": cpu_percent(s), "mem_usage": mem_usage(s),
            "mem_percent": mem_percent(s), "net_io": pair(s.net_rx_bytes, s.net_tx_bytes),
            "block_io": pair(s.block_read_bytes, s.block_write_bytes), "pids": pids(s),
            "cpu": s.cpu_percent, "mem_bytes": s.memory_bytes, "mem_limit_bytes": s.memory_limit_bytes,
            "mem_peak_bytes": s.memory_peak_bytes, "net_rx_bytes": s.net_rx_bytes, "net_tx_bytes": s.net_tx_bytes,
            "block_read_bytes": s.block_read_bytes, "block_write_bytes": s.block_write_bytes,
            "pids_current": s.pids, "engine": s.engine, "pod": s.pod}
