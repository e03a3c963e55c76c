"""The Images facade: the podman-like verbs return plain data that a face can render or dump as JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from images_support import COMPAT, seed_context
from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.images import Images, ImageSummary


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Images:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    return Images()


def test_workshop_flow(images: Images, tmp_path: Path) -> None:
    ctx = seed_context(tmp_path / "ctx")
    built = images.build(ctx, tag="mywasm-image", annotations=["module.wasm.image/variant=compat"],
                         platform="wasi/wasm")
    rows = images.list()
    assert [r.name for r in rows] == ["localhost/mywasm-image:latest"]
    row = rows[0]
    assert isinstance(row, ImageSummary)
    assert row.wasm and row.annotations == COMPAT and row.id == built.id and len(row.short_id) == 12
    assert row.size == built.size
    json.dumps([dataclasses.asdict(r) for r in rows])

    details = images.inspect("mywasm-image")
    assert details.command == ["/hello.wasm"] and details.workdir == "/"
    assert details.layers[0].diff_id.startswith("sha256:")
    json.dumps(dataclasses.asdict(details))

    tagged = images.tag("mywasm-image", "quay.io/lab/hello:v1")
    assert sorted(tagged.names) == ["localhost/mywasm-image:latest", "quay.io/lab/hello:v1"]

    saved = images.save(["mywasm-image"], tmp_path / "hello.tar")
    fresh = Images(tmp_path / "elsewhere")
    assert fresh.load(saved.path).names == ["localhost/mywasm-image:latest"]
    assert fresh.list()[0].annotations == COMPAT

    unpacked = images.unpack("mywasm-image", tmp_path / "bundle", args=["/hello.wasm", "x"], env={"A": "1"})
    assert unpacked.args == ["/hello.wasm", "x"]
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert "A=1" in config["process"]["env"]

    removed = images.remove("quay.io/lab/hello:v1")
    assert removed.untagged == ["quay.io/lab/hello:v1"] and removed.deleted is None
    removed = images.remove("mywasm-image")
    assert removed.deleted == built.digest and removed.reclaimed > 0
    assert images.list() == []
    assert not images.exists("mywasm-image")


def test_rebuilds_leave_dangling_images_that_prune_removes(images: Images, tmp_path: Path) -> None:
    ctx = seed_context(tmp_path / "ctx")
    images.build(ctx, tag="app")
    images.build(ctx, tag="app")
    assert len(images.list()) == 1
    assert len(images.list(all=True)) == 2
    pruned = images.prune()
    assert len(pruned.images) == 1 and pruned.blobs >= 2
    assert len(images.list(all=True)) == 1


def test_wasm_artifacts_through_the_facade(images: Images, tmp_path: Path) -> None:
    images.build(seed_context(tmp_path / "ctx"), tag="mywasm-image", annotations=COMPAT)
    images.export_wasm("mywasm-image", tmp_path / "artifact")
    loaded = images.import_wasm(tmp_path / "artifact", "back")
    assert loaded.names == ["localhost/back:latest"]
    assert images.inspect("back").summary.wasm


def test_errors_are_typed(images: Images) -> None:
    with pytest.raises(ImageError) as err:
        images.inspect("nothing")
    assert err.value.hint and err.value.exit_code == 10
    assert err.value.as_dict()["error"] == "image"
