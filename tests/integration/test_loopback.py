"""A container given a network namespace of its own finds its loopback up, as under runc (and podman)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from wasmlab.runtime import Runtime

from tests.conftest import make_rootfs_busybox, minimal_config, need_root, need_tool, write_bundle

pytestmark = pytest.mark.root

SHOW = ["/bin/busybox", "ip", "-o", "link", "show", "lo"]


def bundle(tmp_path: Path, namespaces: tuple[str, ...]) -> Path:
    b = tmp_path / "-".join(namespaces)
    make_rootfs_busybox(b / "rootfs")
    return write_bundle(b, minimal_config(SHOW, namespaces=namespaces))


def flags(text: str) -> set[str]:
    """The interface's flags, as `ip link` prints them: 1: lo: <LOOPBACK,UP,LOWER_UP> mtu ..."""
    return set(text.split("<", 1)[1].split(">", 1)[0].split(","))


def test_a_new_network_namespace_has_its_loopback_up_as_under_runc(tmp_path: Path, state_root: Path) -> None:
    need_root()
    need_tool("runc")
    b = bundle(tmp_path, ("pid", "mount", "uts", "ipc", "network"))
    with Runtime(root=str(state_root)) as rt:
        ours = rt.run("lo-up", str(b))
    assert ours.exit_code == 0, ours.stderr
    theirs = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", "lo-up-runc"], cwd=b,
                            capture_output=True, text=True, timeout=60)
    assert theirs.returncode == 0, theirs.stderr
    assert "UP" in flags(ours.stdout.decode()) and flags(ours.stdout.decode()) == flags(theirs.stdout)


def test_the_labs_default_network_has_loopback_up(lab_home: Path, tmp_path: Path) -> None:
    need_root()
    from wasmlab.runtime import Lab

    out = tmp_path / "out"
    with Lab(lab_home) as lab, open(out, "wb") as fh, open("/dev/null", "rb") as null:
        lab.samples()
        res = lab.run("wasmlab/busybox:latest", ["ip", "-o", "link", "show", "lo"], rm=True,
                      stdio=(null.fileno(), fh.fileno(), fh.fileno()))
    assert res.exit_code == 0 and "UP" in flags(out.read_text()), out.read_text()
