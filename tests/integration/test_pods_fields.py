"""The pod fields issue 12 left for last: runtimeClassName recorded and shown (with what a cluster does with it),
emptyDir medium: Memory as a tmpfs sized by sizeLimit, and a disk emptyDir's sizeLimit refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wasmlab.runtime import Lab
from wasmlab.runtime.errors import PodSpecError

from tests.conftest import LeakCheck
from tests.integration.test_pods import cli, home, lab, run_in, write  # noqa: F401 - fixtures shared with test_pods

pytestmark = pytest.mark.root

CLASSED = """\
apiVersion: v1
kind: Pod
metadata: {{name: classed}}
spec:
  restartPolicy: Never
  runtimeClassName: {runtime_class}
  containers:
  - {{name: side, image: wasmlab/busybox:latest, command: [/bin/sleep, "3600"]}}
"""

MEMORY = """\
apiVersion: v1
kind: Pod
metadata: {{name: cached}}
spec:
  restartPolicy: Never
  volumes:
  - name: cache
    emptyDir: {{medium: Memory{size}}}
  - name: disk
    emptyDir: {{}}
  containers:
  - name: writer
    image: wasmlab/busybox:latest
    command: [/bin/sleep, "3600"]
    volumeMounts: [{{name: cache, mountPath: /cache}}, {{name: disk, mountPath: /disk}}]
  - name: reader
    image: wasmlab/busybox:latest
    command: [/bin/sleep, "3600"]
    volumeMounts: [{{name: cache, mountPath: /cache}}]
"""


def mount_line(text: str, target: str) -> list[str]:
    """The fields of TARGET's line in a /proc/mounts text ([] when nothing is mounted there)."""
    for line in text.splitlines():
        fields = line.split()
        if fields[1] == target:
            return fields
    return []


def test_runtime_class_name_is_recorded_and_shown_with_what_a_cluster_does(
        lab: Lab, home: Path, tmp_path: Path, leaks: LeakCheck) -> None:  # noqa: F811
    path = write(tmp_path, CLASSED.format(runtime_class="wasmlab-oci"))
    dry = cli(home, "kube", "play", "--dry-run", str(path))
    assert dry.returncode == 0, dry.stderr
    assert "runtimeClassName wasmlab-oci: on a cluster the kubelet looks up the RuntimeClass" in dry.stdout
    warned = [line for line in dry.stderr.splitlines() if "runtimeClassName" in line]
    assert len(warned) == 1 and "default/classed (wasmlab-oci)" in warned[0] and "'crun'" in warned[0]
    res = lab.kube_play(path)
    assert sum("runtimeClassName" in w for w in res.warnings) == 1
    pod = lab.pod_inspect("classed")
    assert pod.runtime_class == "wasmlab-oci"
    assert "handler" in pod.runtime_class_effect and "wasmlab-oci" in pod.runtime_class_effect
    inspected = json.loads(cli(home, "pod", "inspect", "classed").stdout)
    assert inspected["runtime_class"] == "wasmlab-oci"
    rows = lab.inspect_ns("classed")
    assert {r.container for r in rows} == {"POD", "side"} and {r.runtime_class for r in rows} == {"wasmlab-oci"}
    table = cli(home, "inspect-ns", "classed")
    assert table.returncode == 0 and "runtimeClassName: wasmlab-oci (on a cluster: the node handler" in table.stdout
    lab.kube_down(path)
    leaks.assert_clean()


def test_the_runtime_class_kube_generate_writes_draws_no_warning(lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:  # noqa: F811
    path = write(tmp_path, CLASSED.format(runtime_class="crun"))
    res = lab.kube_play(path)
    assert not [w for w in res.warnings if "runtimeClassName" in w]
    assert lab.pod_inspect("classed").runtime_class == "crun"
    lab.kube_down(path)
    leaks.assert_clean()


@pytest.mark.parametrize("size", ["8Mi", None])
def test_memory_emptydir_is_a_tmpfs_sized_by_size_limit_and_shared(lab: Lab, tmp_path: Path, leaks: LeakCheck,  # noqa: F811
                                                                   size: str | None) -> None:
    path = write(tmp_path, MEMORY.format(size=f", sizeLimit: {size}" if size else ""))
    pod = lab.kube_play(path).pods[0]
    writer, reader = pod.container("writer").lab_name, pod.container("reader").lab_name
    mounts = run_in(lab, writer, ["cat", "/proc/mounts"])
    cache = mount_line(mounts, "/cache")
    assert cache and cache[2] == "tmpfs", mounts
    options = cache[3].split(",")
    assert "nosuid" in options and "nodev" in options
    if size:
        assert "size=8192k" in options  # 8Mi, as the kernel writes it
    disk = mount_line(mounts, "/disk")
    assert disk and disk[2] != "tmpfs"  # the other emptyDir stays on disk
    run_in(lab, writer, ["sh", "-c", "echo in-memory > /cache/note"])
    assert run_in(lab, reader, ["cat", "/cache/note"]) == "in-memory\n"  # one tmpfs for the pod
    if size:
        # The limit holds: writing 9 MiB into the 8 MiB tmpfs fails with ENOSPC.
        out = run_in(lab, writer, ["sh", "-c", "dd if=/dev/zero of=/cache/big bs=1M count=9 2>&1; echo rc=$?"])
        assert "No space left on device" in out and "rc=1" in out
    lab.kube_down(path)
    leaks.assert_clean()  # the tmpfs is unmounted with the pod


def test_size_limit_on_a_disk_emptydir_is_refused_in_one_line_before_anything_starts(
        lab: Lab, home: Path, tmp_path: Path, leaks: LeakCheck) -> None:  # noqa: F811
    path = write(tmp_path, MEMORY.format(size="").replace("emptyDir: {}", "emptyDir: {sizeLimit: 1Gi}"))
    with pytest.raises(PodSpecError) as caught:
        lab.kube_play(path)
    assert "spec.volumes[1].emptyDir.sizeLimit" in caught.value.message
    assert "not enforced" in caught.value.message and "medium: Memory" in caught.value.hint
    assert lab.pods() == [] and not (home / "pods" / "default" / "cached").exists()
    out = cli(home, "kube", "play", str(path))
    assert out.returncode != 0 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    leaks.assert_clean()


def test_a_pods_namespaces_are_pinned_first_and_every_container_joins_them(
        lab: Lab, home: Path, tmp_path: Path, leaks: LeakCheck) -> None:  # noqa: F811
    import os

    path = write(tmp_path, MEMORY.format(size=""))
    pod = lab.kube_play(path).pods[0]
    pins = home / "pods" / "default" / "cached" / "ns"
    mounted = Path("/proc/self/mountinfo").read_text()
    for kind in ("net", "ipc", "uts"):
        assert f" {pins / kind} " in mounted  # held by a bind mount, as CRI-O's pinns holds them
        pinned = os.stat(pins / kind).st_ino
        for c in pod.containers:  # the infra container (POD) joins them too
            assert os.stat(f"/proc/{c.pid}/ns/{kind}").st_ino == pinned, (c.name, kind)
    assert run_in(lab, pod.container("reader").lab_name, ["/bin/hostname"]) == "cached\n"
    lo = run_in(lab, pod.container("reader").lab_name, ["cat", "/sys/class/net/lo/operstate"])
    assert lo.strip() in ("unknown", "up")  # the pod's loopback is up (lo reports "unknown" when up)
    lab.kube_down(path)
    assert str(pins) not in Path("/proc/self/mountinfo").read_text()
    leaks.assert_clean()
