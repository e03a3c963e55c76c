"""Work folders held by their owner's lock, swept once the owner is gone; a full disk as one typed error; a clean stop
on signals (issue 8, cases 4 and 5)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from wasmlab.runtime.errors import DiskFull, StoreError
from wasmlab.runtime.store.atomic import writing_into
from wasmlab.runtime.store.layout import ImageStore
from wasmlab.runtime.store.work import claim, owner_alive, sweep


def in_child(body: Callable[[], None]) -> int:
    """Fork a child that runs BODY, says so through a pipe, then waits to be killed; returns its pid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            body()
            os.write(w, b"1")
            signal.pause()
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"1"   # the handshake: BODY is done
    os.close(r)
    return pid


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def test_a_claimed_folder_is_held_until_released(tmp_path: Path) -> None:
    folder = claim(tmp_path / "work", "build")
    assert folder.path.parent == tmp_path / "work" and folder.path.name.startswith("build-")
    assert owner_alive(folder.path)
    assert sweep(tmp_path / "work").folders == []   # its owner is at work: kept
    (folder.path / "sub").mkdir()
    (folder.path / "sub" / "f").write_bytes(b"x" * 10_000)
    (folder.path / "sub").chmod(0o500)               # a build may leave read-only folders behind
    folder.release()
    assert os.listdir(tmp_path / "work") == []


def test_a_dead_owners_folder_is_swept_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "work"

    def work() -> None:
        f = claim(root, "load")
        (f.path / "blob").write_bytes(os.urandom(300_000))

    pid = in_child(work)
    mine = claim(root, "build")
    dead = next(p for p in root.iterdir() if p.name.startswith("load-"))
    assert owner_alive(dead)
    kill(pid)                       # a SIGKILL: no cleanup ran, the kernel dropped the lock
    assert not owner_alive(dead)
    expected = du(dead)
    report = sweep(root)
    assert report.folders == [dead.name] and report.bytes == expected > 300_000
    assert sorted(os.listdir(root)) == [mine.path.name]
    mine.release()


def test_the_next_transaction_removes_a_killed_writers_staging(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    store.init()

    def write() -> None:
        txn = store.transaction()
        txn.begin()
        txn.put_blob(os.urandom(200_000))

    kill(in_child(write))
    assert len(os.listdir(store.staging_dir)) == 1
    with store.transaction() as txn:
        assert os.listdir(store.staging_dir) == [txn.staging.name]
        txn.put_blob(b"small")
    assert os.listdir(store.staging_dir) == []


def test_prune_counts_what_it_sweeps(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    store.init()

    def write() -> None:
        txn = store.transaction()
        txn.begin()
        txn.put_blob(os.urandom(500_000))

    kill(in_child(write))
    staged = store.staging_dir / os.listdir(store.staging_dir)[0]
    expected = du(staged)
    report = store.prune()
    assert report.staging == 1 and report.bytes == expected > 500_000
    assert os.listdir(store.staging_dir) == []


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "the disk is full"),
                                             (errno.EDQUOT, "the disk quota is used up")])
def test_a_full_disk_becomes_one_typed_error(tmp_path: Path, code: int, words: str) -> None:
    with pytest.raises(DiskFull) as err, writing_into(tmp_path):
        raise OSError(code, os.strerror(code))
    assert err.value.message.startswith(words) and str(tmp_path) in err.value.message
    assert "prune" in err.value.hint and err.value.folder == str(tmp_path)
    assert "\n" not in err.value.one_line()
    # an error raised on account of it (a wasmlab error made from the OSError) is one too
    with pytest.raises(DiskFull), writing_into(tmp_path):
        try:
            raise OSError(code, os.strerror(code))
        except OSError:
            raise StoreError("cannot write", "check") from None
    # anything else passes through unchanged
    with pytest.raises(PermissionError), writing_into(tmp_path):
        raise PermissionError(errno.EACCES, "denied")


def test_a_stop_signal_waits_for_a_deferred_block_then_raises() -> None:
    from wasmlab.runtime.images.work import Interrupted, signals_deferred, stopping_cleanly

    outer = signal.signal(signal.SIGINT, signal.default_int_handler)   # Python's default, whatever ran pytest
    try:
        steps = []
        with pytest.raises(Interrupted) as err, stopping_cleanly():
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("the container exists")   # reached: the signal waits for the block's end
            steps.append("never")
        assert steps == ["the container exists"] and err.value.signum == signal.SIGINT
        assert isinstance(err.value, KeyboardInterrupt)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)
