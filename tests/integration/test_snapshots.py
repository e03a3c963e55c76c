"""Snapshots: layers unpacked once and shared, container roots as overlays, the copy fallback, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, busybox, need_root, wait_file_grows
from tests.unit.images_support import store_image, tar_bytes

pytestmark = pytest.mark.root
PROBE = ["/bin/sh", "-c", "ls /d; test -e /gone && echo gone-present || echo gone-absent; cat /link; stat -c %a /tmp"]


def _base_layer() -> bytes:
    entries: list[tuple[Any, ...]] = [("dir", "bin"), ("file", "bin/busybox", Path(busybox()).read_bytes(), 0o755)]
    entries += [("symlink", f"bin/{c}", "busybox") for c in ("sh", "ls", "cat", "echo", "test", "stat")]
    entries += [("dir", "tmp", 0o1777), ("dir", "etc"), ("file", "etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
                ("file", "gone", b"x"), ("file", "orig", b"original\n"), ("dir", "d"),
                ("file", "d/old1", b"1"), ("file", "d/old2", b"2"), ("dir", "proc"), ("dir", "dev"), ("dir", "sys")]
    return tar_bytes(entries)


def _top_layer() -> bytes:
    # A whiteout, an opaque folder, a hard link into the layer below, and a file whose folder (/tmp, 1777)
    # the layer does not list.
    return tar_bytes([("file", ".wh.gone", b""), ("dir", "d"), ("file", "d/.wh..wh..opq", b""),
                      ("file", "d/new", b"n"), ("hardlink", "link", "orig"), ("file", "tmp/t", b"t")])


def _run(lab: Any, image: str, argv: list[str], **kw: Any) -> tuple[int | None, str, Any]:
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        res = lab.run(image, argv, stdio=(null, w, w), **kw)
    finally:
        os.close(w)
        os.close(null)
    with os.fdopen(r, "rb") as fh:
        return res.exit_code, fh.read().decode(), res


@pytest.fixture
def lab(lab_home: Path) -> Any:
    from wasmlab.runtime import Lab

    with Lab(lab_home) as lab:
        yield lab


def _snapshots(home: Path) -> set[str]:
    root = home / "snapshots"
    return {p.name for p in root.iterdir() if not p.name.startswith(".")} if root.is_dir() else set()


def test_layers_are_unpacked_once_shared_and_the_overlay_behaves_as_the_copy(lab: Any, lab_home: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            leaks: Any) -> None:
    need_root()
    store = lab._images.store
    store_image(store, "layered", [_base_layer(), _top_layer()])
    code, overlay_out, _ = _run(lab, "layered", PROBE, rm=True)
    assert code == 0 and overlay_out == "new\ngone-absent\noriginal\n1777\n", overlay_out
    assert len(_snapshots(lab_home)) == 2  # one per layer
    # Writes are private: a second container of the image does not see them, and shares the snapshots.
    code, out, _ = _run(lab, "layered", ["/bin/sh", "-c", "echo a > /written; cat /written"], name="writer")
    assert (code, out) == (0, "a\n")
    assert lab.inspect("writer").rootfs == "overlay"
    code, out, _ = _run(lab, "layered", ["/bin/sh", "-c", "test -e /written && echo seen || echo unseen"], rm=True)
    assert out == "unseen\n" and len(_snapshots(lab_home)) == 2
    # The disk a container uses is what it wrote, not the image (about 1 MB of busybox).
    upper = Path(lab.inspect("writer").bundle) / "upper"
    assert sorted(p.name for p in upper.iterdir()) == ["written"]
    assert sum(f.stat().st_blocks * 512 for f in upper.rglob("*")) < 64 * 1024
    # The copy, as before snapshots, gives the same root.
    monkeypatch.setenv("WASMLAB_ROOTFS", "copy")
    code, copy_out, _ = _run(lab, "layered", PROBE, name="copied")
    assert (code, copy_out) == (0, overlay_out)
    assert lab.inspect("copied").rootfs == "copy"
    for name in ("writer", "copied"):
        lab.rm(name)
    leaks.assert_clean()


def test_snapshots_go_with_their_last_image(lab: Any, lab_home: Path) -> None:
    need_root()
    store = lab._images.store
    base = _base_layer()
    store_image(store, "two-layers", [base, _top_layer()])
    store_image(store, "base-only", [base])
    for image in ("two-layers", "base-only"):
        assert _run(lab, image, ["/bin/echo", "ok"], rm=True)[:2] == (0, "ok\n")
    assert len(_snapshots(lab_home)) == 2
    lab.rmi("two-layers")
    assert len(_snapshots(lab_home)) == 1  # the base layer's snapshot is still used by base-only
    lab.rmi("base-only")
    assert _snapshots(lab_home) == set()


def test_a_killed_unpack_leaves_nothing_anyone_uses(lab_home: Path, tmp_path: Path) -> None:
    need_root()
    from wasmlab.runtime.images.service import Images

    images = Images(lab_home)
    big = tar_bytes([("file", "big.bin", os.urandom(96 << 20))])
    store_image(images.store, "big", [_base_layer(), big])
    script = ("import sys; from wasmlab.runtime.images.service import Images; "
              "Images(sys.argv[1]).prepare('big', sys.argv[2], ['/bin/true'])")
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "python"), "-c", script, str(lab_home),
                             str(tmp_path / "b1")])
    root = lab_home / "snapshots"
    wait_file_grows(proc, root, ".work-*/fs/big.bin", "the unpack", timeout=60)  # the big layer is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    made = _snapshots(lab_home)
    assert len(made) <= 1 and all((root / n / "fs" / "bin" / "busybox").exists() for n in made)  # only whole ones
    assert list(root.glob(".work-*"))  # the half-made one is a work folder, which no container uses
    res = images.prepare("big", tmp_path / "b2", ["/bin/true"])
    assert res.root == "overlay"
    assert not list(root.glob(".work-*"))  # swept by the next unpack
    (big_file,) = [p for p in root.glob("*/fs/big.bin")]
    assert big_file.stat().st_size == 96 << 20


def _spares(home: Path) -> dict[str, int]:
    root = home / ".spare-containers"
    return {p.name: p.stat().st_ino for p in root.iterdir() if not p.name.startswith(".")} if root.is_dir() else {}


def test_a_run_takes_a_container_folder_made_ahead_and_more_are_made_after_it(lab: Any, lab_home: Path,
                                                                               monkeypatch: pytest.MonkeyPatch,
                                                                               leaks: Any) -> None:
    """The folders and files of a container (its bundle's rootfs, upper and work, config.json, the overlay
    file, meta.json, the log) are made when nobody waits, and a run takes them by one rename: each creation
    on the start path was a journal entry (0.1-0.2 ms here, milliseconds under load)."""
    need_root()
    store_image(lab._images.store, "layered", [_base_layer(), _top_layer()])
    assert _spares(lab_home) == {}
    assert _run(lab, "layered", ["/bin/echo", "first"], rm=True)[:2] == (0, "first\n")  # made its own folder
    lab.settle()
    made = _spares(lab_home)
    assert len(made) == 2
    code, out, res = _run(lab, "layered", ["/bin/sh", "-c", "echo w > /written; cat /written /orig"], name="w")
    assert (code, out) == (0, "w\noriginal\n")
    folder = lab_home / "containers" / res.id
    assert folder.stat().st_ino in made.values()  # a spare, renamed into place
    assert sorted(p.name for p in (folder / "bundle" / "upper").iterdir()) == ["written"]  # its writes, only
    assert b"".join(lab.logs("w")[0]) == b"w\noriginal\n"
    lab.settle()
    assert len(_spares(lab_home)) == 2  # made again after the run
    # Where the root is a copy, a folder made ahead is used all the same (its overlay parts cleared).
    monkeypatch.setenv("WASMLAB_ROOTFS", "copy")
    made = _spares(lab_home)
    code, out, res = _run(lab, "layered", ["/bin/cat", "/orig"], name="copied")
    assert (code, out) == (0, "original\n") and lab.inspect("copied").rootfs == "copy"
    assert (lab_home / "containers" / res.id).stat().st_ino in made.values()
    lab.rm("w")
    lab.rm("copied")
    assert os.listdir(lab_home / "containers") == []  # spares are never containers (ps, rm, df)


def test_a_refused_run_makes_no_spare_folders(lab: Any, lab_home: Path) -> None:
    need_root()
    from wasmlab.runtime.errors import WasmlabError

    with pytest.raises(WasmlabError):
        lab.run("no-such-image", ["/bin/true"], rm=True)
    lab.settle()
    assert not (lab_home / ".spare-containers").exists()  # bad input leaves the home as it was


def test_system_reset_removes_the_spare_folders(lab_home: Path) -> None:
    need_root()
    from wasmlab.runtime import Lab

    lab = Lab(lab_home)
    store_image(lab._images.store, "layered", [_base_layer(), _top_layer()])
    assert _run(lab, "layered", ["/bin/echo", "x"], rm=True)[0] == 0
    lab.settle()
    assert _spares(lab_home)
    lab.reset()
    assert not (lab_home / "containers").exists()
    assert list(lab_home.iterdir()) == []


@pytest.mark.parametrize("damage", ["config-symlink", "upper-symlink", "extra-entry", "filled-file", "missing"])
def test_a_bundle_made_ahead_that_is_not_as_made_is_refused_and_nothing_outside_is_written(
        lab_home: Path, tmp_path: Path, damage: str) -> None:
    """prepare(ahead=True) fills a skeleton in place, so it checks first that the skeleton is exactly what
    make_bundle_skeleton makes: real folders, empty regular files, nothing else. A link would aim the
    container's config, or its overlay's upper folder, anywhere on the host."""
    need_root()
    from wasmlab.runtime.errors import ImageError
    from wasmlab.runtime.images.service import Images
    from wasmlab.runtime.images.unpack import make_bundle_skeleton
    from wasmlab.runtime.spec.runtime import OVERLAY_FILE

    images = Images(lab_home)
    store_image(images.store, "layered", [_base_layer(), _top_layer()])
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "passwd").write_text("host file\n")
    bundle = tmp_path / "ahead" / "bundle"
    make_bundle_skeleton(bundle)
    if damage == "config-symlink":
        (bundle / "config.json").unlink()
        (bundle / "config.json").symlink_to(outside / "passwd")
    elif damage == "upper-symlink":
        (bundle / "upper").rmdir()
        (bundle / "upper").symlink_to(outside)
    elif damage == "extra-entry":
        (bundle / "hooks.json").write_text("{}")
    elif damage == "filled-file":
        (bundle / OVERLAY_FILE).write_text('{"upperdir": "/"}')
    else:
        (bundle / "work").rmdir()
    with pytest.raises(ImageError, match="not an empty bundle made ahead"):
        images.prepare("layered", bundle, ["/bin/true"], ahead=True)
    assert (outside / "passwd").read_text() == "host file\n" and sorted(os.listdir(outside)) == ["passwd"]
    # Made as make_bundle_skeleton makes it, the same call fills it in place.
    good = tmp_path / "good" / "bundle"
    make_bundle_skeleton(good)
    res = images.prepare("layered", good, ["/bin/true"], ahead=True)
    assert res.root == "overlay" and json_of(good / "config.json")["process"]["args"] == ["/bin/true"]
    assert json_of(good / OVERLAY_FILE)["upperdir"] == str(good / "upper")


def json_of(path: Path) -> Any:
    import json

    return json.loads(path.read_text())
