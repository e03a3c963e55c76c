"""The wasmlab command, as a workshop learner types it: the seed's build and run, and podman's verbs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, busybox, need_root, read_until, wait_gone

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
SEED = ROOT / "assets" / "containerfiles" / "seed"
ASSETS = ROOT / "assets" / "built"


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def wl(home: Path, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WASMLAB_HOME=str(home))
    return subprocess.run([WASMLAB, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_seed_steps_build_and_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "mywasm-image", ".", cwd=SEED)
    assert r.returncode == 0, r.stderr
    images = json.loads(wl(home, "images", "--json").stdout)
    assert [i["names"] for i in images] == [["localhost/mywasm-image:latest"]]
    assert images[0]["annotations"]["module.wasm.image/variant"] == "compat"
    assert images[0]["wasm"] is True
    for engine in ("wasmtime", "wasmer"):
        r = wl(home, "run", "--rm", "--engine", engine, "mywasm-image")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "hello world from wasmlab !!!!\n"
    assert json.loads(wl(home, "ps", "-a", "--json").stdout) == []
    hist = json.loads(wl(home, "history", "--json").stdout)
    assert {h["handler"] for h in hist} == {"wasmtime", "wasmer"}
    assert all(h["create_ms"] > 0 and h["init_max_rss_kb"] > 0 for h in hist)


def test_exit_code_args_env_and_engine_override(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy2(ASSETS / "wasm" / "argsenv.wasm", ctx / "argsenv.wasm")
    shutil.copy2(ASSETS / "wasm" / "exitcode.wasm", ctx / "exitcode.wasm")
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY *.wasm /\nENV GREETING=hello\nCMD ["/argsenv.wasm"]\n')
    r = wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "tools", str(ctx))
    assert r.returncode == 0, r.stderr
    r = wl(home, "run", "--rm", "-e", "EXTRA=1", "tools", "/argsenv.wasm", "a", "b c")
    assert r.returncode == 0, r.stderr
    assert "argv[1]=a" in r.stdout and "argv[2]=b c" in r.stdout
    assert "env=GREETING=hello" in r.stdout and "env=EXTRA=1" in r.stdout
    r = wl(home, "run", "--rm", "tools", "/exitcode.wasm", "42")
    assert r.returncode == 42 and r.stdout == "exiting with 42\n"


def test_arguments_replace_the_cmd_and_a_number_taken_for_the_program_gets_the_command_that_keeps_it(
        tmp_path: Path) -> None:
    """As podman: `run IMAGE 64` replaces the CMD, so 64 is the program (exit 127); the one line names the
    command that works (the image's CMD program, then the arguments). A path that is missing keeps its hint."""
    home = tmp_path / "home"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy2(ASSETS / "wasm" / "exitcode.wasm", ctx / "exitcode.wasm")
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY exitcode.wasm /\nCMD ["/exitcode.wasm"]\n')
    r = wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "ex", str(ctx))
    assert r.returncode == 0, r.stderr
    for arg in ("64", "word"):
        r = wl(home, "run", "--rm", "ex", arg)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 127 and len(lines) == 1, r.stderr
        assert f"entrypoint {arg} is missing" in lines[0], lines
        assert lines[0].endswith(f"(hint: arguments replace the image's CMD, as with podman: give its program first: "
                                 f"wasmlab run ex /exitcode.wasm {arg})"), lines
    r = wl(home, "run", "--rm", "ex", "/nothere.wasm", "64")
    assert r.returncode == 127 and "wasmlab run ex" not in r.stderr and "hint:" in r.stderr, r.stderr
    r = wl(home, "run", "--rm", "ex", "/exitcode.wasm", "64")
    assert r.returncode == 64, r.stderr
    assert json.loads(wl(home, "ps", "-a", "--json").stdout) == []


def test_detached_ps_logs_stop_rm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy2(ASSETS / "wasm" / "loop.wasm", ctx / "loop.wasm")
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY loop.wasm /\nCMD ["/loop.wasm", "0", "100"]\n')
    r = wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "ticker", str(ctx))
    assert r.returncode == 0, r.stderr
    r = wl(home, "run", "-d", "--name", "tick", "ticker")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        follower = subprocess.Popen([WASMLAB, "logs", "-f", "tick"], env=dict(os.environ, WASMLAB_HOME=str(home)),
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            assert follower.stdout is not None
            read_until(follower.stdout.fileno(), b"tick 2")
        finally:
            follower.kill()
            follower.wait()
        assert "tick 2" in wl(home, "logs", "tick").stdout
        ps = json.loads(wl(home, "ps", "--json").stdout)
        assert [(p["name"], p["status"], p["handler"]) for p in ps] == [("tick", "running", "wasmtime")]
        assert ps[0]["id"] == cid
        assert wl(home, "pause", "tick").returncode == 0
        assert json.loads(wl(home, "ps", "--json").stdout)[0]["status"] == "paused"
        assert wl(home, "unpause", "tick").returncode == 0
        r = wl(home, "rm", "tick")
        assert r.returncode != 0 and "running" in r.stderr and "stop" in r.stderr
        r = wl(home, "exec", "tick", "/loop.wasm")  # a FROM scratch Wasm image: nothing native to exec
        assert r.returncode != 0 and "/loop.wasm" in r.stderr
        assert wl(home, "stop", "-t", "5", "tick").returncode == 0
        ps = json.loads(wl(home, "ps", "-a", "--json").stdout)
        assert ps[0]["status"] == "stopped" and ps[0]["exit_code"] == 143
        assert wl(home, "rm", "tick").returncode == 0
        assert json.loads(wl(home, "ps", "-a", "--json").stdout) == []
        r = wl(home, "logs", "tick")
        assert r.returncode != 0 and "no container named" in r.stderr
    finally:
        wl(home, "rm", "-f", "tick")  # a failed assertion must not leave a ticking container behind


def test_busybox_sidecar_with_run_step_and_compat_smart(tmp_path: Path) -> None:
    """A Linux image built with RUN inside wasmlab's own runtime, run natively under compat-smart."""
    home = tmp_path / "home"
    ctx = tmp_path / "bb"
    (ctx / "bin").mkdir(parents=True)
    shutil.copy2(busybox(), ctx / "bin" / "busybox")
    (ctx / "bin" / "sh").symlink_to("busybox")
    (ctx / "Containerfile").write_text(
        'FROM scratch\nCOPY bin/ /bin/\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'RUN echo built-by-run > /marker\nCMD ["/bin/sh", "-c", "cat /marker; echo sidecar"]\n')
    r = wl(home, "build", "-t", "sidecar", str(ctx))
    assert r.returncode == 0, r.stderr
    r = wl(home, "run", "--rm", "--annotation", "module.wasm.image/variant=compat-smart", "sidecar")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "built-by-run\nsidecar\n"
    r = wl(home, "run", "--rm", "--annotation", "module.wasm.image/variant=compat", "sidecar")
    assert r.returncode != 0
    assert "compat-smart" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert wl(home, "run", "-d", "--name", "side", "sidecar", "/bin/sleep", "30").returncode == 0
    try:
        r = wl(home, "exec", "-e", "WHO=learner", "side", "/bin/sh", "-c", "cat /marker; echo $WHO; exit 4")
        assert r.returncode == 4 and r.stdout == "built-by-run\nlearner\n", r.stderr
        # an exec'd process joins the container's cgroup (so pause freezes it and limits hold it)
        r = wl(home, "exec", "side", "/bin/cat", "/proc/self/cgroup")
        assert "pids:/\n" in r.stdout and "/.." not in r.stdout, r.stdout
    finally:
        assert wl(home, "rm", "-f", "side").returncode == 0


def test_image_verbs_tag_inspect_save_load_rmi(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "seed", ".",
              cwd=SEED).returncode == 0
    assert wl(home, "tag", "seed", "seed:v2").returncode == 0
    details = json.loads(wl(home, "image", "inspect", "seed:v2").stdout)
    assert details[0]["manifest"]["annotations"]["module.wasm.image/variant"] == "compat"
    archive = tmp_path / "seed.tar"
    assert wl(home, "save", "-o", str(archive), "seed").returncode == 0
    other = tmp_path / "other"
    r = wl(other, "load", "-i", str(archive))
    assert r.returncode == 0 and "seed" in r.stdout, r.stderr
    assert wl(other, "run", "--rm", "seed").stdout == "hello world from wasmlab !!!!\n"
    assert wl(home, "rmi", "seed:v2").returncode == 0
    assert [i["names"] for i in json.loads(wl(home, "images", "--json").stdout)] == [["localhost/seed:latest"]]
    artifact = tmp_path / "seed-artifact.tar"
    r = wl(home, "save", "--format", "wasm-artifact", "-o", str(artifact), "seed")
    assert r.returncode == 0, r.stderr
    third = tmp_path / "third"
    assert wl(third, "load", "-i", str(artifact)).returncode == 0
    loaded = json.loads(wl(third, "images", "--json").stdout)
    assert len(loaded) == 1 and loaded[0]["variant"] == "compat"
    assert wl(third, "run", "--rm", loaded[0]["names"][0]).stdout == "hello world from wasmlab !!!!\n"


def test_bad_input_is_one_line_with_a_hint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = [
        (["run", "--rm", "no-such-image"], "no-such-image"),
        (["build", "-t", "x", str(tmp_path / "missing-context")], "missing-context"),
        (["run", "--rm", "--annotation", "novalue", "x"], "KEY=VALUE"),
        (["save", "no-such-image"], "-o"),
        (["stop", "ghost"], "ghost"),
    ]
    for argv, words in cases:
        r = wl(home, *argv)
        assert r.returncode != 0, argv
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (argv, r.stderr)
    assert not (home / "containers").exists() or list((home / "containers").iterdir()) == []


def _store_files(home: Path) -> dict[str, bytes]:
    images = home / "images"
    return {str(p.relative_to(images)): p.read_bytes() for p in sorted(images.rglob("*")) if p.is_file()
            and not p.name.endswith(".lock")} if images.exists() else {}


def test_image_bad_input_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "seed", ".",
              cwd=SEED).returncode == 0
    (tmp_path / "notes.txt").write_text("not an archive\n")
    before = _store_files(home)
    cases = [
        (["tag", "seed", "other@sha256:" + "a" * 64], "digest"),
        (["tag", "seed", "Bad Name"], "Bad Name"),
        (["load", "-i", str(tmp_path / "notes.txt")], "not a readable image archive"),
        (["build", "--platform", "foo/bar", "-t", "x", "."], "unknown platform"),
        (["rmi", "no-such-image"], "no-such-image"),
    ]
    for argv, words in cases:
        r = wl(home, *argv, cwd=SEED)
        assert r.returncode != 0, argv
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "hint:" in lines[0], (argv, r.stderr)
        assert _store_files(home) == before, argv


def test_rmi_refuses_an_image_in_use_and_prune_reports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "seed", ".",
              cwd=SEED).returncode == 0
    assert wl(home, "run", "--name", "keeper", "seed").returncode == 0  # stopped, not removed
    before = _store_files(home)
    r = wl(home, "rmi", "seed")
    assert r.returncode != 0 and "keeper" in r.stderr and "rmi -f" in r.stderr, r.stderr
    assert _store_files(home) == before
    assert wl(home, "tag", "seed", "seed:v2").returncode == 0
    assert wl(home, "rmi", "seed:v2").returncode == 0, "another name of an image in use can go"
    r = wl(home, "rmi", "-f", "seed")
    assert r.returncode == 0 and "Deleted:" in r.stdout, r.stderr
    assert json.loads(wl(home, "ps", "-a", "--json").stdout) == []
    r = wl(home, "image", "prune", "-a")
    assert r.returncode == 0 and r.stdout.startswith("Removed "), r.stderr
    assert json.loads(wl(home, "images", "--json").stdout) == []


def test_a_wasi_platform_image_runs_as_wasm_and_env_passes_through(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy2(ASSETS / "wasm" / "argsenv.wasm", ctx / "argsenv.wasm")
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY argsenv.wasm /\nCMD ["/argsenv.wasm"]\n')
    assert wl(home, "build", "--platform", "wasi/wasm", "-t", "plain", str(ctx)).returncode == 0
    images = json.loads(wl(home, "images", "--json").stdout)
    assert images[0]["variant"] == "compat" and images[0]["os"] == "wasip1"
    env = dict(os.environ, WASMLAB_HOME=str(home), FROM_HOST="yes")
    env.pop("NOT_SET_ANYWHERE", None)
    r = subprocess.run([WASMLAB, "run", "--rm", "-e", "FROM_HOST", "-e", "NOT_SET_ANYWHERE", "plain"], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "env=FROM_HOST=yes" in r.stdout.splitlines() and "NOT_SET_ANYWHERE" not in r.stdout


# Runs forever (loop) or is the sidecar (busybox): checked elsewhere.
SAMPLE_SKIP = {"loop"}


def test_every_sample_image_builds_and_linux_and_wasm_agree(tmp_path: Path) -> None:
    """`wasmlab samples` builds each program as compat, compat-smart and Linux images: all three must print
    the same and exit alike (trap: Wasm 134, native SIGILL), and the busybox sidecar must run."""
    busybox()  # Debian's busybox-static is needed for the sidecar
    home = tmp_path / "home"
    r = wl(home, "samples", "--json")
    assert r.returncode == 0, r.stderr
    built = json.loads(r.stdout)
    programs = {b["program"] for b in built}
    assert {"hello", "argsenv", "sys", "files", "cpu", "memgrow", "cwd", "exitcode", "trap", "busybox"} <= programs
    for program in sorted(programs - SAMPLE_SKIP - {"busybox"}):
        runs = {variant: wl(home, "run", "--rm", f"wasmlab/{program}:{variant}")
                for variant in ("compat", "compat-smart", "linux")}
        codes = {v: res.returncode for v, res in runs.items()}
        if program == "trap":
            assert codes == {"compat": 134, "compat-smart": 134, "linux": 132}, codes
        else:
            assert len(set(codes.values())) == 1, (program, codes, {v: r.stderr for v, r in runs.items()})
        # argv[0] is the file's path, which differs by name (/argsenv.wasm, /argsenv): everything else may not.
        outs = {"\n".join(ln for ln in res.stdout.splitlines() if not ln.startswith("argv[0]="))
                for res in runs.values()}
        assert len(outs) == 1 and all(res.stdout for res in runs.values()), \
            (program, {v: r.stdout for v, r in runs.items()})
    r = wl(home, "run", "--rm", "wasmlab/busybox", "echo", "hi from the sidecar")
    assert r.returncode == 0 and r.stdout == "hi from the sidecar\n", r.stderr


def _busybox_image(home: Path, tmp_path: Path) -> None:
    r = wl(home, "samples", "--json")
    assert r.returncode == 0, r.stderr


def test_add_of_an_archive_never_writes_outside_the_image(tmp_path: Path) -> None:
    """A tar whose symlink points at a host path, then a file through it: after a RUN (the build works on a
    real rootfs then), the file must land inside the image, never on the host."""
    import io
    import tarfile

    busybox()
    home = tmp_path / "home"
    _busybox_image(home, tmp_path)
    outside = tmp_path / "host-target"
    outside.mkdir()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with tarfile.open(ctx / "evil.tar", "w") as tar:
        link = tarfile.TarInfo("a")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        data = b"pwned\n"
        member = tarfile.TarInfo("a/pwned.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    (ctx / "Containerfile").write_text("FROM wasmlab/busybox\nRUN true\nADD evil.tar /x/\n"
                                       f'CMD ["/bin/cat", "{outside}/pwned.txt"]\n')
    r = wl(home, "build", "-t", "evil", str(ctx))
    assert list(outside.iterdir()) == [], "the build wrote on the host"
    if r.returncode == 0:  # followed inside the image, as a chroot would
        ran = wl(home, "run", "--rm", "evil")
        assert ran.returncode == 0 and ran.stdout == "pwned\n", ran.stderr
    else:
        assert "outside the image" in r.stderr, r.stderr


def test_run_runs_as_user_and_a_directory_may_become_a_file(tmp_path: Path) -> None:
    busybox()
    home = tmp_path / "home"
    _busybox_image(home, tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        "FROM wasmlab/busybox\nRUN mkdir -p /d && echo in > /d/f\n"
        "RUN rm -rf /d && echo file > /d && mkdir -m 1777 /tmp\n"
        "USER 1234:1234\nRUN id -u > /tmp/who\n"
        'CMD ["/bin/sh", "-c", "cat /d; cat /tmp/who"]\n')
    r = wl(home, "build", "-t", "retyped", str(ctx))
    assert r.returncode == 0, r.stderr
    ran = wl(home, "run", "--rm", "retyped")
    assert ran.returncode == 0 and ran.stdout == "file\n1234\n", (ran.stdout, ran.stderr)
    # and the layers are ones other tools accept too
    archive = tmp_path / "retyped.tar"
    assert wl(home, "save", "-o", str(archive), "retyped").returncode == 0
    other = tmp_path / "other"
    assert wl(other, "load", "-i", str(archive)).returncode == 0
    assert wl(other, "run", "--rm", "retyped").stdout == "file\n1234\n"


def _signal_taken(pid: int, signum: int, timeout: float = 10) -> None:
    """Return once PID has taken SIGNUM: no longer pending, and its main thread asleep again after the handler.

    Signals of one number do not queue, so a second one sent before the first is taken would merge with it.
    Taking a signal sends no event, so this looks (/proc/PID/status and stat) until a deadline.
    """
    bit = 1 << (signum - 1)
    deadline = time.monotonic() + timeout
    while True:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        if not pending & bit and stat[stat.rfind(b")") + 2:].split()[0] == b"S":
            return
        assert time.monotonic() < deadline, f"process {pid} never took signal {signum}"
        time.sleep(0.001)


def test_signals_to_a_foreground_run_reach_its_container_and_rm_still_happens(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "samples", "-q", "--no-busybox").returncode == 0
    env = dict(os.environ, WASMLAB_HOME=str(home))
    for image, args, signals, code in (("wasmlab/loop:compat", ["/loop.wasm", "0", "50"], ["TERM"], 143),
                                       ("wasmlab/loop:linux", ["/loop", "0", "50"], ["INT", "INT"], 137)):
        proc = subprocess.Popen([WASMLAB, "run", "--rm", "--name", "fg", image, *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("tick")
            for i, name in enumerate(signals):  # a Linux pid 1 ignores SIGINT: the second one kills it
                signum = getattr(__import__("signal"), f"SIG{name}")
                proc.send_signal(signum)
                _signal_taken(proc.pid, signum)
                if i == 0 and len(signals) > 1:
                    # The first one is followed up, with --rm too (a look at the running container used to wait
                    # for its end, so the notice and the SIGKILL never came): the notice is the handshake.
                    assert proc.stderr is not None and "SIGKILL follows" in proc.stderr.readline()
            proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == code, (image, proc.returncode)
        assert json.loads(wl(home, "ps", "-a", "--json").stdout) == [], image


def test_container_verbs_refuse_bad_input_and_detached_rm_cleans_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "samples", "-q", "--no-busybox").returncode == 0
    assert wl(home, "run", "-d", "--rm", "--name", "brief", "wasmlab/exitcode:linux").returncode == 0
    assert wl(home, "run", "-d", "--name", "stays", "wasmlab/loop:compat").returncode == 0
    try:
        for argv, words in ((["rm", ""], "no container name"), (["inspect", ""], "name given"),
                            (["run", "--rm", "-e", "=x", "wasmlab/hello:compat"], "invalid environment entry"),
                            (["exec", "-e", "=x", "stays", "/x"], "invalid environment entry"),
                            (["run", "--rm", "--annotation", "=x", "wasmlab/hello:compat"], "KEY=VALUE"),
                            (["run", "-dit", "--rm", "wasmlab/hello:compat"], "no terminal")):
            r = wl(home, *argv)
            lines = r.stderr.strip().splitlines()
            assert r.returncode != 0 and len(lines) == 1 and words in lines[0], (argv, r.stderr)
        deadline = time.monotonic() + 10
        # --rm: gone once it has exited. Nothing announces that removal to a face: look, until a deadline.
        while "brief" in wl(home, "ps", "-a").stdout:
            assert time.monotonic() < deadline, "run -d --rm left its container"
            time.sleep(0.1)
        assert "stays" in wl(home, "ps").stdout
    finally:
        wl(home, "rm", "-f", "stays")


def test_one_name_one_container_even_when_runs_race(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "samples", "-q", "--no-busybox").returncode == 0
    env = dict(os.environ, WASMLAB_HOME=str(home))
    procs = [subprocess.Popen([WASMLAB, "run", "-d", "--name", "same", "wasmlab/loop:compat"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for _ in range(6)]
    try:
        results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
        assert sum(code == 0 for code, _ in results) == 1, results
        assert all("is in use" in err for code, err in results if code != 0), results
        assert [c["name"] for c in json.loads(wl(home, "ps", "-a", "--json").stdout)] == ["same"]
        r = wl(home, "run", "--name", "a b", "wasmlab/hello:compat")
        assert r.returncode != 0 and "invalid container name" in r.stderr
        r = wl(home, "rm", "nope", "same")  # podman tries every one, then reports the failure
        assert r.returncode != 0 and "nope" in r.stderr
    finally:
        wl(home, "rm", "-f", "same")
    assert json.loads(wl(home, "ps", "-a", "--json").stdout) == []


def test_rm_force_of_running_containers_leaves_no_state_behind(tmp_path: Path) -> None:
    """The zygote reaps a killed container while `rm -f` removes its state folder: no refilled folder stays."""
    from wasmlab.runtime.store.home import runtime_root

    home = tmp_path / "home"
    assert wl(home, "samples", "-q", "--no-busybox").returncode == 0
    for _ in range(4):
        cid = wl(home, "run", "-d", "wasmlab/loop:linux", "/loop", "0", "1000").stdout.strip()
        assert wl(home, "rm", "-f", cid).returncode == 0
    assert wl(home, "ps", "-a", "-q").stdout == ""
    root = runtime_root(home)
    # The detached containers' zygote outlives the CLI: once it has nothing left, it exits (its pidfd says so).
    for line in subprocess.run(["pgrep", "-f", f"--root {root}"], capture_output=True, text=True).stdout.split():
        wait_gone(int(line))
    left = sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) if root.exists() else []
    assert left == []


def test_kill_sends_podmans_default_and_a_named_signal_and_wait_says_the_exit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "samples", "-q", "--no-busybox").returncode == 0
    for argv, code in ((["kill"], "137"), (["kill", "-s", "TERM"], "143"), (["kill", "-s", "SIGINT"], "130")):
        cid = wl(home, "run", "-d", "wasmlab/loop:compat", "/loop.wasm", "0", "1000").stdout.strip()
        assert wl(home, *argv, cid).returncode == 0
        assert wl(home, "wait", cid).stdout.strip() == code, argv
        assert wl(home, "rm", cid).returncode == 0
    for argv in (["kill", "-s", "NOPE", "nosuch"], ["kill", "nosuch"], ["wait", "nosuch"]):
        r = wl(home, *argv)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_image_prune_all_removes_named_images_no_container_uses_as_podman_does(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "seed", ".",
              cwd=SEED).returncode == 0
    assert wl(home, "tag", "seed", "other").returncode == 0
    assert wl(home, "build", "--platform", "wasi/wasm", "-t", "spare", ".", cwd=SEED).returncode == 0
    assert wl(home, "run", "--name", "user", "seed").returncode == 0  # stopped, not removed: still a user
    r = wl(home, "image", "prune")
    assert r.returncode == 0, r.stderr
    names = sorted(n for i in json.loads(wl(home, "images", "--json").stdout) for n in i["names"])
    assert names == ["localhost/other:latest", "localhost/seed:latest", "localhost/spare:latest"], \
        "a plain prune keeps named images"
    r = wl(home, "image", "prune", "-a")
    assert r.returncode == 0 and r.stdout.startswith("Removed 1 image"), (r.stdout, r.stderr)
    # Its manifest and config went with it (its module layer is seed's too, and stays): counted, not "0 blobs".
    assert r.stdout.startswith("Removed 1 image and 2 blobs, "), r.stdout
    names = sorted(n for i in json.loads(wl(home, "images", "--json").stdout) for n in i["names"])
    assert names == ["localhost/other:latest", "localhost/seed:latest"], "the image in use stays, with its names"
    assert wl(home, "rm", "user").returncode == 0
    assert wl(home, "image", "prune", "-a").returncode == 0
    assert json.loads(wl(home, "images", "--json").stdout) == [], "with its last user gone, it goes too"


def test_image_prune_takes_podmans_force_flag_and_history_refuses_an_unknown_handler(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = wl(home, "image", "prune", "-a", "-f")
    assert r.returncode == 0 and r.stdout.startswith("Removed "), r.stderr
    r = wl(home, "history", "--handler", "foo")
    assert r.returncode != 0 and "invalid choice: 'foo'" in r.stderr.strip().splitlines()[-1], r.stderr
    assert "Traceback" not in r.stderr
    for last in ("-5", "0"):  # -5 had listed every run (SQLite's LIMIT -5 is no limit)
        r = wl(home, "history", "-n", last)
        assert r.returncode != 0 and r.stdout == "" and "Traceback" not in r.stderr, r
        assert f"must be 1 or more, not {last}" in r.stderr and "history -n 5" in r.stderr, r.stderr


def test_inspect_finds_containers_images_and_pods_and_names_all_three_when_there_is_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wl(home, "build", "--annotation", "module.wasm.image/variant=compat", "-t", "seed", ".",
              cwd=SEED).returncode == 0
    assert wl(home, "run", "--name", "done", "seed").returncode == 0
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web, annotations: "
                   "{module.wasm.image/variant: compat}}\nspec:\n  restartPolicy: Never\n"
                   "  containers: [{name: app, image: localhost/seed:latest}]\n")
    assert wl(home, "kube", "play", str(pod)).returncode == 0
    try:
        r = wl(home, "inspect", "done", "seed", "web")
        assert r.returncode == 0, r.stderr
        container, image, played = json.loads(r.stdout)
        assert container["name"] == "done" and "localhost/seed:latest" in image["image"]["names"]
        assert played["name"] == "web" and played["namespace"] == "default"
        r = wl(home, "inspect", "nosuch")
        assert r.returncode == 125 and r.stdout == ""  # podman's status for its own error
        assert r.stderr.strip().splitlines()[-1] == (
            "Error: no container, image or pod named 'nosuch' (hint: `wasmlab ps -a`, `wasmlab images` and "
            "`wasmlab pod ps` list them)"), r.stderr
    finally:
        wl(home, "kube", "down", str(pod))
        wl(home, "rm", "done")


def test_the_tui_without_a_terminal_says_so_and_exits(tmp_path: Path) -> None:
    """`make lab` piped into `tail` ran the TUI with no terminal: it spun at 100% CPU for ever."""
    r = wl(tmp_path / "home", timeout=30)  # stdin /dev/null, stdout a pipe
    assert r.returncode == 125 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1].startswith(
        "Error: the terminal UI needs a terminal, and stdin or stdout is not one (hint: run `wasmlab` in a terminal"), \
        r.stderr
