"""Spare folders made ahead and claimed whole by one rename; what a killed maker leaves is swept (issue 11)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from wasmlab.runtime.store.spares import MAKING, SpareFolders


def skeleton(folder: Path) -> None:
    (folder / "bundle" / "upper").mkdir(parents=True)
    (folder / "meta.json").write_bytes(b"")


def test_refill_makes_whole_spares_and_a_claim_takes_one_by_rename(tmp_path: Path) -> None:
    spares = SpareFolders(tmp_path / ".spares", skeleton, keep=2)
    assert not spares.claim(tmp_path / "c1")  # none made yet: the caller makes its folder itself
    assert not (tmp_path / "c1").exists()
    assert spares.refill() == 2
    ready = sorted(os.listdir(tmp_path / ".spares"))
    assert len(ready) == 2 and not any(name.startswith(".") for name in ready)
    inodes = {(tmp_path / ".spares" / name).stat().st_ino for name in ready}
    assert spares.claim(tmp_path / "c1")
    assert (tmp_path / "c1").stat().st_ino in inodes  # a spare itself, moved: nothing made on the way
    assert (tmp_path / "c1" / "bundle" / "upper").is_dir() and (tmp_path / "c1" / "meta.json").is_file()
    assert spares.refill() == 1  # back to two
    assert len(os.listdir(tmp_path / ".spares")) == 2


def test_a_claim_never_lands_on_an_existing_folder(tmp_path: Path) -> None:
    spares = SpareFolders(tmp_path / ".spares", skeleton, keep=1)
    spares.refill()
    (tmp_path / "taken").mkdir()  # empty: rename(2) would silently replace it
    assert not spares.claim(tmp_path / "taken")
    assert os.listdir(tmp_path / "taken") == []
    assert len(os.listdir(tmp_path / ".spares")) == 1


def _maker_killed_midway(root: Path) -> int:
    """A child whose make() has begun (one file written), holding its flock; returns its pid (not yet killed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)

            def half(folder: Path) -> None:
                (folder / "meta.json").write_bytes(b"")
                os.write(w, b"1")
                signal.pause()  # killed here, half-made

            SpareFolders(root, half, keep=1).refill()
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"1"  # the handshake: its spare is half-made
    os.close(r)
    return pid


def test_a_half_made_spare_is_never_claimed_and_is_swept_once_its_maker_is_gone(tmp_path: Path) -> None:
    root = tmp_path / ".spares"
    pid = _maker_killed_midway(root)
    try:
        [half] = os.listdir(root)
        assert half.startswith(MAKING)
        spares = SpareFolders(root, skeleton, keep=1)
        assert not spares.claim(tmp_path / "c1")  # not ready: never handed out
        assert spares.sweep() == 0  # its maker holds the lock: still at work
        assert (root / half).is_dir()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert spares.refill() == 1  # the sweep removes what the killed maker left, then one whole spare is made
    [ready] = os.listdir(root)
    assert not ready.startswith(".")
    assert spares.claim(tmp_path / "c1")
    assert (tmp_path / "c1" / "bundle" / "upper").is_dir()


def test_a_failed_make_leaves_nothing(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "meta.json").write_bytes(b"")
        raise OSError(28, "No space left on device")

    spares = SpareFolders(tmp_path / ".spares", broken, keep=1)
    with pytest.raises(OSError):
        spares.refill()
    assert os.listdir(tmp_path / ".spares") == []


def test_clear_removes_ready_and_abandoned_spares(tmp_path: Path) -> None:
    root = tmp_path / ".spares"
    pid = _maker_killed_midway(root)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    spares = SpareFolders(root, skeleton, keep=2)
    spares._make_one()
    spares.clear()
    assert not root.exists()
