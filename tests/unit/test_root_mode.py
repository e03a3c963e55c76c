"""WASMLAB_ROOTFS: copy forces copies; anything but copy or overlay is refused in one line, never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from wasmlab.runtime.errors import UsageError
from wasmlab.runtime.linux.overlay import COPY, root_mode


def test_copy_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMLAB_ROOTFS", "copy")
    assert root_mode(tmp_path) == (COPY, "WASMLAB_ROOTFS=copy")


@pytest.mark.parametrize("value", ["bogus", "Copy", "overlayfs"])
def test_an_unknown_mode_is_refused(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMLAB_ROOTFS", value)
    with pytest.raises(UsageError) as caught:
        root_mode(tmp_path)
    assert repr(value) in caught.value.message and "WASMLAB_ROOTFS=copy" in caught.value.hint
