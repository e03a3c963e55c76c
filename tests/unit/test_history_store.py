"""The run history's database across versions (no root): an old one is migrated, a newer one refused untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from wasmlab.runtime.errors import StoreError
from wasmlab.runtime.store.history import VERSION, History, RunRecord

# The first format, as wasmlab wrote it before the signal column (PRAGMA user_version 0).
_SCHEMA_V0 = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    name TEXT,
    image TEXT,
    handler TEXT,
    started_at REAL NOT NULL,
    exit_code INTEGER,
    oom_killed INTEGER DEFAULT 0,
    create_ms REAL,
    total_ms REAL,
    max_rss_kb INTEGER,
    cache TEXT,
    timings TEXT,
    memory TEXT
);
CREATE INDEX runs_started ON runs(started_at);
"""


def _v0_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_V0)
    conn.executemany(
        "INSERT INTO runs (id, name, image, handler, started_at, exit_code, oom_killed, create_ms, total_ms,"
        " max_rss_kb, cache, timings, memory) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [("a1", "first", "hello", "wasmtime", 100.0, 0, 0, 1.5, 9.0, 2048, "hit", '{"fork": 1.0}', '{"peak": 5}'),
         ("a2", "second", "loop", "native", 200.0, 137, 1, 2.5, 19.0, 4096, "", "{}", "{}")])
    conn.commit()
    conn.close()


def _columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    finally:
        conn.close()


def test_a_version_0_database_keeps_its_rows_and_gains_the_signal_column(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    _v0_database(db)
    assert "signal" not in _columns(db)
    history = History(db)
    try:
        old = history.recent()
        assert [(r.id, r.name, r.image, r.handler, r.exit_code, r.signal, r.oom_killed) for r in old] == [
            ("a2", "second", "loop", "native", 137, None, True),
            ("a1", "first", "hello", "wasmtime", 0, None, False)]
        # The cgroup's peak has one name now (version 2 kept it in memory["peak"]); an unknown cache is None.
        assert old[1].timings == {"fork": 1.0} and old[1].memory == {} and old[1].cgroup_peak_bytes == 5
        assert old[1].init_max_rss_kb == 2048 and (old[1].cache, old[0].cache) == ("hit", None)
        seq = history.record(RunRecord(id="b1", handler="native", exit_code=137, signal=9))
        assert seq == 3 and history.recent(1)[0].signal == 9
    finally:
        history.close()
    assert "signal" in _columns(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
    conn.close()
    again = History(db)  # a second open finds it current: nothing to migrate, nothing lost
    try:
        assert [r.id for r in again.recent()] == ["b1", "a2", "a1"]
    finally:
        again.close()


def test_a_database_from_a_newer_wasmlab_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE runs (seq INTEGER PRIMARY KEY, id TEXT, quantum_state TEXT)")
    conn.execute("INSERT INTO runs (id, quantum_state) VALUES ('z1', 'both')")
    conn.execute(f"PRAGMA user_version = {VERSION + 1}")
    conn.commit()
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    history = History(db)
    with pytest.raises(StoreError) as exc:
        history.recent()
    assert "newer wasmlab" in exc.value.message and "\n" not in exc.value.message
    assert exc.value.hint and "upgrade" in exc.value.hint
    history.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before, "a refused history was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db"], "a refused history left files beside it"


def test_an_unknown_exit_round_trips_as_none(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    try:
        history.record(RunRecord(id="u1", handler="wasmtime", exit_code=None))
        history.record(RunRecord(id="k1", handler="native", exit_code=137, signal=9, oom_killed=True))
        history.record(RunRecord(id="e1", handler="wasmer", exit_code=137))
        runs = {r.id: r for r in history.recent()}
    finally:
        history.close()
    assert runs["u1"].exit_code is None and runs["u1"].signal is None
    assert (runs["k1"].exit_code, runs["k1"].signal, runs["k1"].oom_killed) == (137, 9, True)
    assert (runs["e1"].exit_code, runs["e1"].signal) == (137, None)  # proc_exit(137) is not a SIGKILL


def test_a_process_killed_while_making_a_fresh_history_leaves_one_that_opens(tmp_path: Path) -> None:
    """A kernel or command killed while its first run was being recorded used to leave the table without its
    version: every later open then re-ran the v0 -> v1 step and failed ("duplicate column name: signal")."""
    import os

    from wasmlab.runtime.store import history as history_module

    path = tmp_path / "history.db"

    class DiesAtTheVersion:
        """A connection whose process dies as it is about to write the version (after the table is made)."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

        def __setattr__(self, name: str, value: object) -> None:
            if name == "_conn":
                object.__setattr__(self, name, value)
            else:
                setattr(self._conn, name, value)

        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith("PRAGMA user_version ="):
                os._exit(9)
            return self._conn.execute(sql, *args)

    pid = os.fork()
    if pid == 0:  # the child: no threads of its own, killed by itself mid-way (os._exit runs no cleanup)
        try:
            history_module._migrate(DiesAtTheVersion(sqlite3.connect(path)), path)  # type: ignore[arg-type]
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9, "the child did not reach the version step"
    h = History(path)
    h.record(RunRecord(id="b1", handler="wasmtime", exit_code=0))
    assert [r.id for r in h.recent()] == ["b1"]
    h.close()
    assert "signal" in _columns(path)


def test_a_version_1_database_keeps_its_rows_and_gains_every_measured_figure(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    _v0_database(db)
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE runs ADD COLUMN signal INTEGER")  # what version 1 was
    conn.execute("UPDATE runs SET signal = 9 WHERE id = 'a2'")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert "cgroup_peak_bytes" not in _columns(db)
    history = History(db)
    try:
        old = {r.id: r for r in history.recent()}
        assert (old["a2"].exit_code, old["a2"].signal, old["a2"].init_max_rss_kb) == (137, 9, 4096)
        assert old["a1"].memory == {} and old["a1"].timings == {"fork": 1.0} and old["a1"].cgroup_peak_bytes == 5
        # The figures version 1 did not have are unknown, not zero.
        assert (old["a2"].cgroup_peak_bytes, old["a1"].guest_bytes, old["a1"].first_byte_ms, old["a1"].cache_hit,
                old["a1"].image_size_bytes, old["a1"].pod, old["a1"].kernel) == (None, None, None, None, None, "", "")
        new = RunRecord(id="n1", handler="wasmtime", exit_code=0, create_ms=6.0, start_ms=0.2, first_byte_ms=7.5,
                        exit_ms=9.0, delete_ms=0.8, cache_hit=True, init_max_rss_kb=35000, cgroup_peak_bytes=3_900_000,
                        guest_bytes=120_000, image_size_bytes=28_672, image_compressed_bytes=12_345,
                        pod="default/web", kernel="6.18.44", machine="x86_64 lab1")
        history.record(new)
        [back] = history.recent(1)
    finally:
        history.close()
    assert back == new
    assert back.init_max_rss_kb == 35000 and back.engine == "wasmtime"
    assert set(_columns(db)) >= {"signal", "start_ms", "first_byte_ms", "exit_ms", "delete_ms", "cache_hit",
                                 "cgroup_peak_bytes", "guest_bytes", "image_size_bytes", "image_compressed_bytes",
                                 "pod", "kernel", "machine"}
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSION == 3
    conn.close()


def test_a_version_2_database_gets_one_origin_for_its_timings_and_one_name_for_each_memory_figure(
        tmp_path: Path) -> None:
    """Version 2 had the start and the delete as durations, the create as the runtime's answer (which a native
    workload's first byte could beat), the cgroup's peak and the init's RSS again in memory, and "" for no cache."""
    db = tmp_path / "history.db"
    made = History(db)
    made.migrate()  # today's table; the rows below are as version 2 wrote them
    made.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 2")
    conn.executemany(
        "INSERT INTO runs (id, handler, started_at, exit_code, create_ms, total_ms, max_rss_kb, cache, timings,"
        " memory, start_ms, first_byte_ms, exit_ms, delete_ms, cgroup_peak_bytes) VALUES"
        " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [("w", "wasmtime", 1.0, 0, 8.0, 20.0, 33000, "memory",
          '{"ready": 7.5, "run_start_ms": 8.25, "create_ms": 8.0}',
          '{"peak": 3000000, "current": 0, "max_rss_kb": 33000, "wasm_memory_bytes": 65536}',
          0.75, 9.0, 12.0, 0.5, 3000000),
         ("n", "native", 2.0, 0, 16.7, 30.0, 20000, "", '{"ready": 16.0, "create_ms": 16.7}',
          '{"peak": 1500000, "max_rss_kb": 20000}', None, 16.1, 18.0, None, None)])
    conn.commit()
    conn.close()
    history = History(db)
    try:
        rows = {r.id: r for r in history.recent()}
    finally:
        history.close()
    w, n = rows["w"], rows["n"]
    assert (w.create_ms, w.start_ms, w.first_byte_ms, w.exit_ms, w.delete_ms) == (7.5, 8.25, 9.0, 12.0, 20.5)
    assert w.memory == {"wasm_memory_bytes": 65536} and w.cgroup_peak_bytes == 3000000 and w.cache == "memory"
    # The native run's first byte (16.1) came before the runtime's answer (16.7), never before its ready (16.0).
    assert (n.create_ms, n.start_ms, n.first_byte_ms) == (16.0, None, 16.1) and n.create_ms <= n.first_byte_ms
    assert n.memory == {} and n.cgroup_peak_bytes == 1500000 and n.cache is None and n.init_max_rss_kb == 20000


def test_two_histories_opening_one_old_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    _v0_database(db)
    errors = _migrate_at_once(db, 4)
    assert errors == []
    assert [r.id for r in History(db).recent()] == ["a2", "a1"]


def test_many_histories_opening_a_fresh_database_at_once_all_open_it(tmp_path: Path) -> None:
    """Switching to WAL needs every other connection out, and SQLite says "database is locked" at once (no busy
    wait) while another opens it: about 1 round in 60 failed before the switch waited as the busy handler does."""
    for round_ in range(40):
        db = tmp_path / f"history-{round_}.db"
        _v0_database(db)
        errors = _migrate_at_once(db, 6)
        assert errors == [], (round_, errors)


def test_recent_is_newest_first_by_when_runs_started_not_by_when_their_rows_were_written(tmp_path: Path) -> None:
    h = History(tmp_path / "history.db")
    try:
        h.record(RunRecord(id="early", handler="wasmtime", exit_code=0, started_at=1000.0))  # a detached run,
        h.record(RunRecord(id="late", handler="wasmtime", exit_code=0, started_at=3000.0))
        h.record(RunRecord(id="collected", handler="native", exit_code=0, started_at=2000.0))  # collected later
        assert [r.id for r in h.recent(10)] == ["late", "collected", "early"]
        assert [r.id for r in h.recent(2)] == ["late", "collected"]
        assert [r.id for r in h.recent(10, since_seq=0)] == ["late", "collected", "early"]
        first = h.recent(10)[-1].seq
        assert [r.id for r in h.recent(10, since_seq=first)] == ["late", "collected"]  # written after "early"
    finally:
        h.close()


def _migrate_at_once(db: Path, count: int) -> list[BaseException]:
    """COUNT Histories of DB migrating it at the same moment (a barrier), each on its thread; what they raised."""
    import threading

    errors: list[BaseException] = []
    go = threading.Barrier(count)

    def open_it() -> None:
        h = History(db)
        try:
            go.wait()
            h.migrate()
        except BaseException as exc:
            errors.append(exc)
        finally:
            h.close()

    threads = [threading.Thread(target=open_it) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
