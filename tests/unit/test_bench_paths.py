"""The bench finds the repository it measures (its docs/ and .venv/), wherever its module lives."""

from __future__ import annotations

from tests.conftest import ROOT


def test_the_bench_writes_into_this_repository() -> None:
    from wasmlab.runtime import bench

    assert bench.ROOT == ROOT
    assert (bench.ROOT / "pyproject.toml").is_file() and (bench.ROOT / ".venv" / "bin" / "wasmlab-oci").exists()
