"""The suite's cgroup leak check: it catches a cgroup this session leaks, and ignores other suites' cgroups.

Each case runs a tiny test file in a pytest of its own (a subprocess), with the real tests/conftest.py loaded as
a plugin, and reads that session's verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CGROUP_BASES, ROOT, need_root

pytestmark = pytest.mark.root

# Made through the runtime: one as a container without a cgroupsPath would be (under the session's parent),
# one with a cgroupsPath as the tests write them (under CGROUP_PARENT, from the copy of the conftest the tests
# import, which pytest has loaded under another name).
LEAKY = """
from wasmlab.runtime.linux import cgroups

from tests.conftest import CGROUP_PARENT

def test_leaks_cgroups():
    for path, cid in (("", "leaked-default"), (CGROUP_PARENT + "/leaked-explicit", "x")):
        cg = cgroups.create(path, cid, {"pids": {"limit": 10}}, rootless=False)
        assert cg is not None
        print("LEAKED", cg.path)
"""

# Another suite's container, alive while this session runs: made under the shared wasmlab parent by a path
# that is not this session's (the outer test removes it).
NEIGHBOUR = """
import os

def test_a_neighbour_runs_alongside():
    for base in {bases!r}:
        os.makedirs(os.path.join(base, {path!r}), exist_ok=True)
"""


def _pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_tiny.py").write_text(body)
    env = dict(os.environ)
    env.pop("WASMLAB_CGROUP_PARENT", None)  # the inner session chooses its own, as any session does
    env["PYTHONPATH"] = f"{ROOT / 'tests'}:{ROOT}"  # as pytest loads it: `conftest`, and `tests.conftest` too
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_tiny.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _remove(rel: str) -> None:
    """rmdir REL in every hierarchy, then its parents while they are empty."""
    parts = rel.split("/")
    for base in CGROUP_BASES:
        for n in range(len(parts), 0, -1):
            try:
                os.rmdir(os.path.join(base, *parts[:n]))
            except FileNotFoundError:
                continue
            except OSError:
                break


def test_a_cgroup_leaked_by_the_session_fails_it(tmp_path: Path) -> None:
    need_root()
    r = _pytest(tmp_path, LEAKY)
    leaked = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("LEAKED")]
    try:
        assert len(leaked) == 2, r.stdout + r.stderr
        assert r.returncode != 0, r.stdout
        assert "cgroups left behind by the test suite" in r.stdout
        assert "leaked-default" in r.stdout and "leaked-explicit" in r.stdout, r.stdout
    finally:
        for path in leaked:
            _remove(path)


def test_other_suites_cgroups_are_not_the_sessions_business(tmp_path: Path) -> None:
    need_root()
    neighbour = f"wasmlab/neighbour-{os.getpid()}/c1"
    try:
        r = _pytest(tmp_path, NEIGHBOUR.format(bases=CGROUP_BASES, path=neighbour))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "1 passed" in r.stdout and "left behind" not in r.stdout
    finally:
        _remove(neighbour)
