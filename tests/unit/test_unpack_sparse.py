"""Sparse files in layers: GNU tar's sparse forms (old GNU, PAX 0.0, 0.1, 1.0) unpack sparse and byte-identical."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard
from images_support import store_image
from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.images.unpack import ExtractLimits, extract_layers, unpack_bundle
from wasmlab.runtime.store.layout import ImageStore

from tests.conftest import need_tool

GIB = 1 << 30
# Where the sparse file holds data: (offset, bytes). The rest of its 1 GiB is holes.
DATA = ((4096, b"hello"), (512 << 20, b"middle of the file"), (GIB - 5, b"tail!"))
# GNU tar's formats, as `tar --sparse` writes them.
FORMATS = {
    "gnu": ["--format=gnu"],
    "pax-0.0": ["--format=pax", "--sparse-version=0.0"],
    "pax-0.1": ["--format=pax", "--sparse-version=0.1"],
    "pax-1.0": ["--format=pax", "--sparse-version=1.0"],
}


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture(scope="module")
def sparse_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `big` (1 GiB apparent, three small data runs), `tailhole` (a hole at its end) and `plain`."""
    src = tmp_path_factory.mktemp("sparse-src")
    big = src / "big"
    with open(big, "wb") as fh:
        os.truncate(fh.fileno(), GIB)  # holes, as `truncate -s 1G` makes them
        for offset, data in DATA:
            os.pwrite(fh.fileno(), data, offset)
    with open(src / "tailhole", "wb") as fh:
        os.truncate(fh.fileno(), 1 << 20)
        os.pwrite(fh.fileno(), b"x" * 100, 0)
    (src / "plain").write_bytes(b"not sparse\n" * 100)
    assert allocated(big) < (1 << 20), "the test file system does not keep holes"
    return src


def gnu_tar(src: Path, flags: list[str]) -> bytes:
    tar = need_tool("tar")
    out = subprocess.run([tar, "-C", str(src), "--sparse", *flags, "--owner=0", "--group=0", "-cf", "-",
                          "big", "tailhole", "plain"], check=True, capture_output=True).stdout
    assert len(out) < 64 << 10  # about 10 KB of layer for 1 GiB of file
    return out


def same_content(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_sparse_file_stays_sparse_and_identical(fmt: str, sparse_source: Path, tmp_path: Path) -> None:
    layer = gnu_tar(sparse_source, FORMATS[fmt])
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        assert t.getmember("big").sparse, "tar did not write a sparse member"
    root = tmp_path / "rootfs"
    root.mkdir()
    report = extract_layers([lambda: io.BytesIO(layer)], root)
    big = root / "big"
    assert big.stat().st_size == GIB
    assert allocated(big) < (1 << 20), f"{allocated(big)} bytes allocated for {len(layer)} bytes of layer"
    assert same_content(big, sparse_source / "big")  # holes read as zeros, data where it was
    with open(big, "rb") as fh:
        for offset, data in DATA:
            assert os.pread(fh.fileno(), len(data), offset) == data
    assert (root / "tailhole").stat().st_size == 1 << 20  # a hole at the end keeps the file's length
    assert same_content(root / "tailhole", sparse_source / "tailhole")
    assert (root / "plain").read_bytes() == (sparse_source / "plain").read_bytes()
    assert report.bytes == GIB + (1 << 20) + 1100  # apparent bytes, as the bomb limit counts them


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_sparse_file_in_a_compressed_image_layer_unpacks_sparse(compress: str, sparse_source: Path,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    store = ImageStore()
    layer = gnu_tar(sparse_source, FORMATS["pax-1.0"])
    blob = gzip.compress(layer) if compress == "gzip" else zstandard.ZstdCompressor().compress(layer)
    store_image(store, "sparse", [blob], {"Cmd": ["/big"]})
    result = unpack_bundle(store, "sparse", tmp_path / "bundle")
    big = Path(result.rootfs) / "big"
    assert big.stat().st_size == GIB
    assert allocated(big) < (1 << 20)
    assert same_content(big, sparse_source / "big")


def test_bomb_limit_counts_the_apparent_size_of_sparse_files(sparse_source: Path, tmp_path: Path) -> None:
    layer = gnu_tar(sparse_source, FORMATS["gnu"])
    root = tmp_path / "rootfs"
    root.mkdir()
    with pytest.raises(ImageError, match="more than"):
        extract_layers([lambda: io.BytesIO(layer)], root, limits=ExtractLimits(max_bytes=GIB // 2))
    assert not (root / "big").exists() or allocated(root / "big") < (1 << 20)


def hostile_sparse(sparse_map: str, apparent: int, stored: bytes) -> bytes:
    """A PAX 0.1 sparse member with the given map, as a hostile image could write it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("GNUSparseFile.0/victim")
        info.size = len(stored)
        info.pax_headers = {"GNU.sparse.map": sparse_map, "GNU.sparse.size": str(apparent),
                            "GNU.sparse.numblocks": str(sparse_map.count(",") // 2 + 1),
                            "GNU.sparse.name": "victim"}
        t.addfile(info, io.BytesIO(stored))
        after = tarfile.TarInfo("after")
        after.size = 3
        t.addfile(after, io.BytesIO(b"end"))
    return buf.getvalue()


@pytest.mark.parametrize(("sparse_map", "apparent", "stored"), [
    ("0,4096,1099511627776,4096", 8192, b"a" * 8192),   # a segment far past the file's size
    ("4096,4096,0,4096", 8192, b"b" * 8192),            # segments out of order (overlapping)
    ("0,4096,8192,4096", 12288, b"c" * 4096),           # claims more data than the archive holds
], ids=["past-size", "out-of-order", "more-than-stored"])
def test_hostile_sparse_maps_are_refused(sparse_map: str, apparent: int, stored: bytes, tmp_path: Path) -> None:
    layer = hostile_sparse(sparse_map, apparent, stored)
    root = tmp_path / "rootfs"
    root.mkdir()
    with pytest.raises(ImageError, match="sparse map"):
        extract_layers([lambda: io.BytesIO(layer)], root)
    assert sum(allocated(p) for p in root.rglob("*")) < (1 << 20)
