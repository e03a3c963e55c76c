"""podman's other container verbs, as a workshop user types them: create, start [-a] [-i], restart, rename,
container prune (and the container group), top, port, stats, version and info."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmlab.runtime import Lab

from tests.conftest import ROOT, busybox, need_root, read_until

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
ASSETS = ROOT / "assets" / "built"
BB = "localhost/bb:latest"
HW = "localhost/hw:latest"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_root()
    tmp = tmp_path_factory.mktemp("verbs")
    home = tmp / "home"
    with Lab(home) as lab:
        ctx = tmp / "bb"
        (ctx / "bin").mkdir(parents=True)
        shutil.copy2(busybox(), ctx / "bin" / "busybox")
        (ctx / "Containerfile").write_text('FROM scratch\nCOPY bin/ /bin/\nRUN ["/bin/busybox", "--install", "-s", '
                                           '"/bin"]\nCMD ["/bin/sh"]\n')
        lab.build(ctx, tag=BB)
        ctx = tmp / "hw"
        ctx.mkdir()
        for program in ("hello.wasm", "loop.wasm"):
            shutil.copy2(ASSETS / "wasm" / program, ctx / program)
        (ctx / "Containerfile").write_text('FROM scratch\nCOPY *.wasm /\nCMD ["/hello.wasm"]\n')
        lab.build(ctx, tag=HW, annotations={"module.wasm.image/variant": "compat"})
    return home


@pytest.fixture(autouse=True)
def _clean(home: Path) -> Iterator[None]:
    yield
    with Lab(home) as lab:
        for c in lab.ps(all=True):
            lab.rm(c.id, force=True)


def wl(home: Path, *args: str, stdin: int | None = subprocess.DEVNULL,
       timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WASMLAB_HOME=str(home))
    return subprocess.run([WASMLAB, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=stdin)


def one_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    """A refusal: non-zero, one line on stderr with a hint, no traceback."""
    assert r.returncode != 0, r.stdout
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1 and "hint" in r.stderr, r.stderr
    assert all(w in r.stderr for w in words), r.stderr


def ps_all(home: Path) -> dict[str, dict[str, object]]:
    return {row["name"]: row for row in json.loads(wl(home, "ps", "-a", "--json").stdout)}


def follow_until(home: Path, name: str, marker: bytes) -> bytes:
    """`logs -f NAME` read until MARKER: the handshake that the container's command has got that far."""
    proc = subprocess.Popen([WASMLAB, "logs", "-f", name], env=dict(os.environ, WASMLAB_HOME=str(home)),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        return read_until(proc.stdout.fileno(), marker, timeout=30)
    finally:
        proc.kill()
        proc.wait()


# -- create and start ------------------------------------------------------------------------------------------

def test_create_makes_a_container_that_start_a_runs_again_in_the_same_root_and_log(home: Path) -> None:
    r = wl(home, "create", "--name", "c", BB, "sh", "-c", "echo hi; echo x >> /state; wc -l < /state; exit 3")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 12 and ps_all(home)["c"]["id"] == cid
    assert ps_all(home)["c"]["status"] == "created"
    assert wl(home, "ps", "--json").stdout.strip() == "[]"  # as podman: created ones show with -a only
    for n in (1, 2):  # the second start: the same container, its root's upper layer kept what the first wrote
        r = wl(home, "start", "-a", "c")
        assert (r.returncode, r.stdout) == (3, f"hi\n{n}\n"), r.stderr
        assert ps_all(home)["c"]["status"] == "stopped" and ps_all(home)["c"]["exit_code"] == 3
    assert wl(home, "logs", "c").stdout == "hi\n1\nhi\n2\n"  # one log, appended to


def test_start_detached_a_created_wasm_container_then_again_once_stopped(home: Path) -> None:
    assert wl(home, "create", "--name", "w", HW).returncode == 0
    r = wl(home, "start", "w")
    assert (r.returncode, r.stdout) == (0, "w\n"), r.stderr
    assert wl(home, "wait", "w").stdout == "0\n"
    r = wl(home, "start", "-a", "w")
    assert (r.returncode, r.stdout) == (0, "hello world from wasmlab !!!!\n"), r.stderr
    assert wl(home, "logs", "w").stdout == "hello world from wasmlab !!!!\n" * 2
    assert ps_all(home)["w"]["handler"] == "wasmtime"


def test_start_i_gives_the_container_stdin_and_plain_start_a_does_not(home: Path, tmp_path: Path) -> None:
    assert wl(home, "create", "--name", "cat", BB, "cat").returncode == 0
    feed = tmp_path / "in.txt"
    feed.write_text("typed in\n")
    with feed.open("rb") as fh:
        r = wl(home, "start", "-i", "cat", stdin=fh.fileno())
    assert (r.returncode, r.stdout) == (0, "typed in\n"), r.stderr
    with feed.open("rb") as fh:
        r = wl(home, "start", "-a", "cat", stdin=fh.fileno())
    assert (r.returncode, r.stdout) == (0, ""), r.stderr


def test_start_a_sends_a_stop_signal_to_the_container_as_run_does(home: Path) -> None:
    script = 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.05; done'
    assert wl(home, "create", "--name", "trapper", BB, "sh", "-c", script).returncode == 0
    proc = subprocess.Popen([WASMLAB, "start", "-a", "trapper"], env=dict(os.environ, WASMLAB_HOME=str(home)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        read_until(proc.stdout.fileno(), b"ready\n", timeout=30)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        assert proc.wait(30) == 7 and rest == b"got TERM\n"
    finally:
        proc.kill()
        proc.wait()
    assert ps_all(home)["trapper"]["status"] == "stopped"


def test_restart_stops_and_starts_the_same_container(home: Path) -> None:
    r = wl(home, "run", "-d", "--name", "s", BB, "sh", "-c", "echo run >> /runs; echo ready; exec sleep 1000")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    follow_until(home, "s", b"ready\n")
    r = wl(home, "restart", "-t", "0", cid)
    assert (r.returncode, r.stdout) == (0, cid + "\n"), r.stderr  # as podman: the name or id as given
    assert r.stderr == ""  # -t 0 is SIGKILL at once, as asked: no "did not stop on SIGTERM within 0 s"
    follow_until(home, "s", b"ready\nready\n")
    assert ps_all(home)["s"]["status"] == "running"
    assert wl(home, "exec", "s", "cat", "/runs").stdout == "run\nrun\n"
    r = wl(home, "start", "s")  # already running: left as it is, as podman
    assert (r.returncode, r.stdout) == (0, "s\n")
    assert wl(home, "exec", "s", "cat", "/runs").stdout == "run\nrun\n"


def test_wrong_names_and_states_are_one_line_with_a_hint(home: Path) -> None:
    one_error(wl(home, "start", "nosuch"), "no container named 'nosuch'")
    one_error(wl(home, "restart", "nosuch"), "nosuch")
    one_error(wl(home, "top", "nosuch"), "nosuch")
    one_error(wl(home, "port", "nosuch"), "nosuch")
    one_error(wl(home, "stats", "--no-stream", "nosuch"), "nosuch")
    one_error(wl(home, "rename", "nosuch", "x"), "nosuch")
    one_error(wl(home, "create", "bb-missing"), "bb-missing")
    assert wl(home, "create", "--name", "made", BB, "true").returncode == 0
    one_error(wl(home, "create", "--name", "made", BB), "in use")
    one_error(wl(home, "create", "-t", BB), "terminal")
    for verb in (("kill",), ("pause",), ("exec",), ("wait",)):
        args = (*verb, "made", "true") if verb == ("exec",) else (*verb, "made")
        one_error(wl(home, *args), "never started", "wasmlab start made")
    one_error(wl(home, "top", "made"), "not running", "wasmlab start made")
    one_error(wl(home, "stats", "--no-stream", "made"), "not running")
    assert wl(home, "stop", "made").returncode == 0  # nothing to stop: as podman, not an error
    assert wl(home, "create", "--name", "other", BB, "true").returncode == 0
    one_error(wl(home, "rename", "made", "other"), "in use")
    one_error(wl(home, "rename", "made", "bad name!"), "invalid container name")
    r = wl(home, "start", "-a", "made", "other")
    assert r.returncode == 125 and "one container" in r.stderr
    one_error(wl(home, "start", "made", "nosuch"), "nosuch")  # each is tried; the first error is the answer
    assert ps_all(home)["made"]["status"] == "stopped"
    assert set(ps_all(home)) == {"made", "other"}  # nothing half-made was left by the refusals


def test_rename_a_running_container(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "old", BB, "sleep", "1000").returncode == 0
    r = wl(home, "rename", "old", "new")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    assert set(ps_all(home)) == {"new"} and ps_all(home)["new"]["status"] == "running"
    assert wl(home, "exec", "new", "echo", "here").stdout == "here\n"


# -- the container group and prune -------------------------------------------------------------------------------

def test_the_container_group_takes_podmans_verbs(home: Path) -> None:
    assert wl(home, "container", "create", "--name", "g", BB, "echo", "grouped").returncode == 0
    for listing in ("ls", "list", "ps"):
        rows = json.loads(wl(home, "container", listing, "-a", "--json").stdout)
        assert [row["name"] for row in rows] == ["g"]
    assert wl(home, "container", "start", "-a", "g").stdout == "grouped\n"
    assert wl(home, "container", "logs", "g").stdout == "grouped\n"
    assert json.loads(wl(home, "container", "inspect", "g").stdout)[0]["name"] == "g"
    assert wl(home, "container", "rm", "g").returncode == 0
    assert ps_all(home) == {}
    r = wl(home, "container", "nosuch")
    assert r.returncode == 125 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


def test_container_prune_removes_what_does_not_run_and_asks_first_on_a_terminal(home: Path) -> None:
    assert wl(home, "create", "--name", "never", BB).returncode == 0
    assert wl(home, "run", "--name", "done", BB, "true").returncode == 0
    assert wl(home, "run", "-d", "--name", "up", BB, "sleep", "1000").returncode == 0
    ids = {n: str(row["id"]) for n, row in ps_all(home).items()}
    # On a terminal: the question, and "n" removes nothing.
    leader, follower = os.openpty()
    try:
        os.write(leader, b"n\n")
        r = wl(home, "container", "prune", stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert r.returncode == 1 and "Are you sure" in r.stderr and r.stdout == ""
    assert set(ps_all(home)) == {"never", "done", "up"}
    # Not on a terminal (a script): no question; -f skips it on a terminal too.
    r = wl(home, "container", "prune")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted([ids["never"], ids["done"]]) and "Are you sure" not in r.stderr
    assert set(ps_all(home)) == {"up"}
    leader, follower = os.openpty()
    try:
        r = wl(home, "container", "prune", "-f", stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert (r.returncode, r.stdout) == (0, "") and "Are you sure" not in r.stderr


# -- top, port, stats --------------------------------------------------------------------------------------------

def test_top_lists_the_containers_processes_with_its_own_pids(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "t", BB, "sh", "-c", "sleep 1000 & echo ready; wait").returncode == 0
    follow_until(home, "t", b"ready\n")
    r = wl(home, "top", "t")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]
    rows = json.loads(wl(home, "top", "--json", "t").stdout)
    by_command = {row["command"]: row for row in rows}
    assert by_command["sh -c sleep 1000 & echo ready; wait"]["pid"] == 1
    assert by_command["sleep 1000"]["ppid"] == 1 and by_command["sleep 1000"]["user"] == "root"
    assert all(row["host_pid"] != row["pid"] for row in rows)


def test_top_of_a_wasm_container_shows_its_command(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "wt", HW, "/loop.wasm", "0", "1000").returncode == 0
    rows = json.loads(wl(home, "top", "--json", "wt").stdout)
    assert [(row["pid"], row["command"]) for row in rows] == [(1, "/loop.wasm 0 1000")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_lists_published_ports_and_create_publishes_them_at_each_start(home: Path) -> None:
    port = free_port()
    r = wl(home, "create", "--name", "web", "-p", f"127.0.0.1:{port}:80", BB, "sh", "-c",
           "echo served > /i; echo ready; exec httpd -f -p 80 -h /")
    assert r.returncode == 0, r.stderr
    assert wl(home, "port", "web").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert wl(home, "start", "web").returncode == 0
    follow_until(home, "web", b"ready\n")
    assert wl(home, "port", "web", "80").stdout == f"127.0.0.1:{port}\n"
    assert wl(home, "port", "web", "80/tcp").stdout == f"127.0.0.1:{port}\n"
    one_error(wl(home, "port", "web", "81"), "no port 81")
    r = wl(home, "port", "-a")
    assert r.stdout.split("\t")[1] == f"80/tcp -> 127.0.0.1:{port}\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /i HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    assert answer.endswith(b"served\n")
    assert wl(home, "restart", "-t", "0", "web").returncode == 0  # the port is released, then published again
    follow_until(home, "web", b"ready\nready\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /i HTTP/1.0\r\n\r\n")
        assert b"served" in conn.recv(4096) + conn.recv(4096)
    r = wl(home, "port", "web", "-a")
    assert r.returncode != 0 and "port takes a container, or -a" in r.stderr


def test_a_start_that_cannot_publish_its_port_is_one_line_and_leaves_nothing_running(home: Path) -> None:
    port = free_port()
    assert wl(home, "create", "--name", "blocked", "-p", f"127.0.0.1:{port}:80", BB, "sleep", "1000").returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        for attach in ((), ("-a",)):
            r = wl(home, "start", *attach, "blocked")
            assert r.returncode != 0 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
            assert str(port) in r.stderr and "Traceback" not in r.stderr
            assert ps_all(home)["blocked"]["status"] in ("created", "stopped")
            assert json.loads(wl(home, "ps", "--json").stdout) == []  # nothing runs
    r = wl(home, "start", "blocked")  # the port is free again: it starts
    assert r.returncode == 0, r.stderr
    assert ps_all(home)["blocked"]["status"] == "running"


def test_stats_no_stream_prints_one_sample_as_a_table_or_json(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "busy", BB, "sh", "-c", "echo ready; while :; do :; done").returncode == 0
    assert wl(home, "run", "-d", "--name", "idle", BB, "sleep", "1000").returncode == 0
    follow_until(home, "busy", b"ready\n")
    r = wl(home, "stats", "--no-stream", "-i", "0.3", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"busy", "idle"}
    # A rate over the interval (the first reading of a container has none): the busy one shows it, the idle not.
    assert rows["busy"]["cpu"] > 5 > rows["idle"]["cpu"] and rows["busy"]["cpu_percent"].endswith("%")
    assert rows["busy"]["mem_bytes"] > 0 and rows["busy"]["engine"] == "native"
    r = wl(home, "stats", "--no-stream", "-i", "0.2", "idle")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2, r.stderr
    assert lines[0].split()[:4] == ["ID", "NAME", "CPU", "%"] and lines[1].split()[1] == "idle"
    one_error(wl(home, "stats", "-i", "0", "idle"), "positive")
    one_error(wl(home, "stats", "--format", "{{.Name}} {{.Nope}}", "idle"), ".Nope", ".PIDS")


def test_stats_streams_one_sample_per_interval(home: Path) -> None:
    assert wl(home, "run", "-d", "--name", "s1", BB, "sleep", "1000").returncode == 0
    proc = subprocess.Popen([WASMLAB, "stats", "-i", "0.1", "--format", "json", "s1"],
                            env=dict(os.environ, WASMLAB_HOME=str(home)), stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        got = read_until(proc.stdout.fileno(), b"]\n[", timeout=30)  # a second sample began
    finally:
        proc.terminate()
        proc.wait(10)
    first = json.loads(got[:got.index(b"]\n[") + 2])
    assert [row["name"] for row in first] == ["s1"]


# -- version and info ---------------------------------------------------------------------------------------------

def test_version_and_info(home: Path) -> None:
    r = wl(home, "version")
    assert r.returncode == 0 and r.stdout.startswith("Client:       wasmlab\nVersion:")
    client = json.loads(wl(home, "version", "--format", "json").stdout)["Client"]
    assert client["OS/Arch"].startswith("linux/") and client["wasmtime"][0].isdigit()
    info = json.loads(wl(home, "info", "--format", "json").stdout)
    assert info["host"]["kernel"] == os.uname().release and info["host"]["mode"] == "root"
    assert info["host"]["cgroups"] in ("v1", "v2", "hybrid")
    assert info["store"]["home"] == str(home) and info["store"]["rootMode"] in ("overlay", "copy")
    assert info["store"]["images"] == 2
    assert any(e.startswith("wasmtime") for e in info["engines"])
    assert json.loads(wl(home, "system", "info", "-f", "json").stdout)["store"] == info["store"]
    r = wl(home, "info")
    assert r.returncode == 0 and "kernel: " + os.uname().release in r.stdout
    one_error(wl(home, "info", "--format", "yaml"), "json")
