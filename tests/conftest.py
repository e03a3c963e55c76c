"""Shared test fixtures: bundles, an isolated runtime root and lab home, leak checks, and CI's no-skip rule."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
OCI = str(ROOT / ".venv" / "bin" / "wasmlab-oci")
IN_CI = os.environ.get("CI") == "true"

# Every cgroup this test session makes lies under one parent of its own, named with a marker no other session
# shares (several suites run side by side on one machine): containers without a cgroupsPath and the lab's
# containers through $WASMLAB_CGROUP_PARENT (inherited by every wasmlab, wasmlab-oci and zygote the tests start),
# and the tests' own cgroupsPath values through CGROUP_PARENT. The leak checks look under it and nowhere else.
# pytest imports this file as `conftest` and the tests import it again as `tests.conftest`: both copies must
# agree, so the marker is kept in the environment and reused by the process that made it (a pytest started
# in a subprocess has another pid, and makes its own).
_inherited = os.environ.get("WASMLAB_CGROUP_PARENT", "")
_prefix = f"wasmlab/test-{os.getpid()}-"
CGROUP_MARKER = (_inherited if _inherited.startswith(_prefix) else _prefix + secrets.token_hex(3)).split("/", 1)[1]
CGROUP_PARENT = f"wasmlab/{CGROUP_MARKER}"
os.environ["WASMLAB_CGROUP_PARENT"] = CGROUP_PARENT
# `wasmlab run` leaves a warm helper behind by default (issue 16); the tests start one only where they say so.
os.environ["WASMLAB_WARM"] = "0"


def _cgroup_mounts() -> tuple[str, ...]:
    """Every cgroup hierarchy's mount point (v1 controllers, named ones such as systemd, and v2)."""
    with open("/proc/self/mountinfo") as fh:
        return tuple(sorted({line.split()[4] for line in fh if " - cgroup" in line}))


CGROUP_BASES = _cgroup_mounts()

HELLO_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello from wasm\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))))
"""


def need(condition: bool, reason: str) -> None:
    """Skip when a package or privilege is missing; in CI that is a failure instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root")


def need_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    need(path is not None, f"{name} is not installed (apt-get install it, or run `make test` as root)")
    assert path is not None
    return path


def busybox() -> str:
    return need_tool("busybox")


def make_rootfs_busybox(rootfs: Path) -> None:
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox(), rootfs / "bin" / "busybox")
    for cmd in ("sh", "echo", "cat", "ls", "sleep", "hostname", "id", "ps", "mount", "true", "false", "touch",
                "grep", "wc", "head", "env", "pwd", "ulimit", "stat", "readlink", "test", "mkdir"):
        link = rootfs / "bin" / cmd
        if not link.exists():
            link.symlink_to("busybox")
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir(exist_ok=True)


def minimal_config(args: list[str], *, namespaces: tuple[str, ...] = ("pid", "mount", "uts", "ipc"),
                   mounts: bool = False, annotations: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    from wasmlab.runtime.spec.runtime import default_config

    cfg = default_config(args)
    cfg["process"]["terminal"] = False
    cfg["root"]["readonly"] = False
    cfg["linux"]["namespaces"] = [{"type": t} for t in namespaces]
    if not mounts:
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] == "/proc"]
        cfg["linux"]["maskedPaths"] = []
        cfg["linux"]["readonlyPaths"] = []
    if annotations:
        cfg["annotations"] = annotations
    cfg.update(extra)
    return cfg


def write_bundle(path: Path, cfg: dict[str, Any]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg, indent=1))
    return path


@pytest.fixture
def lab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WASMLAB_HOME", str(home))
    return home


@pytest.fixture
def state_root(tmp_path: Path, lab_home: Path) -> Path:
    """A --root of its own, and a lab home of its own (module caches): tests never touch the user's."""
    root = tmp_path / "state"
    root.mkdir()
    return root


@pytest.fixture
def busybox_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bb"
    make_rootfs_busybox(bundle / "rootfs")
    return write_bundle(bundle, minimal_config(["/bin/echo", "hello from busybox"]))


def hello_wasm() -> bytes:
    import wasmtime

    return bytes(wasmtime.wat2wasm(HELLO_WAT))


@pytest.fixture
def wasm_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "wasm"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "rootfs" / "hello.wasm").write_bytes(hello_wasm())
    return write_bundle(bundle, minimal_config(["/hello.wasm"], annotations={"module.wasm.image/variant": "compat"}))


@pytest.fixture
def runtime(state_root: Path, lab_home: Path) -> Iterator[Any]:
    from wasmlab.runtime import Runtime

    rt = Runtime(root=str(state_root))
    yield rt
    rt.close()


def oci(*args: str, root: Path | None = None, cwd: Path | None = None, timeout: float = 60,
        input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run wasmlab-oci. Output goes through files, not pipes: a created container keeps its stdio open."""
    import tempfile

    cmd = [OCI] + (["--root", str(root)] if root else []) + list(args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=err, timeout=timeout, input=input,
                              stdin=None if input else subprocess.DEVNULL)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read().decode(), err.read().decode())


# -- handshakes: wait for an event, never for a fixed time --------------------------------------------------

def wait_gone(pid: int, timeout: float = 10) -> None:
    """Return once process PID has ended (a pidfd turns readable then), whoever its parent is."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise AssertionError(f"process {pid} still runs after {timeout} s")
    finally:
        os.close(fd)


def read_until(fd: int, marker: bytes, timeout: float = 10) -> bytes:
    """Read FD until MARKER has arrived (what a workload prints when it is ready); returns all that was read."""
    import select
    import time

    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {marker!r} within {timeout} s; got {got!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"end of output before {marker!r}; got {got!r}")
        got += chunk
    return got


def wait_file_grows(proc: subprocess.Popen[bytes], base: Path, pattern: str, what: str, *,
                    more_than: int = 1 << 20, timeout: float = 120) -> None:
    """Return once a file matching PATTERN under BASE holds more than MORE_THAN bytes (a file that appears and
    grows: the work PROC does is mid-way); fails if PROC ends first. Files that other processes rename or remove
    under the walk (claim folders, staged blobs, work folders renamed into place) only mean: look again."""
    import time

    def grown() -> bool:
        try:
            return any(p.is_file() and p.stat().st_size > more_than for p in base.glob(pattern))
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + timeout
    while not grown():
        assert proc.poll() is None and time.monotonic() < deadline, f"{what} never got under way"
        time.sleep(0.005)


def wait_blocked_in_read(pid: int, timeout: float = 10) -> None:
    """Return once a thread of PID sleeps in read(2). A blocked read sends no event, so this one looks
    (/proc/PID/task/*/syscall, x86-64's read is 0) until a deadline; use it only after a ready handshake."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/syscall") as fh:
                    if fh.read().split(" ", 1)[0] == "0":
                        return
            except OSError:
                continue
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} is not blocked in read(2) after {timeout} s")
        time.sleep(0.001)

# -- leak checks -----------------------------------------------------------------------------------------------

def _mounts() -> list[str]:
    """Mounts that a wasmlab leak could produce: under test folders or wasmlab's own paths.

    (Other tools on a shared machine mount and unmount elsewhere while the tests run.)
    """
    with open("/proc/self/mountinfo") as fh:
        rows = (" ".join(line.split()[3:5]) for line in fh)
        return sorted(r for r in rows if _ours(r))


_SESSION_TMP: list[str] = []  # this session's pytest base folder, once known: other sessions' mounts are theirs


def _ours(row: str) -> bool:
    if "pytest-of" in row:
        return not _SESSION_TMP or _SESSION_TMP[0] in row
    return "wasmlab" in row


def _cgroup_tree() -> set[str]:
    """This session's cgroups (under CGROUP_PARENT in each hierarchy); other suites' are not its business."""
    out: set[str] = set()
    for base in CGROUP_BASES:
        top = os.path.join(base, CGROUP_PARENT)
        for dirpath, _dirnames, _files in os.walk(top):
            if dirpath != top:
                out.add(dirpath)
    return out


def _remove_session_cgroup_parent() -> None:
    """rmdir the session's (empty) parent folders, and the shared wasmlab folder above them if now empty."""
    for base in CGROUP_BASES:
        for rel in (CGROUP_PARENT, os.path.dirname(CGROUP_PARENT)):
            try:
                os.rmdir(os.path.join(base, rel))
            except OSError:
                break


def _children() -> set[int]:
    """Processes whose parent is this test process or the zygotes/containers it started."""
    procs: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    data = fh.read()
                procs[int(name)] = int(data[data.rfind(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, ppid in procs.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    mine.discard(os.getpid())
    return {pid for pid in mine if not _is_zygote(pid)}


def _is_zygote(pid: int) -> bool:
    """The Runtime's long-lived helper is expected to stay; the containers it forks are not."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"wasmlab.runtime.zygote" in fh.read()
    except OSError:
        return False


def stop_warm_helper() -> None:
    """A warm helper (`wasmlab system service`, or WASMLAB_WARM) of the test's lab home stays up by design:
    stopped before a check that nothing was left behind, and said."""
    if not os.environ.get("WASMLAB_HOME"):
        return
    from wasmlab.lab.cli import warm

    paths = warm.lab_paths()
    if paths is not None and (pid := warm.stop(paths[1])) is not None:
        print(f"leak check: stopped the warm helper {pid} of {paths[0]} first")


class LeakCheck:
    def __init__(self) -> None:
        self.mounts = _mounts()
        self.cgroups = _cgroup_tree()
        self.children = _children()

    def assert_clean(self) -> None:
        import time

        stop_warm_helper()
        # The zygote answers `run` before it reaps and cleans up (off the caller's path): give that a
        # moment, then everything must be back as it was.
        deadline = time.monotonic() + 3
        while True:
            extra_children = _children() - self.children
            mounts, cgroups = _mounts(), _cgroup_tree()
            clean = not extra_children and mounts == self.mounts and cgroups <= self.cgroups
            if clean or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert mounts == self.mounts, "mounts were left behind"
        assert cgroups <= self.cgroups, f"cgroups left behind: {cgroups - self.cgroups}"
        assert not extra_children, f"processes left behind: {extra_children}"


@pytest.fixture
def leaks() -> Iterator[LeakCheck]:
    check = LeakCheck()
    yield check


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI, a test skipped for any reason (a missing package, tool or privilege) is a failure."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"


@pytest.fixture(scope="session", autouse=True)
def _suite_leaves_no_cgroups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Whatever each test checks, the whole suite must leave none of its cgroups behind."""
    _SESSION_TMP[:] = [str(tmp_path_factory.getbasetemp()) + "/"]
    before = _cgroup_tree()
    yield
    left = _cgroup_tree() - before
    _remove_session_cgroup_parent()
    assert not left, f"cgroups left behind by the test suite: {sorted(left)}"


def package_links() -> Path:
    """A folder from which another user's python3 imports wasmlab from this checkout (the venv lives under
    /root, which nobody else can enter): the build/mypy links that `make lint` makes, made here if missing."""
    pkg = ROOT / "build" / "mypy"
    (pkg / "wasmlab").mkdir(parents=True, exist_ok=True)
    for name, target in (("runtime", "../../../runtime"), ("lab", "../../../lab")):
        link = pkg / "wasmlab" / name
        if not link.exists():
            link.symlink_to(target)
    return pkg


def live_module(folder: str) -> bytes:
    """The live-volume guest (tests/integration/live_volume.wat): writes FOLDER/guest.txt, waits for
    FOLDER/host.txt, prints it."""
    import wasmtime

    wat = (ROOT / "tests" / "integration" / "live_volume.wat").read_text()
    wat = wat.replace('"DIR"', json.dumps(folder)).replace("LEN_1", str(len(folder) - 1))
    return bytes(wasmtime.wat2wasm(wat.replace("LEN", str(len(folder)))))
