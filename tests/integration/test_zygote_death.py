"""The zygote can die: calls in flight get their true result or a typed error, and its containers stay manageable."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, make_rootfs_busybox, minimal_config, need_root, write_bundle

pytestmark = pytest.mark.root
ASSETS = ROOT / "assets" / "built"
WITHIN = 20.0  # a hang guard, not a speed target: the calls under test used to take 30 to 60 s


def _loop_bundle(path: Path, count: int, interval_ms: int) -> Path:
    (path / "rootfs").mkdir(parents=True)
    shutil.copy2(ASSETS / "wasm" / "loop.wasm", path / "rootfs" / "loop.wasm")
    return write_bundle(path, minimal_config(["/loop.wasm", str(count), str(interval_ms)],
                                             annotations={"module.wasm.image/variant": "compat"}))


def _in_thread(fn: Any, *args: Any, **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["value"] = fn(*args, **kw)
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def _created(runtime: Any, cid: str) -> threading.Event:
    seen = threading.Event()
    runtime.subscribe(lambda ev: seen.set() if ev.get("event") == "created" and ev.get("id") == cid else None)
    return seen


def _kill_zygote(runtime: Any) -> int:
    zyg = runtime.zygote()
    pid: int = zyg.proc.pid
    os.kill(pid, signal.SIGKILL)
    zyg.proc.wait()
    return pid


def test_wasm_calls_in_flight_get_their_true_results(runtime: Any, tmp_path: Path, leaks: Any) -> None:
    need_root()
    from wasmlab.runtime.errors import ContainerNotFound

    bundle = _loop_bundle(tmp_path / "loop", 3, 300)
    out_r, out_w = os.pipe()
    runtime.create("kept", str(bundle), stdout=out_w)
    os.close(out_w)
    runtime.start("kept")
    started = _created(runtime, "inflight")
    running, result = _in_thread(runtime.run, "inflight", str(bundle))
    assert started.wait(WITHIN)
    with os.fdopen(out_r, "rb") as out:
        assert out.readline() == b"tick 1\n"  # handshake: the kept guest runs
        old = _kill_zygote(runtime)
        # The next look neither stalls nor raises a bare BrokenPipeError.
        listed, looked = _in_thread(runtime.list)
        listed.join(WITHIN)
        assert "value" in looked, looked
        assert {s["id"] for s in looked["value"]} >= {"kept"}
        # wait() gives the true exit, recorded by the Wasm init itself.
        waited, rec = _in_thread(runtime.wait, "kept")
        waited.join(WITHIN)
        assert rec.get("value") is not None and rec["value"].exit_code == 0, rec
        assert out.read() == b"tick 2\ntick 3\ndone\n"
    running.join(WITHIN)
    assert "value" in result, result
    assert result["value"].exit_code == 0 and result["value"].stdout.endswith(b"done\n")
    # The run's container was to be deleted by the zygote: it is, all the same.
    with pytest.raises(ContainerNotFound):
        runtime.state("inflight")
    assert runtime.state("kept")["status"] == "stopped"
    # The next call starts a fresh zygote.
    again = runtime.run("again", str(_loop_bundle(tmp_path / "one", 1, 1)))
    assert again.exit_code == 0 and runtime.zygote().proc.pid != old
    runtime.delete("kept")
    leaks.assert_clean()


def test_native_containers_outlive_their_zygote_and_stay_manageable(runtime: Any, tmp_path: Path, leaks: Any) -> None:
    need_root()
    from wasmlab.runtime.errors import ZygoteGone
    from wasmlab.runtime.store.state import StateDir

    bundle = tmp_path / "bb"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, minimal_config(["/bin/sh", "-c", "echo up; exec sleep 600"]))
    out_r, out_w = os.pipe()
    runtime.create("kept", str(bundle), stdout=out_w)
    os.close(out_w)
    runtime.start("kept")
    started = _created(runtime, "inflight")
    running, result = _in_thread(runtime.run, "inflight", str(bundle))
    assert started.wait(WITHIN)
    with os.fdopen(out_r, "rb") as out:
        assert out.readline() == b"up\n"
        _kill_zygote(runtime)
        # A native run in flight has no result left to give: it fails at once, typed, not after 600 s.
        running.join(WITHIN)
        assert isinstance(result.get("error"), ZygoteGone), result
        assert "inflight" in result["error"].message and result["error"].hint
        for cid in ("kept", "inflight"):
            assert runtime.state(cid)["status"] == "running"
        # Still manageable: signal it, wait for it. Its status went to the host's init: unknown, not invented.
        waiter, rec = _in_thread(runtime.wait, "kept")
        runtime.kill("kept", "KILL")
        waiter.join(WITHIN)
        assert "value" in rec, rec
        assert rec["value"].exit_code is None
        assert StateDir(runtime.root, "kept").read_exit().exit_code is None  # on disk too
        assert runtime.state("kept")["status"] == "stopped"
    runtime.delete("kept")
    runtime.delete("inflight", force=True)
    leaks.assert_clean()
