"""Fixtures the TUI tests share: an empty lab home that every Lab the app opens uses (WASMLAB_HOME)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WASMLAB_HOME", str(home))
    return home
