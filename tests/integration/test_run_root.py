"""A lab's state root on /run goes with its last zygote when it holds nothing, and comes back when needed."""

from __future__ import annotations

import os
import select
from pathlib import Path

import pytest
from wasmlab.runtime import Runtime
from wasmlab.runtime.store.home import runtime_root
from wasmlab.runtime.store.state import StateDir

from tests.conftest import need_root

pytestmark = pytest.mark.root


def zygote_pidfds(runtime: Runtime) -> list[int]:
    return [os.pidfd_open(z.proc.pid) for z in runtime._zygotes.values()]


def wait_gone(pidfds: list[int]) -> None:
    for fd in pidfds:  # a pidfd reads ready once its process has exited: the handshake, no sleep
        assert select.select([fd], [], [], 30)[0], "the zygote did not exit"
        os.close(fd)


def test_the_state_root_goes_with_the_last_zygote_and_comes_back(lab_home: Path, busybox_bundle: Path) -> None:
    need_root()
    root = runtime_root(lab_home)
    assert str(root).startswith("/run/wasmlab-labs/")  # as root, on the tmpfs
    for round_ in range(2):  # the second round makes the root again
        runtime = Runtime(root=str(root), home=str(lab_home))
        try:
            result = runtime.run(f"gone-{round_}", str(busybox_bundle))  # created, run and deleted
            assert result.exit_code == 0 and root.is_dir()
            pidfds = zygote_pidfds(runtime)
            assert pidfds
        finally:
            runtime.close()
        wait_gone(pidfds)
        assert not root.exists(), sorted(os.listdir(root))


def test_a_root_that_holds_a_container_stays(lab_home: Path, busybox_bundle: Path) -> None:
    need_root()
    root = runtime_root(lab_home)
    runtime = Runtime(root=str(root), home=str(lab_home))
    try:
        assert runtime.run("kept", str(busybox_bundle), keep=True).exit_code == 0  # exited, not deleted
        pidfds = zygote_pidfds(runtime)
    finally:
        runtime.close()
    wait_gone(pidfds)
    try:
        assert StateDir(str(root), "kept").exists()
    finally:
        with Runtime(root=str(root), home=str(lab_home)) as again:
            again.delete("kept")


def test_a_lock_taken_in_a_root_that_went_makes_it_again(tmp_path: Path) -> None:
    root = tmp_path / "run" / "lab"
    sd = StateDir(str(root), "c1")
    with sd.lock():
        assert root.is_dir()
    os.rmdir(root)  # as a leaving zygote does
    with sd.lock():
        assert (root / ".c1.lock").exists()
    assert not (root / ".c1.lock").exists()  # no container: no lock file left
