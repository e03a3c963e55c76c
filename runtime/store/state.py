"""Per-container state under the runtime root: state.json, the exec fifo, the exit record and the lock."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from wasmlab.runtime.errors import ContainerExists, ContainerNotFound, UsageError
from wasmlab.runtime.status import ContainerStatus
from wasmlab.runtime.store.atomic import remove_tree

OCI_VERSION = "1.0.2"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def default_root() -> str:
    """/run/wasmlab as root; $XDG_RUNTIME_DIR/wasmlab (or /tmp/wasmlab-UID) rootless."""
    if os.geteuid() == 0:
        return "/run/wasmlab"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "wasmlab") if xdg else f"/tmp/wasmlab-{os.getuid()}"


def check_id(container_id: str) -> None:
    if not _ID_RE.match(container_id or ""):
        raise UsageError(f"invalid container id {container_id!r}",
                         "use letters, digits, '_', '.', '+' or '-', starting with a letter or digit")


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] == b"Z" or fields[0] == b"X":
        return None
    return int(fields[19])


@dataclass
class ExitRecord:
    """How a container's process ended. exit_code None: nobody could know (its reaper was the host's init)."""

    exit_code: int | None
    signal: int | None = None
    oom_killed: bool = False
    finished_at: float = 0.0
    max_rss_kb: int = 0
    user_ms: float = 0.0
    system_ms: float = 0.0


def decode_wait_status(status: int) -> tuple[int, int | None]:
    """A wait status as (exit code, signal): killed by signal N is code 128+N, as shells and podman say."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.WEXITSTATUS(status), None


class StateDir:
    """The folder of one container under the root."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root = root
        self.id = container_id
        self.path = os.path.join(root, container_id)

    @property
    def state_file(self) -> str:
        return os.path.join(self.path, "state.json")

    @property
    def fifo(self) -> str:
        return os.path.join(self.path, "exec.fifo")

    @property
    def exit_file(self) -> str:
        return os.path.join(self.path, "exit.json")

    def exists(self) -> bool:
        return os.path.exists(self.state_file)

    def make(self, *, fifo: bool = True) -> None:
        """Create the folder (and the exec fifo that `start` writes to); a duplicate id is refused."""
        try:
            os.mkdir(self.path, 0o711)
        except FileNotFoundError:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            return self.make(fifo=fifo)
        except FileExistsError:
            raise ContainerExists(f"container {self.id!r} already exists",
                                  f"pick another id, or `delete {self.id}` first") from None
        if fifo:
            os.mkfifo(self.fifo, 0o622)

    def write(self, state: dict[str, Any]) -> None:
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(state, fh)
        os.rename(tmp, self.state_file)

    def read(self) -> dict[str, Any]:
        try:
            with open(self.state_file) as fh:
                data: dict[str, Any] = json.load(fh)
                return data
        except FileNotFoundError:
            raise ContainerNotFound(f"container {self.id!r} does not exist",
                                    "list containers with `wasmlab-oci list`") from None

    def write_exit(self, record: ExitRecord) -> None:
        tmp = self.exit_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(record.__dict__, fh)
        os.rename(tmp, self.exit_file)

    @staticmethod
    def write_exit_at(dir_fd: int, record: ExitRecord) -> None:
        """write_exit through a folder fd: for a Wasm init that outlived its runtime, after pivot_root."""
        data = json.dumps(record.__dict__).encode()
        tmp = f".exit.json.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, "exit.json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def read_exit(self) -> ExitRecord | None:
        try:
            with open(self.exit_file) as fh:
                return ExitRecord(**json.load(fh))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize commands on this container (flock on a file beside its folder)."""
        lock_path = os.path.join(self.root, f".{self.id}.lock")
        while True:  # the root goes when its last zygote leaves it empty (remove_root_if_empty): make it again
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                break
            except FileNotFoundError:
                os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if not os.path.isdir(self.path):  # no such container (or it was just deleted): leave no lock file
                try:
                    os.unlink(lock_path)
                except OSError:
                    pass
            os.close(fd)

    def remove(self) -> None:
        """Remove the folder. It is first renamed aside: a reaper that writes the exit record just then (the
        zygote, after the process it forked died of a `delete --force`) finds no folder at the container's
        path, instead of refilling one half removed."""
        aside = os.path.join(self.root, f".{self.id}.removed-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            aside = ""
        except OSError:
            aside = self.path
        for _ in range(3):  # a write that began before the rename may still land in the folder set aside
            if not aside or not os.path.lexists(aside):
                break
            remove_tree(aside)
        try:
            os.unlink(os.path.join(self.root, f".{self.id}.lock"))
        except OSError:
            pass


def status_of(state: dict[str, Any], sd: StateDir) -> ContainerStatus:
    """The status from the exit record and the live process. A container paused while created (runc allows
    it) is paused until resumed, then created again."""
    if sd.read_exit() is not None:
        return ContainerStatus.STOPPED
    pid = int(state.get("pid") or 0)
    if pid <= 0:
        return ContainerStatus.CREATING if state.get("status") == "creating" else ContainerStatus.STOPPED
    start = proc_start_time(pid)
    if start is None or (state.get("pid_start") and start != state["pid_start"]):
        return ContainerStatus.STOPPED
    if state.get("paused"):
        return ContainerStatus.PAUSED
    if os.path.exists(sd.fifo):
        return ContainerStatus.CREATED
    return ContainerStatus.RUNNING


def oci_state(state: dict[str, Any], status: str) -> dict[str, Any]:
    """The runtime-spec state object (what `state` prints and hooks read on stdin)."""
    out: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "id": state["id"],
        "status": status,
        "bundle": state["bundle"],
        "annotations": state.get("annotations") or {},
    }
    if status in ("created", "running", "paused"):
        out["pid"] = state["pid"]
    elif state.get("pid"):
        out["pid"] = 0 if status == "stopped" else state["pid"]
    return out


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno == errno.EACCES:
            return []
        raise
    return sorted(n for n in names if not n.startswith(".") and os.path.isfile(os.path.join(root, n, "state.json")))


def remove_root_if_empty(root: str) -> None:
    """Remove a state root that holds nothing: its lab home may be gone for good (a test's, or one removed with
    `rm -rf`), and /run must not fill with empty folders. Whoever makes state in it later makes it again: a
    container's folder and its lock retry on ENOENT."""
    try:
        os.rmdir(root)
    except OSError:
        pass  # not empty (containers, a helper's socket), or gone already

