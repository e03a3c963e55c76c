"""The wasmlab command's paper cuts that need a container: run --json keeps stdout for the JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, need_root

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
SEED = ROOT / "assets" / "containerfiles" / "seed"


def test_run_json_is_json_alone_and_the_workload_speaks_on_stderr(tmp_path: Path) -> None:
    need_root()
    env = dict(os.environ, WASMLAB_HOME=str(tmp_path / "home"))

    def wl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([WASMLAB, *args], cwd=SEED, env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    assert wl("build", "--annotation", "module.wasm.image/variant=compat", "-t", "seed", ".").returncode == 0
    r = wl("run", "--rm", "--json", "seed")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)  # the whole of stdout parses: nothing of the workload's is mixed in
    assert result["exit_code"] == 0 and result["decision"]["handler"] == "wasmtime"
    assert r.stderr == "hello world from wasmlab !!!!\n"
    plain = wl("run", "--rm", "seed")  # without --json, the workload's stdout is stdout, as before
    assert plain.stdout == "hello world from wasmlab !!!!\n" and plain.stderr == ""
