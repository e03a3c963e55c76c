"""Pod restarts with real processes: the pod keeper restarts a failing container under Always (CrashLoopBackOff in
between, restarts rising), leaves exit 0 alone under OnFailure, does not exist under Never, outlives the CLI that
played the pod, and is ended by kube down, pod rm and system reset (no keeper, zygote or container left)."""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime import Lab

from tests.conftest import ROOT, LeakCheck, need_root

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
IN_CREATE, IN_MOVED_TO = 0x100, 0x80


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    home = tmp_path_factory.mktemp("keeper") / "home"
    with Lab(home) as lab:
        lab.samples()
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture
def lab(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("WASMLAB_POD_BACKOFF_BASE", "0.5")
    with Lab(home) as lab:
        yield lab
        for pod in lab.pods():
            lab.pod_rm(pod.identity, force=True)


def pod_file(tmp_path: Path, name: str, script: str, policy: str | None) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
        {f'  restartPolicy: {policy}' if policy else ''}
          containers:
          - name: app
            image: wasmlab/busybox:latest
            command: ["/bin/sh", "-c", "{script}"]
        """))
    return path


def keeper_state(home: Path, pod: str, until: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
    """keeper.json of POD once UNTIL holds, woken by inotify each time the keeper replaces the file (no sleeps)."""
    folder = home / "pods" / "default" / pod
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    assert fd >= 0
    try:
        assert libc.inotify_add_watch(fd, str(folder).encode(), IN_CREATE | IN_MOVED_TO) >= 0
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = json.loads((folder / "keeper.json").read_text())
            except (OSError, ValueError):
                state = {}
            if state and until(state):
                return state
            left = deadline - time.monotonic()
            if left <= 0:
                log = (folder / "keeper.log").read_text() if (folder / "keeper.log").exists() else "(no log)"
                raise AssertionError(f"keeper.json never got there: {state}; {sorted(os.listdir(folder))}; {log}")
            if select.select([fd], [], [], left)[0]:
                os.read(fd, 65536)
    finally:
        os.close(fd)


def keeper_of(home: Path, pod: str) -> dict[str, int]:
    return dict(json.loads((home / "pods" / "default" / pod / "pod.json").read_text()).get("keeper") or {})


def gone(pid: int, timeout: float = 10) -> bool:
    """True once PID has exited (a pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def lab_processes(home: Path) -> list[int]:
    """Keepers and zygotes of this lab home that are not this test's own (the open Lab's zygote; the leak check
    looks after this process's children): found by their command lines, wherever their parent is."""
    from wasmlab.runtime.store.home import runtime_root

    marks = (str(home).encode(), str(runtime_root(home)).encode())
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:  # a process may end between the reads (they are made as zygotes and keepers exit)
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                if not (any(m in cmdline for m in marks) and any(b"wasmlab.runtime" in part for part in cmdline)):
                    continue
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2:].split()[1]) != os.getpid():
                out.append(int(name))
    return out


def assert_no_lab_process(home: Path) -> None:
    """Every keeper and zygote of the home ends (a zygote once its containers are gone): each waited on by pidfd."""
    left = [pid for pid in lab_processes(home) if not gone(pid, 10)]
    assert not left, f"processes of the lab left behind: {left}"


def test_always_restarts_a_failing_container_with_back_off_and_pod_ps_shows_crashloopbackoff(
        lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    path = pod_file(tmp_path, "crashy", "echo crash; exit 1", None)  # Kubernetes' default: Always
    played = lab.kube_play(path)
    assert played.warnings == []  # restarts are applied: no more "not applied yet"
    [pod] = played.pods
    assert pod.keeper_pid == keeper_of(lab.home, "crashy")["pid"] > 0
    # First exit: restarted at once; the second: CrashLoopBackOff for the base delay (0.5 s here).
    state = keeper_state(lab.home, "crashy", lambda s: s["containers"]["app"]["state"] == "CrashLoopBackOff")
    app = state["containers"]["app"]
    assert app["restarts"] >= 1 and app["exit_code"] == 1
    assert app["next_restart"] == pytest.approx(app["finished_at"] + 0.5 * 2 ** (app["restarts"] - 1))
    seen = lab.pod_inspect("crashy")
    assert seen.status == "CrashLoopBackOff" or seen.container("app").restarts > app["restarts"]
    # restarts rise
    state = keeper_state(lab.home, "crashy", lambda s: s["containers"]["app"]["restarts"] >= 3)
    seen = lab.pod_inspect("crashy")
    assert seen.restarts >= 3 and seen.container("app").restarts >= 3
    # Each restart ran the container again, its log continuing.
    lines = [e.data for _, e in lab.pod_logs("crashy")]
    assert len(lines) >= 3 and set(lines) == {b"crash\n"}
    keeper = keeper_of(lab.home, "crashy")["pid"]
    lab.kube_down(path)
    assert gone(keeper, 0)  # kube down waited for it
    assert lab.pods() == []
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_a_restarted_container_starts_from_the_image_not_from_what_it_wrote(
        lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    """As the kubelet makes a new container after a crash, a restart gets an empty writable layer: the file the
    first run wrote to its root (not a volume) is gone for the second, which says so."""
    path = pod_file(tmp_path, "fresh", "if [ -e /marker ]; then echo kept; else echo fresh; fi; "
                    "echo x > /marker; exit 1", None)
    lab.kube_play(path)
    keeper_state(lab.home, "fresh", lambda s: s["containers"]["app"]["restarts"] >= 2)
    lines = [e.data for _, e in lab.pod_logs("fresh")]
    assert len(lines) >= 2 and set(lines) == {b"fresh\n"}, lines
    lab.kube_down(path)
    leaks.assert_clean()


@pytest.mark.parametrize("when", ["at-once", "once-kept"])
def test_a_sandbox_that_dies_is_made_again_and_its_containers_restart_in_it(
        lab: Lab, tmp_path: Path, leaks: LeakCheck, when: str) -> None:
    """As the kubelet does when a pod's sandbox dies: the keeper makes the infra container again (in the pod's
    pinned namespaces, which outlived it) and starts the running containers again in it, each restart counted.
    At once: killed as the play returns, usually before the keeper has looked (its start takes ~100 ms);
    once kept: after the keeper wrote its first state, so it sees the death while it watches."""
    path = pod_file(tmp_path, "sandboxed", "exec sleep 3600", None)
    [pod] = lab.kube_play(path).pods
    if when == "once-kept":
        keeper_state(lab.home, "sandboxed", lambda s: s["containers"]["app"]["state"] == "Running")
    old_infra, old_app = pod.infra_pid, pod.container("app").pid
    assert old_infra and old_app
    net = os.stat(f"/proc/{old_infra}/ns/net").st_ino
    lab.kill("default_sandboxed_POD", "KILL")
    state = keeper_state(lab.home, "sandboxed", lambda s: s.get("sandbox_restarts", 0) >= 1
                         and s["containers"]["app"]["restarts"] >= 1)
    assert state["containers"]["app"]["state"] == "Running"
    seen = lab.pod_inspect("sandboxed")
    assert seen.status == "Running" and seen.restarts >= 1
    assert seen.infra_pid not in (0, old_infra) and seen.container("app").pid not in (None, 0, old_app)
    # Both are in the pod's network namespace, the one its pins held.
    assert os.stat(f"/proc/{seen.infra_pid}/ns/net").st_ino == net
    assert os.stat(f"/proc/{seen.container('app').pid}/ns/net").st_ino == net
    keeper = keeper_of(lab.home, "sandboxed")["pid"]
    lab.kube_down(path)
    assert gone(keeper, 0)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_pod_ps_shows_restarts_and_crashloopbackoff(lab: Lab, tmp_path: Path, home: Path) -> None:
    env = {**os.environ, "WASMLAB_HOME": str(home), "WASMLAB_POD_BACKOFF_BASE": "30"}
    path = pod_file(tmp_path, "looping", "exit 2", "OnFailure")
    subprocess.run([WASMLAB, "kube", "play", str(path)], env=env, check=True, capture_output=True, timeout=60)
    keeper_state(home, "looping", lambda s: s["containers"]["app"]["state"] == "CrashLoopBackOff")
    out = subprocess.run([WASMLAB, "pod", "ps"], env=env, check=True, capture_output=True, text=True,
                         timeout=60).stdout.splitlines()
    assert out[0].split() == ["POD", "ID", "NAME", "STATUS", "CREATED", "RESTARTS", "CONTAINERS"]
    [row] = [line for line in out[1:] if "default/looping" in line]
    assert row.split()[2:3] == ["CrashLoopBackOff"] and row.split()[6] == "1"  # restarted once at once, then waits
    assert "app(CrashLoopBackOff, exited 2, restarts 1, next in " in row


@pytest.mark.parametrize(("policy", "script", "final", "pod_status"), [
    ("OnFailure", "echo done", "Completed", "Completed"),
    ("Always", "echo done", None, None),  # Always restarts even exit 0 (shown as below)
])
def test_onfailure_leaves_exit_0_alone_and_its_keeper_ends(lab: Lab, tmp_path: Path, leaks: LeakCheck,
                                                            policy: str, script: str, final: str | None,
                                                            pod_status: str | None) -> None:
    path = pod_file(tmp_path, "once", script, policy)
    lab.kube_play(path)
    keeper = keeper_of(lab.home, "once")["pid"]
    if final is None:
        state = keeper_state(lab.home, "once", lambda s: s["containers"]["app"]["restarts"] >= 1)
        assert state["containers"]["app"]["exit_code"] == 0
    else:
        state = keeper_state(lab.home, "once", lambda s: s["containers"]["app"]["state"] == final)
        assert state["containers"]["app"]["restarts"] == 0
        assert gone(keeper)  # nothing left to restart: the keeper ended itself, so nothing ever restarts it
        seen = lab.pod_inspect("once")
        assert seen.status == pod_status and seen.restarts == 0 and seen.keeper_pid == 0
    lab.kube_down(path)
    leaks.assert_clean()


def test_never_has_no_keeper_and_does_not_restart(lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    path = pod_file(tmp_path, "never", "exit 1", "Never")
    [pod] = lab.kube_play(path).pods
    assert "keeper" not in json.loads((lab.home / "pods" / "default" / "never" / "pod.json").read_text())
    assert lab.pod_wait(pod.container("app").id) == 1
    seen = lab.pod_inspect("never")
    assert seen.status == "Error" and seen.restarts == 0 and seen.keeper_pid == 0
    assert not (lab.home / "pods" / "default" / "never" / "keeper.json").exists()
    lab.kube_down(path)
    leaks.assert_clean()


def test_the_keeper_outlives_the_cli_and_pod_rm_ends_it(home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "WASMLAB_HOME": str(home), "WASMLAB_POD_BACKOFF_BASE": "0.2"}
    path = pod_file(tmp_path, "outlive", "exit 1", None)
    subprocess.run([WASMLAB, "kube", "play", str(path)], env=env, check=True, capture_output=True, timeout=60)
    keeper = keeper_of(home, "outlive")["pid"]
    # The CLI has exited; its keeper goes on restarting the container.
    state = keeper_state(home, "outlive", lambda s: s["containers"]["app"]["restarts"] >= 3)
    assert state["pid"] == keeper and not gone(keeper, 0)
    subprocess.run([WASMLAB, "pod", "rm", "-f", "outlive"], env=env, check=True, capture_output=True, timeout=60)
    assert gone(keeper, 0)
    assert not (home / "pods" / "default" / "outlive").exists()
    with Lab(home) as lab:
        assert [c.name for c in lab.ps(all=True) if c.pod] == []
    assert_no_lab_process(home)


def test_system_reset_ends_every_keeper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leaks: LeakCheck) -> None:
    need_root()
    monkeypatch.setenv("WASMLAB_POD_BACKOFF_BASE", "0.2")
    home = tmp_path / "home"
    with Lab(home) as lab:
        lab.samples()
        lab.kube_play(pod_file(tmp_path, "one", "exit 1", None))
        lab.kube_play(pod_file(tmp_path, "two", "sleep 3600", "OnFailure"))
        keepers = [keeper_of(home, p)["pid"] for p in ("one", "two")]
        keeper_state(home, "one", lambda s: s["containers"]["app"]["restarts"] >= 1)
        lab.reset()
    assert all(gone(pid, 0) for pid in keepers)
    leaks.assert_clean()
    assert_no_lab_process(home)


def test_a_bad_back_off_setting_is_one_line_and_nothing_starts(home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "WASMLAB_HOME": str(home), "WASMLAB_POD_BACKOFF_BASE": "soon"}
    path = pod_file(tmp_path, "badenv", "exit 1", None)
    done = subprocess.run([WASMLAB, "kube", "play", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.splitlines() == ["Error: WASMLAB_POD_BACKOFF_BASE='soon' is not a back-off in seconds (hint: "
                                        "give a number from 0.01 to 3600 (the kubelet's is 10), or unset it)"]
    assert not (home / "pods" / "default" / "badenv").exists()


def test_doctor_says_how_pods_and_their_restarts_fare_rootless() -> None:
    rootless = Lab.doctor()["rootless"]
    assert any(line.startswith("kube play (pods, and so their restarts by the pod keeper): refused in one line")
               for line in rootless)


def fetch(port: int) -> bytes:
    """GET / through the host port, retried until the restarted httpd listens (within 60 s: a refused connect
    returns at once, so a count of tries would be spent in a second on a loaded machine)."""
    import time
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            return bytes(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read())
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answered on port {port} within 60 s") from None
            time.sleep(0.01)


def test_a_restarted_container_gets_its_host_port_again(lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "web.yaml"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: web}}
        spec:
          containers:
          - name: httpd
            image: wasmlab/busybox:latest
            command: ["/bin/sh", "-c", "mkdir -p /www && echo up $(cat /proc/uptime) > /www/index.html &&
                      exec httpd -f -p 8080 -h /www"]
            ports: [{{containerPort: 8080, hostPort: {port}}}]
        """))
    [pod] = lab.kube_play(path).pods
    first = fetch(port)
    assert first.startswith(b"up ")
    lab.kill(pod.container("httpd").id, "KILL")
    state = keeper_state(lab.home, "web", lambda s: s["containers"]["httpd"]["restarts"] >= 1)
    assert state["containers"]["httpd"]["exit_code"] == 137
    again = fetch(port)  # the same port, the restarted httpd: its page says when it started
    assert again.startswith(b"up ") and again != first
    lab.kube_down(path)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_a_container_that_exits_at_once_keeps_being_restarted(lab: Lab, tmp_path: Path, leaks: LeakCheck,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted container that is gone before the keeper opens its pidfd is an exit like any other: the keeper
    saw no process, took it for no container at all and ended ("Completed" under Always, restarts stuck)."""
    monkeypatch.setenv("WASMLAB_POD_BACKOFF_BASE", "0.02")
    path = tmp_path / "quick.yaml"  # hello.wasm on wasmtime: done within a millisecond or two of its start
    path.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: quick
          annotations: {module.wasm.image/variant: compat}
        spec:
          restartPolicy: Always
          containers:
          - {name: app, image: "wasmlab/hello:compat"}
        """))
    lab.kube_play(path)
    state = keeper_state(lab.home, "quick", lambda s: s["containers"]["app"]["restarts"] >= 6)
    assert state["containers"]["app"]["state"] in ("Running", "CrashLoopBackOff"), state
    assert gone(keeper_of(lab.home, "quick")["pid"], 0) is False, "the keeper still keeps the pod"
    lab.kube_down(path)
    leaks.assert_clean()
