"""The run history on disk: one SQLite row per container run (exit, signal, timings, memory), versioned."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    name TEXT,
    image TEXT,
    handler TEXT,
    started_at REAL NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    oom_killed INTEGER DEFAULT 0,
    create_ms REAL,
    total_ms REAL,
    max_rss_kb INTEGER,
    cache TEXT,
    timings TEXT,
    memory TEXT,
    start_ms REAL,
    first_byte_ms REAL,
    exit_ms REAL,
    delete_ms REAL,
    cache_hit INTEGER,
    cgroup_peak_bytes INTEGER,
    guest_bytes INTEGER,
    image_size_bytes INTEGER,
    image_compressed_bytes INTEGER,
    pod TEXT,
    kernel TEXT,
    machine TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""
# PRAGMA user_version: 0 is the first format (no signal column); 1 added the signal; 2 every run measured (the
# timings of each step, the cgroup's peak apart from the init's RSS, the guest's share, the image's sizes, and
# the pod, kernel and machine); 3 one origin and one set of names: every timing a moment from the create
# request (2 had the start and the delete as durations, and the create as the runtime's answer, which a native
# workload's first byte could beat), the cgroup's peak only in its column (2 kept it in memory["peak"] too, and
# the init's RSS in memory["max_rss_kb"]), and an unknown cache as NULL (2: ""). Each step brings a database one
# version on.
VERSION = 3
_V2 = (("start_ms", "REAL"), ("first_byte_ms", "REAL"), ("exit_ms", "REAL"), ("delete_ms", "REAL"),
       ("cache_hit", "INTEGER"), ("cgroup_peak_bytes", "INTEGER"), ("guest_bytes", "INTEGER"),
       ("image_size_bytes", "INTEGER"), ("image_compressed_bytes", "INTEGER"), ("pod", "TEXT"), ("kernel", "TEXT"),
       ("machine", "TEXT"))
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: ("ALTER TABLE runs ADD COLUMN signal INTEGER",),
    1: tuple(f"ALTER TABLE runs ADD COLUMN {name} {kind}" for name, kind in _V2),
    2: ("UPDATE runs SET"
        " start_ms = CASE WHEN start_ms IS NULL THEN NULL"
        "   ELSE COALESCE(json_extract(timings, '$.run_start_ms'), start_ms + create_ms) END,"
        " delete_ms = CASE WHEN delete_ms IS NULL THEN NULL ELSE delete_ms + total_ms END,"
        " create_ms = COALESCE(json_extract(timings, '$.ready'), create_ms),"
        " cgroup_peak_bytes = COALESCE(cgroup_peak_bytes, NULLIF(json_extract(memory, '$.peak'), 0)),"
        " memory = json_remove(COALESCE(memory, '{}'), '$.peak', '$.current', '$.max_rss_kb'),"
        " cache = NULLIF(cache, '')",),
}
_COLUMNS = ("id, name, image, handler, started_at, exit_code, signal, oom_killed, create_ms, total_ms, max_rss_kb,"
            " cache, timings, memory, " + ", ".join(name for name, _ in _V2))


@dataclass
class RunRecord:
    """One finished container run. Three memory figures, never to be confused, and only these three:

    - ``init_max_rss_kb``: the container's init process's own peak RSS (getrusage). For a Wasm container that init
      is a Python process holding the engine: tens of MiB even for hello.
    - ``cgroup_peak_bytes``: the peak of the container's cgroup (v1 memory.max_usage_in_bytes, v2 memory.peak):
      what the container cost the machine, shared pages charged to whoever touched them first.
    - ``guest_bytes``: the cgroup peak minus the same engine's hello baseline: what the workload itself added.

    ``memory`` holds the other figures an engine reports, each under its own name (``wasm_memory_bytes``: the
    guest's linear memory when it exited), never one of the three again.

    Every timing is a moment in milliseconds from ONE origin: the moment the zygote began the create request
    (CLOCK_MONOTONIC, which every process shares; ``timings["request_s"]`` is that origin in seconds). In order:
    ``create_ms`` (the init reported the container ready), ``start_ms`` (the workload began: the native program's
    execve, the Wasm handler's first step), ``first_byte_ms`` (the first byte of stdout reached the caller; None
    when detached), ``exit_ms`` (the exit was known), ``delete_ms`` (the runtime had deleted it; None unless it
    deleted it itself). ``total_ms`` is the reap. None is unknown, never 0."""

    id: str
    handler: str
    exit_code: int | None            # None: the exit could not be known (see ExitRecord)
    started_at: float = field(default_factory=time.time)
    name: str = ""
    image: str = ""
    signal: int | None = None        # the signal that ended the process; None when it exited by itself
    oom_killed: bool = False
    create_ms: float = 0.0
    total_ms: float = 0.0
    init_max_rss_kb: int = 0        # the init process's peak RSS in KiB (not the cgroup's peak)
    cache: str | None = None        # where the compiled module came from; None: no module, or not known
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    start_ms: float | None = None
    first_byte_ms: float | None = None
    exit_ms: float | None = None
    delete_ms: float | None = None
    cache_hit: bool | None = None            # the compiled module came from a cache; None: no module (native)
    cgroup_peak_bytes: int | None = None
    guest_bytes: int | None = None
    image_size_bytes: int | None = None      # the image unpacked on disk
    image_compressed_bytes: int | None = None  # as stored and transferred (manifest, config, compressed layers)
    pod: str = ""                            # namespace/name of its pod
    kernel: str = ""                         # uname -r
    machine: str = ""                        # uname -m and the host name

    @property
    def engine(self) -> str:
        return self.handler

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class History:
    """Append-only run history in ``<home>/history.db``; safe from several threads and processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            _migrate(conn, self.path)  # first: a database from a newer wasmlab is refused before anything writes
            _write_ahead(conn)
            conn.execute("PRAGMA synchronous=NORMAL")  # no fsync per run: history is a record, not a ledger
            self._conn = conn
        return self._conn

    def migrate(self) -> None:
        """Bring the database to this wasmlab's format now (it happens on first use anyway)."""
        with self._lock:
            self._db()

    def record(self, rec: RunRecord) -> int:
        with self._lock:
            db = self._db()
            cur = db.execute(
                f"INSERT INTO runs ({_COLUMNS}) VALUES ({','.join('?' * (14 + len(_V2)))})",
                (rec.id, rec.name, rec.image, rec.handler, rec.started_at, rec.exit_code, rec.signal,
                 int(rec.oom_killed),
                 rec.create_ms, rec.total_ms, rec.init_max_rss_kb, rec.cache, json.dumps(rec.timings),
                 json.dumps(rec.memory), rec.start_ms, rec.first_byte_ms, rec.exit_ms, rec.delete_ms,
                 None if rec.cache_hit is None else int(rec.cache_hit), rec.cgroup_peak_bytes, rec.guest_bytes,
                 rec.image_size_bytes, rec.image_compressed_bytes, rec.pod, rec.kernel, rec.machine))
            db.commit()
            rec.seq = int(cur.lastrowid or 0)
            return rec.seq

    def recent(self, limit: int = 100, *, handler: str | None = None, since_seq: int = 0) -> list[RunRecord]:
        """The newest runs first, by when they started (or, with since_seq, every run written after that one, in
        the order they were written)."""
        with self._lock:
            db = self._db()
            where: list[str] = ["seq > ?"]
            args: list[Any] = [since_seq]
            if handler:
                where.append("handler = ?")
                args.append(handler)
            # Newest by when it ran: a detached run's row is written when a lab collects it, maybe long after
            # later runs' rows (seq is the order of writing, which a follower of new rows wants).
            order = "seq ASC" if since_seq else "started_at DESC, seq DESC"
            rows = db.execute(
                f"SELECT seq, {_COLUMNS} FROM runs WHERE {' AND '.join(where)}"
                f" ORDER BY {order} LIMIT ?", (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def run(self, cid: str) -> RunRecord | None:
        """The row of container CID's run (its last, if the id was used again), or None."""
        with self._lock:
            row = self._db().execute(f"SELECT seq, {_COLUMNS} FROM runs WHERE id = ? ORDER BY seq DESC LIMIT 1",
                                     (cid,)).fetchone()
        return None if row is None else _row(row)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _row(r: Sequence[Any]) -> RunRecord:
    return RunRecord(seq=r[0], id=r[1], name=r[2] or "", image=r[3] or "", handler=r[4] or "",
                     started_at=r[5], exit_code=r[6], signal=r[7], oom_killed=bool(r[8]), create_ms=r[9] or 0.0,
                     total_ms=r[10] or 0.0, init_max_rss_kb=r[11] or 0, cache=r[12] or None,
                     timings=json.loads(r[13] or "{}"), memory=json.loads(r[14] or "{}"),
                     start_ms=r[15], first_byte_ms=r[16], exit_ms=r[17], delete_ms=r[18],
                     cache_hit=None if r[19] is None else bool(r[19]), cgroup_peak_bytes=r[20], guest_bytes=r[21],
                     image_size_bytes=r[22], image_compressed_bytes=r[23], pod=r[24] or "", kernel=r[25] or "",
                     machine=r[26] or "")


def _write_ahead(conn: sqlite3.Connection, timeout: float = 10.0) -> None:
    """Put the database in WAL mode (it stays so). Switching needs every other connection out of it, and SQLite
    answers "database is locked" at once, without its busy wait, while another opens it: wait as the busy
    handler would, and stop as soon as another connection has made the switch."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchall()[0][0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)  # contention on a lock, as SQLite's own busy handler sleeps between tries
        pause = min(pause * 2, 0.05)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database to VERSION, or refuse one written by a newer wasmlab.

    A current database is only read. Otherwise one write transaction, taken before the version is read again: the
    table, its index and the version land together or not at all (a process killed in between left a table without
    its version, which every later open then failed to migrate), another process migrating at the same time waits
    and then finds the database current, and a migration cut short leaves the old format whole."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None
    if version > VERSION:
        conn.close()
        raise StoreError(f"{path} was written by a newer wasmlab (history format {version}, this one reads "
                         f"up to {VERSION})", "upgrade wasmlab, or move that file away to start a new history")
    if exists and version == VERSION:
        return
    level = conn.isolation_level
    conn.isolation_level = None  # the transaction below is explicit
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None
        if not exists:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
        else:
            for step in range(version, VERSION):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.isolation_level = level
        raise
    conn.isolation_level = level
