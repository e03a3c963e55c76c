"""inspect-ns beyond the namespace inodes, against /proc: each container's pid tree (host and pod pids), mounts and
cgroups; a Wasm container's WASI view (engine, preopens with modes, argv, env, the module's declared memory as
wasmtime reads it, and the size at exit where the engine reports it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from wasmlab.runtime import Lab
from wasmlab.runtime.errors import PodStartFailed, UsageError
from wasmlab.runtime.pods import wasi

from tests.conftest import ROOT, LeakCheck
from tests.integration.test_pods import cli, home, lab, write  # noqa: F401 - fixtures shared with test_pods

pytestmark = pytest.mark.root
BUILT = ROOT / "assets" / "built" / "wasm"


def nspid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(pid)


def cgroup_procs(pid: int) -> set[int]:
    """Every process in PID's memory cgroup (v1 here), read from cgroupfs."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return {int(p) for p in Path(f"/sys/fs/cgroup/memory{path}/cgroup.procs").read_text().split()}
    raise AssertionError("no memory hierarchy")


def wasmtime_memories(data: bytes) -> list[tuple[int, int | None]]:
    """(initial, maximum) pages of each memory the module imports or defines, as wasmtime itself reads them."""
    import wasmtime

    module = wasmtime.Module(wasmtime.Engine(), data)
    out = []
    for item in [*module.imports, *module.exports]:
        kind = item.type
        if isinstance(kind, wasmtime.MemoryType):
            out.append((kind.limits.min, kind.limits.max))
    return out


def test_pid_tree_mounts_cgroups_and_wasi_view_match_proc(lab: Lab, home: Path, tmp_path: Path,  # noqa: F811
                                                         leaks: LeakCheck) -> None:
    path = write(tmp_path, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: deep, namespace: lookhere, annotations: {module.wasm.image/variant: compat-smart}}
        spec:
          restartPolicy: Never
          volumes: [{name: shared, emptyDir: {}}]
          containers:
          - name: linux
            image: wasmlab/busybox:latest
            command: [/bin/sh, -c, "sleep 3600 & sleep 3600 & wait"]
            volumeMounts: [{name: shared, mountPath: /shared}]
          - name: wasm
            image: wasmlab/loop:compat
            env: [{name: GREETING, value: hello pod}]
            volumeMounts: [{name: shared, mountPath: /shared, readOnly: true}]
        """)
    [pod] = lab.kube_play(path).pods
    linux_pid = pod.container("linux").pid
    # The shell's two sleeps are up once the cgroup holds them as sleeps (no sleep here: poll /proc). Three
    # processes are not enough: a forked child is the shell until it has exec'd sleep.
    def sleeps_up() -> bool:
        commands = []
        for pid in cgroup_procs(linux_pid) - {linux_pid}:
            try:
                commands.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                return False
        try:  # and the sandbox has exec'd pause (start answers before the init execs, as runc's does)
            paused = Path(f"/proc/{pod.infra_pid}/cmdline").read_bytes() == b"/pause\x00"
        except OSError:
            return False
        return paused and commands == [b"sleep\x003600\x00"] * 2

    for _ in range(100000):
        if sleeps_up():
            break
    rows = {r.container: r for r in lab.inspect_ns("lookhere/deep")}
    for name in ("POD", "linux", "wasm"):
        row = rows[name]
        c = pod.container(name)
        # The pid tree: the container's init first, every process of its cgroup, each pod pid as /proc says.
        assert row.processes[0].host_pid == c.pid and row.processes[0].depth == 0
        assert {p.host_pid for p in row.processes} == cgroup_procs(c.pid), name
        for p in row.processes:
            assert p.pod_pid == nspid(p.host_pid)
            assert p.command == Path(f"/proc/{p.host_pid}/cmdline").read_bytes().rstrip(b"\0").replace(
                b"\0", b" ").decode()
        assert row.processes[0].pod_pid == 1  # each its own pid namespace (no shareProcessNamespace)
        # The mounts, relative to its root, in /proc/PID/mountinfo's order.
        info = Path(f"/proc/{c.pid}/mountinfo").read_text().splitlines()
        assert [m.target for m in row.mounts] == [line.split()[4] for line in info]
        assert [m.fstype for m in row.mounts] == [line.split(" - ")[1].split()[0] for line in info]
        # The cgroups: one entry per hierarchy, as /proc/PID/cgroup lists them.
        assert [f"{g.hierarchy}:{g.controllers}:{g.path}" for g in row.cgroups] == \
            Path(f"/proc/{c.pid}/cgroup").read_text().splitlines()
        assert next(g.path for g in row.cgroups if "memory" in g.controllers.split(",")) == \
            f"/{pod.cgroup}/{c.id}"
    linux = rows["linux"]
    assert [p.depth for p in linux.processes] == [0, 1, 1]
    assert sorted(p.command for p in linux.processes[1:]) == ["sleep 3600", "sleep 3600"]
    assert [p.pod_pid for p in linux.processes] == [1, *sorted(p.pod_pid for p in linux.processes[1:])]
    assert "/shared" in [m.target for m in linux.mounts] and "/" in [m.target for m in linux.mounts]
    assert rows["linux"].wasi is None and rows["POD"].wasi is None
    # The WASI view of the Wasm container.
    view = rows["wasm"].wasi
    assert view is not None and view.engine == "wasmtime" == pod.container("wasm").handler
    assert view.module == "/loop.wasm" and view.argv[0] == "/loop.wasm"
    assert "GREETING=hello pod" in view.env
    emptydir = home / "pods" / "lookhere" / "deep" / "volumes" / "shared"
    preopens = {p.guest: p for p in view.preopens}
    assert (preopens["/"].mode, preopens["/shared"].mode) == ("rw", "ro")
    assert preopens["/shared"].host == str(emptydir)
    # The declared memory, read from the module's bytes, is what wasmtime reads from them.
    data = (BUILT / "loop.wasm").read_bytes()
    assert [(m.initial_pages, m.maximum_pages) for m in view.memories] == wasmtime_memories(data) != []
    assert view.memory_at_exit_bytes is None  # still running
    # The CLI: JSON with every part, and the table's blocks.
    out = json.loads(cli(home, "inspect-ns", "lookhere/deep", "--json").stdout)
    wasm = next(r for r in out if r["container"] == "wasm")
    assert wasm["wasi"]["preopens"][0]["guest"] == "/" and wasm["processes"][0]["pod_pid"] == 1
    table = cli(home, "inspect-ns", "lookhere/deep").stdout
    assert "WASI: engine wasmtime, module /loop.wasm" in table
    assert f"  {linux.processes[1].host_pid:<10}{linux.processes[1].pod_pid:<9}  sleep 3600" in table
    lab.kube_down(path)
    leaks.assert_clean()


@pytest.mark.parametrize("engine", ["wasmtime", "wasmer"])
def test_memory_at_exit_where_the_engine_reports_it(lab: Lab, tmp_path: Path, engine: str) -> None:  # noqa: F811
    path = write(tmp_path, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: ended, annotations: {{wasmlab.io/engine: {engine}, module.wasm.image/variant: compat}}}}
        spec:
          restartPolicy: Never
          containers: [{{name: app, image: wasmlab/hello:compat}}]
        """)
    [pod] = lab.kube_play(path).pods
    app = pod.container("app")
    assert lab.pod_wait(app.id) == 0
    [row] = lab.inspect_ns("ended/app")
    assert row.pid == 0 or row.status != "running"
    view = row.wasi
    assert view is not None and view.engine == engine
    [declared] = wasmtime_memories((BUILT / "hello.wasm").read_bytes())
    assert (view.memories[0].initial_pages, view.memories[0].maximum_pages) == declared
    if engine == "wasmtime":
        # hello never grows its memory: what wasmtime reports at exit is the initial size, in whole pages.
        assert view.memory_at_exit_bytes == declared[0] * wasi.PAGE
    else:
        assert view.memory_at_exit_bytes is None
        assert "wasmer-sdk 0.5 has no memory inspection" in view.memory_note
    lab.kube_down(path)


def test_declared_memory_of_imported_shared_and_bounded_memories() -> None:
    """The reader against wasmtime on hand-made modules: an imported memory, bounds, and no memory at all."""
    import wasmtime

    cases = ['(module (memory 3 7))', '(module (import "env" "memory" (memory 2)) (memory 1 1))', '(module)',
             '(module (memory 65536))']
    for text in cases:
        data = wasmtime.wat2wasm(text)
        got = [(m.initial_pages, m.maximum_pages) for m in wasi.declared_memories(data)]
        module = wasmtime.Module(wasmtime.Engine(), data)
        want = [(i.type.limits.min, i.type.limits.max) for i in module.imports
                if isinstance(i.type, wasmtime.MemoryType)]
        assert got[:len(want)] == want, text
    assert [(m.initial_pages, m.maximum_pages, m.imported) for m in wasi.declared_memories(
        wasmtime.wat2wasm(cases[1]))] == [(2, None, True), (1, 1, False)]
    assert wasi.declared_memories(wasmtime.wat2wasm(cases[0]))[0].maximum_pages == 7
    with pytest.raises(wasi.ModuleFormatError):
        wasi.declared_memories(b"\x7fELF....")
    with pytest.raises(wasi.ModuleFormatError):
        wasi.declared_memories(wasmtime.wat2wasm(cases[0])[:-2])


@pytest.mark.parametrize("engine", ["wasmtime", "wasmer"])
def test_sandbox_rule_off_loses_the_infra_container_and_the_network(lab: Lab, home: Path,  # noqa: F811
                                                                    leaks: LeakCheck, engine: str) -> None:
    scenario = ROOT / "assets" / "pods" / "sandbox-rule-off.yaml"
    # With the rule (the default), the compat pod's pause runs natively and the Wasm app prints its line.
    [pod] = lab.kube_play(scenario, engine=engine).pods
    assert pod.container("POD").handler == "native" and pod.container("app").handler == engine
    assert lab.pod_wait(pod.container("app").id) == 0
    lab.kube_down(scenario)
    # Without it, pause goes to the Wasm handler, which refuses an ELF binary: no sandbox, so no network.
    with pytest.raises(PodStartFailed) as err:
        lab.kube_play(scenario, engine=engine, sandbox_rule="off")
    message = err.value.message
    assert "its infra container (pause) did not start" in message
    assert "is a Linux (ELF) binary" in message and "no network namespace" in message
    assert "io.kubernetes.cri.container-type=sandbox natively" in err.value.hint
    assert lab.pods() == []
    leaks.assert_clean()
    # The CLI: one line, non-zero, and the flag is refused outside its scenario.
    out = cli(home, "kube", "play", "--sandbox-rule", "off", "--engine", engine, str(scenario))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "infra container (pause) did not start" in out.stderr
    other = ROOT / "assets" / "pods" / "seed-pod.yaml"
    with pytest.raises(UsageError, match="--sandbox-rule off is a lab scenario"):
        lab.kube_play(other, sandbox_rule="off")
    refused = cli(home, "kube", "play", "--sandbox-rule", "off", str(other))
    assert refused.returncode != 0 and "is a lab scenario" in refused.stderr
    assert lab.pods() == []
    leaks.assert_clean()


def test_after_kube_down_no_process_mount_cgroup_or_net_namespace_is_left(lab: Lab, home: Path,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    from wasmlab.runtime.bench_pods import MIXED_POD, leftovers
    from wasmlab.runtime.linux import cgroups

    path = tmp_path / "three.yaml"
    path.write_text("---\n".join(MIXED_POD.format(name=f"left-{i}") for i in range(3)))
    pods = lab.kube_play(path).pods
    seen = leftovers(home, cgroups.default_parent())
    # While they run, the probe sees them: 3 containers a pod, 3 pod cgroups per hierarchy, 3 network namespaces.
    assert len(seen["processes"]) == 9 and len(seen["net_namespaces"]) == 3
    assert {os.readlink(f"/proc/{p.infra_pid}/ns/net") for p in pods} == set(seen["net_namespaces"])
    assert sum(1 for c in seen["cgroups"] if "/memory/" in c) == 3
    lab.kube_down(path)
    assert leftovers(home, cgroups.default_parent()) == {"processes": [], "mounts": [], "cgroups": [],
                                                          "net_namespaces": []}
