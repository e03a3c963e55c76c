"""The image store: lab home, references, atomic writes, locks, the OCI layout and its transactions."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from images_support import snapshot, validate, validate_layout
from wasmlab.runtime.errors import ImageError, StoreError
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import Lock, atomic_writer, canonical_json, write_atomic
from wasmlab.runtime.store.home import images_root, lab_home
from wasmlab.runtime.store.layout import ImageStore, descriptor, digest_of
from wasmlab.runtime.store.reference import normalize, parse


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageStore:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    return ImageStore()


def add_image(store: ImageStore, name: str | None, payload: bytes = b"layer") -> str:
    """Write a tiny but complete image (layer, config, manifest) and name it."""
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [digest_of(payload)]}})
    manifest = canonical_json({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                               "config": descriptor(media.OCI_CONFIG, config),
                               "layers": [descriptor(media.OCI_LAYER, payload)]})
    with store.transaction() as txn:
        txn.put_blob(payload)
        txn.put_blob(config)
        m = txn.put_blob(manifest)
        txn.add_image(m["digest"], name)
    return str(m["digest"])


# -- home and names ---------------------------------------------------------------------------


def test_lab_home_prefers_wasmlab_home_then_xdg_then_default(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert lab_home() == tmp_path / "explicit"
    assert images_root() == tmp_path / "explicit" / "images"
    monkeypatch.delenv("WASMLAB_HOME")
    assert lab_home() == tmp_path / "xdg" / "wasmlab"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert lab_home() == tmp_path / "user" / ".local" / "share" / "wasmlab"


@pytest.mark.parametrize(("given", "expected"), [
    ("mywasm-image", "localhost/mywasm-image:latest"),
    ("mywasm-image:v2", "localhost/mywasm-image:v2"),
    ("team/app", "localhost/team/app:latest"),
    ("localhost/mywasm-image", "localhost/mywasm-image:latest"),
    ("quay.io/org/app", "quay.io/org/app:latest"),
    ("127.0.0.1:5000/demo/app:1.0", "127.0.0.1:5000/demo/app:1.0"),
    ("docker.io/alpine", "docker.io/library/alpine:latest"),
    ("quay.io/org/app@sha256:" + "a" * 64, "quay.io/org/app@sha256:" + "a" * 64),
])
def test_names_are_normalised_like_podman(given: str, expected: str) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize("bad", ["MyImage", "", "app:bad tag", "a//b", "app@sha256:xyz!"])
def test_invalid_names_are_rejected_with_a_hint(bad: str) -> None:
    with pytest.raises(ImageError) as err:
        parse(bad)
    assert err.value.hint
    assert "\n" not in err.value.message


# -- atomic writes and locks ------------------------------------------------------------------


def test_write_atomic_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text("old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_atomic_writer_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_writer(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_exclusive_lock_excludes_others_and_shared_locks_share(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder = Lock(path)
    assert holder.acquire()
    other = Lock(path)
    assert other.acquire(blocking=False) is False
    holder.release()
    assert other.acquire(blocking=False) is True
    other.release()
    a, b = Lock(path, shared=True), Lock(path, shared=True)
    assert a.acquire(blocking=False) and b.acquire(blocking=False)
    assert Lock(path).acquire(blocking=False) is False
    a.release()
    b.release()


# -- the layout ---------------------------------------------------------------------------------


def test_empty_store_lists_nothing_and_creates_nothing(store: ImageStore) -> None:
    assert store.images() == []
    assert not store.root.exists()


def test_store_is_a_valid_oci_layout(store: ImageStore) -> None:
    add_image(store, "mywasm-image")
    validate_layout(store.root)
    index = json.loads(store.index_path.read_bytes())
    assert index["manifests"][0]["annotations"][media.REF_NAME] == "localhost/mywasm-image:latest"
    validate("index", index)


def test_put_blob_verifies_the_digest_and_leaves_the_store_unchanged(store: ImageStore) -> None:
    store.init()
    before = snapshot(store.root)
    with pytest.raises(StoreError) as err:
        store.put_blob(b"content", digest_of(b"other content"))
    assert "does not match its digest" in err.value.message
    assert err.value.hint
    assert snapshot(store.root) == before


def test_get_blob_verifies_on_every_read(store: ImageStore) -> None:
    digest = store.put_blob(b"precious")["digest"]
    assert store.get_blob(digest) == b"precious"
    store.blob_path(digest).write_bytes(b"tampered")
    with pytest.raises(StoreError) as err:
        store.get_blob(digest)
    assert "corrupt" in err.value.message
    assert "wasmlab rmi" in err.value.hint
    with pytest.raises(StoreError):
        store.verify_blob(digest)
    with pytest.raises(StoreError), store.open_blob(digest) as reader:
        while reader.read(3):
            pass


def test_truncated_blob_is_detected(store: ImageStore) -> None:
    digest = add_image(store, "app")
    manifest = store.manifest(store.resolve("app"))
    layer = manifest["layers"][0]["digest"]
    path = store.blob_path(layer)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(StoreError, match="corrupt"):
        store.get_blob(layer)
    assert store.resolve("app").digest == digest


def test_index_pointing_at_a_missing_manifest_gives_a_clear_error(store: ImageStore) -> None:
    add_image(store, "app")
    index = json.loads(store.index_path.read_bytes())
    index["manifests"].append({"mediaType": media.OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 10,
                               "annotations": {media.REF_NAME: "localhost/ghost:latest"}})
    store.index_path.write_bytes(json.dumps(index).encode())
    before = snapshot(store.root)
    with pytest.raises(StoreError) as err:
        store.manifest(store.resolve("ghost"))
    assert "missing" in err.value.message
    assert err.value.hint
    assert snapshot(store.root) == before


def test_corrupt_index_gives_a_store_error_with_a_hint(store: ImageStore) -> None:
    add_image(store, "app")
    store.index_path.write_text("{not json")
    with pytest.raises(StoreError) as err:
        store.images()
    assert "index" in err.value.message
    assert "move it aside" in err.value.hint


def test_commit_refuses_a_manifest_whose_blobs_are_missing(store: ImageStore) -> None:
    add_image(store, "app")
    before = snapshot(store.root)
    config = canonical_json({"os": "linux"})
    manifest = canonical_json({"schemaVersion": 2, "config": descriptor(media.OCI_CONFIG, config),
                               "layers": [descriptor(media.OCI_LAYER, b"never stored")]})
    with pytest.raises(StoreError, match="missing"), store.transaction() as txn:
        txn.put_blob(config)
        m = txn.put_blob(manifest)
        txn.add_image(m["digest"], "broken")
    assert snapshot(store.root) == before


def test_names_tags_and_dangling_images(store: ImageStore) -> None:
    first = add_image(store, "app", b"one")
    store.tag("app", "quay.io/team/app:v1")
    assert store.resolve("quay.io/team/app:v1").digest == first
    assert store.resolve("team/app:v1").digest == first  # short name
    assert store.resolve(first[7:19]).digest == first  # ID prefix
    second = add_image(store, "app", b"two")  # the name moves; the old image keeps its other name
    assert store.resolve("app").digest == second
    assert store.resolve(first).names == ("quay.io/team/app:v1",)
    store.untag("quay.io/team/app:v1")
    assert [img.digest for img in store.images()] == [second]
    third = add_image(store, "app", b"three")
    dangling = [img for img in store.images() if not img.names]
    assert [img.digest for img in dangling] == [second]
    report = store.prune(dangling=True)
    assert report.images == [second]
    assert [img.digest for img in store.images()] == [third]
    with pytest.raises(ImageError) as err:
        store.resolve("nothing-here")
    assert "not found" in err.value.message and err.value.hint


def test_remove_deletes_unreferenced_blobs(store: ImageStore) -> None:
    add_image(store, "app", b"payload")
    assert len(list(store.blobs_dir.iterdir())) == 3
    store.untag("app")
    assert store.images() == []
    assert list(store.blobs_dir.iterdir()) == []


def test_failed_transaction_leaves_store_byte_identical(store: ImageStore) -> None:
    add_image(store, "app")
    before = snapshot(store.root)
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.put_blob(b"staged data")
        txn.add_image(digest_of(b"staged data"), "other")
        raise RuntimeError("build failed")
    assert snapshot(store.root) == before


def test_failed_first_write_does_not_leave_an_empty_store(store: ImageStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.put_blob(b"x")
        raise RuntimeError("boom")
    assert not store.root.exists()


def _stage_and_hang(home: str, ready: multiprocessing.synchronize.Event) -> None:
    os.environ["WASMLAB_HOME"] = home
    store = ImageStore()
    txn = store.transaction()
    txn.begin()
    txn.put_blob(b"half-built layer" * 1000)
    ready.set()
    time.sleep(60)


def test_killed_writer_leaves_no_half_image_and_prune_sweeps_its_staging(store: ImageStore) -> None:
    add_image(store, "app")
    before_index = store.index_path.read_bytes()
    before_blobs = sorted(p.name for p in store.blobs_dir.iterdir())
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_stage_and_hang, args=(os.environ["WASMLAB_HOME"], ready))
    proc.start()
    assert ready.wait(10)
    assert store.prune(blocking=False).staging == 0  # a live writer holds the writers lock
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert store.index_path.read_bytes() == before_index
    assert sorted(p.name for p in store.blobs_dir.iterdir()) == before_blobs
    assert store.prune().staging == 1
    assert list(store.staging_dir.iterdir()) == []
    assert store.resolve("app")


def _writer(home: str, n: int) -> None:
    os.environ["WASMLAB_HOME"] = home
    add_image(ImageStore(), f"app-{n}", f"payload {n}".encode())


def test_concurrent_writers_all_land_in_a_valid_index(store: ImageStore) -> None:
    add_image(store, "seed")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(os.environ["WASMLAB_HOME"], n)) for n in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    names = sorted(n for img in store.images() for n in img.names)
    assert names == sorted(["localhost/seed:latest"] + [f"localhost/app-{n}:latest" for n in range(8)])
    validate_layout(store.root)
