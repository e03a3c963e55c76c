"""The lab's private containerd (Debian's 1.6): its own root, state, sockets and CNI folders, started and stopped on
demand, and the CRI demonstration run through it (a pod annotated compat, the allowlist under test, wasmlab-oci)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import ContainerdFailed, CriError, SetupError
from wasmlab.runtime.linux import cgroups
from wasmlab.runtime.pods.cri import CriClient, container_config, pod_sandbox_config
from wasmlab.runtime.pods.generate import containerd_toml

CRI_NAMESPACE = "k8s.io"  # containerd's namespace for everything its CRI plugin makes and sees
VARIANT_KEY = "module.wasm.image/variant"
PAUSE_REF = "localhost/wasmlab/pause:1"
HELLO_REF = "localhost/wasmlab/hello:compat"
HANDLER = "wasmlab-oci"
SEED_ALLOWLIST = ("module.wasm.image/variant.*",)
WORKING_ALLOWLIST = ("module.wasm.image/*",)
START_TIMEOUT = 60.0
# Plugins a private daemon does without: they would write outside its folder (/opt/containerd) or probe for
# filesystems this lab never uses.
_DISABLED = ("io.containerd.internal.v1.opt", "io.containerd.internal.v1.tracing",
             "io.containerd.tracing.processor.v1.otlp", "io.containerd.snapshotter.v1.aufs",
             "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
             "io.containerd.snapshotter.v1.zfs")
# containerd 1.6 always puts its shims' sockets under /run/containerd/s; removed again when it did not exist.
_HOST_LEFTOVERS = ("/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc/k8s.io",
                   "/run/containerd/runc", "/run/containerd")


def snapshotter_for(folder: Path) -> str:
    """overlayfs, unless the folder is itself on an overlay or tmpfs (as in some CI containers): then native."""
    best, kind = "", ""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point, fstype = fields[4], fields[fields.index("-") + 1]
            if (str(folder) + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(best):
                best, kind = point, fstype
    return "native" if kind in ("overlay", "tmpfs") else "overlayfs"


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(prefix)]


@dataclass
class PrivateContainerd:
    """One containerd process with everything under `base`: root, state, the gRPC and ttrpc sockets, its log."""

    base: Path
    process: subprocess.Popen[bytes]
    had_run_containerd: bool
    snapshotter: str

    @property
    def socket(self) -> Path:
        return self.base / "c.sock"

    @property
    def log(self) -> Path:
        return self.base / "containerd.log"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @classmethod
    def start(cls, config_text: str | Callable[[Path, str], str], *, prefix: str = "wasmlab-ctrd-",
              timeout: float = START_TIMEOUT) -> PrivateContainerd:
        """Start containerd with config_text (or config_text(base, snapshotter)), plus what any private daemon
        needs: no debug or metrics endpoint, its ttrpc socket in base. Ready once `ctr version` answers, which
        containerd does only after loading every plugin. Stopped again (and base removed) when it fails."""
        for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
            if shutil.which(tool) is None:
                raise SetupError(f"{tool} is not installed", "apt-get install containerd (make setup does)")
        had_run = os.path.exists("/run/containerd")
        base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: unix socket paths hold 108 bytes
        for sub in ("root", "state", "cni/bin", "cni/conf", "logs", "runtime-root"):
            (base / sub).mkdir(parents=True)
        snapshotter = snapshotter_for(base)
        text = config_text(base, snapshotter) if callable(config_text) else config_text
        config = base / "config.toml"
        config.write_text(text + '\n[debug]\n  address = ""\n[metrics]\n  address = ""\n'
                          f'[ttrpc]\n  address = {json.dumps(str(base / "c.sock.ttrpc"))}\n')
        with open(base / "containerd.log", "wb") as log:
            process = subprocess.Popen(["containerd", "--config", str(config), "--root", str(base / "root"),
                                        "--state", str(base / "state"), "--address", str(base / "c.sock")],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        node = cls(base, process, had_run, snapshotter)
        try:
            deadline = time.monotonic() + timeout
            while not (node.socket.exists() and node.ctr("version", timeout=10).returncode == 0):
                if process.poll() is not None:
                    raise ContainerdFailed(f"containerd exited with {process.returncode} at start: "
                                           f"{node.tail(1)}", f"its log: {node.log}")
                if time.monotonic() > deadline:
                    raise ContainerdFailed(f"containerd did not answer within {timeout:.0f} s",
                                           f"its log: {node.log}")
                time.sleep(0.05)  # polling the socket against a deadline: the daemon says nothing else
        except BaseException:
            node.stop()
            raise
        return node

    def ctr(self, *args: str, namespace: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        flags = ["-a", str(self.socket)] + (["-n", namespace] if namespace else [])
        try:
            return subprocess.run(["ctr", *flags, *args], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(["ctr", *args], 124, "", f"timed out after {timeout:.0f} s")

    def import_archive(self, archive: str | os.PathLike[str], *, namespace: str = CRI_NAMESPACE) -> None:
        """`ctr images import` an OCI or docker archive into the namespace, unpacked for this daemon's snapshotter."""
        done = self.ctr("images", "import", "--snapshotter", self.snapshotter, os.fspath(archive),
                        namespace=namespace, timeout=300)
        if done.returncode != 0:
            raise ContainerdFailed(f"ctr images import {os.fspath(archive)} failed: "
                                   f"{(done.stderr.strip().splitlines() or ['?'])[-1]}", f"its log: {self.log}")

    def cri(self, *, timeout: float = 60.0) -> CriClient:
        return CriClient(self.socket, timeout=timeout)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> list[str]:
        """Remove what is left (tasks, containers), stop containerd, unmount and delete base. Returns the problems
        found on the way (anything that had to be cleaned by force), empty when all went as it should."""
        problems: list[str] = []
        if self.process.poll() is None:
            listed = self.ctr("namespaces", "ls", "-q", timeout=30)
            for namespace in listed.stdout.split() if listed.returncode == 0 else []:
                tasks = self.ctr("tasks", "ls", "-q", namespace=namespace, timeout=30).stdout.split()
                for task in tasks:
                    self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, namespace=namespace, timeout=30)
                    self.ctr("tasks", "delete", "--force", task, namespace=namespace, timeout=30)
                if tasks:
                    problems.append(f"tasks still there at the end: {tasks}")
                for container in self.ctr("containers", "ls", "-q", namespace=namespace, timeout=30).stdout.split():
                    self.ctr("containers", "delete", container, namespace=namespace, timeout=30)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append("containerd ignored SIGTERM for 30 s")
                self.process.kill()
                self.process.wait(timeout=30)
        left = _mounts_under(self.base)
        for point in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
        if left:
            problems.append(f"mounts left under {self.base}: {left}")
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], capture_output=True, timeout=120)
        if not self.had_run_containerd:
            for leftover in _HOST_LEFTOVERS:
                try:
                    os.rmdir(leftover)
                except OSError:
                    pass
        return problems


def node_config(base: Path, snapshotter: str, *, runtime_path: str, pod_annotations: Sequence[str],
                sandbox_image: str = PAUSE_REF) -> str:
    """containerd.toml as `kube generate --runtime-path` writes it (the handler, the allowlist under test), plus
    what this node needs: the lab's pause image, restrict_oom_score_adj (runc's -998 is refused here), its own
    CNI folders (empty: pods use the node's network), the runtime's state in base, and no probing plugins."""
    generated = containerd_toml(HANDLER, runtime_path, "(the lab's private containerd)",
                                pod_annotations=pod_annotations, runtime_root=str(base / "runtime-root"))
    generated = generated.replace('  default_runtime_name = "runc"\n',
                                  f'  default_runtime_name = "runc"\n  snapshotter = "{snapshotter}"\n')
    disabled = "disabled_plugins = [" + ", ".join(json.dumps(p) for p in _DISABLED) + "]\n"
    return disabled + generated + f"""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {json.dumps(sandbox_image)}
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {json.dumps(str(base / "cni" / "bin"))}
  conf_dir = {json.dumps(str(base / "cni" / "conf"))}
"""


@dataclass(frozen=True)
class CriRun:
    """One pod through containerd's CRI: the allowlist, whether the variant annotation reached config.json, and
    how the Wasm container ended (its state, exit code and output, or the error StartContainer answered)."""

    allowlist: tuple[str, ...]
    passed: bool                      # module.wasm.image/variant in the container's config.json
    sandbox_passed: bool              # ... and in the pod sandbox (pause) container's
    state: str                        # CONTAINER_EXITED, CONTAINER_CREATED (never started), ...
    exit_code: int | None
    output: str                       # what the container wrote (containerd's CRI log, the text of each line)
    error: str                        # StartContainer's error, where it failed
    seconds: float
    annotations: dict[str, str] = field(default_factory=dict)   # config.json's annotations

    def row(self) -> tuple[str, str, str, str]:
        if self.error:  # containerd's chain of causes: the OCI runtime's own words follow the last "failed: "
            verdict = self.error.rsplit("OCI runtime create failed: ", 1)[-1].removesuffix(": unknown")
        else:
            verdict = f"exit {self.exit_code}: {self.output.strip()}"
        return (json.dumps(list(self.allowlist)), "passed" if self.passed else "dropped", self.state, verdict)


def cri_log_text(path: Path) -> str:
    """The text of a CRI log file ('<time> <stream> <P|F> <text>' lines), partial lines joined."""
    out: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) == 4:
            out.append(parts[3] + ("\n" if parts[2] == "F" else ""))
    return "".join(out)


def _spec_annotations(info: dict[str, str]) -> dict[str, str]:
    """config.json's annotations, from the verbose ContainerStatus' info (containerd's runtimeSpec: the spec it
    writes to the bundle's config.json)."""
    try:
        spec: dict[str, Any] = json.loads(info.get("info", "{}")).get("runtimeSpec") or {}
    except ValueError:
        return {}
    return dict(spec.get("annotations") or {})


def run_pod(node: PrivateContainerd, allowlist: Sequence[str], *, image: str = HELLO_REF,
            wait: float = 60.0) -> CriRun:
    """What the kubelet does for a one-container pod annotated module.wasm.image/variant=compat under the runtime
    handler wasmlab-oci: RunPodSandbox, CreateContainer, StartContainer, ContainerStatus until it exits; then
    StopPodSandbox and RemovePodSandbox, whatever happened, and the pod's cgroup parent removed."""
    began = time.monotonic()
    pod_id = uuid.uuid4().hex[:12]
    parent = f"{cgroups.default_parent()}/cri-{pod_id}"
    logs = node.base / "logs" / pod_id
    logs.mkdir(parents=True)
    sandbox = pod_sandbox_config("allowlist-pitfall", "default", pod_id, annotations={VARIANT_KEY: "compat"},
                                 log_directory=str(logs), cgroup_parent="/" + parent)
    error, exit_code, output, state = "", None, "", ""
    annotations: dict[str, str] = {}
    sandbox_notes: dict[str, str] = {}
    with node.cri() as client:
        sandbox_id = client.run_pod_sandbox(sandbox, HANDLER)
        try:
            sandbox_notes = _sandbox_annotations(node, sandbox_id)
            cid = client.create_container(sandbox_id, container_config("wasm-container", image,
                                                                       log_path="wasm-container/0.log"), sandbox)
            try:
                client.start_container(cid)
            except CriError as exc:
                error = exc.detail
            deadline = time.monotonic() + wait
            status = client.container_status(cid, verbose=True)
            while not error and status.state not in ("CONTAINER_EXITED", "CONTAINER_UNKNOWN"):
                if time.monotonic() > deadline:
                    error = f"still {status.state} after {wait:.0f} s"
                    break
                time.sleep(0.02)  # polling ContainerStatus, as the kubelet's PLEG does
                status = client.container_status(cid, verbose=True)
            state, annotations = status.state, _spec_annotations(status.info)
            if status.state == "CONTAINER_EXITED":
                exit_code, output = status.exit_code, cri_log_text(logs / "wasm-container" / "0.log")
        finally:
            client.stop_pod_sandbox(sandbox_id)
            client.remove_pod_sandbox(sandbox_id)
            try:
                cgroups.open_existing(parent).remove()
            except OSError:
                pass
    return CriRun(allowlist=tuple(allowlist), passed=VARIANT_KEY in annotations,
                  sandbox_passed=VARIANT_KEY in sandbox_notes, state=state, exit_code=exit_code, output=output,
                  error=error, seconds=time.monotonic() - began, annotations=annotations)


def _sandbox_annotations(node: PrivateContainerd, sandbox_id: str) -> dict[str, str]:
    """The pause container's spec annotations (`ctr containers info`: the spec containerd wrote to its bundle)."""
    shown = node.ctr("containers", "info", sandbox_id, namespace=CRI_NAMESPACE, timeout=30)
    try:
        spec = json.loads(shown.stdout).get("Spec") or {}
    except ValueError:
        return {}
    return dict(spec.get("annotations") or {})


def demonstrate(archive: Path, runtime_path: str, allowlist: Sequence[str]) -> CriRun:
    """A private containerd whose CRI has the given pod_annotations allowlist, the lab's pause and compat hello
    images imported from `archive`, one pod run through it, and everything stopped and removed again."""
    node = PrivateContainerd.start(lambda base, snap: node_config(base, snap, runtime_path=runtime_path,
                                                                  pod_annotations=allowlist))
    try:
        node.import_archive(archive)
        with node.cri() as client:
            deadline = time.monotonic() + 30
            while client.image_status(PAUSE_REF) is None or client.image_status(HELLO_REF) is None:
                if time.monotonic() > deadline:
                    raise ContainerdFailed("containerd's CRI never saw the imported images",
                                           f"its log: {node.log}")
                time.sleep(0.02)  # the CRI learns of an import through containerd's events
        return run_pod(node, allowlist)
    finally:
        problems = node.stop()
        if problems:
            raise ContainerdFailed("the private containerd left things behind: " + "; ".join(problems),
                                   "they were removed; report it")
