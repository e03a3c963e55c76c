"""podman's other pod verbs with real pods: pod stop keeps a pod stopped (its keeper ended, nothing restarts it),
pod start brings it back (its keeper too), pod restart, pod kill under Always (restarted) and Never (left),
pod exists's exit codes, pod prune (only pods whose containers are all stopped, nothing left behind), one line
for a missing pod, --help on every verb, and the rootless refusal."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmlab.runtime import Lab

from tests.conftest import LeakCheck, need_root
from tests.integration.test_pod_keeper import (
    WASMLAB,
    assert_no_lab_process,
    fetch,
    gone,
    keeper_of,
    keeper_state,
    pod_file,
)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    home = tmp_path_factory.mktemp("podverbs") / "home"
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


def wl(home: Path, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WASMLAB_HOME": str(home), "WASMLAB_POD_BACKOFF_BASE": "0.5", "WASMLAB_WARM": "0"}
    return subprocess.run([WASMLAB, *args], env=env, capture_output=True, text=True, timeout=120, stdin=stdin)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web_pod(tmp_path: Path, port: int, name: str = "web", extra: str = "") -> Path:
    """httpd on a host port (its page says when it started), and a shell that leaves on SIGTERM with 3."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
        {extra}
          containers:
          - name: httpd
            image: wasmlab/busybox:latest
            command: ["/bin/sh", "-c", "mkdir -p /www && echo up $(cat /proc/uptime) > /www/index.html &&
                      exec httpd -f -p 8080 -h /www"]
            ports: [{{containerPort: 8080, hostPort: {port}}}]
          - name: polite
            image: wasmlab/busybox:latest
            command: ["/bin/sh", "-c", "trap 'exit 3' TERM; sleep 3600 & wait"]
        """))
    return path


def pids(lab: Lab, pod: str) -> dict[str, int]:
    return {c.name: c.pid for c in lab.pod_inspect(pod).containers}


def test_pod_stop_keeps_it_stopped_and_pod_start_brings_it_back(lab: Lab, tmp_path: Path,
                                                                leaks: LeakCheck) -> None:
    port = free_port()
    path = web_pod(tmp_path, port)
    [pod] = lab.kube_play(path).pods
    first = fetch(port)
    keeper = keeper_of(lab.home, "web")["pid"]
    before = pids(lab, "web")
    assert pod.restart_policy == "Always" and keeper > 0 and all(before.values())

    done = wl(lab.home, "pod", "stop", "-t", "2", "web")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{pod.id}\n"
    # Its keeper was ended before its containers (waited for: gone now), so nothing can restart them; their
    # processes, the infra container's too, are gone.
    assert gone(keeper, 0)
    assert all(gone(pid, 0) for pid in before.values())
    state = json.loads((lab.home / "pods" / "default" / "web" / "keeper.json").read_text())
    assert state["stopped"] is True and state["pid"] == 0
    assert {c["state"] for c in state["containers"].values()} == {"Stopped"}
    seen = lab.pod_inspect("web")
    assert seen.status == "Exited" and seen.keeper_pid == 0
    assert {c.name: c.status for c in seen.containers} == {"POD": "stopped", "httpd": "stopped", "polite": "stopped"}
    assert seen.container("polite").exit_code == 3  # SIGTERM first: its trap ran (httpd as pid 1 ignores it)
    assert seen.container("httpd").exit_code == 137  # SIGKILL after -t 2
    assert "keeper" not in json.loads((lab.home / "pods" / "default" / "web" / "pod.json").read_text())
    ps = wl(lab.home, "pod", "ps")
    [row] = [line for line in ps.stdout.splitlines() if "default/web" in line]
    assert row.split()[2] == "Exited" and "0/2" in row
    with pytest.raises(OSError):
        fetch_once(port)  # its port is free: the forwarder ended with it

    done = wl(lab.home, "pod", "start", "web")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{pod.id}\n"
    again = fetch(port)  # httpd answers again, on the same port, started anew
    assert again.startswith(b"up ") and again != first
    seen = lab.pod_inspect("web")
    assert seen.status == "Running" and seen.keeper_pid not in (0, keeper)
    after = pids(lab, "web")
    assert all(after[k] not in (0, before[k]) for k in before)
    # Its restartPolicy is in force again: the new keeper restarts a container that dies.
    keeper_state(lab.home, "web", lambda s: s["pid"] == seen.keeper_pid and s["containers"]["httpd"]["state"]
                 == "Running")
    lab.kill(seen.container("httpd").id, "KILL")
    keeper_state(lab.home, "web", lambda s: s["containers"]["httpd"]["restarts"] >= 1
                 and s["containers"]["httpd"]["state"] == "Running")
    assert fetch(port).startswith(b"up ")
    lab.kube_down(path)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def fetch_once(port: int) -> bytes:
    import urllib.request

    return bytes(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read())


def test_pod_restart_stops_and_starts_it(lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    path = pod_file(tmp_path, "again", "exec sleep 3600", "OnFailure")
    [pod] = lab.kube_play(path).pods
    keeper = keeper_of(lab.home, "again")["pid"]
    before = pids(lab, "again")
    done = wl(lab.home, "pod", "restart", "-t", "0", "again")
    assert done.returncode == 0 and done.stdout == f"{pod.id}\n", done.stderr
    assert gone(keeper, 0) and all(gone(pid, 0) for pid in before.values())
    seen = lab.pod_inspect("again")
    assert seen.status == "Running" and seen.keeper_pid not in (0, keeper)
    assert all(c.pid not in (0, before[c.name]) and c.status == "running" for c in seen.containers)
    lab.kube_down(path)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_a_shared_pid_namespace_pod_stops_with_its_sandbox_kept_and_starts_again(
        lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    """shareProcessNamespace: the infra container is the pod's pid 1 and holds its namespaces (none pinned):
    pod stop leaves it up, so pod start has a sandbox to start the containers in."""
    path = tmp_path / "shared.yaml"
    path.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: shared}
        spec:
          shareProcessNamespace: true
          containers:
          - {name: app, image: "wasmlab/busybox:latest", command: ["/bin/sh", "-c", "exec sleep 3600"]}
        """))
    [pod] = lab.kube_play(path).pods
    old = pod.container("app").pid
    stopped = lab.pod_stop("shared", timeout=0)
    assert stopped.status == "Exited" and gone(old, 0)
    assert stopped.container("POD").status == "running" and stopped.infra_pid == pod.infra_pid
    seen = lab.pod_start("shared")
    app = seen.container("app")
    assert seen.status == "Running" and app.pid not in (0, old)
    assert os.stat(f"/proc/{app.pid}/ns/pid").st_ino == os.stat(f"/proc/{pod.infra_pid}/ns/pid").st_ino
    lab.kube_down(path)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_pod_kill_under_always_is_restarted_by_its_keeper(lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    path = pod_file(tmp_path, "killed", "exec sleep 3600", "Always")
    [pod] = lab.kube_play(path).pods
    keeper_state(lab.home, "killed", lambda s: s["containers"]["app"]["state"] == "Running")
    old = pod.container("app").pid
    done = wl(lab.home, "pod", "kill", "killed")
    assert done.returncode == 0 and done.stdout == f"{pod.id}\n", done.stderr
    state = keeper_state(lab.home, "killed", lambda s: s["containers"]["app"]["restarts"] >= 1
                         and s["containers"]["app"]["state"] == "Running")
    assert state["containers"]["app"]["exit_code"] == 137  # SIGKILL, podman's default
    seen = lab.pod_inspect("killed")
    assert seen.status == "Running" and seen.container("app").pid not in (0, old)
    assert seen.container("POD").pid == pod.infra_pid  # the sandbox was not signalled
    lab.kube_down(path)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_pod_kill_under_never_leaves_it_dead(lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    path = pod_file(tmp_path, "left", "trap 'exit 4' HUP; sleep 3600 & wait", "Never")
    [pod] = lab.kube_play(path).pods
    done = wl(lab.home, "pod", "kill", "-s", "HUP", "left")
    assert done.returncode == 0 and done.stdout == f"{pod.id}\n", done.stderr
    assert lab.pod_wait(pod.container("app").id) == 4  # -s: the signal asked for reached it
    seen = lab.pod_inspect("left")
    assert seen.status == "Error" and seen.keeper_pid == 0 and seen.restarts == 0
    assert not (lab.home / "pods" / "default" / "left" / "keeper.json").exists()  # nothing to restart it
    again = wl(lab.home, "pod", "kill", "left")  # nothing running to signal: one line, podman's 125
    assert again.returncode == 125 and again.stdout == ""
    assert again.stderr.splitlines() == ["Error: pod default/left has no running container to signal (hint: "
                                         "`wasmlab pod start default/left` starts it)"]
    lab.kube_down(path)
    leaks.assert_clean()


def test_pod_exists_answers_with_its_exit_code_alone(lab: Lab, tmp_path: Path) -> None:
    lab.kube_play(pod_file(tmp_path, "here", "exec sleep 3600", "Never"))
    for args, code in ((("here",), 0), (("default/here",), 0), (("-n", "default", "here"), 0), (("nothere",), 1),
                       (("-n", "other", "here"), 1)):
        done = wl(lab.home, "pod", "exists", *args)
        assert (done.returncode, done.stdout, done.stderr) == (code, "", ""), args
    assert lab.pod_exists("here") and not lab.pod_exists("nothere")


@pytest.mark.parametrize("verb", [["stop"], ["start"], ["restart"], ["kill"], ["stop", "-t", "1"]])
def test_a_missing_pod_is_one_line_and_podmans_125(home: Path, verb: list[str]) -> None:
    done = wl(home, "pod", *verb, "nosuchpod")
    assert done.returncode == 125 and done.stdout == ""
    assert done.stderr.splitlines() == ["Error: no pod default/nosuchpod (hint: list them with `wasmlab pod ps` "
                                        "(another namespace: give NAMESPACE/NAME))"]


def test_pod_stop_names_every_pod_with_a_and_refuses_names_with_it(lab: Lab, tmp_path: Path,
                                                                   leaks: LeakCheck) -> None:
    ids = {lab.kube_play(pod_file(tmp_path, name, "exec sleep 3600", "Always")).pods[0].id for name in ("p1", "p2")}
    refused = wl(lab.home, "pod", "stop", "-a", "p1")
    assert refused.returncode == 125 and "Traceback" not in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and lab.pod_inspect("p1").status == "Running"
    done = wl(lab.home, "pod", "stop", "-a", "-t", "0")
    assert done.returncode == 0 and set(done.stdout.split()) == ids, done.stderr
    assert {p.status for p in lab.pods()} == {"Exited"}
    for name in ("p1", "p2"):
        lab.pod_rm(name)  # stopped: removed without -f
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_pod_prune_removes_only_pods_whose_containers_all_stopped(lab: Lab, tmp_path: Path, leaks: LeakCheck,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from wasmlab.runtime.linux import cgroups
    from wasmlab.runtime.store.usage import mounts_under

    stopped = lab.kube_play(pod_file(tmp_path, "stopped", "exec sleep 3600", "Always")).pods[0]
    done = lab.kube_play(pod_file(tmp_path, "done", "echo done", "Never")).pods[0]
    running = lab.kube_play(pod_file(tmp_path, "running", "exec sleep 3600", "Always")).pods[0]
    monkeypatch.setenv("WASMLAB_POD_BACKOFF_BASE", "60")  # its keeper waits out a long back-off: it stays
    crashing = lab.kube_play(pod_file(tmp_path, "crashing", "exit 1", "Always")).pods[0]
    lab.pod_stop("stopped", timeout=0)
    assert lab.pod_wait(done.container("app").id) == 0
    keeper_state(lab.home, "crashing", lambda s: s["containers"]["app"]["state"] == "CrashLoopBackOff")
    pruned = {p.identity: p for p in (stopped, done)}
    # On a terminal it asks first; "n" removes nothing.
    main, tty = pty.openpty()
    try:
        os.write(main, b"n\n")
        asked = wl(lab.home, "pod", "prune", stdin=tty)
    finally:
        os.close(main)
        os.close(tty)
    assert asked.returncode == 1 and asked.stdout == "" and "Are you sure you want to continue? [y/N]" in asked.stderr
    assert len(lab.pods()) == 4
    out = wl(lab.home, "pod", "prune", "-f")
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == sorted(p.id for p in pruned.values())
    assert sorted(p.identity for p in lab.pods()) == ["default/crashing", "default/running"]
    assert lab.pod_inspect("running").status == "Running" and crashing.keeper_pid
    # Nothing of the pruned pods is left: folders, mounts (pinned namespaces), cgroups, containers, processes.
    for p in pruned.values():
        folder = lab.home / "pods" / "default" / p.name
        assert not folder.exists() and mounts_under(str(folder)) == []
        assert cgroups.open_existing(p.cgroup).dirs == {}  # in no hierarchy
        for c in p.containers:
            assert not (lab.home / "containers" / c.id).exists()
            assert not c.pid or gone(c.pid, 0)
    assert {c.id for c in lab.ps(all=True) if c.pod} == {c.id for p in (running, crashing) for c in p.containers}
    again = wl(lab.home, "pod", "prune", "-f")
    assert again.returncode == 0 and again.stdout == ""
    for name in ("running", "crashing"):
        lab.pod_rm(name, force=True)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_every_new_verb_and_option_has_help(home: Path) -> None:
    for verb, options in (("exists", ["--namespace"]), ("stop", ["--time", "--all", "--namespace"]),
                          ("start", ["--all", "--namespace"]), ("restart", ["--time", "--all"]),
                          ("kill", ["--signal", "--all"]), ("prune", ["--force"])):
        done = wl(home, "pod", verb, "--help")
        assert done.returncode == 0 and done.stdout.startswith(f"usage: wasmlab pod {verb}"), done.stderr
        for option in options:
            assert option in done.stdout, (verb, option)
    listed = wl(home, "pod", "--help").stdout
    assert all(verb in listed for verb in ("exists", "stop", "start", "restart", "kill", "prune"))


def test_the_pod_verbs_are_refused_rootless_in_kube_plays_line() -> None:
    from tests.integration.test_rootless import nobodys_folder, pods_refused, wasmlab_as_nobody

    with nobodys_folder("wasmlab-podverbs-rootless-") as top:
        (top / "p.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                                    "  - {name: a, image: 'wasmlab/busybox:latest'}\n")
        for argv in (["kube", "play", str(top / "p.yaml")], ["pod", "exists", "p"], ["pod", "stop", "p"],
                     ["pod", "start", "p"], ["pod", "restart", "p"], ["pod", "kill", "p"], ["pod", "prune", "-f"]):
            r = wasmlab_as_nobody(top / "home", *argv)
            assert r.returncode == 125 and r.stdout == "", (argv, r.stderr)
            assert r.stderr.splitlines() == pods_refused(" ".join(argv[:2])), argv


def test_a_pod_that_cannot_start_stays_stopped_and_leaves_nothing(lab: Lab, tmp_path: Path,
                                                                  leaks: LeakCheck) -> None:
    """Its host port taken meanwhile: pod start fails in one line, what it had started (the infra container,
    maybe the other app) is stopped again, the pod is still stopped with no keeper; once the port is free, it
    starts."""
    port = free_port()
    path = web_pod(tmp_path, port, name="blocked")
    [pod] = lab.kube_play(path).pods
    lab.pod_stop("blocked", timeout=0)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", port))
        squatter.listen(1)
        done = wl(lab.home, "pod", "start", "blocked")
        assert done.returncode == 125 and done.stdout == "" and "Traceback" not in done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(f"Error: port 127.0.0.1:{port} is already in use"), line
        seen = lab.pod_inspect("blocked")
        assert seen.status == "Exited" and seen.keeper_pid == 0
        assert {c.status for c in seen.containers} == {"stopped"}
        assert json.loads((lab.home / "pods" / "default" / "blocked" / "pod.json").read_text())["stopped"] is True
    again = lab.pod_start("blocked")
    assert again.status == "Running" and again.id == pod.id and again.keeper_pid
    assert fetch(port).startswith(b"up ")
    lab.kube_down(path)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


# -- pod ids, -a with -n, -t and -s as podman ------------------------------------------------------------------

def test_every_pod_verb_takes_a_pod_id_or_a_unique_prefix_of_it(lab: Lab, tmp_path: Path,
                                                               leaks: LeakCheck) -> None:
    """podman finds a pod by name, full id or unique id prefix for every pod verb: so `pod rm -f $(pod ps -q)`
    works. Each verb here was given the id the verbs print (and failed: "no pod default/<id>")."""
    path = pod_file(tmp_path, "byid", "echo hi; exec sleep 3600", "Never")
    [pod] = lab.kube_play(path).pods
    for _, entry in lab.pod_follow("byid"):  # the handshake: its line is written
        if entry.data == b"hi\n":
            break
    listed = wl(lab.home, "pod", "ps", "-q")
    assert listed.returncode == 0 and listed.stdout == f"{pod.id}\n"
    for ref in (pod.id, pod.id[:5]):
        assert wl(lab.home, "pod", "exists", ref).returncode == 0, ref
        seen = wl(lab.home, "pod", "inspect", ref)
        assert seen.returncode == 0 and json.loads(seen.stdout)["name"] == "byid", seen.stderr
        logs = wl(lab.home, "pod", "logs", ref)
        assert (logs.returncode, logs.stdout) == (0, "app hi\n"), logs.stderr
        top = wl(lab.home, "pod", "top", ref)
        assert top.returncode == 0 and "sleep 3600" in top.stdout, top.stderr
        stats = wl(lab.home, "pod", "stats", "--no-stream", "-i", "0.2", "--json", ref)
        assert stats.returncode == 0 and "default/byid" in stats.stdout, stats.stderr
    assert wl(lab.home, "pod", "exists", "-n", "other", pod.id).returncode == 1  # -n: that namespace's pods only
    for argv in (["stop", "-t", "0", pod.id], ["start", pod.id[:5]], ["restart", "-t", "0", pod.id[:7]],
                 ["kill", pod.id]):
        done = wl(lab.home, "pod", *argv)
        assert (done.returncode, done.stdout) == (0, f"{pod.id}\n"), (argv, done.stderr)
    assert lab.pod_wait(lab.pod_inspect(pod.id).container("app").id) == 137
    removed = wl(lab.home, "pod", "rm", "-f", *wl(lab.home, "pod", "ps", "-q").stdout.split())
    assert (removed.returncode, removed.stdout) == (0, f"{pod.id}\n"), removed.stderr
    assert wl(lab.home, "pod", "exists", pod.id).returncode == 1
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_a_pod_is_found_by_name_first_then_full_id_then_a_unique_prefix(tmp_path: Path) -> None:
    """resolve() over real pod records: a name wins over an id that starts the same; a prefix of two pods' ids is
    one line with a hint (podman's 125); -n narrows the ids to that namespace's pods."""
    from wasmlab.runtime.errors import UsageError
    from wasmlab.runtime.pods.play import resolve

    home = tmp_path / "home"
    for ns, name, pod_id in (("default", "abc1", "ffff00000001"), ("default", "web", "abc100000000"),
                             ("team1", "db", "abc200000000")):
        (home / "pods" / ns / name).mkdir(parents=True)
        (home / "pods" / ns / name / "pod.json").write_text(json.dumps(
            {"name": name, "namespace": ns, "id": pod_id, "created": 0, "containers": []}))
    assert resolve(home, "abc1") == ("default", "abc1")  # the name, though it starts web's id
    assert resolve(home, "abc100000000") == ("default", "web")
    assert resolve(home, "abc10") == ("default", "web")
    assert resolve(home, "abc2") == ("team1", "db")
    assert resolve(home, "abc", "team1") == ("team1", "db")
    assert resolve(home, "abc2", "default") == ("default", "abc2")  # not found: load_record says so
    with pytest.raises(UsageError, match="'abc' is the start of 2 pods' ids"):
        resolve(home, "abc")
    done = wl(home, "pod", "inspect", "abc")
    assert done.returncode == 125 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "Error: 'abc' is the start of 2 pods' ids: default/web (abc100000000), team1/db (abc200000000) (hint: give "
        "more of the id, or the pod's name (`wasmlab pod ps` lists them))"]
    missing = wl(home, "pod", "logs", "abc3")
    assert missing.returncode == 125 and missing.stderr.splitlines() == [
        "Error: no pod default/abc3 (hint: list them with `wasmlab pod ps` (another namespace: give NAMESPACE/NAME))"]


def ns_pod(tmp_path: Path, name: str, namespace: str, script: str = "trap '' HUP; sleep 3600 & wait") -> Path:
    """A pod in NAMESPACE whose shell ignores SIGHUP (so `pod kill -s HUP` leaves it running)."""
    path = tmp_path / f"{namespace}-{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          restartPolicy: Never
          containers:
          - name: app
            image: wasmlab/busybox:latest
            command: ["/bin/sh", "-c", "{script}"]
        """))
    return path


def test_a_with_n_acts_on_that_namespaces_pods_only_for_every_verb(lab: Lab, tmp_path: Path,
                                                                   leaks: LeakCheck) -> None:
    """-a -n team1 was every pod, then "'team1/nspod' names namespace team1, and --namespace says default" (125)
    once the default pods were stopped. Now -n filters -a, as a k8s user expects (podman has no namespaces)."""
    [mine] = lab.kube_play(ns_pod(tmp_path, "nspod", "team1")).pods
    [other] = lab.kube_play(ns_pod(tmp_path, "p1", "default")).pods
    for argv in (["stop", "-t", "0"], ["start"], ["restart", "-t", "0"], ["kill", "-s", "HUP"]):
        done = wl(lab.home, "pod", *argv, "-a", "-n", "team1")
        assert (done.returncode, done.stdout, done.stderr) == (0, f"{mine.id}\n", ""), argv
        assert lab.pod_inspect("p1").status == "Running" and lab.pod_inspect(other.id).restarts == 0
    stats = wl(lab.home, "pod", "stats", "-a", "-n", "team1", "--no-stream", "-i", "0.2", "--json")
    assert stats.returncode == 0, stats.stderr
    assert [s["name"] for s in json.loads(stats.stdout)] == ["team1/nspod"]
    refused = wl(lab.home, "pod", "rm", "-a", "nspod")
    assert refused.returncode == 125 and refused.stderr.splitlines() == [
        "Error: pod rm -a takes no pod names (hint: pod rm -a, or name them)"]
    done = wl(lab.home, "pod", "rm", "-f", "-a", "-n", "team1")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{mine.id}\n", "")
    assert [p.identity for p in lab.pods()] == ["default/p1"]
    lab.pod_rm("p1", force=True)
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


def test_pod_rm_a_removes_every_pod_and_pod_kill_a_skips_stopped_pods(lab: Lab, tmp_path: Path,
                                                                       leaks: LeakCheck) -> None:
    """pod rm -a did not exist; pod kill -a exited 125 after signalling the running pods, for a stopped one.
    podman's pod kill -a skips what has nothing running (exit 0); named, each pod that can be is signalled, the
    others are an Error line each, and the exit is 125 at the end."""
    [up] = lab.kube_play(ns_pod(tmp_path, "up", "default")).pods
    [down] = lab.kube_play(ns_pod(tmp_path, "down", "default")).pods
    lab.pod_stop("down", timeout=0)
    done = wl(lab.home, "pod", "kill", "-a", "-s", "HUP")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{up.id}\n", "")
    named = wl(lab.home, "pod", "kill", "-s", "HUP", "down", "up")
    assert (named.returncode, named.stdout) == (125, f"{up.id}\n")
    assert named.stderr.splitlines() == ["Error: pod default/down has no running container to signal (hint: "
                                         "`wasmlab pod start default/down` starts it)"]
    assert lab.pod_inspect("up").status == "Running"
    kept = wl(lab.home, "pod", "rm", "-a")  # the running one needs -f (podman's 2: in use); the other goes
    assert (kept.returncode, kept.stdout) == (2, f"{down.id}\n")
    assert kept.stderr.splitlines() == ["Error: pod default/up is running (app) (hint: `wasmlab pod rm -f default/up` "
                                        "kills (SIGKILL) and removes it, as `kube down` does; `wasmlab pod rm -f -t "
                                        "10 default/up` sends SIGTERM first, as podman)"]
    gone = wl(lab.home, "pod", "rm", "-a", "-f")
    assert (gone.returncode, gone.stdout, gone.stderr) == (0, f"{up.id}\n", "")
    assert lab.pods() == [] and wl(lab.home, "pod", "rm", "-a").returncode == 0
    help_text = wl(lab.home, "pod", "rm", "--help").stdout
    assert "--all" in help_text and "kill running pods first: SIGKILL at once" in help_text
    leaks.assert_clean()
    assert_no_lab_process(lab.home)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1.5"])
@pytest.mark.parametrize("verb", [["pod", "stop"], ["pod", "restart"], ["stop"], ["restart"]])
def test_t_takes_whole_seconds_only_as_podman(lab: Lab, tmp_path: Path, verb: list[str], value: str) -> None:
    """`pod stop -t nan` and `-t 1.5` were taken; podman takes unsigned integers and exits 125 otherwise. The
    refusal comes before anything is touched: the pod is still running."""
    lab.kube_play(pod_file(tmp_path, "timed", "exec sleep 3600", "Never"))
    done = wl(lab.home, *verb, "-t", value, "timed" if verb[0] == "pod" else "nosuchcontainer")
    assert done.returncode == 125 and done.stdout == "" and "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert line.startswith(f"Error: argument -t/--time: -t {value}: give whole seconds, 0 or more"), line
    assert "(hint:" in line
    assert lab.pod_inspect("timed").status == "Running"


def test_kill_s_0_is_an_invalid_signal_as_podman_says(lab: Lab, tmp_path: Path) -> None:
    """kill(2)'s 0 delivers nothing: podman refuses `kill -s 0` and `pod kill -s 0` ("invalid signal: 0", 125);
    wasmlab took them and did nothing."""
    [pod] = lab.kube_play(pod_file(tmp_path, "zero", "exec sleep 3600", "Never")).pods
    app = pod.container("app")
    for argv in (["pod", "kill", "-s", "0", "zero", pod.id], ["pod", "kill", "-a", "-s", "0"],
                 ["kill", "-s", "0", app.id]):
        done = wl(lab.home, *argv)
        assert (done.returncode, done.stdout) == (125, ""), argv
        assert done.stderr.splitlines() == ["Error: invalid signal: 0 (hint: give a signal that does something: "
                                            f"TERM, KILL, HUP, or 1 to {int(signal.SIGRTMAX)} (0 only asks whether "
                                            "a process is there))"], argv
    assert lab.pod_inspect("zero").container("app").pid == app.pid
    assert wl(lab.home, "pod", "stop", "-t", "0", "zero").returncode == 0  # whole seconds still work


@pytest.mark.parametrize("given", [None, "5"], ids=["killed", "t5"])
def test_pod_rm_f_kills_at_once_and_with_t_sends_sigterm_first(lab: Lab, tmp_path: Path, given: str | None,
                                                               leaks: LeakCheck) -> None:
    """`pod rm -f` kills a running pod's containers (SIGKILL, 137); `pod rm -f -t N` sends SIGTERM first, as
    podman's pod rm does, so a container that traps it ends cleanly (its trap's 3) before the removal."""
    path = tmp_path / "polite.yaml"
    path.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: polite}
        spec:
          restartPolicy: Never
          containers:
          - name: polite
            image: wasmlab/busybox:latest
            command: ["/bin/sh", "-c", "trap 'exit 3' TERM; echo ready; sleep 3600 & wait"]
        """))
    [pod] = lab.kube_play(path).pods
    cid = pod.container("polite").id
    from tests.integration.test_verbs import follow_until

    follow_until(lab.home, cid, b"ready\n")  # its trap is set
    done = wl(lab.home, "pod", "rm", "-f", *(("-t", given) if given else ()), "polite")
    assert (done.returncode, done.stdout) == (0, f"{pod.id}\n"), done.stderr
    [run] = [r for r in lab.history(50) if r.id == cid]
    assert (run.exit_code, run.signal) == ((3, None) if given else (137, 9)), run
    assert lab.pods() == []
    leaks.assert_clean()
