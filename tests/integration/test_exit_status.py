"""`wasmlab` exits as podman does: 125 for its own errors, 126 and 127 for a command it cannot invoke or find, the
container's status otherwise, and 1 and 2 from rm and rmi for a name that does not exist and one in use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, need_root, need_tool

pytestmark = pytest.mark.root

WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
BUSYBOX = "wasmlab/busybox:latest"


def wl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, *args], env=dict(os.environ, WASMLAB_HOME=str(home)), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_root()
    h = tmp_path_factory.mktemp("exit-status") / "home"
    assert wl(h, "samples").returncode == 0
    (h.parent / "ctx").mkdir()
    (h.parent / "ctx" / "Containerfile").write_text(f"FROM {BUSYBOX}\nRUN [\"/bin/busybox\", \"mkdir\", \"/plain\"]\n"
                                                    "COPY notes.txt /notes.txt\n")
    (h.parent / "ctx" / "notes.txt").write_text("not a program\n")
    assert wl(h, "build", "-t", "notes", str(h.parent / "ctx")).returncode == 0
    return h


@pytest.mark.parametrize("argv,status", [
    (("run", "--rm", BUSYBOX, "sh", "-c", "exit 3"), 3),            # the container's own status
    (("run", "--rm", "no-such-image"), 125),                       # the lab's error: never a container's code
    (("run", "--rm", BUSYBOX, "no-such-command"), 127),            # cannot be found
    (("run", "--rm", "notes", "/notes.txt"), 126),                 # cannot be invoked: not executable
    (("run", "--rm", "notes", "/plain"), 126),                     # cannot be invoked: a directory
    (("run", "--frobnicate", BUSYBOX), 125),                       # a bad flag
    (("rum", BUSYBOX), 125),                                       # an unknown verb
    (("inspect", "no-such-thing"), 125),
    (("rm", "no-such-container"), 1),
    (("rmi", "no-such-image"), 1),
    (("pod", "rm", "no-such-pod"), 1),
])
def test_the_exit_status_is_podmans(home: Path, argv: tuple[str, ...], status: int) -> None:
    r = wl(home, *argv)
    assert r.returncode == status, r.stderr
    assert "Traceback" not in r.stderr


def test_rm_of_a_running_container_is_2(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "busy", BUSYBOX, "sleep", "60").returncode == 0
    try:
        r = wl(home, "rm", "busy")
        assert r.returncode == 2 and "is running" in r.stderr
    finally:
        assert wl(home, "rm", "-f", "busy").returncode == 0


@pytest.mark.parametrize("argv", [("rm", "no-such-thing"), ("rmi", "no-such-thing"), ("inspect", "no-such-thing"),
                                  ("stop", "no-such-thing"), ("kill", "no-such-thing"), ("logs", "no-such-thing"),
                                  ("run", "--frobnicate", "x"), ("no-such-verb",)])
def test_errors_exit_with_the_status_the_real_podman_gives(home: Path, argv: tuple[str, ...]) -> None:
    need_tool("podman")
    theirs = subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert theirs.returncode != 0, theirs.stdout  # nothing of that name in podman's store either
    assert wl(home, *argv).returncode == theirs.returncode, (theirs.stderr, wl(home, *argv).stderr)
