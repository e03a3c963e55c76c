"""Unpacking images into bundles: safe extraction, whiteouts, compression, limits, and config.json."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
from pathlib import Path

import pytest
import zstandard
from images_support import COMPAT, seed_context, store_image, tar_bytes
from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.images.build import build
from wasmlab.runtime.images.unpack import (
    ExtractLimits,
    extract_layers,
    merge_env,
    resolve_user,
    runtime_config,
    unpack,
    unpack_bundle,
)
from wasmlab.runtime.spec.runtime import validate
from wasmlab.runtime.store.layout import ImageStore


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageStore:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    return ImageStore()


def extract(tmp_path: Path, *layers: bytes, limits: ExtractLimits | None = None) -> Path:
    root = tmp_path / "rootfs"
    root.mkdir(exist_ok=True)
    extract_layers([lambda d=d: io.BytesIO(d) for d in layers], root, limits=limits)  # type: ignore[misc]
    return root


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- the seed image to a bundle ------------------------------------------------------------------


def test_seed_image_unpacks_to_a_runnable_bundle(store: ImageStore, tmp_path: Path) -> None:
    build(seed_context(tmp_path / "ctx"), tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm",
          labels={"org.example.team": "lab"})
    bundle = unpack(store, "mywasm-image", tmp_path / "bundle", env={"GREETING": "hi"},
                    annotations={"io.example/extra": "1"})
    assert bundle == tmp_path / "bundle"
    assert (bundle / "rootfs" / "hello.wasm").read_bytes()[:4] == b"\0asm"
    config = json.loads((bundle / "config.json").read_text())
    validate(config)
    assert config["process"]["args"] == ["/hello.wasm"]
    assert config["process"]["cwd"] == "/"
    assert "GREETING=hi" in config["process"]["env"]
    assert any(e.startswith("PATH=") for e in config["process"]["env"])
    assert config["root"] == {"path": "rootfs", "readonly": False}
    notes = config["annotations"]
    assert notes["module.wasm.image/variant"] == "compat"
    assert notes["org.example.team"] == "lab"
    assert notes["io.example/extra"] == "1"
    assert notes["org.opencontainers.image.os"] == "wasip1"


def test_args_and_entrypoint_overrides_follow_podman(store: ImageStore, tmp_path: Path) -> None:
    store_image(store, "tool", [tar_bytes([("file", "tool.wasm", b"\0asm\1\0\0\0")])],
                {"Entrypoint": ["/tool.wasm"], "Cmd": ["--help"], "WorkingDir": "/data",
                 "Env": ["A=1", "B=2"], "StopSignal": "SIGINT", "ExposedPorts": {"80/tcp": {}}})
    r = unpack_bundle(store, "tool", tmp_path / "b1")
    assert r.args == ["/tool.wasm", "--help"]
    r = unpack_bundle(store, "tool", tmp_path / "b2", args=["run", "x"], env=["B=3", "C=4"])
    config = json.loads((tmp_path / "b2" / "config.json").read_text())
    assert config["process"]["args"] == ["/tool.wasm", "run", "x"]
    assert config["process"]["cwd"] == "/data"
    env = config["process"]["env"]
    assert "A=1" in env and "B=3" in env and "C=4" in env and "B=2" not in env
    assert config["annotations"]["org.opencontainers.image.stopSignal"] == "SIGINT"
    assert config["annotations"]["org.opencontainers.image.exposedPorts"] == "80/tcp"
    r = unpack_bundle(store, "tool", tmp_path / "b3", entrypoint=["/other"])
    assert r.args == ["/other"]


def test_image_without_a_command_needs_one(store: ImageStore, tmp_path: Path) -> None:
    store_image(store, "nocmd", [tar_bytes([("file", "x", b"1")])])
    with pytest.raises(ImageError) as err:
        unpack(store, "nocmd", tmp_path / "b")
    assert "no command" in err.value.message and "CMD" in err.value.hint
    assert not (tmp_path / "b").exists()
    assert unpack_bundle(store, "nocmd", tmp_path / "b", args=["/x"]).args == ["/x"]


def test_users_are_resolved_from_the_image(store: ImageStore, tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nlab:x:1000:100::/home/lab:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nusers:x:100:\nwheel:x:10:\n")
    assert resolve_user("lab", root)[:2] == (1000, 100)
    assert resolve_user("lab:wheel", root)[:2] == (1000, 10)
    assert resolve_user("1000", root)[:2] == (1000, 100)
    assert resolve_user("42:43", root)[:2] == (42, 43)
    with pytest.raises(ImageError, match="not in the image's /etc/passwd"):
        resolve_user("ghost", root)
    config = runtime_config({"config": {"User": "lab", "Cmd": ["/x"]}}, rootfs=root, rootless=False)
    assert config["process"]["user"] == {"uid": 1000, "gid": 100}


def test_merge_env_overrides_by_key_and_keeps_order() -> None:
    assert merge_env(["PATH=/bin", "A=1"], ["A=2", "B=1"], {"C": "3"}) == ["PATH=/bin", "A=2", "B=1", "C=3"]


def test_unpack_refuses_a_non_empty_bundle_dir(store: ImageStore, tmp_path: Path) -> None:
    store_image(store, "x", [tar_bytes([("file", "x", b"1")])], {"Cmd": ["/x"]})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("mine")
    with pytest.raises(ImageError, match="not empty"):
        unpack(store, "x", tmp_path / "b")
    assert (tmp_path / "b" / "keep").read_text() == "mine"


# -- layers ----------------------------------------------------------------------------------------


def test_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    lower = tar_bytes([("dir", "etc"), ("file", "etc/a", b"a"), ("file", "etc/b", b"b"),
                       ("dir", "var"), ("dir", "var/cache"), ("file", "var/cache/old", b"o"),
                       ("dir", "var/cache/sub"), ("file", "var/cache/sub/deep", b"d"),
                       ("file", "keep", b"k")])
    upper = tar_bytes([("file", "etc/.wh.a", b""), ("dir", "var/cache"), ("file", "var/cache/new", b"n"),
                       ("file", "var/cache/.wh..wh..opq", b"")])
    root = extract(tmp_path, lower, upper)
    assert tree(root) == {"etc", "etc/b", "var", "var/cache", "var/cache/new", "keep"}


def test_file_replaces_directory_and_symlink_replaced_not_followed(tmp_path: Path) -> None:
    lower = tar_bytes([("dir", "x"), ("file", "x/inner", b"i"), ("symlink", "link", "/etc/passwd")])
    upper = tar_bytes([("file", "x", b"now a file"), ("file", "link", b"plain file")])
    root = extract(tmp_path, lower, upper)
    assert (root / "x").read_bytes() == b"now a file"
    assert not (root / "link").is_symlink() and (root / "link").read_bytes() == b"plain file"


def test_modes_links_and_hardlinks(tmp_path: Path) -> None:
    layer = tar_bytes([("dir", "bin", 0o555), ("file", "bin/tool", b"#!", 0o4755),
                       ("hardlink", "bin/alias", "bin/tool"), ("symlink", "sh", "bin/tool"),
                       ("fifo", "pipe")])
    root = extract(tmp_path, layer)
    assert stat.S_IMODE(os.stat(root / "bin").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(root / "bin" / "tool").st_mode) == 0o4755
    assert os.stat(root / "bin" / "alias").st_ino == os.stat(root / "bin" / "tool").st_ino
    assert os.readlink(root / "sh") == "bin/tool"
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)
    os.chmod(root / "bin", 0o755)


def test_device_nodes_are_skipped_when_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    root = tmp_path / "rootfs"
    root.mkdir()
    layer = tar_bytes([("chr", "null", 1, 3), ("file", "ok", b"1")])
    report = extract_layers([lambda: io.BytesIO(layer)], root)
    assert tree(root) == {"ok"}
    assert report.skipped == ["/null: device node (needs root)"]


@pytest.mark.parametrize(("entries", "why"), [
    ([("file", "../escape", b"x")], "escapes the root"),
    ([("file", "a/../../escape", b"x")], "escapes the root"),
    ([("file", "/etc/abs", b"x")], "absolute path"),
    ([("symlink", "link", "/"), ("file", "link/etc/x", b"x")], "through the symlink /link"),
    ([("symlink", "d", "../.."), ("file", "d/x", b"x")], "through the symlink /d"),
    ([("hardlink", "h", "../../etc/passwd")], "escapes the root"),
    ([("symlink", "s", "/etc"), ("hardlink", "h", "s/passwd")], "through the symlink"),
    ([("file", "etc/.wh...", b"")], "whiteout for an invalid name"),
])
def test_unsafe_entries_are_refused(tmp_path: Path, entries: list[tuple[object, ...]], why: str) -> None:
    base = tmp_path / "deep" / "er"
    base.mkdir(parents=True)
    with pytest.raises(ImageError) as err:
        extract(base, tar_bytes(entries))
    assert why in err.value.message
    assert "malformed or malicious" in err.value.hint
    inside = sorted(p.name for p in (base / "rootfs").rglob("*"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["deep", "er", "rootfs", *inside])
    assert not Path("/etc/x").exists() and not Path("/escape").exists()


def test_unpack_of_an_unsafe_image_leaves_no_bundle(store: ImageStore, tmp_path: Path) -> None:
    store_image(store, "evil", [tar_bytes([("symlink", "etc", "/etc"), ("file", "etc/evil", b"x")])],
                {"Cmd": ["/x"]})
    with pytest.raises(ImageError, match="symlink"):
        unpack(store, "evil", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    assert not Path("/etc/evil").exists()


def test_gzip_and_zstd_layers(store: ImageStore, tmp_path: Path) -> None:
    gz = gzip.compress(tar_bytes([("file", "a.txt", b"from gzip")]))
    zst = zstandard.ZstdCompressor().compress(tar_bytes([("file", "b.txt", b"from zstd")]))
    store_image(store, "mixed", [gz, zst], {"Cmd": ["/a.txt"]})
    r = unpack_bundle(store, "mixed", tmp_path / "b")
    rootfs = Path(r.rootfs)
    assert (rootfs / "a.txt").read_bytes() == b"from gzip"
    assert (rootfs / "b.txt").read_bytes() == b"from zstd"
    assert r.entries == 2


def test_layer_not_matching_its_diff_id_is_refused(store: ImageStore, tmp_path: Path) -> None:
    layer = tar_bytes([("file", "a", b"a")])
    store_image(store, "lying", [layer], {"Cmd": ["/a"]}, diff_ids=["sha256:" + "1" * 64])
    with pytest.raises(ImageError, match="does not match the image config"):
        unpack(store, "lying", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_corrupt_layer_blob_is_refused(store: ImageStore, tmp_path: Path) -> None:
    from wasmlab.runtime.errors import StoreError

    store_image(store, "x", [tar_bytes([("file", "a", b"a")])], {"Cmd": ["/a"]})
    manifest = store.manifest(store.resolve("x"))
    store.blob_path(manifest["layers"][0]["digest"]).write_bytes(b"garbage")
    with pytest.raises(StoreError, match="corrupt"):
        unpack(store, "x", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_archive_bombs_hit_the_limits(tmp_path: Path) -> None:
    big = tar_bytes([("file", "big", b"\0" * 100_000)])
    assert len(gzip.compress(big)) < 1000
    with pytest.raises(ImageError, match="more than 10000 bytes") as err:
        extract(tmp_path, gzip.compress(big), limits=ExtractLimits(max_bytes=10_000))
    assert "bomb" in err.value.hint
    many = tar_bytes([("file", f"f{i}", b"") for i in range(50)])
    with pytest.raises(ImageError, match="more than 20 entries"):
        extract(tmp_path, many, limits=ExtractLimits(max_entries=20))


def test_garbage_layer_is_reported_as_invalid_tar(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a valid tar"):
        extract(tmp_path, gzip.compress(b"this is not a tar archive" * 30))
