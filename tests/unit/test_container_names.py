"""The container name index (store/names.py): one link per name, checked against each container's meta.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from wasmlab.runtime.store.names import NameIndex, meta_holds


def make(containers: Path, cid: str, name: str) -> None:
    (containers / cid).mkdir(parents=True)
    (containers / cid / "meta.json").write_text(json.dumps({"id": cid, "name": name}))


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, NameIndex, set[str]]:
    containers = tmp_path / "containers"
    containers.mkdir()
    removing: set[str] = set()
    return containers, NameIndex(tmp_path / ".container-names", meta_holds(containers, removing)), removing


def test_a_name_is_claimed_once_and_found_by_its_link(lab: tuple[Path, NameIndex, set[str]]) -> None:
    containers, index, _ = lab
    index.ensure(list)
    assert index.claim("web", "a1")
    make(containers, "a1", "web")
    assert not index.claim("web", "b2")  # held: a1's meta.json says web
    assert index.owner("web") == "a1"
    assert os.readlink(index.folder / "web") == "a1"


def test_a_stale_link_never_takes_a_name_away(lab: tuple[Path, NameIndex, set[str]]) -> None:
    containers, index, removing = lab
    index.ensure(list)
    assert index.claim("web", "gone")  # its container was never made (a crash between link and meta.json)
    assert index.owner("web") is None
    assert index.claim("web", "b2")
    make(containers, "b2", "web")
    assert index.owner("web") == "b2"
    removing.add("b2")  # being removed after the answer: the name is free already, as `ps` no longer shows it
    assert index.owner("web") is None and index.claim("web", "c3")
    assert [p.name for p in index.folder.iterdir()] == ["web"]  # the replacement left no temporary link


def test_a_renamed_container_no_longer_holds_its_old_name(lab: tuple[Path, NameIndex, set[str]]) -> None:
    containers, index, _ = lab
    index.ensure(list)
    make(containers, "a1", "web")
    assert index.claim("web", "a1")
    (containers / "a1" / "meta.json").write_text(json.dumps({"id": "a1", "name": "api"}))
    assert index.owner("web") is None  # its meta.json is the truth
    index.release("web", "b2")  # not b2's: kept
    assert (index.folder / "web").is_symlink()
    index.release("web", "a1")
    assert not (index.folder / "web").exists()


def test_a_lab_made_before_the_index_gets_one_from_its_records(lab: tuple[Path, NameIndex, set[str]]) -> None:
    containers, index, _ = lab
    make(containers, "a1", "web")
    make(containers, "b2", "db")
    (index.folder.parent / ".container-names.building").mkdir()  # a build that a crash cut short
    (index.folder.parent / ".container-names.building" / "half").symlink_to("zz")
    index.ensure(lambda: [json.loads((containers / c / "meta.json").read_text()) for c in ("a1", "b2")])
    assert sorted(p.name for p in index.folder.iterdir()) == ["db", "web"]
    assert not index.claim("web", "c3") and index.owner("db") == "b2"
    assert not (index.folder.parent / ".container-names.building").exists()
