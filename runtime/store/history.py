"""The run history on disk: one SQLite row per container run (exit, signal, timings, memory), versioned."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
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
    memory TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""
# PRAGMA user_version: 0 is the first format (no signal column); each step brings a database one version on.
VERSION = 1
_MIGRATIONS = {0: "ALTER TABLE runs ADD COLUMN signal INTEGER"}
_COLUMNS = ("id, name, image, handler, started_at, exit_code, signal, oom_killed, create_ms, total_ms, max_rss_kb,"
            " cache, timings, memory")


@dataclass
class RunRecord:
    """One finished container run."""

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
    max_rss_kb: int = 0
    cache: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    seq: int = 0

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
            conn.execute("PRAGMA journal_mode=WAL")
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
                f"INSERT INTO runs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.id, rec.name, rec.image, rec.handler, rec.started_at, rec.exit_code, rec.signal,
                 int(rec.oom_killed),
                 rec.create_ms, rec.total_ms, rec.max_rss_kb, rec.cache, json.dumps(rec.timings),
                 json.dumps(rec.memory)))
            db.commit()
            rec.seq = int(cur.lastrowid or 0)
            return rec.seq

    def recent(self, limit: int = 100, *, handler: str | None = None, since_seq: int = 0) -> list[RunRecord]:
        """The newest runs first (or, with since_seq, every run after that one, oldest first)."""
        with self._lock:
            db = self._db()
            where: list[str] = ["seq > ?"]
            args: list[Any] = [since_seq]
            if handler:
                where.append("handler = ?")
                args.append(handler)
            order = "ASC" if since_seq else "DESC"
            rows = db.execute(
                f"SELECT seq, {_COLUMNS} FROM runs WHERE {' AND '.join(where)}"
                f" ORDER BY seq {order} LIMIT ?", (*args, limit)).fetchall()
        return [RunRecord(seq=r[0], id=r[1], name=r[2] or "", image=r[3] or "", handler=r[4] or "",
                          started_at=r[5], exit_code=r[6], signal=r[7], oom_killed=bool(r[8]), create_ms=r[9] or 0.0,
                          total_ms=r[10] or 0.0, max_rss_kb=r[11] or 0, cache=r[12] or "",
                          timings=json.loads(r[13] or "{}"), memory=json.loads(r[14] or "{}")) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database to VERSION, or refuse one written by a newer wasmlab.

    One write transaction, taken before the version is read: the table, its index and the version land together
    or not at all (a process killed in between left a table without its version, which every later open then
    failed to migrate), and two connections opening a fresh home one after the other see each other's work."""
    level = conn.isolation_level
    conn.isolation_level = None  # the transaction below is explicit
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None
        if version > VERSION:
            raise StoreError(f"{path} was written by a newer wasmlab (history format {version}, this one reads "
                             f"up to {VERSION})", "upgrade wasmlab, or move that file away to start a new history")
        if not exists:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
        else:
            for step in range(version, VERSION):
                conn.execute(_MIGRATIONS[step])
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except StoreError:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    except BaseException:
        conn.execute("ROLLBACK")
        conn.isolation_level = level
        raise
    conn.isolation_level = level
