"""podman's pod stats, pod top and pod logs -f with real pods: a busy pod's CPU above an idle one's from its cgroup
parent, each container's processes after its name, two containers' logs followed as they come until they end,
Ctrl-C without a traceback, one line for a missing pod, --help, and the rootless refusal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmlab.runtime import Lab

from tests.conftest import LeakCheck, need_root, read_until
from tests.integration.test_pod_keeper import WASMLAB

pytestmark = pytest.mark.root
BB = "wasmlab/busybox:latest"
# A shell that starts `sleep SECONDS` in the background and says STARTED once it is that program (its comm is
# sleep: exec'd), then waits for it: the handshake that top will see it.
SLEEPER = ('sleep {s} & p=$!; until [ \\"$(cat /proc/$p/comm 2>/dev/null)\\" = sleep ]; do :; done; '
           "echo started-{s}; wait")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    home = tmp_path_factory.mktemp("podlive") / "home"
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


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "WASMLAB_HOME": str(home), "WASMLAB_WARM": "0"}


def wl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, *args], env=env(home), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def pod_of(tmp_path: Path, name: str, containers: dict[str, str], policy: str = "Never") -> Path:
    """A pod of busybox shells, one per NAME: SCRIPT."""
    path = tmp_path / f"{name}.yaml"
    body = "".join(f"""
          - name: {c}
            image: {BB}
            command: ["/bin/sh", "-c", "{script}"]""" for c, script in containers.items())
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          restartPolicy: {policy}
          containers:""") + textwrap.indent(textwrap.dedent(body), "  ") + "\n")
    return path


def follow(home: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([WASMLAB, "pod", "logs", "-f", *args], env=env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def said(lab: Lab, pod: str, *lines: bytes) -> None:
    """Wait (the pod's logs followed) until every one of LINES has been written by its containers."""
    wanted = set(lines)
    for _, entry in lab.pod_follow(pod):
        wanted.discard(entry.data.rstrip(b"\n"))
        if not wanted:
            return
    raise AssertionError(f"pod {pod} ended without writing {wanted}")


# -- pod stats -------------------------------------------------------------------------------------------------

def test_pod_stats_shows_a_busy_pods_cpu_well_above_an_idle_ones_from_its_cgroup_parent(
        lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    busy = lab.kube_play(pod_of(tmp_path, "busy", {"spin": "echo spinning; while :; do :; done",
                                                   "nap": "echo napping; exec sleep 777"})).pods[0]
    idle = lab.kube_play(pod_of(tmp_path, "idle", {"nap": "echo napping; exec sleep 777"})).pods[0]
    said(lab, "busy", b"spinning", b"napping")
    said(lab, "idle", b"napping")

    done = wl(lab.home, "pod", "stats", "--no-stream", "-i", "0.5", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"default/busy", "default/idle"}
    hot, cold = rows["default/busy"], rows["default/idle"]
    assert (hot["id"], cold["id"]) == (busy.id, idle.id)
    assert hot["cpu"] > 20 and hot["cpu"] > 4 * cold["cpu"] + 10, (hot["cpu"], cold["cpu"])
    assert hot["mem_bytes"] > 0 and cold["mem_bytes"] > 0
    # The parent's tasks: every container's, the infra container's pause too.
    assert hot["pids_current"] >= len(busy.containers) == 3 and cold["pids_current"] >= len(idle.containers) == 2
    assert hot["cpu_percent"].endswith("%") and hot["mem_usage"].endswith(" / -")

    # podman's table, one row per pod; named pods alone; a template with podman pod stats' own field names.
    table = wl(lab.home, "pod", "stats", "--no-stream", "-i", "0.2", "idle")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert [c.strip() for c in header.split("  ") if c.strip()] == [
        "POD", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET IO", "BLOCK IO", "PIDS"]
    assert len(lines) == 1 and lines[0].split()[:2] == [idle.id[:12], "default/idle"]
    templ = wl(lab.home, "pod", "stats", "--no-stream", "-i", "0.2", "--format", "{{.Name}} {{.CPU}} {{.PIDS}}")
    assert sorted(line.split()[0] for line in templ.stdout.splitlines()) == ["default/busy", "default/idle"]

    # Streaming: a table per sample (no terminal here: one after the other), until interrupted.
    stream = subprocess.Popen([WASMLAB, "pod", "stats", "-i", "0.2", "busy"], env=env(lab.home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert stream.stdout is not None
    try:
        got = read_until(stream.stdout.fileno(), b"default/busy", timeout=30)
        got += read_until(stream.stdout.fileno(), b"default/busy", timeout=30)
    finally:
        stream.send_signal(signal.SIGINT)
        _, err = stream.communicate(timeout=30)
    assert stream.returncode == 130 and b"Traceback" not in err, err
    assert got.count(b"POD ") >= 2

    # -a: a stopped pod at zero; named without -a, it is refused in one line.
    lab.pod_stop("idle", timeout=0)
    every = {r["name"]: r for r in json.loads(wl(lab.home, "pod", "stats", "-a", "--no-stream", "-i", "0.2",
                                                  "--format", "json").stdout)}
    assert (every["default/idle"]["cpu"], every["default/idle"]["mem_bytes"], every["default/idle"]["pids"]) == (
        0.0, 0, "0")
    assert every["default/busy"]["cpu"] > 20
    refused = wl(lab.home, "pod", "stats", "--no-stream", "idle")
    assert refused.returncode == 125 and refused.stdout == ""
    assert refused.stderr.splitlines() == ["Error: pod default/idle is not running: nothing in it to measure (hint: "
                                           "`wasmlab pod start default/idle` starts it; `wasmlab pod stats -a` shows "
                                           "it at zero)"]
    for name in ("busy", "idle"):
        lab.pod_rm(name, force=True)
    leaks.assert_clean()


# -- pod top ---------------------------------------------------------------------------------------------------

def test_pod_top_lists_each_containers_processes_after_its_name(lab: Lab, tmp_path: Path) -> None:
    lab.kube_play(pod_of(tmp_path, "toppod", {"first": SLEEPER.format(s=777), "second": SLEEPER.format(s=778)}))
    said(lab, "toppod", b"started-777", b"started-778")

    done = wl(lab.home, "pod", "top", "toppod")
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == ["CONTAINER", "USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]
    rows = [line.split(None, 8) for line in lines]
    assert ["first", "sleep 777"] in [[r[0], r[8]] for r in rows]
    assert ["second", "sleep 778"] in [[r[0], r[8]] for r in rows]
    assert {r[0] for r in rows} == {"POD", "first", "second"}  # the infra container's pause too
    as_json = json.loads(wl(lab.home, "pod", "top", "--json", "toppod").stdout)
    mine = {(p["container"], p["command"]) for p in as_json}
    assert {("first", "sleep 777"), ("second", "sleep 778")} <= mine
    # The same rows as top shows for each container alone.
    for c in lab.pod_inspect("toppod").containers:
        alone = {r.host_pid for r in lab.top(c.id)}
        assert alone == {p["host_pid"] for p in as_json if p["container"] == c.name}

    lab.pod_stop("toppod", timeout=0)
    stopped = wl(lab.home, "pod", "top", "toppod")
    assert stopped.returncode == 125 and stopped.stderr.splitlines() == [
        "Error: pod default/toppod has no running container: top shows running processes (hint: `wasmlab pod "
        "start default/toppod` starts it)"]


# -- pod logs -f -----------------------------------------------------------------------------------------------

def relay(lab: Lab, cid: str, line: str) -> None:
    """Write LINE into the container's fifo /go (its script reads it, echoes it and ends)."""
    assert lab.exec(cid, ["/bin/sh", "-c", f"echo {line} > /go"], interactive=False) == 0


FIFO = "mkfifo /go; echo {c}-ready; read line < /go; echo {c} got $line"


def test_pod_logs_follow_shows_two_containers_lines_as_they_come_and_ends_with_them(
        lab: Lab, tmp_path: Path, leaks: LeakCheck) -> None:
    pod = lab.kube_play(pod_of(tmp_path, "chat", {"a": FIFO.format(c="a"), "b": FIFO.format(c="b")})).pods[0]
    proc = follow(lab.home, "chat")
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    try:
        got = read_until(out, b"a a-ready\n", timeout=30)
        if b"b b-ready\n" not in got:
            got += read_until(out, b"b b-ready\n", timeout=30)
        # Lines written after the follow began: each comes with its container's name, and the follow goes on
        # while the other container runs.
        relay(lab, pod.container("a").id, "hello-a")
        got += read_until(out, b"a a got hello-a\n", timeout=30)
        assert proc.poll() is None
        relay(lab, pod.container("b").id, "hello-b")
        got += read_until(out, b"b b got hello-b\n", timeout=30)
        # Both have ended: so does the follow (the infra container still runs: it is no workload).
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert rest == b"" and err == b""
    assert sorted((got + rest).splitlines()) == [b"a a got hello-a", b"a a-ready", b"b b got hello-b", b"b b-ready"]
    # -c and --tail, of ended containers: the last line at once (no name: one container), and the end.
    one = wl(lab.home, "pod", "logs", "-f", "-c", "b", "--tail", "1", "chat")
    assert (one.returncode, one.stdout, one.stderr) == (0, "b got hello-b\n", "")
    lab.pod_rm("chat", force=True)
    leaks.assert_clean()


def test_pod_logs_follow_ends_on_ctrl_c_without_a_traceback(lab: Lab, tmp_path: Path) -> None:
    lab.kube_play(pod_of(tmp_path, "quiet", {"app": "echo hi; exec sleep 777"}))
    proc = follow(lab.home, "quiet")
    assert proc.stdout is not None
    try:
        read_until(proc.stdout.fileno(), b"app hi\n", timeout=30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err == b"", err
    # As `wasmlab logs -f` of one container.
    one = subprocess.Popen([WASMLAB, "logs", "-f", "quiet/app"], env=env(lab.home), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert one.stdout is not None
    read_until(one.stdout.fileno(), b"hi\n", timeout=30)
    one.send_signal(signal.SIGINT)
    one.communicate(timeout=30)
    assert one.returncode == proc.returncode


# -- errors, help, rootless ------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", [["stats", "--no-stream"], ["top"], ["logs", "-f"], ["logs", "-f", "-c", "app"]])
def test_a_missing_pod_is_one_line_and_podmans_125(home: Path, verb: list[str]) -> None:
    done = wl(home, "pod", *verb, "nosuchpod")
    assert done.returncode == 125 and done.stdout == ""
    assert done.stderr.splitlines() == ["Error: no pod default/nosuchpod (hint: list them with `wasmlab pod ps` "
                                        "(another namespace: give NAMESPACE/NAME))"]


def test_every_new_verb_and_option_has_help(home: Path) -> None:
    for verb, options in (("stats", ["--all", "--no-stream", "--format", "--json", "--interval", "--no-reset",
                                     "--namespace"]),
                          ("top", ["--json", "--namespace"]),
                          ("logs", ["--follow", "--container", "--tail", "--namespace"])):
        done = wl(home, "pod", verb, "--help")
        assert done.returncode == 0 and done.stdout.startswith(f"usage: wasmlab pod {verb}"), done.stderr
        for option in options:
            assert option in done.stdout, (verb, option)
        assert "not there yet" not in done.stdout
    listed = wl(home, "pod", "--help").stdout
    assert all(verb in listed for verb in ("stats", "top"))


def test_the_new_verbs_are_refused_rootless_in_the_pod_verbs_line() -> None:
    from tests.integration.test_rootless import nobodys_folder, pods_refused, wasmlab_as_nobody

    with nobodys_folder("wasmlab-podlive-rootless-") as top:
        for argv in (["pod", "stats", "--no-stream"], ["pod", "top", "p"], ["pod", "logs", "-f", "p"]):
            r = wasmlab_as_nobody(top / "home", *argv)
            assert r.returncode == 125 and r.stdout == "", (argv, r.stderr)
            assert r.stderr.splitlines() == pods_refused(" ".join(argv[:2])), argv
