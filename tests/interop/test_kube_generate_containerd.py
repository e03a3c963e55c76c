"""The generated containerd.toml against the real containerd (Debian's 1.6): its CRI plugin loads with it, with the
allowlist we wrote, and refuses a broken variant (default_runtime_name naming no runtime).

containerd runs as the lab's private containerd (runtime/pods/containerd.py: `--config --root --state --address` in
a folder of its own). Readiness is a handshake: containerd serves its socket only after loading every plugin, so
once `ctr version` answers, `ctr plugins ls` is final. The CRI plugin starts no container here: pods run through it
in test_cri_containerd.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from wasmlab.runtime import Lab
from wasmlab.runtime.pods.containerd import PrivateContainerd

from tests.conftest import need_root, need_tool

pytestmark = [pytest.mark.interop, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "assets" / "pods" / "seed-pod.yaml"


@dataclass
class Daemon:
    node: PrivateContainerd

    @property
    def log(self) -> Path:
        return self.node.log

    def cri_status(self) -> str:
        rows = [line.split() for line in self.node.ctr("plugins", "ls").stdout.splitlines()]
        found = [r[-1] for r in rows if len(r) >= 3 and r[0] == "io.containerd.grpc.v1" and r[1] == "cri"]
        assert len(found) == 1, rows
        return found[0]


Starter = Callable[[str], Daemon]


@pytest.fixture
def start_containerd() -> Iterator[Starter]:
    """The lab's private containerd (runtime/pods/containerd.py, the notebook's too) with the text under test."""
    need_root()
    need_tool("containerd")
    need_tool("ctr")
    started: list[PrivateContainerd] = []

    def start(config_text: str) -> Daemon:
        node = PrivateContainerd.start(config_text, prefix="kube-gen-ctrd-")
        started.append(node)
        return Daemon(node)

    yield start
    problems = [p for node in started for p in node.stop()]
    assert not problems, problems


def test_generated_containerd_toml_loads_the_cri_plugin(tmp_path: Path, start_containerd: Starter) -> None:
    Lab.kube_generate(SEED, tmp_path)
    d = start_containerd((tmp_path / "containerd.toml").read_text())
    assert d.cri_status() == "ok", d.log.read_text()[-3000:]
    # containerd read our runtime and allowlist (it logs the CRI config it starts with).
    started = next(line for line in d.log.read_text().splitlines() if "Start cri plugin with config" in line)
    assert re.search(r"crun:\{Type:io\.containerd\.runc\.v2 .*PodAnnotations:\[module\.wasm\.image/\*\]", started)
    assert "BinaryName:/usr/bin/crun" in started


def test_runtime_path_variant_loads_too(tmp_path: Path, start_containerd: Starter) -> None:
    Lab.kube_generate(SEED, tmp_path, runtime_path=str(ROOT / ".venv" / "bin" / "wasmlab-oci"))
    d = start_containerd((tmp_path / "containerd.toml").read_text())
    assert d.cri_status() == "ok", d.log.read_text()[-3000:]
    assert "wasmlab-oci:{Type:io.containerd.runc.v2" in d.log.read_text()


def test_default_runtime_naming_no_runtime_fails_to_load(tmp_path: Path, start_containerd: Starter) -> None:
    Lab.kube_generate(SEED, tmp_path)
    text = (tmp_path / "containerd.toml").read_text()
    broken = text.replace('default_runtime_name = "runc"', 'default_runtime_name = "nothere"')
    assert broken != text
    d = start_containerd(broken)
    assert d.cri_status() == "error"
    assert "no corresponding runtime configured" in d.log.read_text()
