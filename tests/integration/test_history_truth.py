"""The run history tells the truth: every recorded exit code and signal is the one the workload ended with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, minimal_config, need_root, oci, write_bundle

pytestmark = [pytest.mark.root, pytest.mark.slow]
ASSETS = ROOT / "assets" / "built"
ENGINES = {"native": None, "wasmtime": "wasmtime", "wasmer": "wasmer"}


def _bundle(tmp: Path, engine: str, program: str, args: list[str]) -> Path:
    path = tmp / f"{engine}-{program}-{'-'.join(args)}"
    (path / "rootfs").mkdir(parents=True)
    if engine == "native":
        shutil.copy2(ASSETS / "linux" / program, path / "rootfs" / program)
        return write_bundle(path, minimal_config([f"/{program}", *args]))
    shutil.copy2(ASSETS / "wasm" / f"{program}.wasm", path / "rootfs" / f"{program}.wasm")
    return write_bundle(path, minimal_config([f"/{program}.wasm", *args], annotations={
        "module.wasm.image/variant": "compat", "wasmlab.io/engine": engine}))


def test_fifty_runs_per_engine_under_load_are_each_recorded_as_they_ended(tmp_path: Path, lab_home: Path) -> None:
    need_root()
    from wasmlab.runtime import Runtime
    from wasmlab.runtime.store.history import History

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]  # the load
    expected: dict[str, tuple[int, int | None]] = {}
    jobs: list[tuple[str, Path, str]] = []
    for engine in ENGINES:
        for code in (0, 7, 137):
            bundle = _bundle(tmp_path, engine, "exitcode", [str(code)])
            for i in range(16 if code != 137 else 17):
                cid = f"{engine}-{code}-{i}"
                # exit(137) is an exit code, not a SIGKILL; wasmtime refuses proc_exit above 125 (exit 1, said
                # on stderr), as documented in docs/handlers.md.
                expected[cid] = (1 if engine == "wasmtime" and code > 125 else code, None)
                # Half as `run`, half as create/start/wait then delete --force (what `wasmlab run --rm`
                # does: the delete may kill an init that reported its exit but is not yet reaped).
                jobs.append((cid, bundle, "run" if i % 2 else "rm"))
    rt = Runtime(root=str(tmp_path / "state"), home=str(lab_home))
    try:
        def one(job: tuple[str, Path, str]) -> None:
            cid, bundle, how = job
            if how == "run":
                res = rt.run(cid, str(bundle))
                assert res.exit_code == expected[cid][0] and res.signal is None, (cid, res.exit_code, res.signal)
            else:
                out_r, out_w = os.pipe()
                rt.create(cid, str(bundle), stdout=out_w)
                os.close(out_w)
                rt.start(cid)
                assert os.read(out_r, 100).startswith(b"exiting with")
                os.close(out_r)
                rec = rt.wait(cid, timeout=60)
                assert rec.exit_code == expected[cid][0], (cid, rec)
                rt.delete(cid, force=True)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(one, jobs))
        # One SIGKILL per engine: a signal, recorded apart from its code.
        for engine in ENGINES:
            cid = f"{engine}-killed"
            out_r, out_w = os.pipe()
            rt.create(cid, str(_bundle(tmp_path, engine, "loop", ["0", "50"])), stdout=out_w)
            os.close(out_w)
            rt.start(cid)
            assert os.read(out_r, 100).startswith(b"tick 1")  # handshake: the guest runs
            rt.kill(cid, "KILL")
            rec = rt.wait(cid, timeout=60)
            os.close(out_r)
            assert (rec.exit_code, rec.signal) == (137, 9), (cid, rec)
            rt.delete(cid)
            expected[cid] = (137, 9)
    finally:
        rt.close()  # flushes the history
        for b in burners:
            b.kill()
            b.wait()
    rows = {r.id: r for r in History(lab_home / "history.db").recent(1000)}
    assert len(expected) == 3 * 50  # 49 exits and one SIGKILL per engine
    wrong = {cid: (rows[cid].exit_code, rows[cid].signal) for cid in expected
             if cid in rows and (rows[cid].exit_code, rows[cid].signal) != expected[cid]}
    assert not wrong, wrong
    assert sorted(set(expected) - set(rows)) == []
    assert {rows[c].handler for c in expected} == {"native", "wasmtime", "wasmer"}


def test_wasmlab_oci_and_a_bare_runtime_record_only_when_given_a_lab_home(tmp_path: Path, wasm_bundle: Path,
                                                                          monkeypatch: Any) -> None:
    need_root()
    from wasmlab.runtime import Runtime
    from wasmlab.runtime.store.history import History

    xdg = tmp_path / "xdg"
    monkeypatch.delenv("WASMLAB_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    # Not given a home: nothing is recorded anywhere (not even in the default one).
    assert oci("run", "--bundle", str(wasm_bundle), "quiet", root=tmp_path / "s1").returncode == 0
    with Runtime(root=str(tmp_path / "s2")) as rt:
        assert rt.run("quiet2", str(wasm_bundle)).exit_code == 0
    assert not (xdg / "wasmlab" / "history.db").exists()
    # Given one: `wasmlab-oci run` lands in its history, with its exit code and signal.
    home = tmp_path / "home"
    monkeypatch.setenv("WASMLAB_HOME", str(home))
    assert oci("run", "--bundle", str(wasm_bundle), "heard", root=tmp_path / "s3").returncode == 0
    rows = History(home / "history.db").recent(10)
    assert [(r.id, r.exit_code, r.signal, r.handler) for r in rows] == [("heard", 0, None, "wasmtime")]
    assert rows[0].create_ms > 0 and rows[0].init_max_rss_kb > 0
