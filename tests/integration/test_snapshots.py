"""Snapshots: layers unpacked once and shared, container roots as overlays, the copy fallback, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, busybox, need_root
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
    deadline = time.monotonic() + 60
    # Handshake: the big layer is being written into a work folder.
    while not any(p.stat().st_size > (1 << 20) for p in root.glob(".work-*/fs/big.bin")):
        assert proc.poll() is None and time.monotonic() < deadline, "the unpack never got under way"
        time.sleep(0.005)
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
