"""Lab.bloated_image: the machine's cached bloated image brought into a lab under a fixed name, never rebuilt
unless asked; an empty cache answers in one line with the command that builds it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_root

NAME = "localhost/wasmlab/bloated:latest"


@pytest.fixture(scope="module")
def cached_root() -> Path:
    """The real cached root: there on this machine (and in CI here); where it is not, built by the path
    `wasmlab bench --scenario bloated` takes (about 41 s, once), never skipped."""
    need_root()
    from wasmlab.runtime.images.bloated import ensure_root

    root, _ = ensure_root()
    return root


def run_captured(lab: Any, image: str, command: list[str] | None = None) -> tuple[int | None, str]:
    with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as null:
        res = lab.run(image, command, rm=True, stdio=(null.fileno(), out.fileno(), out.fileno()))
        out.seek(0)
        return res.exit_code, out.read().decode()


def test_the_cached_image_is_imported_under_a_fixed_name_without_a_rebuild(cached_root: Path,
                                                                            tmp_path: Path) -> None:
    from wasmlab.runtime import ImageBuilt, Lab
    from wasmlab.runtime.images import bloated

    build_txt = cached_root.parent / "build.txt"
    built_at = build_txt.stat().st_mtime_ns
    digests = []
    for n in range(2):  # two fresh labs: the second takes the archive the first may have left, the same image
        with Lab(tmp_path / f"home{n}") as lab:
            events: list[Any] = []
            lab.subscribe(events.append)
            image = lab.bloated_image()
            assert NAME in image.names and NAME in [i.name for i in lab.images()]
            assert image.size > 100_000_000, "a Debian root with python3 and wasmtime"
            assert image.labels.get(bloated.LABEL) == bloated.stamp()
            assert [e.name for e in events if isinstance(e, ImageBuilt)] == [NAME]
            again = lab.bloated_image()  # current already: nothing imported
            assert again.id == image.id and len([e for e in events if isinstance(e, ImageBuilt)]) == 1
            if n == 0:  # a first run unpacks the 200 MB layer (about 4 s): once is enough
                assert run_captured(lab, "wasmlab/bloated:latest") == (0, "hello world from wasmlab !!!!\n")
                code, out = run_captured(lab, "wasmlab/bloated:latest", ["/wasm/cpu.wasm", "2000"])
                assert (code, out.strip()) == (0, "primes below 2000: 303"), "every sample module rides along"
            digests.append(image.digest)
    assert digests[0] == digests[1], "the second lab loaded the saved archive (a build would date it anew)"
    assert bloated.archive_path(cached_root, bloated.stamp()).is_file()
    assert build_txt.stat().st_mtime_ns == built_at, "the root was not rebuilt"
    assert not list(cached_root.parent.parent.glob("*.building-*"))


def test_an_empty_cache_says_why_in_one_line_with_the_command_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_root()
    from wasmlab.runtime import Lab
    from wasmlab.runtime.errors import BloatedImageNotBuilt

    monkeypatch.setenv("WASMLAB_CACHE", str(tmp_path / "cache"))
    with Lab(tmp_path / "home") as lab:
        before = lab.images()
        with pytest.raises(BloatedImageNotBuilt) as caught:
            lab.bloated_image()
        line = caught.value.one_line()
        assert "\n" not in line and "not built" in line and "`wasmlab bench --scenario bloated`" in line, line
        assert lab.images() == before
    assert not (tmp_path / "cache").exists(), "asking built nothing"
