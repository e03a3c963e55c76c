"""podman stats' other figures on real containers: block I/O, PIDS, network I/O (loopback left out, a veth counted,
the host's network "-"), the memory limit, from the live stream and at the command line (table, json, -a)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmlab.runtime import Lab, MetricSample
from wasmlab.runtime.options import RunOptions

from tests.conftest import ROOT, need_root, read_until

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
BB = "wasmlab/busybox"
PODMAN_COLUMNS = ["ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET IO", "BLOCK IO", "PIDS"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    home = tmp_path_factory.mktemp("stats") / "home"
    with Lab(home) as lab:
        lab.samples()
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture
def lab(home: Path) -> Iterator[Lab]:
    with Lab(home) as lab:
        yield lab
        for row in lab.ps(all=True):
            lab.rm(row.id, force=True)


def wl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, *args], env=dict(os.environ, WASMLAB_HOME=str(home)), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def started(home: Path, name: str, marker: bytes = b"ready\n") -> None:
    """`logs -f NAME` read until MARKER: the handshake that its command has got that far."""
    proc = subprocess.Popen([WASMLAB, "logs", "-f", name], env=dict(os.environ, WASMLAB_HOME=str(home)),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        read_until(proc.stdout.fileno(), marker, timeout=30)
    finally:
        proc.kill()
        proc.wait()


def sample(lab: Lab, name: str) -> MetricSample:
    with lab.metrics(interval=0.05) as stream:
        tick = next(iter(stream))
    [s] = [s for s in tick.samples if s.name == name]
    return s


def stats_json(home: Path, *args: str) -> dict[str, dict[str, object]]:
    r = wl(home, "stats", "--no-stream", "-i", "0.1", "--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return {str(row["name"]): row for row in json.loads(r.stdout)}


def pid_of(lab: Lab, name: str) -> int:
    return int(lab.inspect(name).info.pid)


# -- block I/O -------------------------------------------------------------------------------------------------

def test_block_io_counts_the_bytes_a_container_writes_to_its_disk_and_not_to_tmpfs(lab: Lab, home: Path) -> None:
    n = 1 << 20
    # O_DIRECT: the bytes reach the disk under the writer's name at once (a buffered write counts when dirtied).
    lab.run(BB, ["sh", "-c", f"dd if=/dev/zero of=/written bs=65536 count={n // 65536} oflag=direct 2>/dev/null;"
                             " echo ready; sleep 1000"], name="writer", detach=True)
    # The same bytes into a tmpfs: memory, no storage below it, so no block I/O.
    lab.run(BB, ["sh", "-c", f"dd if=/dev/zero of=/scratch/f bs=65536 count={n // 65536} 2>/dev/null;"
                             " echo ready; sleep 1000"], name="memory", detach=True,
            options=RunOptions(mounts=["type=tmpfs,destination=/scratch"]))
    started(home, "writer")
    started(home, "memory")
    writer, memory = sample(lab, "writer"), sample(lab, "memory")
    assert writer.block_write_bytes is not None and memory.block_write_bytes is not None
    # Its init's own set-up writes a few pages too (its log and state): a small margin, far below N.
    assert n <= writer.block_write_bytes <= n + (256 << 10)
    assert memory.block_write_bytes < 256 << 10
    rows = stats_json(home)
    assert int(rows["writer"]["block_write_bytes"]) >= n  # type: ignore[call-overload]
    read, written = str(rows["writer"]["block_io"]).split(" / ")
    assert read.endswith("B") and written.endswith("MB") and float(written[:-2]) >= n / 1e6


# -- PIDS --------------------------------------------------------------------------------------------------------

def test_pids_are_the_container_init_and_the_k_processes_it_forked(lab: Lab, home: Path) -> None:
    k = 5
    lab.run(BB, ["sh", "-c", "for i in " + " ".join(str(i) for i in range(k)) + "; do sleep 1000 & done; "
                             "echo ready; wait"], name="forker", detach=True)
    started(home, "forker")
    assert sample(lab, "forker").pids == k + 1
    r = wl(home, "stats", "--no-stream", "-i", "0.1")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    # podman's columns in podman's order, laid out as its tabwriter does (2 spaces apart, 12 wide at least).
    assert [c.strip() for c in header.split("  ") if c.strip()][:8] == PODMAN_COLUMNS
    assert header.startswith("ID            NAME        CPU %       MEM USAGE / LIMIT  MEM %  ")
    assert row[header.index("PIDS"):].split()[0] == str(k + 1)
    assert stats_json(home)["forker"]["pids"] == str(k + 1)


# -- network I/O -------------------------------------------------------------------------------------------------

def _in_netns(pid: int, code: str) -> None:
    """Run python CODE in PID's network namespace (as a CNI plugin does its work there, from the host)."""
    subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", code], check=True, timeout=30)


def _lo_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        name, _, figures = line.partition(":")
        if name.strip() == "lo":
            return int(figures.split()[0])
    raise AssertionError("no lo")


def test_loopback_is_left_out_a_veth_is_counted_and_the_hosts_network_says_dash(lab: Lab, home: Path) -> None:
    lab.run(BB, ["sh", "-c", "echo ready; sleep 1000"], name="private", detach=True)  # --network none (default)
    lab.run(BB, ["sh", "-c", "echo ready; sleep 1000"], name="shared", detach=True,
            options=RunOptions(network="host"))
    started(home, "private")
    started(home, "shared")
    pid = pid_of(lab, "private")
    # Over its loopback: 200 kB through a TCP connection inside its namespace (lo is brought up first).
    _in_netns(pid, "import socket, subprocess\n"
                   "subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n"
                   "srv = socket.create_server(('127.0.0.1', 0)); c = socket.create_connection(srv.getsockname())\n"
                   "s, _ = srv.accept(); c.sendall(b'x' * 200000); c.close(); got = 0\n"
                   "while (d := s.recv(65536)): got += len(d)\n"
                   "assert got == 200000\n")
    assert _lo_bytes(pid) >= 200000
    private = sample(lab, "private")
    assert (private.net_rx_bytes, private.net_tx_bytes) == (0, 0)  # lo left out
    # Over a veth: one end in its namespace, raw frames each way (no addresses needed: the devices count them).
    host_end, ctr_end = f"wlst{os.getpid() % 100000}h", f"wlst{os.getpid() % 100000}c"
    frames, size = 50, 1000
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", ctr_end], check=True)
    try:
        subprocess.run(["ip", "link", "set", ctr_end, "netns", str(pid)], check=True)
        for end in (host_end,):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1"], check=True)
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
        send = ("import socket\n"
                "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(({end!r}, 0))\n"
                "frame = b'\\xff' * 6 + b'\\x02' + b'\\x00' * 5 + b'\\x88\\xb5' + b'w' * ({size} - 14)\n"
                "for _ in range({frames}): s.send(frame)\n")
        _in_netns(pid, f"import subprocess\nsubprocess.run(['sysctl', '-qw', "
                       f"'net.ipv6.conf.{ctr_end}.disable_ipv6=1'], check=True)\n"
                       f"subprocess.run(['ip', 'link', 'set', {ctr_end!r}, 'up'], check=True)\n"
                       + send.format(end=ctr_end, size=size, frames=frames))
        host = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        host.bind((host_end, 0))
        frame = b"\xff" * 6 + b"\x02" + b"\x00" * 5 + b"\x88\xb5" + b"w" * (size - 14)
        for _ in range(frames):
            host.send(frame)
        host.close()
        private = sample(lab, "private")
        assert private.net_rx_bytes is not None and private.net_tx_bytes is not None
        assert frames * size <= private.net_rx_bytes <= frames * size + 2048
        assert frames * size <= private.net_tx_bytes <= frames * size + 2048
        rows = stats_json(home)
        assert rows["private"]["net_io"] == f"{private.net_rx_bytes / 1000:.4g}kB / " \
                                            f"{private.net_tx_bytes / 1000:.4g}kB"
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
    shared = sample(lab, "shared")
    assert (shared.net_rx_bytes, shared.net_tx_bytes) == (None, None)
    assert (rows["shared"]["net_io"], rows["shared"]["net_rx_bytes"]) == ("-", None)


# -- memory limit, -a, --format ----------------------------------------------------------------------------------

def test_memory_limit_and_percent_stopped_containers_with_a_and_templates(lab: Lab, home: Path) -> None:
    lab.run(BB, ["sh", "-c", "echo ready; sleep 1000"], name="capped", detach=True,
            options=RunOptions(memory="64m"))
    lab.run(BB, ["sh", "-c", "echo ready; sleep 1000"], name="free", detach=True)
    lab.run(BB, ["true"], name="done")
    started(home, "capped")
    started(home, "free")
    capped, free = sample(lab, "capped"), sample(lab, "free")
    assert (capped.memory_limit_bytes, free.memory_limit_bytes) == (64 << 20, None)
    rows = stats_json(home)
    assert set(rows) == {"capped", "free"}
    assert str(rows["capped"]["mem_usage"]).endswith(" / 67.11MB")
    percent = float(str(rows["capped"]["mem_percent"]).rstrip("%"))
    assert abs(percent - int(rows["capped"]["mem_bytes"]) / (64 << 20) * 100) < 0.01  # type: ignore[call-overload]
    assert (str(rows["free"]["mem_usage"]).endswith(" / -"), rows["free"]["mem_percent"]) == (True, "-")
    every = stats_json(home, "-a")
    assert set(every) == {"capped", "free", "done"}
    assert (every["done"]["mem_usage"], every["done"]["pids"], every["done"]["block_io"]) == ("0B / -", "0", "0B / 0B")
    r = wl(home, "stats", "--no-stream", "-i", "0.1", "--format", "{{.Name}} {{.PIDS}}", "capped")
    assert (r.returncode, r.stdout) == (0, "capped 1\n"), r.stderr  # busybox sh execs its last command
    r = wl(home, "stats", "--no-stream", "-i", "0.1", "--format", "table {{.Name}}\\t{{.MemPerc}}", "capped")
    assert r.stdout.splitlines()[0] == "NAME        MEM %", r.stdout
    r = wl(home, "stats", "--no-stream", "--format", "{{.Nope}}")
    assert r.returncode != 0 and r.stderr.startswith("Error: --format: no field .Nope") and r.stderr.count("\n") == 1
