"""Drop-in proof: containerd 1.6 (via containerd-shim-runc-v2) runs Linux and Wasm images with wasmlab-oci.

A private containerd runs on a socket in a temporary folder with a minimal config (CRI and the other
unneeded plugins disabled). The busybox and Wasm images built by buildah are imported from OCI archives
(`podman save --format oci-archive`), then:
    ctr -a SOCK run --rm --runc-binary <wasmlab-oci> --runc-root R --fifo-dir F IMAGE ID [CMD...]

The shim calls the runtime as
    wasmlab-oci --root R/default --log B/log.json --log-format json create --bundle B --pid-file B/init.pid ID
    ... start ID / kill ID 15 / ps --format json ID / delete ID, then delete --force ID
where B is containerd's task folder (`--state`/io.containerd.runtime.v2.task/default/ID).

Annotations: `ctr run` 1.6 does not copy the image manifest's annotations into config.json (only the CRI
plugin's runtime handlers look at them), so the Wasm run passes
`ctr run --annotation module.wasm.image/variant=compat`.

containerd 1.6 always puts its shims' sockets in /run/containerd/s (removed when each shim exits); the
fixture removes /run/containerd again if it did not exist before.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop.conftest import (
    BUSYBOX_GREETING,
    BUSYBOX_IMAGE,
    VARIANT_ANNOTATION,
    WASM_GREETING,
    WASM_IMAGE,
    WASMLAB_OCI,
    Recorder,
    Store,
    explain,
    mounts_under,
    need_tools,
    ok,
    processes_mentioning,
    sh,
    wait_until_gone,
)

pytestmark = [pytest.mark.interop, pytest.mark.root, pytest.mark.slow]

TIMEOUT = 120
CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


@dataclass
class Containerd:
    base: Path
    sock: Path
    snapshotter: str
    log: Path

    def ctr(
        self, *args: str, timeout: float = TIMEOUT, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return sh(["ctr", "-a", str(self.sock), *args], timeout=timeout, input=input)

    def run(
        self,
        runtime: str | None,
        image: str,
        *cmd: str,
        extra: tuple[str, ...] = (),
        timeout: float = TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """ctr run --rm; runtime None means containerd's own runc (still with a private --runc-root)."""
        flags = [
            "--rm",
            "--snapshotter",
            self.snapshotter,
            "--fifo-dir",
            str(self.base / "fifo"),
            "--runc-root",
            str(self.runc_root),
        ]
        if runtime:
            flags += ["--runc-binary", runtime]
        return self.ctr("run", *flags, *extra, image, new_id(), *cmd, timeout=timeout)

    @property
    def runc_root(self) -> Path:
        return self.base / "runc-root"

    def tail(self, lines: int = 30) -> str:
        try:
            return "containerd log (tail):\n" + "\n".join(
                self.log.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""


def new_id() -> str:
    return "dropin-" + uuid.uuid4().hex[:10]


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            mount_point, fstype = fields[4], fields[fields.index("-") + 1]
            if str(path).startswith(mount_point.rstrip("/") + "/") and len(mount_point) > len(best):
                best, kind = mount_point, fstype
    return kind


def _remove_if_empty(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.rmdir()
        except OSError:
            pass


@pytest.fixture(scope="module")
def containerd(store: Store) -> Iterator[Containerd]:
    need_tools("containerd", "ctr", "runc", "containerd-shim-runc-v2")
    had_run_containerd = os.path.exists("/run/containerd")
    base = Path(tempfile.mkdtemp(prefix="dropin-ctrd-", dir="/tmp"))
    for d in ("root", "state", "fifo", "runc-root"):
        (base / d).mkdir()
    sock = base / "c.sock"
    config = base / "config.toml"
    config.write_text(CONFIG.format(root=base / "root", state=base / "state", sock=sock))
    # overlayfs cannot stack on an overlay-backed /tmp (as in some CI containers); native always works.
    snapshotter = "native" if _fs_type(base) in ("overlay", "tmpfs") else "overlayfs"
    log = base / "containerd.log"
    with open(log, "w") as fh:
        daemon = subprocess.Popen(
            [
                "containerd",
                "--config",
                str(config),
                "--root",
                str(base / "root"),
                "--state",
                str(base / "state"),
                "--address",
                str(sock),
            ],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cd = Containerd(base, sock, snapshotter, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert daemon.poll() is None, f"containerd exited with {daemon.returncode}\n{cd.tail()}"
            if sock.exists() and cd.ctr("version", timeout=10).returncode == 0:
                break
            assert time.monotonic() < deadline, f"containerd's socket never answered\n{cd.tail()}"
            time.sleep(0.05)
        for image in (BUSYBOX_IMAGE, WASM_IMAGE):
            ok(
                cd.ctr(
                    "images", "import", "--snapshotter", snapshotter, str(store.archive(image)), timeout=300
                ),
                cd.tail(),
            )
        yield cd
    finally:
        problems = _stop(cd, daemon)
        if not had_run_containerd:
            _remove_if_empty(
                [
                    Path("/run/containerd/s"),
                    Path("/run/containerd/fifo"),
                    Path("/run/containerd/runc/default"),
                    Path("/run/containerd/runc"),
                    Path("/run/containerd"),
                ]
            )
    assert not problems, "containerd left things behind: " + "; ".join(problems)


def _stop(cd: Containerd, daemon: subprocess.Popen[bytes]) -> list[str]:
    """Remove leftover tasks and containers, stop containerd, and report (and clean) anything left."""
    problems: list[str] = []
    if daemon.poll() is None:
        tasks = cd.ctr("tasks", "ls", "-q", timeout=30).stdout.split()
        for task in tasks:
            cd.ctr("tasks", "kill", "--signal", "SIGKILL", task, timeout=30)
            cd.ctr("tasks", "delete", "--force", task, timeout=30)
        for container in cd.ctr("containers", "ls", "-q", timeout=30).stdout.split():
            cd.ctr("containers", "delete", container, timeout=30)
        if tasks:
            problems.append(f"tasks still running at the end: {tasks}")
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=30)
            problems.append("containerd ignored SIGTERM")
    shims = wait_until_gone(str(cd.sock), timeout=10)
    for pid in shims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if shims:
        problems.append(f"shims left running: {shims}")
    left = processes_mentioning(str(cd.base))
    if left:
        problems.append(f"processes left running: {left}")
    mounts = mounts_under(cd.base)
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, timeout=30)
    if mounts:
        problems.append(f"mounts left behind: {mounts}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(cd.base)], capture_output=True, timeout=120)
    return problems


@pytest.fixture(autouse=True)
def _no_leaks(containerd: Containerd) -> Iterator[None]:
    before = mounts_under(containerd.base)
    yield
    tasks = containerd.ctr("tasks", "ls", "-q", timeout=30).stdout.split()
    assert not tasks, f"tasks left behind: {tasks}"
    assert mounts_under(containerd.base) == before, "container mounts left behind"


def assert_state_gone(cd: Containerd, rec: Recorder) -> None:
    for call in rec.calls():
        if call.verb == "create":
            cid = call.argv[-1]
            root = cd.runc_root / "default"
            left = [p for p in (root / cid, root / f".{cid}.lock") if os.path.lexists(p)]
            assert not left, f"wasmlab-oci left state behind: {left}\n{rec.describe()}"


def test_busybox_image_prints_like_runc(containerd: Containerd) -> None:
    runc = containerd.run(None, BUSYBOX_IMAGE)
    assert (runc.returncode, runc.stdout) == (0, f"{BUSYBOX_GREETING}\n"), (
        "ctr + runc itself failed" + explain(runc, containerd.tail())
    )
    ours = containerd.run(WASMLAB_OCI, BUSYBOX_IMAGE)
    assert (ours.returncode, ours.stdout) == (runc.returncode, runc.stdout), (
        "ctr + wasmlab-oci differs from ctr + runc" + explain(ours, containerd.tail())
    )


def test_shim_invocations(containerd: Containerd, recorder: Recorder) -> None:
    """The calls containerd-shim-runc-v2 makes, with runc's global flags; every one must succeed."""
    proc = containerd.run(recorder.path, BUSYBOX_IMAGE, "/bin/busybox", "echo", "via the shim")
    context = recorder.describe() + "\n" + containerd.tail()
    assert (proc.returncode, proc.stdout) == (0, "via the shim\n"), explain(proc, context)
    calls = recorder.calls()
    assert [c.verb for c in calls][:3] == ["create", "start", "delete"], context
    for call in calls:
        assert call.argv[:2] == ["--root", str(containerd.runc_root / "default")], context
        assert "--log-format" in call.argv and call.argv[call.argv.index("--log-format") + 1] == "json", (
            context
        )
        assert call.exit_code == 0, f"`{' '.join(call.argv)}` failed (runc would succeed)\n{context}"
    create = calls[0].argv
    assert "--bundle" in create and "--pid-file" in create, context
    assert_state_gone(containerd, recorder)


def test_exit_code_and_streams_propagate(containerd: Containerd) -> None:
    proc = containerd.run(
        WASMLAB_OCI, BUSYBOX_IMAGE, "/bin/busybox", "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert proc.returncode == 3, "the exit code did not come back through ctr" + explain(
        proc, containerd.tail()
    )
    assert proc.stdout == "out\n" and "err" in proc.stderr, explain(proc, containerd.tail())


def test_wasm_image_with_annotation(containerd: Containerd, recorder: Recorder) -> None:
    proc = containerd.run(recorder.path, WASM_IMAGE, extra=("--annotation", VARIANT_ANNOTATION))
    context = recorder.describe() + "\n" + containerd.tail()
    assert (proc.returncode, proc.stdout) == (0, f"{WASM_GREETING}\n"), (
        "ctr + wasmlab-oci, Wasm image" + explain(proc, context)
    )
    create = next(c for c in recorder.calls() if c.verb == "create")
    annotations = recorder.config(create.argv[-1]).get("annotations") or {}
    key, value = VARIANT_ANNOTATION.split("=")
    assert isinstance(annotations, dict) and annotations.get(key) == value, context
    assert_state_gone(containerd, recorder)


def test_detached_task_kill_ps_delete(containerd: Containerd, recorder: Recorder) -> None:
    """ctr run -d, task ps (`ps --format json`), task kill (SIGTERM), task delete reports the exit code."""
    cid = new_id()
    script = 'trap "exit 7" TERM; echo ready > /ready; while :; do sleep 0.1; done'
    started = containerd.ctr(
        "run",
        "-d",
        "--snapshotter",
        containerd.snapshotter,
        "--fifo-dir",
        str(containerd.base / "fifo"),
        "--runc-root",
        str(containerd.runc_root),
        "--runc-binary",
        recorder.path,
        BUSYBOX_IMAGE,
        cid,
        "/bin/busybox",
        "sh",
        "-c",
        script,
    )
    context = lambda: recorder.describe() + "\n" + containerd.tail()  # noqa: E731
    assert started.returncode == 0, "ctr run -d" + explain(started, context())
    try:
        status, pid = "", ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = [line.split() for line in containerd.ctr("tasks", "ls").stdout.splitlines()[1:]]
            status, pid = next(((r[2], r[1]) for r in rows if r and r[0] == cid), ("", ""))
            if status == "RUNNING":
                break
            time.sleep(0.05)
        assert status == "RUNNING", f"task status {status!r}\n{context()}"
        # The shell has installed its trap once /ready appears in its root (a file that appears: the handshake).
        ready = Path(f"/proc/{pid}/root/ready")
        while not ready.exists():
            assert time.monotonic() < deadline, f"the shell never said ready\n{context()}"
            time.sleep(0.01)
        ps = containerd.ctr("tasks", "ps", cid)
        assert ps.returncode == 0 and len(ps.stdout.splitlines()) >= 2, "ctr task ps" + explain(ps, context())
        kill = containerd.ctr("tasks", "kill", cid)
        assert kill.returncode == 0, "ctr task kill" + explain(kill, context())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = [line.split() for line in containerd.ctr("tasks", "ls").stdout.splitlines()[1:]]
            status = next((r[2] for r in rows if r and r[0] == cid), "")
            if status == "STOPPED":
                break
            time.sleep(0.05)
        assert status == "STOPPED", f"task status after SIGTERM: {status!r}\n{context()}"
        deleted = containerd.ctr("tasks", "delete", cid)
        assert deleted.returncode == 0 and "exit code 7" in deleted.stderr, (
            "the TERM trap's exit code 7" + explain(deleted, context())
        )
    finally:
        containerd.ctr("tasks", "delete", "--force", cid)
        containerd.ctr("containers", "delete", cid)
    verbs = [c.verb for c in recorder.calls()]
    assert "ps" in verbs and "kill" in verbs, context()
    assert all(c.exit_code == 0 for c in recorder.calls()), context()
    assert_state_gone(containerd, recorder)



class Events:
    """containerd's event stream (`ctr events`), read line by line with a bound on each wait."""

    def __init__(self, cd: Containerd) -> None:
        self.cd = cd
        self.proc = subprocess.Popen(["ctr", "-a", str(cd.sock), "events"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer = b""
        self.seen: list[str] = []

    def wait_for(self, *words: str, timeout: float) -> str | None:
        """The first new line holding every word, or None when timeout seconds pass without one."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.seen.append(line)
                if all(w in line for w in words):
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buffer += chunk

    def subscribed(self) -> None:
        """Return once the stream is live: a namespace label change made now shows up in it."""
        for n in range(50):
            self.cd.ctr("namespaces", "label", "default", f"wasmlab-probe={n}")
            if self.wait_for("/namespaces/update", timeout=0.5):
                self.cd.ctr("namespaces", "label", "default", "wasmlab-probe=")
                return
        raise AssertionError("ctr events never showed a namespace update")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.mark.parametrize("kind", ["busybox", "wasm"])
def test_exited_task_is_recorded_and_force_deleted(containerd: Containerd, recorder: Recorder, kind: str) -> None:
    """What containerd's CRI does when a container exits (the Kubernetes path): on the task's exit event it
    deletes the task with containerd.WithProcessKill, which sends `kill --all ID 9` to the now stopped
    container; `ctr tasks delete --force` makes the same calls. runc answers 0 there; wasmlab-oci used to exit
    5 ("nothing to signal"), so the delete failed and the CRI kept the container Running forever.

    Synchronised by containerd's own event stream: the test waits for the task's /tasks/exit event.
    For a Linux container (exit 3) and a Wasm one (the hello module, exit 0)."""
    cid = new_id()
    if kind == "wasm":
        image, argv, extra, code = WASM_IMAGE, [], ["--annotation", VARIANT_ANNOTATION], 0
    else:
        image, argv, extra, code = BUSYBOX_IMAGE, ["/bin/busybox", "sh", "-c", "exit 3"], [], 3
    flags = ["--snapshotter", containerd.snapshotter, "--fifo-dir", str(containerd.base / "fifo"),
             "--runc-root", str(containerd.runc_root), "--runc-binary", recorder.path]
    context = lambda: recorder.describe() + "\n" + containerd.tail()  # noqa: E731
    events = Events(containerd)
    try:
        events.subscribed()
        started = containerd.ctr("run", "-d", *flags, *extra, image, cid, *argv)
        assert started.returncode == 0, "ctr run -d" + explain(started, context())
        exited = events.wait_for("/tasks/exit", cid, timeout=TIMEOUT)
        status = f'"exit_status":{code}' if code else '"exit_status"'
        assert exited and (status in exited) == bool(code), f"events: {events.seen}\n{context()}"
        rows = [line.split() for line in containerd.ctr("tasks", "ls").stdout.splitlines()[1:]]
        assert [r[2] for r in rows if r and r[0] == cid] == ["STOPPED"], f"{rows}\n{context()}"
        deleted = containerd.ctr("tasks", "delete", "--force", cid)
        assert deleted.returncode == 0, "ctr tasks delete --force of a stopped task" + explain(deleted, context())
        assert (f"exit code {code}" in deleted.stderr) == bool(code), explain(deleted, context())
        assert cid not in containerd.ctr("tasks", "ls", "-q").stdout.split(), context()
    finally:
        events.close()
        containerd.ctr("tasks", "delete", "--force", cid)
        containerd.ctr("containers", "delete", cid)
    kills = [c for c in recorder.calls() if c.verb == "kill"]
    assert any(c.argv[-3:] == ["--all", cid, "9"] for c in kills), context()
    assert all(c.exit_code == 0 for c in recorder.calls()), context()
    assert_state_gone(containerd, recorder)
