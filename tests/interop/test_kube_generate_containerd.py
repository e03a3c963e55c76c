"""The generated containerd.toml against the real containerd (Debian's 1.6): its CRI plugin loads with it, with the
allowlist we wrote, and refuses a broken variant (default_runtime_name naming no runtime).

containerd runs by hand on a private socket (`--config --root --state --address`), as in test_dropin_containerd.py.
Readiness is a handshake: containerd serves its socket only after loading every plugin, so once `ctr version`
answers, `ctr plugins ls` is final. The CRI plugin starts no container here; running pods is not this test's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from wasmlab.runtime import Lab

from tests.conftest import need_root, need_tool

pytestmark = [pytest.mark.interop, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "assets" / "pods" / "seed-pod.yaml"


@dataclass
class Daemon:
    base: Path
    sock: Path
    log: Path

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "-a", str(self.sock), *args], capture_output=True, text=True, timeout=60)

    def cri_status(self) -> str:
        rows = [line.split() for line in self.ctr("plugins", "ls").stdout.splitlines()]
        found = [r[-1] for r in rows if len(r) >= 3 and r[0] == "io.containerd.grpc.v1" and r[1] == "cri"]
        assert len(found) == 1, rows
        return found[0]


Starter = Callable[[str], Daemon]


@pytest.fixture
def start_containerd() -> Iterator[Starter]:
    need_root()
    need_tool("containerd")
    need_tool("ctr")
    had_run = os.path.exists("/run/containerd")
    started: list[tuple[subprocess.Popen[bytes], Daemon]] = []

    def start(config_text: str) -> Daemon:
        base = Path(tempfile.mkdtemp(prefix="kube-gen-ctrd-", dir="/tmp"))
        (base / "root").mkdir()
        (base / "state").mkdir()
        config = base / "config.toml"
        # Only what a private daemon needs on top of the generated file: its own sockets' addresses are flags;
        # the debug and metrics endpoints are switched off so nothing listens on the host's defaults.
        config.write_text(config_text + '\n[debug]\n  address = ""\n[metrics]\n  address = ""\n'
                          f'[ttrpc]\n  address = "{base / "c.sock.ttrpc"}"\n')
        d = Daemon(base, base / "c.sock", base / "containerd.log")
        with open(d.log, "w") as fh:
            proc = subprocess.Popen(["containerd", "--config", str(config), "--root", str(base / "root"),
                                     "--state", str(base / "state"), "--address", str(d.sock)],
                                    stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        started.append((proc, d))
        deadline = time.monotonic() + 60
        while not (d.sock.exists() and d.ctr("version").returncode == 0):
            assert proc.poll() is None, f"containerd exited with {proc.returncode}: {d.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"containerd never answered: {d.log.read_text()[-2000:]}"
            time.sleep(0.05)  # polling the socket with a deadline, not a sleep used as synchronisation
        return d

    yield start
    for proc, d in started:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        subprocess.run(["rm", "-rf", "--one-file-system", str(d.base)], timeout=60)
    if not had_run:
        for p in ("/run/containerd/s", "/run/containerd"):
            try:
                os.rmdir(p)
            except OSError:
                pass


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
