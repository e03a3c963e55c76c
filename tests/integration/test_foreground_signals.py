"""A signal to a foreground run is never lost: one that comes as early as the Lab lets it reaches the container."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime import Lab

from tests.conftest import ROOT, minimal_config, need_root, write_bundle

pytestmark = pytest.mark.root

# 60 ticks of 50 ms: a run whose stop signal was lost ends by itself after 3 s, with status 0.
WASM_LOOP = ("wasmlab/loop:compat", ["/loop.wasm", "60", "50"])
LINUX_LOOP = ("wasmlab/loop:linux", ["/loop", "60", "50"])
LONG_LOOP = ("wasmlab/loop:compat", ["/loop.wasm", "1200", "50"])  # 60 s


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    need_root()
    with Lab(tmp_path_factory.mktemp("fgsignals") / "home") as lab:
        lab.samples(busybox=False)
        yield lab


@pytest.fixture
def quiet() -> Iterator[tuple[int, int, int]]:
    null_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    null_w = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        yield (null_r, null_w, null_w)
    finally:
        os.close(null_r)
        os.close(null_w)


def _run_signalled(lab: Lab, stdio: tuple[int, int, int], image: tuple[str, list[str]],
                   signals: tuple[int, ...]) -> int | None:
    """Run IMAGE in the foreground with the signal proxy on, and send SIGNALS to this process from on_created:
    the earliest moment the Lab gives its caller (a Ctrl-C typed as soon as the container is announced)."""
    sent: list[str] = []

    def on_created(cid: str) -> None:
        sent.append(cid)
        for signum in signals:
            os.kill(os.getpid(), signum)  # taken on this (the main) thread before kill() returns

    run = lab.run(image[0], image[1], rm=True, stdio=stdio, sig_proxy=True, on_created=on_created)
    assert sent == [run.id]
    return run.exit_code


def test_a_stop_signal_at_the_earliest_moment_reaches_a_wasm_container(lab: Lab, quiet: tuple[int, int, int]) -> None:
    """The zygote forks the container and its workload starts before its state is written; a SIGTERM passed on
    meanwhile used to find no container and was dropped (the run went on to its end)."""
    before = signal.getsignal(signal.SIGTERM)
    for _ in range(15):
        assert _run_signalled(lab, quiet, WASM_LOOP, (signal.SIGTERM,)) == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the proxy put back the handler there was
    lab.settle()
    assert lab.ps(all=True) == []


def test_ctrl_c_twice_at_the_earliest_moment_kills_a_linux_container(lab: Lab, quiet: tuple[int, int, int]) -> None:
    """A Linux pid 1 ignores SIGINT once it runs its program (it has no handler): the second one is SIGKILL,
    and it must reach the container too. Before the exec the init's own handler ends it with 130."""
    for _ in range(5):
        assert _run_signalled(lab, quiet, LINUX_LOOP, (signal.SIGINT, signal.SIGINT)) in (130, 137)
    lab.settle()
    assert lab.ps(all=True) == []


def test_an_interrupted_foreground_run_leaves_no_container_running(lab: Lab, quiet: tuple[int, int, int]) -> None:
    """Without the signal proxy a Ctrl-C is a KeyboardInterrupt in the caller: the Lab kills the container it
    started, however early the interrupt came (its state may not be written yet)."""
    for _ in range(5):
        ids: list[str] = []

        def on_created(cid: str, ids: list[str] = ids) -> None:
            ids.append(cid)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            lab.run(LONG_LOOP[0], LONG_LOOP[1], rm=True, stdio=quiet, on_created=on_created)
        assert len(ids) == 1
        # Killed, its zygote reaps and deletes it within milliseconds; one left running keeps its state folder
        # for 60 s. Nothing announces the deletion to this process: look, until a deadline well short of that.
        folder = Path(lab._runtime.root) / ids[0]
        deadline = time.monotonic() + 30
        while folder.exists():
            assert time.monotonic() < deadline, "the interrupted run's container is still running"
            time.sleep(0.01)


def test_the_runtime_finds_a_run_from_the_moment_its_request_is_sent(runtime: Any, tmp_path: Path) -> None:
    """Runtime.run's on_sent: from then on state() and kill() find the container (they wait, if need be, for the
    zygote to record it), although its workload may already run."""
    bundle = tmp_path / "loop"
    (bundle / "rootfs").mkdir(parents=True)
    shutil.copy2(ROOT / "assets" / "built" / "wasm" / "loop.wasm", bundle / "rootfs" / "loop.wasm")
    write_bundle(bundle, minimal_config(["/loop.wasm", "200", "50"],
                                        annotations={"module.wasm.image/variant": "compat"}))
    for i in range(10):
        cid = f"sent{i}"
        seen: list[str] = []

        def on_sent(cid: str = cid, seen: list[str] = seen) -> None:
            seen.append(runtime.state(cid)["status"])
            runtime.kill(cid, "KILL")

        res = runtime.run(cid, str(bundle), on_sent=on_sent)
        assert (seen, res.exit_code, res.signal) == (["running"], 137, signal.SIGKILL)
