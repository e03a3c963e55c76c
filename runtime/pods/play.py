"""Playing pods: the sandbox first, then init containers to completion, then the app containers; pod records
under <lab home>/pods/<namespace>/<name>/, and rollback of whatever a failed play started."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wasmlab.runtime.errors import (
    ContainerNotFound,
    InvalidState,
    PodExists,
    PodInitFailed,
    PodNotFound,
    PodSpecError,
    PodStartAborted,
    PodStartFailed,
    SetupError,
    UsageError,
    WasmlabError,
)
from wasmlab.runtime.handlers.detect import ENGINE_ANNOTATION, SANDBOX_RULE_ANNOTATION, WASM_ENGINES
from wasmlab.runtime.linux import nspin
from wasmlab.runtime.options import RunOptions
from wasmlab.runtime.pods import keeper, sandbox
from wasmlab.runtime.pods.plan import PlannedPod, PodPlan, runtime_class_effect
from wasmlab.runtime.progress import ProgressCallback
from wasmlab.runtime.spec.pod import Container, Pod

POD_FILE = "pod.json"


@dataclass(frozen=True)
class ContainerRequest:
    """One container of a pod, as the Lab is asked to run it (detached, through its ordinary path)."""

    name: str                        # the lab container's name (namespace_pod_container)
    image: str
    command: list[str] | None        # Kubernetes args (the image's Cmd replaced)
    entrypoint: list[str] | None     # Kubernetes command (the image's Entrypoint replaced)
    env: list[str]
    annotations: dict[str, str]      # what reaches config.json (the propagation's choice)
    engine: str | None
    options: RunOptions
    slot: sandbox.PodSlot


@dataclass(frozen=True)
class ContainerView:
    """What the pod side needs to know of a lab container."""

    status: str          # a ContainerStatus value
    exit_code: int | None
    pid: int
    handler: str | None


class PodHost(Protocol):
    """What playing a pod needs from the Lab (which passes itself): the pods layer sits below the service."""

    def pod_image_exists(self, image: str) -> bool: ...
    def pod_images(self) -> Any: ...  # the Images store (to build the pause image)
    def pod_run(self, request: ContainerRequest, gate: Callable[[], None] | None = None) -> str: ...
    def pod_pin(self, folder: str, hostname: str) -> dict[str, str]: ...
    def pod_view(self, cid: str) -> ContainerView: ...
    def pod_wait(self, cid: str) -> int | None: ...
    def pod_last_line(self, cid: str) -> str: ...
    def pod_remove(self, cid: str) -> None: ...
    def pod_stop_containers(self, cids: list[str], timeout: float, progress: ProgressCallback | None) -> None: ...


@dataclass
class PodContainer:
    """One container of a played pod, as `pod inspect` shows it."""

    name: str            # the Kubernetes name (POD for the infra container)
    id: str              # the lab container's id
    lab_name: str        # the lab container's name: `wasmlab logs`, `inspect`, `exec` take it
    image: str
    role: str            # "sandbox", "init" or "container"
    status: str = "unknown"
    exit_code: int | None = None
    pid: int = 0
    handler: str | None = None
    restarts: int = 0
    state: str = ""                  # the keeper's word: Running, CrashLoopBackOff, Completed, Error ("" if none)
    next_restart: float | None = None  # while in CrashLoopBackOff: when the keeper restarts it (epoch seconds)


@dataclass
class PodInfo:
    """One played pod: its identity, its state (Running, Exited, Degraded, Created) and its containers."""

    name: str
    namespace: str
    id: str
    status: str
    created: float
    source: str
    propagation: str
    cgroup: str
    infra_pid: int
    containers: list[PodContainer] = field(default_factory=list)
    restart_policy: str = "Always"
    share_process_namespace: bool = False
    keeper_pid: int = 0          # the pod keeper (restartPolicy Always or OnFailure), 0 when it has none or ended
    runtime_class: str | None = None  # spec.runtimeClassName, recorded (wasmlab's own runtime plays the pod)
    runtime_class_effect: str = ""    # what a cluster does with it (plan.runtime_class_effect)

    @property
    def identity(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers)

    def container(self, name: str) -> PodContainer:
        for c in self.containers:
            if name in (c.name, c.lab_name, c.id):
                return c
        raise ContainerNotFound(f"pod {self.identity} has no container {name!r}",
                                f"its containers: {', '.join(c.name for c in self.containers if c.role != 'sandbox')}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"restarts": self.restarts}


@dataclass
class PlayResult:
    """`kube play`: the pods started, and the warnings (ignored fields, allowlist entries that matched nothing)."""

    pods: list[PodInfo]
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"pods": [p.as_dict() for p in self.pods], "warnings": self.warnings}


# -- the records -------------------------------------------------------------------------------------------------

def pods_dir(home: Path) -> Path:
    return home / "pods"


def pod_dir(home: Path, namespace: str, name: str) -> Path:
    return pods_dir(home) / namespace / name


def load_record(home: Path, namespace: str, name: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((pod_dir(home, namespace, name) / POD_FILE).read_text())
        return data
    except (OSError, ValueError):
        raise PodNotFound(f"no pod {namespace}/{name}",
                          "list them with `wasmlab pod ps`" + ("" if namespace != "default" else
                                                                 " (another namespace: give NAMESPACE/NAME)")) from None


def all_records(home: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    root = pods_dir(home)
    if not root.is_dir():
        return out
    for ns in sorted(root.iterdir()):
        if not ns.is_dir():
            continue
        for pod in sorted(ns.iterdir()):
            try:
                out.append(json.loads((pod / POD_FILE).read_text()))
            except (OSError, ValueError):
                continue  # being played (no record yet), or half removed
    return out


def write_record(folder: Path, record: dict[str, Any]) -> None:
    tmp = folder / f".{POD_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, folder / POD_FILE)


def split_identity(text: str, namespace: str | None = None) -> tuple[str, str]:
    """`name` (in NAMESPACE, default "default") or `namespace/name`."""
    if "/" in text:
        ns, _, name = text.partition("/")
        if namespace is not None and namespace != ns:
            raise UsageError(f"{text!r} names namespace {ns}, and --namespace says {namespace}", "give one of them")
        return ns, name
    return namespace or "default", text


def resolve(home: Path, text: str, namespace: str | None = None) -> tuple[str, str]:
    """A pod as podman finds one, as (namespace, name): NAME (in NAMESPACE, default "default") or NAMESPACE/NAME
    first, then its full id, then a unique prefix of its id (among NAMESPACE's pods when it is given). Nothing
    found: the name as given (load_record then says "no pod"); a prefix of several pods' ids: one line."""
    ns, name = split_identity(text, namespace)
    if "/" in text or not text or pod_dir(home, ns, name).exists():
        return ns, name
    ours = [r for r in all_records(home) if namespace in (None, r.get("namespace"))]
    found = [r for r in ours if r.get("id") == text] or [r for r in ours if str(r.get("id") or "").startswith(text)]
    if len(found) > 1:
        raise UsageError(f"{text!r} is the start of {len(found)} pods' ids: "
                         + ", ".join(f"{r['namespace']}/{r['name']} ({r['id']})" for r in found),
                         "give more of the id, or the pod's name (`wasmlab pod ps` lists them)")
    if found:
        return str(found[0]["namespace"]), str(found[0]["name"])
    return ns, name


# -- playing -----------------------------------------------------------------------------------------------------

def check_images(host: PodHost, plan: PodPlan) -> None:
    """Every image of every pod is in the lab before anything starts (one line for the first missing)."""
    for planned in plan.pods:
        for c in planned.pod.all_containers:
            if not host.pod_image_exists(c.image):
                from wasmlab.runtime.errors import ImageError

                raise ImageError(f"pod {planned.pod.identity}: container {c.name}: no image {c.image!r} in this lab",
                                 "build or pull it first (`wasmlab images` lists them; `wasmlab samples` builds "
                                 "wasmlab/*), or fix spec.containers[].image; `kube play --dry-run` shows the plan "
                                 "without running it")


def check_volumes(plan: PodPlan) -> None:
    """A sizeLimit on a disk emptyDir is refused before anything starts: wasmlab cannot hold a folder to a size
    (the kubelet does not either: it evicts the pod once its files pass the limit, and wasmlab evicts nothing).
    medium: Memory takes it, as the tmpfs's size."""
    for planned in plan.pods:
        pod = planned.pod
        spec = "spec.template.spec" if pod.kind == "Deployment" else "spec"
        for i, vol in enumerate(pod.volumes):
            empty = vol.empty_dir
            if empty is not None and empty.medium != "Memory" and empty.size_limit_bytes is not None:
                raise PodSpecError(
                    f"{spec}.volumes[{i}].emptyDir.sizeLimit",
                    f"pod {pod.identity}: volume {vol.name}: a sizeLimit on a disk emptyDir is not enforced by "
                    "wasmlab (a kubelet evicts the pod once the folder grows past it; wasmlab evicts nothing)",
                    "add medium: Memory for a tmpfs of that size (a hard limit, counted in the pod's memory), or "
                    "drop sizeLimit", source=plan.source)


def check_engine(engine: str | None) -> None:
    if engine is not None and engine not in WASM_ENGINES:
        raise UsageError(f"unknown engine {engine!r}", f"use one of {', '.join(WASM_ENGINES)}")


@dataclass(frozen=True)
class KeeperSettings:
    """What a pod keeper is started with: the back-off's first delay, the engine a container without one gets, and
    the log cap (the Lab's)."""

    backoff_base: float = keeper.DEFAULT_BASE
    default_engine: str | None = None
    log_max: int = 0


SCENARIO_ANNOTATION = "wasmlab.io/scenario"
RULE_OFF_SCENARIO = "sandbox-rule-off"


def check_sandbox_rule(plan: PodPlan, sandbox_rule: str) -> None:
    """`--sandbox-rule off` is for its scenario only: every pod of the file must say so."""
    if sandbox_rule == "on":
        return
    if sandbox_rule != "off":
        raise UsageError(f"unknown --sandbox-rule {sandbox_rule!r}", "use on (the default) or off")
    outside = [p.pod.identity for p in plan.pods if p.pod.annotations.get(SCENARIO_ANNOTATION) != RULE_OFF_SCENARIO]
    if outside:
        raise UsageError(f"--sandbox-rule off is a lab scenario, and pod {outside[0]} is not annotated for it",
                         f"play assets/pods/sandbox-rule-off.yaml, or annotate the pod "
                         f"{SCENARIO_ANNOTATION}: {RULE_OFF_SCENARIO}")


def play(host: PodHost, home: Path, plan: PodPlan, *, engine: str | None = None,
         on_pod: Callable[[PodInfo], None] | None = None, sandbox_rule: str = "on",
         keeping: KeeperSettings | None = None) -> list[PodInfo]:
    """Start every pod of the plan, one after the other. A pod that fails is rolled back, and so are the pods of
    this file started before it: either the whole file plays, or nothing stays. sandbox_rule "off" (its scenario
    only) hands the infra container to the handler the pod's annotations choose, as a runtime without crun's
    sandbox rule would. Each pod whose restartPolicy is Always or OnFailure gets a pod keeper
    (runtime/pods/keeper.py), which outlives this process."""
    check_engine(engine)
    check_sandbox_rule(plan, sandbox_rule)
    for planned in plan.pods:
        folder = pod_dir(home, planned.pod.namespace, planned.pod.name)
        if (folder / POD_FILE).exists() or folder.exists():
            raise PodExists(f"pod {planned.pod.identity} already exists",
                            f"`wasmlab kube down {plan.source or 'FILE'}` or `wasmlab pod rm {planned.pod.identity}` "
                            "first, or rename it (metadata.name) or put it in another namespace")
    check_volumes(plan)
    check_images(host, plan)
    sandbox.ensure_pause_image(host.pod_images())
    started: list[PodInfo] = []
    try:
        for planned in plan.pods:
            info = play_pod(host, home, planned, plan, engine=engine, sandbox_rule=sandbox_rule,
                            keeping=keeping or KeeperSettings())
            started.append(info)
            if on_pod is not None:
                on_pod(info)
    except BaseException:
        for info in reversed(started):
            remove_pod(host, home, info.namespace, info.name, force=True)
        raise
    return started


def play_pod(host: PodHost, home: Path, planned: PlannedPod, plan: PodPlan, *,
             engine: str | None = None, sandbox_rule: str = "on", keeping: KeeperSettings | None = None) -> PodInfo:
    pod = planned.pod
    folder = pod_dir(home, pod.namespace, pod.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()  # the claim: two plays of one pod cannot both win
    except FileExistsError:
        raise PodExists(f"pod {pod.identity} already exists",
                        f"`wasmlab pod rm {pod.identity}` first, or rename it") from None
    pod_id = secrets.token_hex(6)
    cgroup = sandbox.pod_cgroup(pod_id)
    record: dict[str, Any] = {
        "name": pod.name, "namespace": pod.namespace, "id": pod_id, "created": time.time(),
        "source": plan.source, "propagation": plan.propagation, "pod_annotations": list(plan.pod_annotations),
        "cgroup": cgroup, "restart_policy": pod.restart_policy,
        "share_process_namespace": pod.share_process_namespace, "runtime_class": pod.runtime_class_name,
        "containers": []}
    made: list[str] = []
    try:
        volumes = _volumes(folder, pod)
        engine = engine or pod.annotations.get(ENGINE_ANNOTATION) or None
        check_engine(engine)
        infra_name = sandbox.container_name(pod.namespace, pod.name, sandbox.INFRA_NAME)
        infra_notes = {**planned.annotations.sandbox.annotations, **sandbox.SANDBOX_TYPE}
        hostname = pod.name.split(".")[0][:63]
        if sandbox_rule == "off":
            infra_notes[SANDBOX_RULE_ANNOTATION] = "off"
        # The pod's network, IPC and UTS namespaces are made first and pinned (as CRI-O's pinns does), unless
        # the infra container must make them itself: its PID namespace (shareProcessNamespace: pause is its
        # pid 1), or the sandbox-rule-off scenario (a pod that loses its infra container has no network).
        pinned = sandbox_rule == "on" and not pod.share_process_namespace
        # Where the pins will be is known ahead: the bundles are written while the zygote makes them.
        join: dict[str, str] = nspin.pin_paths(str(folder / sandbox.PINS)) if pinned else {}
        infra_request = ContainerRequest(
            infra_name, sandbox.PAUSE_IMAGE, None, None, [], infra_notes,
            engine if sandbox_rule == "off" else None, RunOptions(),
            sandbox.PodSlot(pod.identity, cgroup, join=dict(join), hostname=None if pinned else hostname))

        def request_of(c: Container) -> ContainerRequest:
            traced = planned.annotations.container(c.name)
            image_keys = frozenset(t.key for t in traced.traces if t.origin == "image")
            notes = dict(traced.annotations)
            slot = sandbox.PodSlot(pod.identity, cgroup, join=join, drop_annotations=image_keys - notes.keys())
            return ContainerRequest(sandbox.container_name(pod.namespace, pod.name, c.name), c.image,
                                    list(c.args) or None, list(c.command) or None,
                                    [f"{e.name}={e.value}" for e in c.env], notes, engine, _options(c, volumes), slot)

        def failed(c: Container, exc: WasmlabError) -> PodStartFailed:
            traced = planned.annotations.container(c.name)
            held = [t.key for t in traced.traces if t.origin == "pod" and not t.passed]
            hint = exc.hint
            if held and planned.annotations.warnings:
                # containerd's allowlist held a pod annotation back: that is the cause to show.
                hint = f"{', '.join(held)} never reached it: {planned.annotations.warnings[0]}"
            return PodStartFailed(f"pod {pod.identity}: container {c.name} ({c.image}): {exc.message}", hint)

        def infra_started(outcome: str | BaseException) -> int:
            if isinstance(outcome, BaseException):
                if sandbox_rule != "off" or not isinstance(outcome, WasmlabError):
                    raise outcome
                raise PodStartFailed(
                    f"pod {pod.identity}: its infra container (pause) did not start: {outcome.message}; with the "
                    "sandbox rule off, the pod's annotations sent the native pause binary to the Wasm handler, so "
                    "the pod has no sandbox and no network namespace, and none of its containers can join one",
                    "this is why crun runs a container annotated io.kubernetes.cri.container-type=sandbox "
                    "natively whatever its other annotations (reported from real clusters); play it without "
                    "--sandbox-rule off") from None
            made.append(outcome)
            record["containers"].append(_entry(sandbox.INFRA_NAME, outcome, infra_name, sandbox.PAUSE_IMAGE,
                                               "sandbox"))
            pid = host.pod_view(outcome).pid
            if not pid:
                raise PodStartFailed(f"pod {pod.identity}: the infra container did not start",
                                     f"see `wasmlab logs {infra_name}`")
            record["infra_pid"] = pid
            return pid

        apps = list(pod.containers)
        if pinned and not pod.init_containers:
            # The namespaces are pinned while every container's bundle is made; then all are created at once,
            # the infra container with the app containers, in one batch to the zygote.
            requests = [request_of(c) for c in apps]
            outcomes = _start_all(host, [infra_request, *requests],
                                  meanwhile=lambda: host.pod_pin(str(folder / sandbox.PINS), hostname))
            infra_outcome, outcomes = outcomes[0], outcomes[1:]
            # Recorded first: a failed infra container rolls them back too.
            made.extend(outcome for outcome in outcomes if isinstance(outcome, str))
            if isinstance(infra_outcome, PodStartAborted):  # held back: an app's own failure is the one to show
                for c, outcome in zip(apps, outcomes, strict=True):
                    if isinstance(outcome, WasmlabError) and not isinstance(outcome, PodStartAborted):
                        raise failed(c, outcome)
            infra_started(infra_outcome)
            for c, request, outcome in zip(apps, requests, outcomes, strict=True):
                if isinstance(outcome, str):
                    record["containers"].append(_entry(c.name, outcome, request.name, c.image, "container"))
        else:
            if pinned:
                host.pod_pin(str(folder / sandbox.PINS), hostname)
            try:
                alone: str | BaseException = host.pod_run(infra_request)
            except WasmlabError as exc:
                alone = exc
            infra_pid = infra_started(alone)
            if not pinned:
                sandbox.loopback_up(infra_pid)
                join = sandbox.joined(infra_pid, pod.share_process_namespace)
            for c in pod.init_containers:
                request = request_of(c)
                try:
                    cid = host.pod_run(request)
                except WasmlabError as exc:
                    raise failed(c, exc) from None
                made.append(cid)
                record["containers"].append(_entry(c.name, cid, request.name, c.image, "init"))
                code = host.pod_wait(cid)
                if code != 0:
                    last = host.pod_last_line(cid)
                    said = f": {last}" if last else ""
                    raise PodInitFailed(
                        f"pod {pod.identity}: init container {c.name} exited with {code}{said}; the pod stops there",
                        "as in Kubernetes, the app containers start only after every init container exits 0 (under "
                        "restartPolicy Always/OnFailure the kubelet would run it again with back-off, "
                        "Init:CrashLoopBackOff; wasmlab stops and rolls back): fix it and play the pod again")
            # The app containers start side by side, as the kubelet starts them, created in one batch.
            requests = [request_of(c) for c in apps]
            outcomes = _start_all(host, requests)
            for c, request, outcome in zip(apps, requests, outcomes, strict=True):
                if isinstance(outcome, str):
                    made.append(outcome)
                    record["containers"].append(_entry(c.name, outcome, request.name, c.image, "container"))
        # The first container's own failure is the cause to show, not the others held back because of it.
        for c, outcome in sorted(zip(apps, outcomes, strict=True), key=lambda co: isinstance(co[1], PodStartAborted)):
            if isinstance(outcome, WasmlabError):
                raise failed(c, outcome) from None
            if isinstance(outcome, BaseException):
                raise outcome
        write_record(folder, record)
        if pod.restart_policy != "Never" and pod.containers:
            keeping = keeping or KeeperSettings()
            record["keeper"] = keeper.spawn(home, folder, pod.identity, base=keeping.backoff_base,
                                            engine=keeping.default_engine, log_max=keeping.log_max)
            write_record(folder, record)
    except BaseException:
        keeper.end(record.get("keeper"))
        for cid in reversed(made):
            try:
                host.pod_remove(cid)
            except WasmlabError:
                pass
        sandbox.remove_cgroup(cgroup)
        _unmount_all(folder)
        shutil.rmtree(folder, ignore_errors=True)
        _prune_namespace(folder.parent)
        raise
    return info_of(host, home, record)


# No time limit at the gate: a first run of a large image unpacks its layers while making its bundle, which may
# take minutes; a part that fails breaks the gate at once (gate.abort), so nobody waits for it.
GATE_TIMEOUT: float | None = None


def _start_all(host: PodHost, requests: list[ContainerRequest],
               meanwhile: Callable[[], object] | None = None) -> list[str | BaseException]:
    """Start every request side by side, each one's id or error (handed back: the caller rolls back).

    Each request gets a thread of its own, which makes its bundle and then waits at a gate; MEANWHILE (pinning
    the pod's namespaces) runs in this thread. Once every bundle is made and MEANWHILE is done, the creates go
    out together, so the zygote forks every init before it waits for any (zygote/server.py, _create_together)
    and the inits set up at once. A bundle that fails, or MEANWHILE failing, holds the others back
    (PodStartAborted, nothing made); MEANWHILE's error is raised."""
    if len(requests) < 2 and meanwhile is None:
        out: list[str | BaseException] = []
        for r in requests:
            try:
                out.append(host.pod_run(r))
            except BaseException as exc:
                out.append(exc)
        return out
    gate = threading.Barrier(len(requests) + 1)
    results: list[str | BaseException] = [PodStartAborted("not started", "")] * len(requests)

    def wait_at_gate() -> None:
        try:
            gate.wait(GATE_TIMEOUT)
        except threading.BrokenBarrierError:
            raise PodStartAborted("held back: another part of the pod failed first",
                                  "the other error says why") from None

    def one(i: int) -> None:
        try:
            results[i] = host.pod_run(requests[i], wait_at_gate)
        except BaseException as exc:
            gate.abort()  # the others stop waiting for this one (after the gate: nobody waits any more)
            results[i] = exc

    # A thread per request, never a shared pool: every one of them must be waiting at the gate at once.
    threads = [threading.Thread(target=one, args=(i,), name=f"wasmlab-pod-{i}", daemon=True)
               for i in range(len(requests))]
    for t in threads:
        t.start()
    failure: BaseException | None = None
    try:
        if meanwhile is not None:
            meanwhile()
        gate.wait(GATE_TIMEOUT)
    except threading.BrokenBarrierError:
        pass  # a bundle failed: its thread says why
    except BaseException as exc:  # the pin failed, or this thread was interrupted: nobody goes through
        failure = exc
        gate.abort()
    for t in threads:
        t.join()
    if failure is not None:
        raise failure
    return results


def _entry(name: str, cid: str, lab_name: str, image: str, role: str) -> dict[str, Any]:
    return {"name": name, "id": cid, "lab_name": lab_name, "image": image, "role": role}


def _volumes(folder: Path, pod: Pod) -> dict[str, tuple[str, bool]]:
    """Each volume's host folder: an emptyDir under the pod's folder (made now), a hostPath as given."""
    out: dict[str, tuple[str, bool]] = {}
    for vol in pod.volumes:
        if vol.host_path is not None:
            path = vol.host_path.path
            if vol.host_path.type == "DirectoryOrCreate":
                os.makedirs(path, exist_ok=True)
            if not os.path.exists(path):
                raise UsageError(f"pod {pod.identity}: hostPath {path} of volume {vol.name} does not exist",
                                 "create it, or give type: DirectoryOrCreate")
            out[vol.name] = (path, True)
        else:
            empty = folder / "volumes" / vol.name
            empty.mkdir(parents=True, mode=0o777)
            os.chmod(empty, 0o777)  # as the kubelet makes an emptyDir: any user of the pod writes there
            if vol.empty_dir is not None and vol.empty_dir.medium == "Memory":
                _mount_tmpfs(pod, vol.name, empty, vol.empty_dir.size_limit_bytes)
            out[vol.name] = (str(empty), False)
    return out


def _mount_tmpfs(pod: Pod, name: str, folder: Path, size: int | None) -> None:
    """medium: Memory, as the kubelet mounts it: a tmpfs on the emptyDir's folder, sized by sizeLimit (else the
    kernel's default, half the RAM), shared by the pod's containers through their bind mounts of the folder."""
    from wasmlab.runtime.linux import syscalls as sc

    data = "mode=0777" + (f",size={size}" if size is not None else "")
    try:
        sc.mount("tmpfs", str(folder), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, data)
    except OSError as exc:
        raise SetupError(f"pod {pod.identity}: cannot mount the tmpfs of volume {name} (medium: Memory): "
                         f"{exc.strerror}", "run as root; a sizeLimit must be at least one page (4Ki)") from None


def _unmount_all(folder: Path) -> None:
    """Unmount what the pod's folder holds (its pinned namespaces, its memory-backed emptyDirs), deepest first,
    before the folder is removed: the namespaces end with the last process in them."""
    from wasmlab.runtime.linux import syscalls as sc
    from wasmlab.runtime.store.usage import mounts_under

    for point in mounts_under(str(folder)):
        try:
            sc.umount2(point, 2)  # MNT_DETACH: a container still holding it cannot keep the folder
        except OSError:
            pass


def _options(c: Container, volumes: dict[str, tuple[str, bool]]) -> RunOptions:
    opts = RunOptions()
    for m in c.volume_mounts:
        source, _host = volumes[m.name]
        opts.volumes.append(f"{source}:{m.mount_path}{':ro' if m.read_only else ''}")
    if c.working_dir:
        opts.workdir = c.working_dir
    if c.resources.memory_bytes is not None:
        opts.memory = str(c.resources.memory_bytes)
    if c.resources.cpu_millis is not None:
        opts.cpus = min(c.resources.cpu_millis / 1000, float(os.cpu_count() or 1))
    for p in c.ports:
        if p.host_port:
            opts.publish.append(f"{p.host_ip + ':' if p.host_ip else ''}{p.host_port}:{p.container_port}")
    return opts


def _prune_namespace(folder: Path) -> None:
    try:
        folder.rmdir()  # the namespace's folder, once it holds no pod
    except OSError:
        pass


# -- reading and removing ---------------------------------------------------------------------------------------

def info_of(host: PodHost, home: Path, record: dict[str, Any]) -> PodInfo:
    kept = keeper.read_state(pod_dir(home, record["namespace"], record["name"]))
    kept_containers = kept.get("containers") or {}
    containers = []
    for entry in record.get("containers") or []:
        c = PodContainer(entry["name"], entry["id"], entry["lab_name"], entry["image"], entry["role"])
        try:
            view = host.pod_view(c.id)
            c.status, c.exit_code, c.pid, c.handler = view.status, view.exit_code, view.pid, view.handler
        except ContainerNotFound:
            c.status = "missing"
        mine = kept_containers.get(c.name) if c.role == "container" else None
        if mine:
            c.restarts = int(mine.get("restarts") or 0)
            c.state = str(mine.get("state") or "")
            c.next_restart = mine.get("next_restart") if c.state == keeper.BACKOFF else None
        containers.append(c)
    keeper_pid = int((record.get("keeper") or {}).get("pid") or 0)
    if keeper_pid and not _alive(keeper_pid, int((record.get("keeper") or {}).get("start") or 0)):
        keeper_pid = 0
    return PodInfo(record["name"], record["namespace"], record["id"],
                   _pod_status(containers, stopped=bool(record.get("stopped"))), record["created"],
                   record.get("source") or "", record.get("propagation") or "crio", record.get("cgroup") or "",
                   int(record.get("infra_pid") or 0), containers, record.get("restart_policy") or "Always",
                   bool(record.get("share_process_namespace")), keeper_pid, record.get("runtime_class"),
                   runtime_class_effect(record.get("runtime_class")))


def _alive(pid: int, start: int) -> bool:
    from wasmlab.runtime.store.state import proc_start_time

    now = proc_start_time(pid)
    return now is not None and (not start or now == start)


def _pod_status(containers: Sequence[PodContainer], *, stopped: bool = False) -> str:
    """The pod's state, in `kubectl get pods` words where Kubernetes has one: CrashLoopBackOff (a container waits
    out its back-off), Running (all up), Completed (all ended with 0 and none restarts), Error (all ended, one
    failed); podman's Degraded (some up) and Created (no app container), and Exited once the sandbox is gone or
    `pod stop` stopped it (STOPPED)."""
    infra = [c for c in containers if c.role == "sandbox"]
    apps = [c for c in containers if c.role == "container"]
    alive = [c for c in apps if c.status in ("running", "created", "paused")]
    if stopped:
        return "Exited" if not alive else "Degraded"
    if infra and infra[0].status != "running":
        return "Exited" if not alive else "Degraded"
    if any(c.state == keeper.BACKOFF for c in apps):
        return keeper.BACKOFF
    if apps and len(alive) == len(apps):
        return "Running"
    if alive:
        return "Degraded"
    if not apps:
        return "Created"
    return "Completed" if all(c.exit_code == 0 for c in apps) else "Error"


def remove_pod(host: PodHost, home: Path, namespace: str, name: str, *, force: bool = False,
               timeout: float | None = None, progress: ProgressCallback | None = None) -> PodInfo:
    """Stop and remove the pod's containers (apps, then init, then the infra container), its cgroup parent and
    its folder (emptyDir volumes with it). A running pod needs FORCE; its containers are killed at once, or with
    TIMEOUT given, sent SIGTERM first and SIGKILL after TIMEOUT s (one wait for them all, as `pod stop`). Under the
    pod's lock (runtime/pods/control.py): a `pod start` or `pod stop` under way finishes first."""
    from wasmlab.runtime.pods.control import held

    with held(home, namespace, name) as record:
        return remove_pod_held(host, home, record, force=force, timeout=timeout, progress=progress)


def remove_pod_held(host: PodHost, home: Path, record: dict[str, Any], *, force: bool = False,
                    timeout: float | None = None, progress: ProgressCallback | None = None) -> PodInfo:
    """remove_pod's work, the pod's lock held by the caller."""
    namespace, name = record["namespace"], record["name"]
    info = info_of(host, home, record)
    running = [c for c in info.containers if c.role != "sandbox" and c.status in ("running", "paused")]
    waiting = [c for c in info.containers if c.state == keeper.BACKOFF]
    if (running or waiting) and not force:
        raise InvalidState(f"pod {info.identity} is running ({', '.join(c.name for c in running + waiting)})",
                           f"`wasmlab pod rm -f {info.identity}` kills (SIGKILL) and removes it, as `kube down` does; "
                           f"`wasmlab pod rm -f -t 10 {info.identity}` sends SIGTERM first, as podman")
    keeper.end(record.get("keeper"))  # first: no restart can race the removal
    if running and timeout is not None:  # as podman's pod rm -f -t N: a chance to end cleanly first
        host.pod_stop_containers([c.id for c in running], timeout, progress)
    for c in reversed(info.containers):
        try:
            host.pod_remove(c.id)
        except WasmlabError:
            pass
    sandbox.remove_cgroup(record.get("cgroup") or sandbox.pod_cgroup(record["id"]))
    folder = pod_dir(home, namespace, name)
    _unmount_all(folder)
    shutil.rmtree(folder, ignore_errors=True)
    _prune_namespace(folder.parent)
    return info
