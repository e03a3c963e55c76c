"""The OCI lifecycle through wasmlab-oci and the Runtime API: states, exit codes, locks, namespaces, cgroups."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from wasmlab.runtime.errors import ContainerNotFound

from tests.conftest import (
    CGROUP_PARENT,
    OCI,
    make_rootfs_busybox,
    minimal_config,
    need_root,
    oci,
    read_until,
    wait_gone,
    write_bundle,
)

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def _bundle(tmp_path: Path, args: list[str], name: str = "b", **kw: object) -> Path:
    bundle = tmp_path / name
    make_rootfs_busybox(bundle / "rootfs")
    return write_bundle(bundle, minimal_config(args, **kw))  # type: ignore[arg-type]


def test_cli_state_machine(tmp_path: Path, state_root: Path, leaks) -> None:
    bundle = _bundle(tmp_path, ["/bin/sleep", "30"])
    pidfile = tmp_path / "pid"
    r = oci("create", "--bundle", str(bundle), "--pid-file", str(pidfile), "c1", root=state_root)
    assert r.returncode == 0, r.stderr
    st = json.loads(oci("state", "c1", root=state_root).stdout)
    assert st["status"] == "created"
    assert st["ociVersion"].startswith("1.")
    assert int(pidfile.read_text()) == st["pid"]
    # created: the init waits for start, and has not exec'd yet
    assert Path(f"/proc/{st['pid']}/exe").resolve().name.startswith("python")
    assert oci("start", "c1", root=state_root).returncode == 0
    st = json.loads(oci("state", "c1", root=state_root).stdout)
    assert st["status"] == "running"
    r = oci("delete", "c1", root=state_root)
    assert r.returncode != 0 and "running" in r.stderr and "--force" in r.stderr
    assert oci("kill", "c1", "KILL", root=state_root).returncode == 0
    wait_gone(st["pid"])
    assert json.loads(oci("state", "c1", root=state_root).stdout)["status"] == "stopped"
    r = oci("kill", "c1", "TERM", root=state_root)
    assert r.returncode != 0 and "stopped" in r.stderr
    assert oci("delete", "c1", root=state_root).returncode == 0
    assert oci("state", "c1", root=state_root).returncode != 0
    # the init was our child: reap it so the leak check sees no zombie
    try:
        os.waitpid(st["pid"], os.WNOHANG)
    except ChildProcessError:
        pass
    leaks.assert_clean()


def test_cli_run_exit_code_and_list(tmp_path: Path, state_root: Path) -> None:
    bundle = _bundle(tmp_path, ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"])
    r = oci("run", "--bundle", str(bundle), "r1", root=state_root)
    assert r.returncode == 7
    assert r.stdout == "out\n" and r.stderr == "err\n"
    assert json.loads(oci("list", "--format", "json", root=state_root).stdout) == []


def test_cli_run_forwards_signals_to_the_container(tmp_path: Path, state_root: Path, leaks) -> None:
    """`wasmlab-oci run` in the foreground passes what it receives on to the container, as runc does, so
    stopping the runtime stops the container instead of leaving it behind."""
    import subprocess

    script = "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done"
    bundle = _bundle(tmp_path, ["/bin/sh", "-c", script])
    proc = subprocess.Popen([OCI, "--root", str(state_root), "run", "--bundle", str(bundle), "fwd"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 42 and "got TERM" in out, (proc.returncode, out, err)
    assert oci("list", root=state_root).stdout.count("fwd") == 0
    leaks.assert_clean()


def test_runtime_run_captures_output_and_timings(runtime, busybox_bundle: Path, leaks) -> None:
    res = runtime.run("r1", str(busybox_bundle))
    assert res.exit_code == 0
    assert res.stdout == b"hello from busybox\n"
    assert res.decision["handler"] == "native"
    assert res.timings["create_ms"] > 0 and res.timings["total_ms"] >= res.timings["create_ms"]
    assert res.memory["max_rss_kb"] > 0
    assert runtime.list() == []
    leaks.assert_clean()


def test_namespaces_hostname_env_cwd_user(tmp_path: Path, runtime) -> None:
    script = "hostname; id -u; id -g; id -G; pwd; echo $GREETING; echo $$; ls /proc/1/ns >/dev/null && echo ok"
    cfg = minimal_config(["/bin/sh", "-c", script], hostname="inside")
    cfg["process"]["env"] = ["PATH=/bin", "GREETING=hi there"]
    cfg["process"]["cwd"] = "/tmp"
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6]}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("ns", str(bundle))
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.decode().split("\n")
    assert lines[0] == "inside"
    assert lines[1:3] == ["1000", "1000"]
    assert set(lines[3].split()) == {"1000", "5", "6"}
    assert lines[4:7] == ["/tmp", "hi there", "1"]
    assert socket.gethostname() != "inside"


def test_join_namespace_by_path(tmp_path: Path, runtime) -> None:
    sandbox = _bundle(tmp_path, ["/bin/sleep", "30"], name="sandbox",
                      namespaces=("pid", "mount", "uts", "ipc", "network"),
                      hostname="podhost")
    st = runtime.create("sandbox", str(sandbox))
    runtime.start("sandbox")
    pid = st["pid"]
    cfg = minimal_config(["/bin/sh", "-c", "hostname; readlink /proc/self/ns/uts; readlink /proc/self/ns/net"])
    del cfg["hostname"]
    cfg["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"},
                                  {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
                                  {"type": "network", "path": f"/proc/{pid}/ns/net"}]
    side = tmp_path / "side"
    make_rootfs_busybox(side / "rootfs")
    write_bundle(side, cfg)
    try:
        res = runtime.run("side", str(side))
        assert res.exit_code == 0, res.stderr
        out = res.stdout.decode().split()
        assert out[0] == "podhost"
        assert out[1] == os.readlink(f"/proc/{pid}/ns/uts")
        assert out[2] == os.readlink(f"/proc/{pid}/ns/net")
        assert out[2] != os.readlink("/proc/self/ns/net")
        ns = runtime.state("sandbox")["wasmlab"]["namespaces"]
        assert ns["uts"] == out[1] and ns["net"] == out[2] and ns["mnt"] != os.readlink("/proc/self/ns/mnt")
    finally:
        runtime.delete("sandbox", force=True)


def test_without_mount_namespace_chroots_and_mounts_nothing(tmp_path: Path, runtime, leaks) -> None:
    cfg = minimal_config(["/bin/sh", "-c", "ls /; readlink /proc/1/ns/mnt 2>/dev/null || echo no-proc"],
                         namespaces=("pid", "uts", "ipc"))
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("nomnt", str(bundle))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.decode().split() == ["bin", "dev", "etc", "proc", "sys", "tmp", "no-proc"]
    leaks.assert_clean()


def test_memory_limit_oom_is_recorded_as_137(tmp_path: Path, runtime) -> None:
    # busybox sh grows a string until the 16 MiB cgroup limit kills it.
    script = "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"
    cfg = minimal_config(["/bin/sh", "-c", script])
    cfg["linux"]["resources"] = {"memory": {"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024}}
    cfg["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/oom"
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("oom", str(bundle), timeout=60)
    assert res.exit_code == 137
    assert res.oom_killed is True
    # run answers first and deletes right after; a look through the Runtime waits for that.
    with pytest.raises(ContainerNotFound):
        runtime.state("oom")
    assert not os.path.exists(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/oom")


def test_pids_limit(tmp_path: Path, runtime) -> None:
    cfg = minimal_config(["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait"])
    cfg["linux"]["resources"] = {"pids": {"limit": 4}}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("pids", str(bundle), timeout=60)
    assert b"can't fork" in res.stderr or b"Resource temporarily unavailable" in res.stderr, res.stderr


def test_rlimits_caps_and_no_new_privs(tmp_path: Path, runtime) -> None:
    cfg = minimal_config(["/bin/sh", "-c", "ulimit -n; grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status"])
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
    cfg["process"]["capabilities"] = {k: ["CAP_KILL", "CAP_CHOWN"] for k in ("bounding", "effective", "permitted")}
    cfg["process"]["noNewPrivileges"] = True
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("caps", str(bundle))
    out = res.stdout.decode()
    assert out.splitlines()[0] == "123"
    assert "CapEff:\t0000000000000021" in out   # CAP_CHOWN (0) + CAP_KILL (5)
    assert "CapBnd:\t0000000000000021" in out
    assert "NoNewPrivs:\t1" in out


def test_readonly_root_masked_and_readonly_paths(tmp_path: Path, runtime) -> None:
    cfg = minimal_config(["/bin/sh", "-c", "touch /x 2>/dev/null || echo ro-root; cat /proc/kcore | wc -c; "
                                           "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null || echo ro-sys"],
                         mounts=True)
    cfg["root"]["readonly"] = True
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("ro", str(bundle))
    assert res.stdout.decode().split() == ["ro-root", "0", "ro-sys"], res.stderr


def test_bind_mount_with_options(tmp_path: Path, runtime) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in.txt").write_text("from host\n")
    cfg = minimal_config(["/bin/sh", "-c", "cat /data/in.txt; touch /data/new 2>/dev/null || echo ro"])
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(vol), "options": ["rbind", "ro"]})
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("bind", str(bundle))
    assert res.stdout.decode().split("\n")[:2] == ["from host", "ro"]
    assert not (vol / "new").exists()


def test_hooks_get_state_on_stdin(tmp_path: Path, state_root: Path) -> None:
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$1 $(cat)\" >> {log}\n")
    hook.chmod(0o755)
    cfg = minimal_config(["/bin/true"])
    cfg["hooks"] = {kind: [{"path": str(hook), "args": ["hook.sh", kind]}]
                    for kind in ("prestart", "createRuntime", "poststart", "poststop")}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    assert oci("create", "-b", str(bundle), "h1", root=state_root).returncode == 0
    pid = json.loads(oci("state", "h1", root=state_root).stdout)["pid"]
    assert oci("start", "h1", root=state_root).returncode == 0
    wait_gone(pid)
    assert oci("delete", "--force", "h1", root=state_root).returncode == 0
    lines = log.read_text().splitlines()
    kinds = [ln.split(" ", 1)[0] for ln in lines]
    assert kinds == ["prestart", "createRuntime", "poststart", "poststop"]
    for ln in lines:
        state = json.loads(ln.split(" ", 1)[1])
        assert state["id"] == "h1" and state["bundle"] == str(bundle)


def test_creation_hooks_run_before_pivot_root_in_the_spec_order(tmp_path: Path, state_root: Path) -> None:
    """prestart and createRuntime (runtime namespace), then createContainer (container namespace), all
    before pivot_root, each given the init's pid; then poststart and poststop."""
    import sys

    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.py"
    hook.write_text(
        f"#!{sys.executable}\nimport json, os, sys\nstate = json.load(sys.stdin)\n"
        "pid = state.get('pid')\ntry:\n    root = os.readlink(f'/proc/{pid}/root')\nexcept OSError:\n"
        "    root = None\n"
        f"open({str(log)!r}, 'a').write(json.dumps([sys.argv[1], state['status'], pid, root]) + '\\n')\n")
    hook.chmod(0o755)
    cfg = minimal_config(["/bin/true"])
    kinds = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    cfg["hooks"] = {kind: [{"path": str(hook), "args": ["hook.py", kind]}] for kind in kinds}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    r = oci("create", "-b", str(bundle), "h2", root=state_root)
    assert r.returncode == 0, r.stderr
    pid = json.loads(oci("state", "h2", root=state_root).stdout)["pid"]
    assert oci("start", "h2", root=state_root).returncode == 0
    wait_gone(pid)
    assert oci("delete", "--force", "h2", root=state_root).returncode == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e[0] for e in entries] == list(kinds)
    for kind, status, hook_pid, root in entries[:3]:
        assert (status, hook_pid, root) == ("creating", pid, "/"), (kind, status, hook_pid, root)


def test_a_failing_create_runtime_hook_leaves_nothing(tmp_path: Path, state_root: Path, leaks) -> None:
    cfg = minimal_config(["/bin/true"])
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/false"}], "createContainer": [{"path": "/bin/true"}]}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    r = oci("create", "-b", str(bundle), "h3", root=state_root)
    assert r.returncode != 0 and "createRuntime hook 0" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert os.listdir(state_root) == []
    leaks.assert_clean()


def test_commands_on_one_container_are_serialized(tmp_path: Path, state_root: Path) -> None:
    bundle = _bundle(tmp_path, ["/bin/sleep", "30"])
    assert oci("create", "-b", str(bundle), "s1", root=state_root).returncode == 0
    results: list[int] = []

    def delete() -> None:
        results.append(oci("delete", "s1", root=state_root).returncode)

    threads = [threading.Thread(target=delete) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 3, 3, 3]  # one deletes; the others find nothing (exit 3: not found)


def test_console_socket_receives_pty(tmp_path: Path, state_root: Path) -> None:
    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    cfg = minimal_config(["/bin/sh", "-c", "test -t 0 && test -t 1 && echo tty-ok"])
    cfg["process"]["terminal"] = True
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    got: list[int] = []

    def accept() -> None:
        conn, _ = server.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        got.extend(fds)
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    r = oci("create", "-b", str(bundle), "--console-socket", str(sock_path), "t1", root=state_root)
    t.join(10)
    assert r.returncode == 0, r.stderr
    assert len(got) == 1
    assert oci("start", "t1", root=state_root).returncode == 0
    out = b""
    deadline = time.monotonic() + 5
    while b"tty-ok" not in out and time.monotonic() < deadline:
        try:
            out += os.read(got[0], 1024)
        except OSError:
            break
    os.close(got[0])
    oci("delete", "--force", "t1", root=state_root)
    assert b"tty-ok" in out


def test_kill_delivers_signal(tmp_path: Path, runtime) -> None:
    bundle = _bundle(tmp_path, ["/bin/sh", "-c", "trap 'exit 42' TERM; echo trapped; while true; do sleep 0.05; done"])
    r, w = os.pipe()
    try:
        runtime.create("k1", str(bundle), stdout=w)
        os.close(w)
        runtime.start("k1")
        read_until(r, b"trapped")  # the shell has installed its trap
    finally:
        os.close(r)
    runtime.kill("k1", signal.SIGTERM)
    rec = runtime.wait("k1", timeout=10)
    assert rec.exit_code == 42
    assert runtime.state("k1")["status"] == "stopped"
    runtime.delete("k1")


def test_events_are_published(runtime, busybox_bundle: Path) -> None:
    events: list[dict] = []
    unsubscribe = runtime.subscribe(events.append)
    runtime.run("e1", str(busybox_bundle))
    unsubscribe()
    kinds = [e["event"] for e in events if e.get("id") == "e1"]
    # The final figures (reaped) may come after run() has returned, and then after the unsubscribe.
    assert kinds[0] == "created" and kinds[1] == "exit" and kinds[2:] in ([], ["reaped"])


def test_a_subscriber_may_look_at_the_container_it_hears_about(runtime, wasm_bundle: Path) -> None:
    """Callbacks run on the reader thread; a look at a container there must answer from the files, not
    wait for the zygote (only that same thread could deliver the answer)."""
    seen: list[str] = []
    done = threading.Event()

    def on_event(event: dict) -> None:
        if event.get("event") == "exit" and event.get("id") == "look":
            try:
                seen.append(runtime.state("look")["status"])
            except ContainerNotFound:
                seen.append("deleted")
            done.set()

    unsubscribe = runtime.subscribe(on_event)
    try:
        runtime.run("look", str(wasm_bundle))
        assert done.wait(10), "the callback never finished: the reader thread waited on itself"
    finally:
        unsubscribe()
    assert seen[0] in ("stopped", "deleted")


def test_creating_an_existing_id_is_refused_at_once(runtime, wasm_bundle: Path) -> None:
    """The zygote must not wait for a running container of that id (it used to, wedging every caller)."""
    from wasmlab.runtime.errors import ContainerExists

    runtime.create("twice", str(wasm_bundle))
    try:
        t0 = time.monotonic()
        with pytest.raises(ContainerExists):
            runtime.create("twice", str(wasm_bundle))
        assert time.monotonic() - t0 < 10
        assert runtime.run("meanwhile", str(wasm_bundle), timeout=20).exit_code == 0
    finally:
        runtime.delete("twice", force=True)


def test_runtime_is_safe_from_threads(runtime, busybox_bundle: Path) -> None:
    results: dict[int, bytes] = {}

    def worker(i: int) -> None:
        results[i] = runtime.run(f"t{i}", str(busybox_bundle)).stdout

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: b"hello from busybox\n" for i in range(8)}


def test_zygotes_stay_single_threaded(runtime, tmp_path: Path) -> None:
    """Containers are forked from the zygotes, so no engine may leave a thread behind in them."""
    import wasmtime

    from tests.conftest import HELLO_WAT

    for engine in ("wasmtime", "wasmer"):
        bundle = tmp_path / engine
        (bundle / "rootfs" / "proc").mkdir(parents=True)
        (bundle / "rootfs" / "hello.wasm").write_bytes(bytes(wasmtime.wat2wasm(HELLO_WAT)))
        cfg = minimal_config(["/hello.wasm"], annotations={"module.wasm.image/variant": "compat",
                                                           "run.oci.handler": engine})
        write_bundle(bundle, cfg)
        for i in range(3):  # the second run warms the module, the third forks with it instantiated
            assert runtime.run(f"{engine}{i}", str(bundle)).stdout == b"hello from wasm\n"
    assert set(runtime._zygotes) == {"main", "wasmer"}
    for zyg in runtime._zygotes.values():
        assert len(os.listdir(f"/proc/{zyg.proc.pid}/task")) == 1


def test_cpu_limits_reach_the_cgroup(tmp_path: Path, state_root: Path) -> None:
    cgpath = f"{CGROUP_PARENT}/cpu"
    cfg = minimal_config(["/bin/sleep", "30"])
    cfg["linux"]["cgroupsPath"] = cgpath
    cfg["linux"]["resources"] = {"cpu": {"quota": 50000, "period": 100000, "shares": 512},
                                 "memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 32}}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    assert oci("create", "-b", str(bundle), "cpu1", root=state_root).returncode == 0
    try:
        from wasmlab.runtime.linux import cgroups

        lay = cgroups.layout()
        if lay.mode == "v2":
            base = Path(lay.v2 or "") / cgpath
            assert (base / "cpu.max").read_text().split() == ["50000", "100000"]
            assert int((base / "memory.max").read_text()) == 64 * 1024 * 1024
        else:
            cpu = Path(lay.v1["cpu"]) / cgpath
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == 50000
            assert int((cpu / "cpu.cfs_period_us").read_text()) == 100000
            assert int((cpu / "cpu.shares").read_text()) == 512
            assert int((Path(lay.v1["memory"]) / cgpath / "memory.limit_in_bytes").read_text()) == 64 * 1024 * 1024
            assert int((Path(lay.v1["pids"]) / cgpath / "pids.max").read_text()) == 32
        pid = json.loads(oci("state", "cpu1", root=state_root).stdout)["pid"]
        assert cgpath in Path(f"/proc/{pid}/cgroup").read_text()
    finally:
        assert oci("delete", "--force", "cpu1", root=state_root).returncode == 0
    assert not any(Path(m, cgpath).exists() for m in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory",
                                                      "/sys/fs/cgroup/unified"))


def test_hooks_inside_the_container_namespaces(tmp_path: Path, state_root: Path) -> None:
    """createContainer runs in the container's namespaces before pivot_root; startContainer inside it."""
    log = tmp_path / "log"
    log.mkdir()
    host_hook = tmp_path / "create.sh"
    host_hook.write_text(f"#!/bin/sh\nhostname > {log}/create-hostname\n")
    host_hook.chmod(0o755)
    cfg = minimal_config(["/bin/true"], hostname="ctr")
    cfg["mounts"].append({"destination": "/log", "type": "bind", "source": str(log), "options": ["rbind"]})
    cfg["hooks"] = {"createContainer": [{"path": str(host_hook)}],
                    "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /log/start-state"]}]}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    r = oci("run", "-b", str(bundle), "hk", root=state_root)
    assert r.returncode == 0, r.stderr
    assert (log / "create-hostname").read_text().strip()  # it ran, in the container's uts namespace
    state = json.loads((log / "start-state").read_text())
    assert state["id"] == "hk" and state["status"] == "running"


def test_seccomp_filter_denies_a_syscall(tmp_path: Path, runtime) -> None:
    cfg = minimal_config(["/bin/sh", "-c", "mkdir /tmp/x && echo made || echo refused"])
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                             "errnoRet": 1}]}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("sc", str(bundle))
    assert res.stdout == b"refused\n", res.stderr
    assert b"Operation not permitted" in res.stderr


def test_sysctl_is_set_inside(tmp_path: Path, runtime) -> None:
    cfg = minimal_config(["/bin/cat", "/proc/sys/kernel/msgmax"], mounts=True)
    cfg["linux"]["sysctl"] = {"kernel.msgmax": "12345"}
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    res = runtime.run("sy", str(bundle))
    assert res.stdout == b"12345\n", res.stderr
    assert Path("/proc/sys/kernel/msgmax").read_text().strip() != "12345"


def test_exec_joins_a_running_container(tmp_path: Path, state_root: Path) -> None:
    bundle = _bundle(tmp_path, ["/bin/sleep", "30"], hostname="inbox")
    assert oci("run", "-d", "-b", str(bundle), "ex1", root=state_root).returncode == 0
    try:
        r = oci("exec", "ex1", "/bin/sh", "-c", "echo $$; hostname; cat /proc/1/cmdline; exit 5", root=state_root)
        assert r.returncode == 5, r.stderr
        pid, host, cmdline = r.stdout.split("\n")[:3]
        assert int(pid) > 1 and host == "inbox" and cmdline.startswith("/bin/sleep")
        r = oci("exec", "ex1", "/no/such/program", root=state_root)
        assert r.returncode != 0 and "/no/such/program" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        pidfile = tmp_path / "exec.pid"
        r = oci("exec", "-d", "--pid-file", str(pidfile), "ex1", "/bin/sleep", "5", root=state_root)
        assert r.returncode == 0, r.stderr
        exec_pid = int(pidfile.read_text())
        with open(f"/proc/{exec_pid}/status") as fh:
            assert "sleep" in fh.readline()
    finally:
        oci("delete", "--force", "ex1", root=state_root)
    r = oci("exec", "ex1", "/bin/true", root=state_root)
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_pause_and_resume_freeze_the_container(tmp_path: Path, state_root: Path) -> None:
    """The container counts on its stdout, a pipe the test reads: a count is the event that it runs."""
    import select
    import subprocess

    cfg = minimal_config(["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.01; done"])
    cfg["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/pause"
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, cfg)
    r, w = os.pipe()
    try:
        with (tmp_path / "err").open("w+") as err:  # a file: the container keeps its stderr open
            started = subprocess.run([OCI, "--root", str(state_root), "run", "-d", "-b", str(bundle), "pz"],
                                     stdin=subprocess.DEVNULL, stdout=w, stderr=err, timeout=60)
        os.close(w)
        assert started.returncode == 0, (tmp_path / "err").read_text()
        read_until(r, b"\n")  # it counts
        assert oci("pause", "pz", root=state_root).returncode == 0
        assert json.loads(oci("state", "pz", root=state_root).stdout)["status"] == "paused"
        os.set_blocking(r, False)
        while select.select([r], [], [], 0)[0] and os.read(r, 65536):
            pass  # what it wrote before the freeze
        os.set_blocking(r, True)
        # Frozen: no count may come. (A window, as the claim is that nothing happens; a count ends it at once.)
        assert not select.select([r], [], [], 0.3)[0], "a paused container kept running"
        r2 = oci("pause", "pz", root=state_root)
        assert r2.returncode != 0 and "paused" in r2.stderr
        assert oci("resume", "pz", root=state_root).returncode == 0
        read_until(r, b"\n")  # it counts again
        assert json.loads(oci("state", "pz", root=state_root).stdout)["status"] == "running"
        assert oci("pause", "pz", root=state_root).returncode == 0
    finally:
        os.close(r)
        assert oci("delete", "--force", "pz", root=state_root).returncode == 0  # even while frozen


def test_device_rules_keep_the_host_disk_out(tmp_path: Path, runtime) -> None:
    """podman's deny-all device rule: a node for a host device can be made (mknod) but not opened.

    (The host's kernel log, /dev/kmsg, c 1:11: readable by root, and in no default allow-list.)
    """
    script = ("mknod /tmp/kmsg c 1 11 && ( (: < /tmp/kmsg) 2>/dev/null && echo opened || echo refused); "
              "echo ok > /dev/null && echo null-works")
    outputs = {}
    for rules in ([{"allow": False, "access": "rwm"}], []):  # podman's rule, then none (the control)
        cfg = minimal_config(["/bin/sh", "-c", script])
        cfg["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/dev"
        cfg["linux"]["resources"] = {"devices": rules, "pids": {"limit": 100}}
        cfg["process"]["capabilities"] = {k: ["CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_SYSLOG"]
                                          for k in ("bounding", "effective", "permitted")}
        bundle = tmp_path / f"b{len(rules)}"
        make_rootfs_busybox(bundle / "rootfs")
        write_bundle(bundle, cfg)
        outputs[len(rules)] = runtime.run(f"dev{len(rules)}", str(bundle)).stdout.decode().split()
    assert outputs[1] == ["refused", "null-works"]
    assert outputs[0] == ["opened", "null-works"]  # without the rule the disk is readable: the rule matters


def test_run_hands_the_output_to_on_output_from_the_calling_thread(runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`Lab.run` in the foreground relays the output through on_output: no thread to start and join per run
    (0.3-0.8 ms of a loaded machine's scheduling, issue 11); stdin is still the caller's."""
    bundle = _bundle(tmp_path, ["/bin/sh", "-c", "read line; echo out:$line; echo err >&2"])
    pieces: list[tuple[int, bytes]] = []
    threads: set[int] = set()

    def on_output(which: int, chunk: bytes) -> None:
        threads.add(threading.get_ident())
        pieces.append((which, chunk))

    r, w = os.pipe()
    os.write(w, b"typed\n")
    os.close(w)
    try:
        res = runtime.run("relayed", str(bundle), stdio=(r, None, None), on_output=on_output)
    finally:
        os.close(r)
    assert res.exit_code == 0 and res.stdout == b"" and res.stderr == b""  # handed over, not kept
    assert b"".join(c for which, c in pieces if which == 1) == b"out:typed\n"
    assert b"".join(c for which, c in pieces if which == 2) == b"err\n"
    assert threads == {threading.get_ident()}


def test_on_output_that_raises_leaves_no_pipe_open(runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = _bundle(tmp_path, ["/bin/echo", "hello"])
    assert runtime.run("warm", str(bundle)).exit_code == 0  # the zygote and its sockets exist from here
    before = set(os.listdir("/proc/self/fd"))

    def refuse(which: int, chunk: bytes) -> None:
        raise RuntimeError("the caller's sink failed")

    with pytest.raises(RuntimeError):
        runtime.run("refused", str(bundle), on_output=refuse)
    assert set(os.listdir("/proc/self/fd")) <= before
