"""The live stream on real containers and a real pod: its samples are the cgroups' own figures, and it stops."""

from __future__ import annotations

import shutil
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmlab.runtime import Lab, MetricsTick
from wasmlab.runtime.linux import cgroups
from wasmlab.runtime.metrics.stream import read_cgroup

from tests.conftest import need_root

pytestmark = pytest.mark.root
BUSY = ["sh", "-c", "while :; do :; done"]
LAG = 0.025  # seconds a cgroup's CPU time may lag behind the time its task ran (see below)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    home = tmp_path_factory.mktemp("live") / "home"
    with Lab(home) as lab:
        lab.samples()
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture
def lab(home: Path) -> Iterator[Lab]:
    with Lab(home) as lab:
        yield lab
        for pod in lab.pods():
            lab.pod_rm(pod.identity, force=True)
        for row in lab.ps(all=True):
            lab.rm(row.id, force=True)


def _cgroup_of(lab: Lab, name: str) -> str:
    return str(lab.inspect(name).state["wasmlab"]["cgroup"])  # type: ignore[index]


def test_a_busy_containers_samples_are_its_cgroups_cpu_time_and_memory(lab: Lab) -> None:
    lab.run("wasmlab/busybox", BUSY, name="busy", detach=True)
    lab.run("wasmlab/loop:compat", ["/loop.wasm", "0", "50"], name="ticker", detach=True)
    rel = _cgroup_of(lab, "busy")
    with lab.metrics(interval=0.1) as stream:
        ticks = iter(stream)
        w0 = time.monotonic()
        u0 = read_cgroup(rel).cpu_ns
        first = next(ticks)
        gap0 = time.monotonic() - w0
        seen = [first]
        for _ in range(6):
            seen.append(next(ticks))
        w1 = time.monotonic()
        last = seen[-1]
        after = read_cgroup(rel)
        gap1 = time.monotonic() - w1 + (w1 - last.at)
    busy = [next(s for s in t.samples if s.name == "busy") for t in seen]
    assert {s.engine for s in busy} == {"native"} and {s.kind for s in busy} == {"container"}
    assert {s.name: s.engine for s in last.samples} == {"busy": "native", "ticker": "wasmtime"}
    # The CPU % of each interval times its length adds up to the CPU time the cgroup counted between the first
    # and the last tick: no more than what it counted around them, no less than that minus the gaps. The kernel
    # charges a running task's time to its cgroup at scheduler ticks (4 ms here), later still when the virtual CPU
    # is preempted, so a reading may lag: LAG allows for that (CI once saw 8 ms), far below one lost interval.
    used = sum(s.cpu_percent / 100 * (b.at - a.at) for a, b, s in zip(seen[:-1], seen[1:], busy[1:], strict=True))
    counted = (after.cpu_ns or 0) - (u0 or 0)
    assert counted > 0 and used <= counted / 1e9 + 0.002
    assert used >= counted / 1e9 - gap0 - gap1 - LAG
    assert busy[0].cpu_percent == 0.0 and max(s.cpu_percent for s in busy[1:]) > 10  # it is busy
    # Memory: the cgroup's own files (v1 usage_in_bytes and max_usage_in_bytes here).
    assert after.memory is not None and after.peak is not None
    assert abs(busy[-1].memory_bytes - after.memory) <= 256 * 1024
    assert busy[-1].memory_peak_bytes <= after.peak and busy[-1].memory_peak_bytes >= busy[-1].memory_bytes
    # A container that has stopped is no longer sampled.
    lab.rm("busy", force=True)
    with lab.metrics(interval=0.05) as stream:
        tick = next(iter(stream))
    assert [s.name for s in tick.samples] == ["ticker"]


def test_a_pod_is_sampled_from_its_cgroup_parent_beside_its_containers(lab: Lab, tmp_path: Path) -> None:
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: burner
          annotations:
            module.wasm.image/variant: compat-smart
        spec:
          restartPolicy: Never
          containers:
          - name: spin
            image: wasmlab/busybox:latest
            command: ["sh", "-c", "while :; do :; done"]
          - name: ticker
            image: wasmlab/loop:compat
            command: ["/loop.wasm", "0", "50"]
        """))
    [pod] = lab.kube_play(yaml).pods
    record_cgroup = pod.cgroup
    with lab.metrics(interval=0.2) as stream:
        ticks = [t for _, t in zip(range(5), stream, strict=False)]
        direct = read_cgroup(record_cgroup)
    last = ticks[-1]
    members = [s for s in last.samples if s.kind == "container" and s.pod == "default/burner"]
    [agg] = [s for s in last.samples if s.kind == "pod"]
    assert (agg.name, agg.pod, agg.engine) == ("default/burner", "default/burner", None)
    assert {s.engine for s in members} >= {"native", "wasmtime"} and len(members) >= 3  # and the infra
    # The parent's figures count its containers (hierarchical cgroups): at least their sum, and what it says.
    assert agg.memory_bytes >= 0.9 * sum(s.memory_bytes for s in members)
    assert direct.memory is not None and abs(agg.memory_bytes - direct.memory) <= 1 << 20
    # Over the last four intervals together: each tick reads the members, then the parent, so a preemption
    # between the two reads shifts one interval's share from one to the other (it evens out over several).
    def busiest(tick: MetricsTick) -> float:
        return max(s.cpu_percent for s in tick.samples if s.kind == "container" and s.pod == "default/burner")

    def parent(tick: MetricsTick) -> float:
        return sum(s.cpu_percent for s in tick.samples if s.kind == "pod")

    assert sum(map(parent, ticks[1:])) >= 0.8 * sum(map(busiest, ticks[1:])) and agg.cpu_percent > 10
    assert cgroups.layout().mode != "none"
    # podman's other figures: the parent's pids.current counts every member's tasks; they share one network.
    assert agg.pids is not None and agg.pids >= sum(s.pids or 0 for s in members) >= len(members)
    assert {(s.net_rx_bytes, s.net_tx_bytes) for s in [*members, agg]} == {(0, 0)}  # only lo in a pod here
    assert agg.block_write_bytes is not None and agg.block_write_bytes >= sum(s.block_write_bytes or 0 for s in members)


def test_a_callback_stream_ends_with_close_and_with_the_lab(home: Path) -> None:
    got: list[MetricsTick] = []
    two = threading.Event()

    def on_tick(tick: MetricsTick) -> None:
        got.append(tick)
        if len(got) == 2:
            two.set()

    lab = Lab(home)
    stream = lab.metrics(interval=0.02, callback=on_tick)
    assert two.wait(10) and stream.running
    other = lab.metrics(interval=0.02, callback=lambda _t: None)
    stream.close()
    assert not stream.running and other.running
    lab.close()  # closes the streams it made
    assert not other.running
    assert not [t for t in threading.enumerate() if t.name == "wasmlab-metrics" and t.is_alive()]
