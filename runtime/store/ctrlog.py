"""A container's log: podman's k8s-file lines (time, stream, full or partial), kept under a size cap by rotation,
and read back (with a cursor, --tail, --since), older raw logs included."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from wasmlab.runtime.errors import UsageError

LOG_NAME = "ctr.log"
OLDER = ".1"              # the one older generation kept: ctr.log.1
LOG_FORMAT = "k8s-file"   # what meta.json says of a log written this way (older containers' logs are raw bytes)
DEFAULT_MAX = 10 * 1024 * 1024  # podman's log_size_max, for both generations together
# A cursor at or above this is (inode << _INO_SHIFT) | offset: it survives a rotation. Below it, an offset
# into the current file (what raw logs, and cursors from before, are).
_INO_SHIFT = 48
_CHUNK = 65536


def stamp(ns: int | None = None) -> bytes:
    """RFC 3339 with nanoseconds, in UTC, as k8s-file has it: 2024-01-01T00:00:00.000000000Z."""
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode() + b".%09dZ" % frac


def records(stream: bytes, data: bytes, ns: int | None = None) -> bytes:
    """DATA as k8s-file records: one per line, F for a full line, P for a last piece without its newline."""
    return b"".join(record_list(stream, data, ns))


def record_list(stream: bytes, data: bytes, ns: int | None = None, limit: int = 0) -> list[bytes]:
    """records(), one by one. LIMIT (0: none): no record is longer; a longer line goes as P pieces, then its
    end (as CRI-O splits long lines)."""
    when = stamp(ns)
    out = []
    room = max(1, limit - len(when) - len(stream) - 5) if limit else 0  # "T S F " and the newline
    for piece in data.splitlines(keepends=True):
        full = piece.endswith(b"\n")
        body = piece[:-1] if full else piece
        while room and len(body) > room:
            out.append(b"%s %s P %s\n" % (when, stream, body[:room]))
            body = body[room:]
        out.append(b"%s %s %s %s\n" % (when, stream, b"F" if full else b"P", body))
    return out


class LogWriter:
    """Appends k8s-file records to DIR/ctr.log. When the file would pass half of MAX_SIZE it becomes ctr.log.1
    (replacing the older one) and a new ctr.log starts: the two stay under MAX_SIZE (0: no cap). Not
    thread-safe: one writer per log, used by one thread (the zygote's loop, or a relay thread)."""

    def __init__(self, folder: str | os.PathLike[str], max_size: int = DEFAULT_MAX) -> None:
        self.path = os.path.join(os.fspath(folder), LOG_NAME)
        self.max_size = max_size
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: bytes, data: bytes) -> None:
        if not data or self.fd < 0:
            return
        half = self.max_size // 2
        rec = records(stream, data)
        if not self.max_size or self.size + len(rec) <= half:
            self._append(rec)
            return
        # It would pass half the cap. One read from a fast writer's pipe can hold more than that (64 KiB of
        # short lines is far more as records): it goes record by record, each generation filled up to half
        # and rotated, so a reader never sees the two over the cap, not even between two writes.
        batch: list[bytes] = []
        size = self.size
        for line in record_list(stream, data, limit=half):
            if size and size + len(line) > half:
                self._append(b"".join(batch))
                batch = []
                self._rotate()
                size = self.size
            batch.append(line)
            size += len(line)
        self._append(b"".join(batch))

    def _append(self, rec: bytes) -> None:
        view = memoryview(rec)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError:
                return  # a full disk loses lines, never the container
            view = view[n:]
            self.size += n

    def _rotate(self) -> None:
        # The new file is made while the older generation still exists, so its inode differs from every
        # cursor a reader may hold; then two renames (a reader that finds no ctr.log in between retries).
        new = self.path + ".new"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.rename(self.path, self.path + OLDER)
            os.rename(new, self.path)
        except OSError:
            os.close(fd)
            return
        os.close(self.fd)
        self.fd, self.size = fd, 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class LogEntry:
    """One record: its time (k8s-file's text; "" in a raw log), stream, and bytes (with the newline if full)."""

    time: str
    stream: str
    data: bytes

    @property
    def full(self) -> bool:
        return self.data.endswith(b"\n")

    @property
    def ns(self) -> int:
        """The time in nanoseconds since the epoch (0 when the log recorded none)."""
        return parse_stamp(self.time) if self.time else 0


def parse_stamp(text: str) -> int:
    """k8s-file's time (always UTC, 'Z') as nanoseconds since the epoch."""
    import calendar

    whole, _, frac = text.rstrip("Z").partition(".")
    sec = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return sec * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _parse(line: bytes) -> LogEntry:
    when, _, rest = line.partition(b" ")
    stream, _, rest = rest.partition(b" ")
    tag, _, text = rest.partition(b" ")
    return LogEntry(when.decode("ascii", "replace"), stream.decode("ascii", "replace"),
                    text + b"\n" if tag == b"F" else text)


def _read_from(path: str, offset: int) -> tuple[bytes, int] | None:
    """The whole records of PATH from OFFSET on, and its inode; None if there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        ino = os.fstat(fd).st_ino
        os.lseek(fd, max(0, offset), os.SEEK_SET)
        parts = []
        while chunk := os.read(fd, _CHUNK):
            parts.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(parts)
    return data[: data.rfind(b"\n") + 1], ino


def read(folder: str | os.PathLike[str], after: int = 0, *, raw: bool = False) -> tuple[list[LogEntry], int]:
    """The records from cursor AFTER on (0: from the start, the older generation included) and the next cursor.
    RAW: a log from before times were recorded, read as stdout lines with no time."""
    path = os.path.join(os.fspath(folder), LOG_NAME)
    if raw:
        return _read_raw(path, after)
    for _attempt in range(20):  # a rotation between two renames: look again
        current = _read_from(path, 0)
        if current is not None:
            break
    else:
        return [], after
    _, ino = current
    ino_cursor, offset = divmod(after, 1 << _INO_SHIFT)
    chunks: list[bytes] = []
    if after and not ino_cursor:  # an offset into the current file (a cursor from before): answered so
        here = _read_from(path, offset)
        data = here[0] if here else b""
        return [_parse(line) for line in data.splitlines()], offset + len(data)
    if ino_cursor == ino:
        start = offset
    else:
        older = _read_from(path + OLDER, offset if ino_cursor else 0)
        if older is not None:
            data, older_ino = older
            if ino_cursor in (0, older_ino):
                chunks.append(data)
            else:  # the cursor's file is gone (rotated out twice): the older generation whole
                whole = _read_from(path + OLDER, 0)
                chunks.append(whole[0] if whole else b"")
        start = 0
    here = _read_from(path, start)
    if here is None:
        return [], after
    data, ino = here
    chunks.append(data)
    entries = [_parse(line) for chunk in chunks for line in chunk.splitlines()]
    return entries, (ino << _INO_SHIFT) | (start + len(data))


def _read_raw(path: str, after: int) -> tuple[list[LogEntry], int]:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, after))
            data = fh.read()
    except FileNotFoundError:
        return [], after
    return [LogEntry("", "stdout", line) for line in data.splitlines(keepends=True)], max(0, after) + len(data)


def lines(entries: Iterable[LogEntry]) -> list[LogEntry]:
    """Partial records joined to the line they end with (the time is the first piece's)."""
    out: list[LogEntry] = []
    pending: dict[str, LogEntry] = {}
    for e in entries:
        head = pending.pop(e.stream, None)
        merged = LogEntry(head.time, e.stream, head.data + e.data) if head else e
        if merged.full:
            out.append(merged)
        else:
            pending[e.stream] = merged
    out.extend(pending.values())
    return out


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_since(text: str, now: float | None = None) -> int:
    """podman's --since: RFC 3339 (2024-01-01T10:00:00Z, with or without a zone: local), a date, unix seconds
    (1700000000 or 1700000000.5), or a Go duration before now (10m, 1h30m, 90s). Nanoseconds since the epoch."""
    import datetime

    value = text.strip()
    now = time.time() if now is None else now
    if _DURATION.match(value):
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
        return int((now - seconds) * 1e9)
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return int(float(value) * 1e9)
    try:
        iso = value.replace("Z", "+00:00").replace("z", "+00:00")
        frac = re.search(r"\.(\d+)", iso)
        extra_ns = 0
        if frac and len(frac.group(1)) > 6:  # Python keeps microseconds; nanoseconds are added back
            extra_ns = int(frac.group(1)[6:9].ljust(3, "0"))
            iso = iso[: frac.start(1) + 6] + iso[frac.end(1):]
        when = datetime.datetime.fromisoformat(iso)
    except ValueError:
        raise UsageError(f"cannot read the time {text!r}",
                         "use RFC 3339 (2024-01-01T10:00:00Z), unix seconds, or a duration such as 10m") from None
    if when.tzinfo is None:
        when = when.astimezone()  # podman reads a time without a zone as local
    micros = int(when.timestamp()) * 1_000_000 + when.microsecond
    return micros * 1000 + extra_ns
