"""Archives: oci-archive / docker-archive / oci-dir round trips, bad archives, Wasm OCI artifacts."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from images_support import COMPAT, hello_wasm, seed_context, snapshot, tar_bytes, tar_file, validate, validate_layout
from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.images import archive, artifact
from wasmlab.runtime.images.build import build
from wasmlab.runtime.images.unpack import unpack_bundle
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import canonical_json
from wasmlab.runtime.store.layout import ImageStore, descriptor, digest_of


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageStore:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    seed = seed_context(tmp_path / "ctx")
    build(seed, tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
    return ImageStore()


@pytest.fixture
def other(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "other" / "images")


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            out[m.name] = fh.read() if fh else b""
        return out


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# -- round trips ----------------------------------------------------------------------------------


def test_oci_archive_round_trip_keeps_digest_name_and_annotation(store: ImageStore, other: ImageStore,
                                                                 tmp_path: Path) -> None:
    image = store.resolve("mywasm-image")
    result = archive.save(store, ["mywasm-image"], tmp_path / "out.tar")
    assert result.format == "oci-archive" and result.images == ["localhost/mywasm-image:latest"]
    files = members(tmp_path / "out.tar")
    assert {"oci-layout", "index.json"} <= set(files)
    index = json.loads(files["index.json"])
    validate("index", index)
    validate("layout", files["oci-layout"])
    assert index["manifests"][0]["annotations"][media.REF_NAME] == "localhost/mywasm-image:latest"
    assert index["manifests"][0]["digest"] == image.digest
    validate("manifest", files[f"blobs/sha256/{image.digest[7:]}"])
    loaded = archive.load(other, tmp_path / "out.tar")
    assert loaded.format == "oci-archive" and loaded.names == ["localhost/mywasm-image:latest"]
    copy = other.resolve("mywasm-image")
    assert copy.digest == image.digest
    assert other.manifest(copy)["annotations"] == COMPAT
    validate_layout(other.root)


def test_archives_are_deterministic(store: ImageStore, tmp_path: Path) -> None:
    archive.save(store, ["mywasm-image"], tmp_path / "a.tar")
    archive.save(store, ["mywasm-image"], tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_several_images_and_names_in_one_archive(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    store.tag("mywasm-image", "quay.io/lab/hello:v1")
    archive.save(store, ["mywasm-image", "quay.io/lab/hello:v1"], tmp_path / "two.tar")
    loaded = archive.load(other, tmp_path / "two.tar")
    assert sorted(loaded.names) == ["localhost/mywasm-image:latest", "quay.io/lab/hello:v1"]
    assert len(other.images()) == 1


def test_docker_archive_round_trip(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    archive.save(store, ["mywasm-image"], tmp_path / "d.tar", format="docker-archive")
    files = members(tmp_path / "d.tar")
    entries = json.loads(files["manifest.json"])
    assert entries[0]["RepoTags"] == ["localhost/mywasm-image:latest"]
    assert tar_file(files[entries[0]["Layers"][0]], "hello.wasm") == hello_wasm()
    loaded = archive.load(other, tmp_path / "d.tar")
    assert loaded.format == "docker-archive" and loaded.names == ["localhost/mywasm-image:latest"]
    original = store.config(store.manifest(store.resolve("mywasm-image")))
    copy = other.config(other.manifest(other.resolve("mywasm-image")))
    assert copy == original


def test_docker_archive_with_symlinked_layers_and_short_names(other: ImageStore, tmp_path: Path) -> None:
    layer = tar_bytes([("file", "hello.wasm", hello_wasm())])
    config = canonical_json({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello.wasm"]},
                             "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}})
    path = tmp_path / "docker.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in {f"{digest_of(layer)[7:]}.tar": layer, "cfg.json": config,
                           "manifest.json": json.dumps([{"Config": "cfg.json", "RepoTags": ["hello:1"],
                                                         "Layers": ["abc/layer.tar"]}]).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("abc/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, f"../{digest_of(layer)[7:]}.tar"
        tar.addfile(link)
    loaded = archive.load(other, path)
    assert loaded.names == ["docker.io/library/hello:1"]
    assert other.resolve("hello:1")


def test_oci_dir_and_gzip_compressed_archive(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    archive.save(store, ["mywasm-image"], tmp_path / "layout", format="oci-dir")
    validate_layout(tmp_path / "layout")
    archive.save(store, ["mywasm-image"], tmp_path / "x.tar")
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress((tmp_path / "x.tar").read_bytes()))
    assert archive.load(other, tmp_path / "layout").format == "oci-dir"
    assert archive.load(other, tmp_path / "x.tar.gz").names == ["localhost/mywasm-image:latest"]


def test_load_with_a_new_name(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    archive.save(store, ["mywasm-image"], tmp_path / "x.tar")
    assert archive.load(other, tmp_path / "x.tar", name="renamed:v2").names == ["localhost/renamed:v2"]


def test_image_index_picks_the_platform(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    image = store.resolve("mywasm-image")
    archive.save(store, ["mywasm-image"], tmp_path / "layout", format="oci-dir")
    root = tmp_path / "layout"
    nested = canonical_json({"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [
        {"mediaType": media.OCI_MANIFEST, "digest": image.digest, "size": image.size,
         "platform": {"os": "wasip1", "architecture": "wasm"}}]})
    (root / "blobs" / "sha256" / digest_of(nested)[7:]).write_bytes(nested)
    (root / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "manifests": [
        {"mediaType": media.OCI_INDEX, "digest": digest_of(nested), "size": len(nested),
         "annotations": {media.REF_NAME: "multi:1"}}]}))
    loaded = archive.load(other, root)
    assert loaded.images[0].digest == image.digest and loaded.names == ["localhost/multi:1"]


# -- bad archives leave the store as it was -------------------------------------------------------


def bad_archive(store: ImageStore, tmp_path: Path, kind: str) -> Path:
    archive.save(store, ["mywasm-image"], tmp_path / "good.tar")
    files = members(tmp_path / "good.tar")
    image = store.resolve("mywasm-image")
    manifest = store.manifest(image)
    layer_name = f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}"
    if kind == "tar-slip":
        files["../../evil"] = b"pwned"
    elif kind == "absolute":
        files["/etc/evil"] = b"pwned"
    elif kind == "manifest-digest":
        files[f"blobs/sha256/{image.digest[7:]}"] = files[f"blobs/sha256/{image.digest[7:]}"].replace(
            b'"schemaVersion":2', b'"schemaVersion":3')
    elif kind == "truncated":
        files[layer_name] = files[layer_name][:-100]
    elif kind == "missing-blob":
        del files[layer_name]
    elif kind == "missing-manifest":
        index = json.loads(files["index.json"])
        index["manifests"][0]["digest"] = "sha256:" + "f" * 64
        files["index.json"] = json.dumps(index).encode()
    elif kind == "bad-json":
        files["index.json"] = b"{nope"
    elif kind == "not-an-image":
        files = {"hello.txt": b"hi"}
    return write_tar(tmp_path / f"{kind}.tar", files)


@pytest.mark.parametrize(("kind", "message"), [
    ("tar-slip", "escapes the archive"),
    ("absolute", "absolute path"),
    ("manifest-digest", "does not match its digest"),
    ("truncated", "truncated"),
    ("missing-blob", "not in the archive"),
    ("missing-manifest", "not in the archive"),
    ("bad-json", "not valid JSON"),
    ("not-an-image", "neither an OCI archive nor a docker archive"),
])
def test_bad_archives_fail_clearly_and_leave_the_store_byte_identical(store: ImageStore, tmp_path: Path,
                                                                      kind: str, message: str) -> None:
    path = bad_archive(store, tmp_path, kind)
    store.untag("mywasm-image")
    ctx = seed_context(tmp_path / "ctx2")
    (ctx / "Containerfile").write_text("FROM scratch\nCOPY hello.wasm /other.wasm\n")
    build(ctx, tag="existing")
    before = snapshot(store.root)
    with pytest.raises(ImageError) as err:
        archive.load(store, path)
    assert message in err.value.message
    assert err.value.hint and "\n" not in err.value.message
    assert snapshot(store.root) == before


def test_not_a_file(other: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        archive.load(other, tmp_path / "nowhere.tar")
    (tmp_path / "junk.tar").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ImageError, match="not a readable image archive"):
        archive.load(other, tmp_path / "junk.tar")
    assert not other.root.exists()


def test_save_refuses_unknown_formats_and_names(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="unknown archive format"):
        archive.save(store, ["mywasm-image"], tmp_path / "x", format="zip")
    with pytest.raises(ImageError, match="not found"):
        archive.save(store, ["ghost"], tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


def test_save_refuses_a_corrupt_store_blob_and_writes_nothing(store: ImageStore, tmp_path: Path) -> None:
    manifest = store.manifest(store.resolve("mywasm-image"))
    store.blob_path(manifest["layers"][0]["digest"]).write_bytes(b"rotten")
    with pytest.raises(ImageError, match="corrupt"):
        archive.save(store, ["mywasm-image"], tmp_path / "x.tar")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tar") or ".tmp-" in p.name] == []


# -- Wasm OCI artifacts ---------------------------------------------------------------------------


def test_export_wasm_artifact_follows_the_cncf_layout(store: ImageStore, tmp_path: Path) -> None:
    result = artifact.export_wasm_artifact(store, "mywasm-image", tmp_path / "artifact")
    root = tmp_path / "artifact"
    index = json.loads((root / "index.json").read_bytes())
    validate("index", index)
    manifest_bytes = (root / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes()
    validate("manifest", manifest_bytes)
    manifest = json.loads(manifest_bytes)
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert [x["mediaType"] for x in manifest["layers"]] == ["application/wasm"]
    module = (root / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]).read_bytes()
    assert module == hello_wasm()
    config = json.loads((root / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_bytes())
    assert config["architecture"] == "wasm" and config["os"] == "wasip1"
    assert config["layerDigests"] == [manifest["layers"][0]["digest"]]
    assert result.images == ["localhost/mywasm-image:latest"]
    assert artifact.is_wasm_artifact(root)


def test_wasm_artifact_imports_as_a_runnable_compat_image(store: ImageStore, other: ImageStore,
                                                         tmp_path: Path) -> None:
    artifact.export_wasm_artifact(store, "mywasm-image", tmp_path / "artifact.tar")
    loaded = artifact.import_wasm_artifact(other, tmp_path / "artifact.tar", "from-artifact")
    assert loaded.names == ["localhost/from-artifact:latest"]
    assert loaded.images[0].converted_from == "wasm-artifact"
    image = other.resolve("from-artifact")
    manifest = other.manifest(image)
    assert manifest["annotations"][media.WASM_VARIANT] == "compat"
    validate("manifest", other.get_blob(image.digest))
    result = unpack_bundle(other, "from-artifact", tmp_path / "bundle")
    assert result.args == ["/hello.wasm"]
    assert (Path(result.rootfs) / "hello.wasm").read_bytes() == hello_wasm()


def test_import_wasm_refuses_regular_images(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    archive.save(store, ["mywasm-image"], tmp_path / "x.tar")
    with pytest.raises(ImageError, match="not a Wasm OCI artifact"):
        artifact.import_wasm_artifact(other, tmp_path / "x.tar")
    assert not other.root.exists()


def test_export_wasm_needs_a_wasm_module(store: ImageStore, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "Containerfile").write_text("FROM scratch\nCOPY data.txt /\n")
    (tmp_path / "plain" / "data.txt").write_text("x")
    build(tmp_path / "plain", tag="plain")
    with pytest.raises(ImageError, match=r"no \.wasm module"):
        artifact.export_wasm_artifact(store, "plain", tmp_path / "art")


def test_hand_made_artifact_with_a_component_is_marked_wasip2(other: ImageStore, tmp_path: Path) -> None:
    component = b"\0asm\x0d\x00\x01\x00"
    config = canonical_json({"created": "2024-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip2",
                             "layerDigests": [digest_of(component)]})
    manifest = canonical_json({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                               "config": descriptor(media.WASM_CONFIG, config),
                               "layers": [descriptor(media.WASM_LAYER, component, {media.TITLE: "comp.wasm"})]})
    root = tmp_path / "art"
    (root / "blobs" / "sha256").mkdir(parents=True)
    for data in (component, config, manifest):
        (root / "blobs" / "sha256" / digest_of(data)[7:]).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "manifests": [
        {"mediaType": media.OCI_MANIFEST, "digest": digest_of(manifest), "size": len(manifest)}]}))
    loaded = artifact.import_wasm_artifact(other, root, "comp")
    image_config = other.config(other.manifest(other.resolve("comp")))
    assert image_config["os"] == "wasip2" and image_config["config"]["Cmd"] == ["/comp.wasm"]
    assert loaded.images[0].converted_from == "wasm-artifact"
