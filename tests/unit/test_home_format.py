"""Lab homes that last: a format number, migration of an older home, and a one-line refusal of a newer one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

OLD_SCHEMA = """CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, name TEXT, image TEXT,
    handler TEXT, started_at REAL NOT NULL, exit_code INTEGER, oom_killed INTEGER DEFAULT 0, create_ms REAL,
    total_ms REAL, max_rss_kb INTEGER, cache TEXT, timings TEXT, memory TEXT)"""


def test_a_new_home_is_stamped_with_the_current_format(tmp_path: Path) -> None:
    from wasmlab.runtime.store.migrate import FORMAT_FILE, HOME_FORMAT, home_format, open_home

    home = tmp_path / "new"
    assert home_format(home) is None
    open_home(home)
    assert json.loads((home / FORMAT_FILE).read_text()) == {"format": HOME_FORMAT}
    assert home_format(home) == HOME_FORMAT


def test_a_home_from_before_formats_is_migrated_and_keeps_its_history(tmp_path: Path) -> None:
    from wasmlab.runtime.store.history import History
    from wasmlab.runtime.store.migrate import HOME_FORMAT, home_format, open_home

    home = tmp_path / "old"
    home.mkdir()
    db = sqlite3.connect(home / "history.db")
    db.execute(OLD_SCHEMA)
    db.execute("INSERT INTO runs (id, handler, started_at, exit_code) VALUES ('r1', 'wasmtime', 1.0, 7)")
    db.commit()
    db.close()
    open_home(home)
    assert home_format(home) == HOME_FORMAT
    columns = [r[1] for r in sqlite3.connect(home / "history.db").execute("PRAGMA table_info(runs)")]
    assert "signal" in columns
    rows = History(home / "history.db").recent(10)
    assert [(r.id, r.exit_code, r.signal) for r in rows] == [("r1", 7, None)]


@pytest.mark.parametrize("content", ['{"format": 99}', "not json", '{"format": "one"}'])
def test_a_newer_or_damaged_home_is_refused_in_one_line(tmp_path: Path, content: str) -> None:
    from wasmlab.runtime.errors import HomeError
    from wasmlab.runtime.store.migrate import FORMAT_FILE, open_home

    home = tmp_path / "home"
    home.mkdir()
    (home / FORMAT_FILE).write_text(content)
    before = sorted(p.name for p in home.iterdir())
    with pytest.raises(HomeError) as err:
        open_home(home)
    assert "\n" not in err.value.one_line() and err.value.hint
    assert ("newer wasmlab" in err.value.message) == ("99" in content)
    assert sorted(p.name for p in home.iterdir()) == before  # nothing written, nothing migrated
    # The command line says the same, in one line, with a non-zero exit and no traceback.
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "wasmlab"), "images"], capture_output=True, text=True,
                       env=os.environ | {"WASMLAB_HOME": str(home)}, timeout=60)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("Error: the lab home")
