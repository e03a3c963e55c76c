"""Crash safety of the lab (issue 11): a `--rm` container whose client is SIGKILLed goes all the same, a
container whose creator died before it existed is swept, and `system df` counts what is on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, need_root, read_until, wait_file_grows, wait_gone
from tests.integration.test_warm_cli import env_of, start, stop, wait_until

pytestmark = pytest.mark.root
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
BUSYBOX = "wasmlab/busybox"


def wl(home: Path, *args: str, warm: bool = False) -> subprocess.CompletedProcess[str]:
    env = env_of(home, **({"WASMLAB_WARM": "1"} if warm else {}))
    return subprocess.run([WASMLAB, *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    h = tmp_path_factory.mktemp("crash") / "home"
    assert wl(h, "samples", "-q").returncode == 0
    yield h
    wl(h, "system", "stop")
    wl(h, "rm", "-a", "-f")


def _ppid(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2:].split()[1])


def _left(home: Path) -> list[str]:
    """What is left of containers in the lab home: their folders and their names' links."""
    names = home / ".container-names"
    return sorted(os.listdir(home / "containers")) + (sorted(os.listdir(names)) if names.is_dir() else [])


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_killed_run_rm_client_leaves_no_container(home: Path, warm: bool) -> None:
    """podman's conmon removes a --rm container when it exits, whatever became of its client: so does the
    zygote that reaps it (its client was SIGKILLed mid-run, so no cleanup of the client's ran)."""
    name = f"killed-{'warm' if warm else 'cold'}"
    if warm:
        start(home)
    try:
        proc = subprocess.Popen([WASMLAB, "run", "--rm", "--name", name, BUSYBOX, "sh", "-c",
                                 "echo up; read line; echo bye"], env=env_of(home, WASMLAB_WARM="1" if warm else "0"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        read_until(proc.stdout.fileno(), b"up\n", timeout=60)  # handshake: the container runs
        (row,) = [c for c in json.loads(wl(home, "ps", "--json").stdout) if c["name"] == name]
        zygote = _ppid(int(row["pid"]))
        proc.kill()
        proc.wait()
        proc.stdin.close()  # the container's `read` ends: it exits now, after its client
        proc.stdout.close()
        wait_gone(zygote, timeout=60)  # its reaper has done all it will do
        if warm:  # the helper's copy that ran the command is gone too
            wait_until("the command ended", lambda: wl(home, "system", "status", "--json").stdout.count(
                '"running": 0') == 1)
        assert _left(home) == []
        assert json.loads(wl(home, "ps", "-a", "--json").stdout) == []
    finally:
        if warm:
            stop(home)


def test_a_run_rm_client_killed_between_the_exit_and_its_removal_leaves_no_container(home: Path) -> None:
    """The other window: the zygote has reaped the container and answered, and the client dies before it
    removed its folder (the removal it leaves for after the answer is held back here, and the client then
    kills itself, so the window is hit every time). The zygote removes it once it sees its client gone."""
    script = ("import os, signal, sys; from wasmlab.runtime import Lab\n"
              "lab = Lab(sys.argv[1]); lab._discard_later = lambda cid, name: None\n"
              "null = os.open(os.devnull, os.O_RDWR)\n"
              "res = lab.run('wasmlab/busybox', ['true'], name='window', rm=True, stdio=(null, null, null))\n"
              "assert os.path.isdir(lab._dir(res.id)), 'already removed: the window was missed'\n"
              "print(lab._runtime.zygote().proc.pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([PYTHON, "-c", script, str(home)], env=env_of(home), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wait_gone(int(proc.stdout.split()[0]), timeout=60)
    assert _left(home) == []


def test_the_zygote_never_removes_a_folder_for_a_kept_container(home: Path) -> None:
    """Without --rm, a container whose client was killed stays, stopped, as with podman."""
    script = ("import os, signal, sys; from wasmlab.runtime import Lab\n"
              "lab = Lab(sys.argv[1]); null = os.open(os.devnull, os.O_RDWR)\n"
              "lab.run('wasmlab/busybox', ['true'], name='kept', stdio=(null, null, null))\n"
              "print(lab._runtime.zygote().proc.pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([PYTHON, "-c", script, str(home)], env=env_of(home), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wait_gone(int(proc.stdout.split()[0]), timeout=60)
    try:
        rows = json.loads(wl(home, "ps", "-a", "--json").stdout)
        assert [(r["name"], r["status"]) for r in rows] == [("kept", "stopped")]
    finally:
        assert wl(home, "rm", "kept").returncode == 0
    assert _left(home) == []


def _unpacking(home: Path, proc: subprocess.Popen[bytes]) -> None:
    """Handshake: the big layer is being written into a snapshot's work folder (a file that appears and grows)."""
    wait_file_grows(proc, home / "snapshots", ".work-*/fs/big.bin", "the unpack", timeout=60)


@pytest.mark.parametrize("named", [True, False], ids=["named", "unnamed"])
def test_a_container_whose_creator_died_mid_unpack_is_swept_and_never_blocks_rmi(lab_home: Path,
                                                                                 named: bool) -> None:
    """`run --rm --name k1 big` SIGKILLed while the image's 96 MB layer is first unpacked: while its creator
    lives it is "creating" (no root claimed yet); once it is dead, the next look (ps, rmi, run) removes it."""
    need_root()
    from wasmlab.runtime.images.service import Images

    from tests.integration.test_snapshots import _base_layer
    from tests.unit.images_support import store_image, tar_bytes

    store_image(Images(lab_home).store, "big", [_base_layer(), tar_bytes([("file", "big.bin", os.urandom(96 << 20))])])
    argv = [WASMLAB, "run", "--rm", *(["--name", "k1"] if named else []), "big", "/bin/true"]
    proc = subprocess.Popen(argv, env=env_of(lab_home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _unpacking(lab_home, proc)
        proc.send_signal(signal.SIGSTOP)  # held mid-unpack: its creator lives
        (cid,) = os.listdir(lab_home / "containers")
        if named:
            rows = json.loads(wl(lab_home, "ps", "-a", "--json").stdout)
            assert [(r["name"], r["status"]) for r in rows] == [("k1", "creating")]
            details = json.loads(wl(lab_home, "inspect", "k1").stdout)
            details = details[0] if isinstance(details, list) else details
            assert details["rootfs"] == ""  # no root yet: never "copy" while the lab uses overlays
        else:
            assert json.loads(wl(lab_home, "ps", "-a", "--json").stdout) == []
        assert os.listdir(lab_home / "containers") == [cid]  # a live creator's folder is never swept
    finally:
        proc.kill()
        proc.wait()
    look = wl(lab_home, "rmi", "big") if named else wl(lab_home, "ps", "-a", "--json")
    assert look.returncode == 0, look.stderr
    assert os.listdir(lab_home / "containers") == [] and _left(lab_home) == []
    if named:
        assert "big" not in wl(lab_home, "images").stdout


def test_a_dead_creators_name_is_free_for_the_next_run(lab_home: Path) -> None:
    """The name of a record left "creating" by a dead creator (as an older wasmlab left it: no lock) is taken
    by the next `run --name`, which removes that record."""
    need_root()
    assert wl(lab_home, "samples", "-q", "--no-busybox").returncode == 0
    (lab_home / "containers" / "0123456789ab").mkdir(parents=True)
    (lab_home / "containers" / "0123456789ab" / "meta.json").write_text(json.dumps(
        {"id": "0123456789ab", "name": "k1", "image": "wasmlab/hello:compat", "command": [], "created": 1.0,
         "rm": True, "detach": False, "creating": True}))
    (lab_home / ".container-names").mkdir(exist_ok=True)
    (lab_home / ".container-names" / "k1").symlink_to("0123456789ab")
    r = wl(lab_home, "run", "--rm", "--name", "k1", "wasmlab/hello:compat")
    assert r.returncode == 0 and r.stdout.startswith("hello world"), r
    assert _left(lab_home) == []


def _du(*paths: Path) -> int:
    out = subprocess.run(["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[-1].split()[0])


def _kill_when(proc: subprocess.Popen[bytes], base: Path, pattern: str, what: str,
               before: Callable[[], int] = lambda: 0, more_than: int = 1 << 20) -> int:
    """SIGKILL PROC once a file matching PATTERN under BASE holds more than MORE_THAN bytes (by default a file that
    appears and grows: it is mid-way); returns what BEFORE(), called just before the kill, returned."""
    wait_file_grows(proc, base, pattern, what, more_than=more_than)
    noted = before()
    proc.kill()
    proc.wait()
    return noted


def _run_step_pid(home: Path) -> int:
    """The init pid of the RUN container a build under HOME runs now (the one its work folder records)."""
    (record,) = [c for f in (home / "images" / ".wasmlab" / "work").glob("build-*/containers.json")
                 for c in json.loads(f.read_text())]
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "wasmlab-oci"), "--root", record["root"], "state",
                          record["id"]], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout)["pid"])


def test_a_killed_builds_run_step_dies_with_it(lab_home: Path, tmp_path: Path) -> None:
    """SIGKILL a build while its RUN step runs: the step's container is killed too (it does not go on writing
    into the stage root, nor run for ever), as a build's steps live only as long as the build."""
    need_root()
    assert wl(lab_home, "samples", "-q").returncode == 0
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM {BUSYBOX}\nRUN /bin/busybox sh -c 'echo up > /up; exec sleep 1000'\n")
    build = subprocess.Popen([WASMLAB, "build", "-t", "localhost/never", str(ctx)], env=env_of(lab_home),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = lab_home / "images" / ".wasmlab" / "work"
    deadline = time.monotonic() + 120
    while not any(work.glob("build-*/*/up")):
        assert build.poll() is None and time.monotonic() < deadline, "the build never got to its RUN step"
        time.sleep(0.005)
    pid = _run_step_pid(lab_home)
    build.kill()
    build.wait()
    try:
        wait_gone(pid, timeout=30)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)  # on a failure, nothing is left running
        except ProcessLookupError:
            pass
    # The next prune sweeps what the killed build left: its folder and its stopped container.
    assert wl(lab_home, "image", "prune", "-f").returncode == 0
    assert list(work.iterdir()) == []


def test_system_df_counts_snapshots_and_what_killed_builds_and_loads_left(lab_home: Path, tmp_path: Path) -> None:
    """Every byte under the lab home is on one row (the rows add up to `du`): the snapshots have a row of their
    own, and a SIGKILLed build's stage root and load's staging are Leftovers, reclaimable, which `image prune`
    removes (they are not counted as image size)."""
    need_root()
    from wasmlab.runtime.images.service import Images

    from tests.integration.test_snapshots import _base_layer
    from tests.unit.images_support import store_image, tar_bytes

    store = Images(lab_home).store
    store_image(store, "localhost/big", [_base_layer(), tar_bytes([("file", "big.bin", os.urandom(48 << 20))])])
    store_image(store, "localhost/other", [tar_bytes([("file", "other.bin", os.urandom(32 << 20))])])
    assert wl(lab_home, "run", "--rm", "localhost/big", "/bin/sh", "-c", "exit 0").returncode == 0  # unpacked once
    assert wl(lab_home, "save", "-o", str(tmp_path / "other.tar"), "localhost/other").returncode == 0
    assert wl(lab_home, "rmi", "localhost/other").returncode == 0  # its blobs go: a load stages them again
    # A load killed while it stages its layer, and a build killed in its RUN step, which has written 64 MiB
    # into its stage root.
    load = subprocess.Popen([WASMLAB, "load", "-i", str(tmp_path / "other.tar")], env=env_of(lab_home),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(load, lab_home / "images" / ".wasmlab" / "staging", "txn-*/**/*", "the load")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM localhost/big\nRUN /bin/busybox sh -c "
                                   "'/bin/busybox dd if=/dev/zero of=/x bs=1M count=64 && echo done > /done && "
                                   "exec sleep 1000'\n")
    build = subprocess.Popen([WASMLAB, "build", "-t", "localhost/bigger", str(ctx)], env=env_of(lab_home),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = _kill_when(build, lab_home / "images" / ".wasmlab" / "work", "build-*/*/done", "the build",
                      before=lambda: _run_step_pid(lab_home), more_than=0)
    wait_gone(step, timeout=30)  # the RUN step dies with its build: nothing writes into its stage root after this

    rows = {r["kind"]: r for r in json.loads(wl(lab_home, "system", "df", "--json").stdout)}
    work = [*(lab_home / "images" / ".wasmlab" / "work").iterdir(),
            *(lab_home / "images" / ".wasmlab" / "staging").iterdir()]
    assert len(work) == 2
    left = rows["Leftovers"]
    assert (left["total"], left["active"]) == (2, 0) and left["reclaimable"] == left["size"] == _du(*work)
    assert left["size"] > 64 << 20
    assert rows["Snapshots"]["size"] == _du(lab_home / "snapshots") > 48 << 20
    # No container needs them: `image prune -a` would take them with their image.
    assert rows["Snapshots"]["total"] == 2 and rows["Snapshots"]["active"] == 0
    assert rows["Snapshots"]["reclaimable"] > 48 << 20
    assert rows["Images"]["size"] + left["size"] == _du(lab_home / "images")
    assert abs(sum(r["size"] for r in rows.values()) - _du(lab_home)) < 0.03 * _du(lab_home)

    r = wl(lab_home, "image", "prune")
    assert r.returncode == 0, r.stderr
    rows = {r["kind"]: r for r in json.loads(wl(lab_home, "system", "df", "--json").stdout)}
    assert rows["Leftovers"]["total"] == rows["Leftovers"]["size"] == 0
    assert not list((lab_home / "images" / ".wasmlab" / "work").iterdir())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
