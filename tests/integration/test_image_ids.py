"""One image id everywhere, as podman shows it: `build -q` prints it whole, `images` lists its first 12 digits,
and `rmi` says it deleted that same id (not the manifest's digest)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, need_root

pytestmark = pytest.mark.root

WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")


def wl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, *args], env=dict(os.environ, WASMLAB_HOME=str(home)), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def test_build_images_and_rmi_name_the_same_id(tmp_path: Path) -> None:
    need_root()
    home = tmp_path / "home"
    assert wl(home, "samples").returncode == 0
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text('FROM wasmlab/busybox:latest\nRUN ["/bin/busybox", "mkdir", "/made"]\n')
    r = wl(home, "build", "-q", "-t", "ids", str(ctx))
    assert r.returncode == 0, r.stderr
    built = r.stdout.strip()
    assert len(built) == 64 and all(c in "0123456789abcdef" for c in built), built  # podman: no "sha256:"
    listed = {img["names"][0]: img for img in json.loads(wl(home, "images", "--json").stdout)}
    assert listed["localhost/ids:latest"]["id"].removeprefix("sha256:") == built
    assert built[:12] in wl(home, "images").stdout
    r = wl(home, "rmi", "ids")
    assert r.returncode == 0 and r.stdout.splitlines() == ["Untagged: localhost/ids:latest", f"Deleted: {built}"]
