"""podman run's flags through the Lab and `wasmlab run`, each checked by its effect, on Linux and Wasm."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from wasmlab.runtime import Lab, RunOptions
from wasmlab.runtime.errors import WasmlabError

from tests.conftest import ROOT, live_module, need_root

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
ASSETS = ROOT / "assets" / "built"
ENGINES = ("native", "wasmtime", "wasmer")

# The guest side of the live-volume test: writes DIR/guest.txt, then waits (5 ms at a time, up to ~20 s) for
# DIR/host.txt and prints it. It finds DIR as a preopen of its own (wasmtime) or under the last "/" preopen
# (wasmer-sdk shows mounts inside its root). Exit 3 when the create is refused, 2 when host.txt never came.
LIVE_SH = ("echo 'from guest' > /data/guest.txt || { echo 'create refused'; exit 3; }; "
           "while [ ! -e /data/host.txt ]; do sleep 0.005; done; cat /data/host.txt")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lab home with the samples, a live-volume guest, a Wasm image without annotations and a user image."""
    need_root()
    home = tmp_path_factory.mktemp("flags") / "home"
    ctx = home.parent / "ctx"
    ctx.mkdir()
    (ctx / "live.wasm").write_bytes(live_module("/data"))
    shutil.copy2(ASSETS / "wasm" / "hello.wasm", ctx / "hello.wasm")
    (ctx / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/home/app:/bin/sh\n")
    (ctx / "Containerfile.live").write_text('FROM scratch\nCOPY live.wasm /\nCMD ["/live.wasm"]\n')
    (ctx / "Containerfile.plain").write_text('FROM scratch\nCOPY hello.wasm /\nCMD ["/hello.wasm"]\n')
    (ctx / "Containerfile.user").write_text("FROM wasmlab/busybox\nCOPY passwd /etc/passwd\n")
    with Lab(home) as lab:
        lab.samples()
        lab.build(ctx, ctx / "Containerfile.live", tag="live",
                  annotations={"module.wasm.image/variant": "compat"})
        lab.build(ctx, ctx / "Containerfile.plain", tag="plainwasm")
        lab.build(ctx, ctx / "Containerfile.user", tag="withuser")
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture
def lab(home: Path) -> Iterator[Lab]:
    with Lab(home) as lab:
        yield lab
        for row in lab.ps(all=True):
            lab.rm(row.id, force=True)


def run(lab: Lab, image: str, command: list[str] | None = None, engine: str | None = None,
        **options: object) -> tuple[int | None, str]:
    """A foreground run; its exit code and its output (stdout and stderr, from the container's log)."""
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        res = lab.run(image, command, engine=engine, options=RunOptions(**options),  # type: ignore[arg-type]
                      stdio=(null, w, w))
    finally:
        os.close(w)
        os.close(null)
    with os.fdopen(r, "rb") as fh:
        out = fh.read().decode()
    lab.rm(res.id, force=True)
    return res.exit_code, out


def image_for(engine: str, program: str) -> tuple[str, str | None]:
    return (f"wasmlab/{program}:linux", None) if engine == "native" else (f"wasmlab/{program}:compat", engine)


def wl(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, *args], env=dict(os.environ, WASMLAB_HOME=str(home)), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=cwd)


def wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    """A handshake on something the container makes (a file appearing), polled with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# -- -v and --mount ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_volume_is_live_both_ways_while_the_container_runs(lab: Lab, tmp_path: Path, engine: str) -> None:
    """The guest's write shows on the host while it runs, and the host's new file is seen by the running guest."""
    vol = tmp_path / "vol"
    vol.mkdir()
    if engine == "native":
        res = lab.run("wasmlab/busybox", ["sh", "-c", LIVE_SH], detach=True,
                      options=RunOptions(volumes=[f"{vol}:/data"]))
    else:
        res = lab.run("live", engine=engine, detach=True, options=RunOptions(volumes=[f"{vol}:/data"]))
    guest = vol / "guest.txt"
    wait_for(lambda: guest.exists() and guest.read_text() == "from guest\n", "the guest's file on the host")
    assert lab.inspect(res.id).status.alive   # seen while it runs, not written back on exit
    (vol / "host.tmp").write_text("from host\n")
    (vol / "host.tmp").rename(vol / "host.txt")
    out = b"".join(lab.follow(res.id)).decode()
    assert lab.inspect(res.id).exit_code == 0, out
    assert out.endswith("from host\n")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_host_file_is_visible_in_a_volume(lab: Lab, tmp_path: Path, engine: str) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in.txt").write_text("from the host\n")
    image, eng = image_for(engine, "cwd")
    prog = "/cwd" if engine == "native" else "/cwd.wasm"
    code, out = run(lab, image, [prog, "/data/in.txt"], eng, volumes=[f"{vol}:/data"])
    assert code == 0, out
    assert "/data/in.txt: from the host" in out


@pytest.mark.parametrize("engine", ENGINES)
def test_a_read_only_volume_keeps_the_host_folder_unchanged(lab: Lab, tmp_path: Path, engine: str) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in.txt").write_text("keep\n")
    image, eng = image_for(engine, "files")
    prog = "/files" if engine == "native" else "/files.wasm"
    code, out = run(lab, image, [prog, "/data"], eng, volumes=[f"{vol}:/data:ro"])
    assert sorted(os.listdir(vol)) == ["in.txt"] and (vol / "in.txt").read_text() == "keep\n"
    if engine == "wasmer":
        # wasmer-sdk opens every mapped file read-write, so a read-only folder cannot be mapped live: it is
        # copied in, and the guest's writes there are discarded, not refused (docs/handlers.md).
        assert code == 0, out
    else:
        assert code == 1 and "FAILED: mkdir" in out


@pytest.mark.parametrize("engine", ENGINES)
def test_a_tmpfs_mount_is_writable_scratch(lab: Lab, engine: str) -> None:
    image, eng = image_for(engine, "files")
    prog = "/files" if engine == "native" else "/files.wasm"
    code, out = run(lab, image, [prog, "/scratch"], eng, read_only=True,
                    mounts=["type=tmpfs,destination=/scratch,tmpfs-size=1m"])
    assert code == 0, out
    assert "cleaned up: ok" in out


def test_a_bind_mount_in_podman_syntax_and_its_size_on_linux(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("via --mount\n")
    code, out = run(lab, "wasmlab/busybox", ["sh", "-c", "cat /m/f.txt; grep ' /scratch ' /proc/mounts"],
                    mounts=[f"type=bind,src={tmp_path},dst=/m,readonly", "type=tmpfs,target=/scratch,tmpfs-size=1m"])
    assert code == 0, out
    assert out.startswith("via --mount\n") and "tmpfs /scratch tmpfs" in out and "size=1024k" in out


# -- -m and --cpus ---------------------------------------------------------------------------------------------

MEMGROW_EXIT = {"native": 137, "wasmtime": 1, "wasmer": 137}


@pytest.mark.parametrize("engine", ENGINES)
def test_hello_runs_under_32m_and_memgrow_64_does_not(lab: Lab, engine: str) -> None:
    image, eng = image_for(engine, "hello")
    code, out = run(lab, image, None, eng, memory="32m")
    assert (code, out) == (0, "hello world from wasmlab !!!!\n")
    image, eng = image_for(engine, "memgrow")
    code, out = run(lab, image, None, eng, memory="32m")
    assert code == MEMGROW_EXIT[engine], out
    assert "reached 64 MiB" not in out
    if engine == "wasmtime":
        assert "malloc failed after" in out


def test_cpus_sets_the_cgroup_quota(lab: Lab) -> None:
    res = lab.run("wasmlab/busybox", ["sleep", "100"], detach=True, options=RunOptions(cpus=0.5))
    from wasmlab.runtime.linux import cgroups

    quota = Path(cgroups.open_existing(cgroups.normalize_path("", res.id)).dirs["cpu"]) / "cpu.cfs_quota_us"
    assert quota.read_text().strip() == "50000"
    lab.rm(res.id, force=True)


# -- identity, files and names -----------------------------------------------------------------------------------


def test_workdir_env_file_user_and_hostname_on_linux(lab: Lab, tmp_path: Path) -> None:
    envf = tmp_path / "env"
    envf.write_text("# a comment\nA=1\n\nB=from file\n")
    code, out = run(lab, "wasmlab/busybox", ["sh", "-c", 'pwd; echo "$A $B"; id -u; id -g; hostname'],
                    workdir="/srv/app", env_files=[str(envf)], user="1000:1001", hostname="web1")
    assert code == 0, out
    assert out.split("\n") == ["/srv/app", "1 from file", "1000", "1001", "web1", ""]


def test_dash_e_overrides_the_env_file(lab: Lab, tmp_path: Path) -> None:
    envf = tmp_path / "env"
    envf.write_text("B=from file\n")
    r, w = os.pipe()
    res = lab.run("wasmlab/busybox", ["sh", "-c", "echo $B"], env=["B=from -e"],
                  options=RunOptions(env_files=[str(envf)]), stdio=(0, w, w))
    os.close(w)
    assert os.read(r, 100) == b"from -e\n" and res.exit_code == 0
    os.close(r)


def test_a_user_name_comes_from_the_images_passwd(lab: Lab) -> None:
    code, out = run(lab, "withuser", ["sh", "-c", "id -u; id -g"], user="app")
    assert (code, out) == (0, "1234\n2345\n")


@pytest.mark.parametrize("engine", ["wasmtime", "wasmer"])
def test_workdir_and_env_file_reach_a_wasm_guest(lab: Lab, tmp_path: Path, engine: str) -> None:
    envf = tmp_path / "env"
    envf.write_text("FROM_FILE=yes\n")
    code, out = run(lab, "wasmlab/argsenv:compat", None, engine, env_files=[str(envf)])
    assert code == 0 and "env=FROM_FILE=yes" in out
    code, out = run(lab, "wasmlab/cwd:compat", ["/cwd.wasm", "/work/missing.txt"], engine, workdir="/work")
    assert "cannot open" in out   # the folder was made in the rootfs, the file is not there


def test_read_only_refuses_a_write_and_leaves_tmp_writable(lab: Lab) -> None:
    code, out = run(lab, "wasmlab/busybox", ["sh", "-c", "touch /x; echo rc=$?; touch /tmp/y && echo tmp ok"],
                    read_only=True)
    assert code == 0
    assert "Read-only file system" in out and "rc=1" in out and "tmp ok" in out


@pytest.mark.parametrize("engine", ["wasmtime", "wasmer"])
def test_read_only_refuses_a_wasm_guests_write_to_the_root(lab: Lab, engine: str) -> None:
    code, out = run(lab, "wasmlab/files:compat", ["/files.wasm", "/"], engine, read_only=True)
    assert "cleaned up: ok" not in out or engine == "wasmer"
    if engine == "wasmtime":
        assert code == 1 and "FAILED" in out


def test_network_none_shows_only_lo_and_host_shows_the_hosts(lab: Lab) -> None:
    code, out = run(lab, "wasmlab/busybox", ["ls", "/sys/class/net"], network="none")
    assert (code, out.split()) == (0, ["lo"])
    code, out = run(lab, "wasmlab/busybox", ["ls", "/sys/class/net"], network="host")
    assert code == 0 and sorted(out.split()) == sorted(os.listdir("/sys/class/net"))


# -- --platform and --pull ---------------------------------------------------------------------------------------


def test_platform_wasi_wasm_runs_an_unannotated_module_as_wasm(lab: Lab) -> None:
    with pytest.raises(WasmlabError):
        run(lab, "plainwasm")          # without it, the module is no Linux program
    code, out = run(lab, "plainwasm", platform="wasi/wasm")
    assert (code, out) == (0, "hello world from wasmlab !!!!\n")


def test_platform_that_the_image_is_not_is_refused_in_one_line(home: Path) -> None:
    r = wl(home, "run", "--rm", "--platform", "linux/arm64", "wasmlab/hello:linux")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "is linux/amd64, not linux/arm64" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_pull_missing_and_never_against_a_named_registry(home: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "unit"))   # its helpers import images_support as a top module
    from tests.unit.test_images_registry import FakeRegistry, make_handler

    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))
    reg = FakeRegistry(auth=None)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(reg))
    reg.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        ref = f"127.0.0.1:{reg.port}/lab/hello:v1"
        with Lab(home) as lab:
            lab.push("wasmlab/hello:compat", ref, tls_verify=False)
        fresh = tmp_path / "fresh"
        r = wl(fresh, "run", "--rm", "--pull", "never", ref)
        assert r.returncode != 0 and "--pull missing" in r.stderr and "Traceback" not in r.stderr
        r = wl(fresh, "run", "--rm", "--pull", "missing", "--tls-verify=false", ref)
        assert (r.returncode, r.stdout) == (0, "hello world from wasmlab !!!!\n"), r.stderr
        fetched = len(reg.log)
        r = wl(fresh, "run", "--rm", "--pull", "missing", ref)      # present: no request this time
        assert r.returncode == 0 and len(reg.log) == fetched
        r = wl(fresh, "run", "--rm", "--pull", "always", "--tls-verify=false", ref)
        assert r.returncode == 0 and len(reg.log) > fetched
    finally:
        server.shutdown()
        server.server_close()


# -- --init --------------------------------------------------------------------------------------------------------


def test_init_makes_a_shell_as_pid_1_stop_on_sigterm(lab: Lab) -> None:
    res = lab.run("wasmlab/busybox", ["sh", "-c", "echo ready; while true; do sleep 1; done"], detach=True,
                  options=RunOptions(init=True))
    wait_for(lambda: b"ready" in b"".join(lab.logs(res.id)[0]), "the shell to start")
    info = lab.stop(res.id, timeout=60)       # a SIGKILL would show as 137
    assert info.exit_code == 143


def test_init_on_a_wasm_container_is_refused_in_one_line(home: Path) -> None:
    r = wl(home, "run", "--rm", "--init", "wasmlab/hello:compat")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "a Wasm container needs no init" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert wl(home, "ps", "-a", "-q").stdout == ""


# -- the command line, and bad input -----------------------------------------------------------------------------


def test_the_cli_passes_the_flags(home: Path, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("cli\n")
    r = wl(home, "run", "--rm", "-v", f"{tmp_path}:/data:ro", "-w", "/data", "--hostname", "h1", "-m", "32m",
           "--network", "none", "-u", "0:0", "wasmlab/busybox", "sh", "-c", "cat in.txt; hostname; pwd")
    assert (r.returncode, r.stdout) == (0, "cli\nh1\n/data\n"), r.stderr


def test_a_volume_relative_to_the_callers_folder_is_a_bind_mount_as_in_podman(home: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("relative\n")
    for source in ("./data", "data/../data"):
        r = wl(home, "run", "--rm", "-v", f"{source}:/d:ro", "wasmlab/busybox", "cat", "/d/in.txt", cwd=tmp_path)
        if source.startswith("."):
            assert (r.returncode, r.stdout) == (0, "relative\n"), r.stderr
        else:  # not ./ nor /: podman reads a named volume there
            assert r.returncode == 125 and "named volumes are not supported" in r.stderr, r.stderr
    r = wl(home, "run", "--rm", "-v", ".:/d:ro", "wasmlab/busybox", "cat", "/d/data/in.txt", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "relative\n"), r.stderr


@pytest.mark.parametrize("args, says", [
    (["-m", "1x"], "invalid memory limit"),
    (["-m", "1m"], "below the 6 MiB minimum"),
    (["-v", "relative:/data"], "named volumes are not supported"),
    (["-v", "/nonexistent-wasmlab:/data"], "does not exist"),
    (["-v", "/tmp:data"], "not an absolute path in the container"),
    (["--mount", "type=volume,dst=/x"], "is not supported"),
    (["--env-file", "/nonexistent-wasmlab"], "cannot read the env file"),
    (["--hostname", "bad_name!"], "invalid hostname"),
    (["--platform", "linux"], "invalid platform"),
    (["-u", "nosuchuser"], "not in the image's /etc/passwd"),
    (["--cpus", "1000"], "out of range"),
])
def test_bad_flag_values_are_one_line_and_leave_nothing(home: Path, args: list[str], says: str) -> None:
    before = sorted(os.listdir(home / "containers")) if (home / "containers").is_dir() else []
    r = wl(home, "run", "--rm", *args, "wasmlab/busybox", "true")
    assert r.returncode != 0 and says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    after = sorted(os.listdir(home / "containers")) if (home / "containers").is_dir() else []
    assert after == before


@pytest.mark.parametrize("options, says", [
    (RunOptions(memory="32m"), "-m/--memory does not work rootless"),
    (RunOptions(cpus=0.5), "--cpus does not work rootless"),
    (RunOptions(user="1000"), "-u/--user does not work rootless"),
])
def test_rootless_refuses_what_it_cannot_do_in_one_line(options: RunOptions, says: str) -> None:
    from wasmlab.runtime.doctor import rootless_flags
    from wasmlab.runtime.errors import UsageError
    from wasmlab.runtime.images.runflags import parse

    with pytest.raises(UsageError, match=says) as exc:
        parse(options, rootless=True)
    assert "\n" not in exc.value.one_line()
    parse(RunOptions(user="0", network="host", read_only=True, hostname="h"), rootless=True)  # these work
    listed = rootless_flags()
    assert any(line.startswith("memory: refused") for line in listed) and "hostname: works" in listed


def test_a_terminal_asked_for_without_one_here_is_warned_about_as_podman_does(home: Path) -> None:
    r = wl(home, "run", "-it", "--rm", "wasmlab/busybox", "echo", "hi")  # stdin is /dev/null
    assert r.returncode == 0 and r.stdout.replace("\r", "") == "hi\n", r.stderr
    assert r.stderr.startswith("Warning: the input device is not a terminal"), r.stderr
