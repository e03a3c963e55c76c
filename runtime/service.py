"""The Lab: the one service every face calls (images, containers by name, logs, history, events), over one lab home."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wasmlab.runtime.errors import ContainerExists, ContainerNotFound, InvalidState, UsageError, WasmlabError
from wasmlab.runtime.events import (
    ContainerCreated,
    ContainerExited,
    ContainerStarted,
    ImageBuilt,
    ImageRemoved,
    LabEvent,
    RunRecorded,
    Subscriber,
)
from wasmlab.runtime.handlers.detect import ENGINE_ANNOTATION, WASM_ENGINES
from wasmlab.runtime.options import RunOptions, refuse_unsupported
from wasmlab.runtime.progress import Progress, ProgressCallback
from wasmlab.runtime.status import ContainerStatus
from wasmlab.runtime.store.atomic import Lock
from wasmlab.runtime.store.home import checked_home, lab_home, runtime_root
from wasmlab.runtime.store.migrate import open_home

if TYPE_CHECKING:
    from wasmlab.runtime.images.archive import LoadResult, SaveResult
    from wasmlab.runtime.images.build import BuildEvent, BuildResult
    from wasmlab.runtime.images.registry import PullResult, PushResult, TransferEvent
    from wasmlab.runtime.images.samples import Sample
    from wasmlab.runtime.images.service import ImageDetails, Images, ImageSummary, PruneResult, RemoveResult
    from wasmlab.runtime.lifecycle import Runtime
    from wasmlab.runtime.pods.generate import Generated
    from wasmlab.runtime.pods.plan import PodPlan
    from wasmlab.runtime.store.history import History, RunRecord

NAME_ANNOTATION = "wasmlab.io/name"
IMAGE_ANNOTATION = "wasmlab.io/image"
# What `ps` lists without -a.
LISTED = (ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED)
ALIVE = LISTED  # the name older code used
SAVE_FORMATS = ("oci-archive", "docker-archive", "oci-dir", "wasm-artifact")
_T = TypeVar("_T")


@dataclass
class ContainerInfo:
    """One lab container, as `wasmlab ps` shows it."""

    id: str
    name: str
    image: str
    command: list[str]
    status: ContainerStatus
    created: float
    handler: str | None = None
    exit_code: int | None = None
    pid: int = 0
    annotations: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = str(self.status)
        return out


@dataclass
class ContainerDetails:
    """What `wasmlab inspect NAME` shows: the `ps` row, the runtime's state document and the bundle."""

    info: ContainerInfo
    bundle: str
    state: dict[str, Any] | None = None
    rootfs: str = "copy"        # how its root was made: "overlay" of shared snapshots, or a "copy"

    @property
    def status(self) -> ContainerStatus:
        return self.info.status

    @property
    def exit_code(self) -> int | None:
        return self.info.exit_code

    def as_dict(self) -> dict[str, Any]:
        out = self.info.as_dict()
        if self.state is not None:
            out["state"] = self.state
        out["bundle"] = self.bundle
        out["rootfs"] = self.rootfs
        return out


@dataclass
class LabRun:
    """The outcome of `wasmlab run`: a container id and, in the foreground, its exit code and timings."""

    id: str
    name: str
    exit_code: int | None
    decision: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Lab:
    """The service the faces use, and the only one: images, containers by name, logs, history and events,
    all under one lab home. Its parts (image store, runtime, history) are private and made on first use."""

    def __init__(self, home: str | os.PathLike[str] | None = None, *, default_engine: str | None = None) -> None:
        self.home = open_home(checked_home(home) if home is not None else lab_home())
        self._default_engine = default_engine
        self._containers_dir = self.home / "containers"
        self._parts: dict[str, Any] = {}
        self._parts_lock = threading.Lock()
        self._events_lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._runtime_unsubscribe: Callable[[], None] | None = None
        self._starting: dict[str, list[LabEvent]] = {}  # exits heard before their ContainerStarted went out
        self._removing: set[str] = set()                # `--rm` containers being removed after the answer
        self._cleanups: list[threading.Thread] = []

    def _part(self, key: str, make: Callable[[], _T]) -> _T:
        with self._parts_lock:
            if key not in self._parts:
                self._parts[key] = make()
            part: _T = self._parts[key]
            return part

    @property
    def _images(self) -> Images:
        from wasmlab.runtime.images.service import Images

        return self._part("images", lambda: Images(self.home))

    @property
    def _runtime(self) -> Runtime:
        from wasmlab.runtime.lifecycle import Runtime

        return self._part("runtime", lambda: Runtime(root=str(runtime_root(self.home)),
                                                     default_engine=self._default_engine, home=str(self.home)))

    @property
    def _history(self) -> History:
        from wasmlab.runtime.store.history import History

        return self._part("history", lambda: History(self.home / "history.db"))

    def close(self) -> None:
        for cleanup in list(self._cleanups):
            cleanup.join()  # `run --rm` containers whose removal was left for after the answer
        with self._events_lock:
            if self._runtime_unsubscribe is not None:
                self._runtime_unsubscribe()
                self._runtime_unsubscribe = None
        with self._parts_lock:
            parts = dict(self._parts)
        if "runtime" in parts:
            parts["runtime"].close()
        if "history" in parts:
            parts["history"].close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- events -------------------------------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call callback(event) with every LabEvent from now on; returns the function that stops it.

        Callbacks run on whichever thread the event happened on (the caller's, or the runtime's reader
        thread): a UI hands them to its own loop and never blocks in them. Per container, the order is
        ContainerCreated, ContainerStarted, ContainerExited.
        """
        with self._events_lock:
            self._subscribers.append(callback)
            if self._runtime_unsubscribe is None:
                self._runtime_unsubscribe = self._runtime.subscribe(self._on_runtime_event)

        def unsubscribe() -> None:
            with self._events_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
                if not self._subscribers and self._runtime_unsubscribe is not None:
                    self._runtime_unsubscribe()
                    self._runtime_unsubscribe = None

        return unsubscribe

    def _emit(self, event: LabEvent) -> None:
        with self._events_lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            try:
                cb(event)
            except Exception:
                continue

    def _on_runtime_event(self, raw: dict[str, Any]) -> None:
        """The runtime's dict events, as typed ones; only for the lab's own containers (not RUN steps)."""
        kind, cid = raw.get("event"), str(raw.get("id") or "")
        if not cid or kind not in ("exit", "recorded"):
            return  # "created" is sent by the Lab itself, in order with "started"
        with self._events_lock:
            held = self._starting.get(cid)
            if held is None and not self._dir(cid).is_dir():
                return
            name = self._name_of(cid)
            event: LabEvent
            if kind == "exit":
                rec = raw.get("exit") or {}
                event = ContainerExited(cid, name, rec.get("exit_code"), rec.get("signal"),
                                        bool(rec.get("oom_killed")), dict(raw.get("timings") or {}),
                                        dict(raw.get("memory") or {}) | {"max_rss_kb": int(rec.get("max_rss_kb") or 0)})
            else:
                event = RunRecorded(cid, name, int(raw.get("seq") or 0), raw.get("exit_code"), raw.get("signal"))
            if held is not None:
                held.append(event)
                return
            self._emit(event)

    def _name_of(self, cid: str) -> str:
        try:
            return str(self._meta(cid).get("name") or "")
        except ContainerNotFound:
            return ""

    @contextmanager
    def _starting_container(self, cid: str) -> Iterator[Callable[[str], None]]:
        """Hold this container's exit until its start has been announced; yields the announcer."""
        with self._events_lock:
            self._starting[cid] = []

        def started(name: str) -> None:
            with self._events_lock:
                self._emit(ContainerStarted(cid, name))
                for event in self._starting.pop(cid, []):
                    self._emit(event)

        try:
            yield started
        finally:
            with self._events_lock:
                for event in self._starting.pop(cid, []):
                    self._emit(event)

    # -- images -------------------------------------------------------------------------------------------------
    def build(self, context: str | os.PathLike[str], containerfile: str | os.PathLike[str] | None = None, *,
              tag: str | None = None, annotations: Mapping[str, str] | None = None,
              labels: Mapping[str, str] | None = None, platform: str | None = None,
              build_args: Mapping[str, str] | None = None, target: str | None = None,
              progress: ProgressCallback | None = None) -> BuildResult:
        """`podman build`: RUN steps run in containers of this lab's runtime; fires ImageBuilt."""

        def on_step(event: BuildEvent) -> None:
            if progress is not None:
                progress(Progress("build", event.message, event.step, event.total, "steps" if event.total else ""))

        res = self._images.build(context, containerfile, tag=tag, annotations=annotations, labels=labels,
                                 platform=platform, build_args=build_args, target=target,
                                 progress=on_step, run_step=self._run_step(progress))
        self._emit(ImageBuilt(res.name, res.digest, res.id))
        return res

    def _run_step(self, progress: ProgressCallback | None) -> Callable[..., int]:
        """The RUN runner: one container of this lab's runtime over the build's rootfs, its output as progress."""

        def run_step(rootfs: Any, argv: list[str], env: list[str], cwd: str, user: tuple[int, int] = (0, 0)) -> int:
            import tempfile

            from wasmlab.runtime.spec.runtime import default_config

            with tempfile.TemporaryDirectory(prefix="wasmlab-run-") as bundle:
                cfg = default_config(argv)
                cfg["root"] = {"path": str(rootfs), "readonly": False}
                cfg["process"].update(env=env, cwd=cwd or "/", terminal=False, user={"uid": user[0], "gid": user[1]})
                cfg["linux"]["namespaces"] = [{"type": t} for t in ("pid", "mount", "uts", "ipc")]
                cfg["mounts"] = [m for m in cfg["mounts"]
                                 if m["destination"] in ("/proc", "/dev", "/dev/pts", "/dev/shm")]
                cfg["linux"]["maskedPaths"] = []
                cfg["linux"]["readonlyPaths"] = []
                with open(os.path.join(bundle, "config.json"), "w") as fh:
                    json.dump(cfg, fh)
                result = self._runtime.run(f"build-{os.getpid()}-{secrets.token_hex(4)}", bundle)
            output = (result.stdout + result.stderr).decode("utf-8", "replace")
            if progress is not None and output:
                progress(Progress("build", f"output of RUN {' '.join(argv)[:60]}", output=output))
            return int(result.exit_code)

        return run_step

    def images(self, *, all: bool = False) -> list[ImageSummary]:
        """`podman images`: named images (with ALL, dangling ones too), newest first."""
        return self._images.list(all=all)

    def image_inspect(self, name: str) -> ImageDetails:
        return self._images.inspect(name)

    def tag(self, source: str, target: str) -> ImageSummary:
        return self._images.tag(source, target)

    def rmi(self, image: str, *, force: bool = False) -> RemoveResult:
        """`podman rmi`: remove a name; the image goes with its last name, refused while containers use
        it unless FORCE, which removes those containers first (stopping running ones). Fires ImageRemoved."""
        found, matched = self._images.store.match(image)
        if matched is None or len(found.names) <= 1:
            users = self._image_users(image)
            if users and not force:
                names = ", ".join(u.name for u in users)
                raise InvalidState(f"image {image} is in use by container{'s' if len(users) > 1 else ''} {names}",
                                   f"`wasmlab rm {users[0].name}` first, or `wasmlab rmi -f {image}` to remove "
                                   "the containers too")
            for user in users:
                self.rm(user.id, force=True)
        res = self._images.remove(image)
        self._emit(ImageRemoved(image, list(res.untagged), res.deleted))
        return res

    def prune(self, *, all: bool = False) -> PruneResult:
        """`wasmlab image prune`: unnamed images and the blobs no image uses (with ALL, as before: the blobs only)."""
        return self._images.prune(dangling=not all)

    def save(self, names: str | Sequence[str], path: str | os.PathLike[str], *, format: str = "oci-archive",
             progress: ProgressCallback | None = None) -> SaveResult:
        """`podman save`; format wasm-artifact writes one compat image's module as a CNCF Wasm OCI artifact."""
        wanted = [names] if isinstance(names, str) else list(names)
        if format not in SAVE_FORMATS:
            raise UsageError(f"unknown format {format!r}", f"use one of {', '.join(SAVE_FORMATS)}")
        if format == "wasm-artifact":
            if len(wanted) != 1:
                raise UsageError("a Wasm artifact holds one module: save one image at a time",
                                 "wasmlab save --format wasm-artifact -o hello.tar IMAGE")
            return self._images.export_wasm(wanted[0], path)
        return self._images.save(wanted, path, format=format, progress=_lines("save", progress))

    def load(self, path: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> LoadResult:
        """`podman load`: an oci-archive, docker-archive, OCI layout or Wasm artifact."""
        return self._images.load(path, progress=_lines("load", progress))

    def push(self, name: str, destination: str | None = None, *, tls_verify: bool = True,
             credentials: tuple[str, str] | None = None, progress: ProgressCallback | None = None) -> PushResult:
        return self._images.push(name, destination, tls_verify=tls_verify, credentials=credentials,
                                 progress=_transfers("push", progress))

    def pull(self, ref: str, *, tls_verify: bool = True, credentials: tuple[str, str] | None = None,
             platform: tuple[str, str] | None = None, progress: ProgressCallback | None = None) -> PullResult:
        return self._images.pull(ref, tls_verify=tls_verify, credentials=credentials, platform=platform,
                                 progress=_transfers("pull", progress))

    def samples(self, *, busybox: bool = True, progress: ProgressCallback | None = None) -> list[Sample]:
        """Build the sample images (every program in assets/ as compat, compat-smart and Linux images)."""
        from wasmlab.runtime.images.samples import build_samples, containerfiles

        total = len(containerfiles()) + (1 if busybox else 0)
        count = [0]

        def step(name: str) -> None:
            count[0] += 1
            if progress is not None:
                progress(Progress("samples", name, count[0], total, "images"))

        built = build_samples(self._images, busybox=busybox, progress=step)
        for sample in built:
            self._emit(ImageBuilt(sample.name, sample.digest))
        return built

    # -- history and the machine --------------------------------------------------------------------------------
    def history(self, last: int = 20, *, handler: str | None = None, since_seq: int = 0) -> list[RunRecord]:
        """The newest runs first (with since_seq: every run after that one, oldest first)."""
        self._runtime.collect_runs()  # runs that ended while no lab listened (`run -d`, then the command exited)
        return self._history.recent(last, handler=handler, since_seq=since_seq)

    def root_mode(self) -> str:
        """How this lab makes container roots: "overlay" (shared snapshots) or "copy" (see `wasmlab doctor`)."""
        return self._images.root_mode()

    @staticmethod
    def doctor() -> dict[str, Any]:
        """What this machine lets the lab do: privileges, user namespaces, cgroups, handlers, tools."""
        from wasmlab.runtime.doctor import diagnose

        return diagnose()

    # -- pods (to come): play, down and inspect will live here, with their own events -----------------------

    def pod_plan(self, file: str | os.PathLike[str], *, propagation: str = "crio",
                 pod_annotations: Sequence[str] | None = None, allow_host_path: bool = False) -> PodPlan:
        """The pods of a Kubernetes YAML file, each container's annotations as CRI-O or containerd would pass them
        (containerd: the pod_annotations allowlist, default module.wasm.image/*), and the warnings. Runs nothing.
        Image annotations come from the lab's images (listed, never passed on, as under a CRI)."""
        from wasmlab.runtime.errors import ImageError
        from wasmlab.runtime.pods.plan import plan_pods

        def image_annotations(image: str) -> dict[str, str] | None:
            try:
                return dict(self._images.inspect(image).manifest.get("annotations") or {})
            except ImageError:
                return None

        return plan_pods(file, propagation=propagation, pod_annotations=pod_annotations,
                         allow_host_path=allow_host_path, image_annotations=image_annotations)

    @staticmethod
    def kube_generate(file: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                      runtime_path: str | None = None, allow_host_path: bool = False) -> Generated:
        """`kube generate`: pod.yaml (with runtimeClassName), runtimeclass.yaml, crio.conf and containerd.toml in
        out_dir, for a real cluster; runtime_path names another OCI runtime than crun (such as wasmlab-oci)."""
        from wasmlab.runtime.pods.generate import generate

        return generate(file, out_dir, runtime_path=runtime_path, allow_host_path=allow_host_path)

    # -- containers ---------------------------------------------------------------------------------------------
    def _dir(self, cid: str) -> Path:
        return self._containers_dir / cid

    def _meta(self, cid: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self._dir(cid) / "meta.json").read_text())
            return data
        except (OSError, ValueError):
            raise ContainerNotFound(f"no container {cid!r}", "list them with `wasmlab ps -a`") from None

    def _all_meta(self) -> list[dict[str, Any]]:
        out = []
        if self._containers_dir.is_dir():
            for entry in sorted(self._containers_dir.iterdir()):
                if entry.name in self._removing:
                    continue  # gone as far as anyone asking this lab is concerned
                try:
                    out.append(json.loads((entry / "meta.json").read_text()))
                except (OSError, ValueError):
                    continue
        return out

    def resolve(self, name_or_id: str) -> str:
        """The container id for a name, an id, or a unique id prefix."""
        if not name_or_id.strip():
            raise UsageError("no container name given", "list them with `wasmlab ps -a`")
        metas = self._all_meta()
        for m in metas:
            if name_or_id in (m["name"], m["id"]):
                return str(m["id"])
        matches = [m for m in metas if m["id"].startswith(name_or_id)]
        if len(matches) == 1:
            return str(matches[0]["id"])
        raise ContainerNotFound(f"no container named {name_or_id!r}", "list them with `wasmlab ps -a`")

    def run(self, image: str, command: Sequence[str] | None = None, *, name: str | None = None, rm: bool = False,
            detach: bool = False, annotations: Mapping[str, str] | None = None, env: Sequence[str] | None = None,
            engine: str | None = None, entrypoint: Sequence[str] | None = None,
            stdio: tuple[int, int, int] | None = None, on_created: Callable[[str], None] | None = None,
            sig_proxy: bool = False, options: RunOptions | None = None) -> LabRun:
        """Run IMAGE like `podman run`. In the foreground, output goes to stdio (and the log) and this waits.

        on_created(id) is called once the container exists. With sig_proxy (podman's --sig-proxy; from the
        main thread, in the foreground), SIGTERM, SIGINT and SIGHUP sent to this process go to the container,
        and a second one kills it (a Linux pid 1 may ignore the first)."""
        if engine is not None and engine not in WASM_ENGINES:
            raise UsageError(f"unknown engine {engine!r}", f"use one of {', '.join(WASM_ENGINES)}")
        options = options or RunOptions()
        refuse_unsupported(options)
        cid = secrets.token_hex(6)
        name = name or f"wasmlab_{cid[:6]}"
        if not _NAME.match(name):
            raise UsageError(f"invalid container name {name!r}",
                             "names start with a letter or digit, then letters, digits, '_', '.' or '-'")
        anns = dict(annotations or {})
        if engine:
            anns[ENGINE_ANNOTATION] = engine
        anns[NAME_ANNOTATION] = name
        anns[IMAGE_ANNOTATION] = image
        cdir = self._dir(cid)
        self._containers_dir.mkdir(parents=True, exist_ok=True)
        with Lock(self._containers_dir.parent / ".container-names.lock"):
            # Checked and claimed under one lock (the claim is a first meta.json): two runs with one --name
            # cannot both win.
            if any(m["name"] == name for m in self._all_meta()):
                raise ContainerExists(f"the name {name!r} is in use", f"`wasmlab rm {name}` or pick another --name")
            cdir.mkdir(parents=True)
            (cdir / "meta.json").write_text(json.dumps({"id": cid, "name": name, "image": image, "command": [],
                                                        "created": time.time(), "rm": rm, "detach": detach,
                                                        "creating": True}))
        try:
            unpacked = self._images.prepare(image, cdir / "bundle", args=list(command) if command else None,
                                           env=_host_env(env or []), annotations=anns,
                                           entrypoint=list(entrypoint) if entrypoint is not None else None)
            if os.geteuid() == 0:
                # A cgroup of its own, as podman gives each container: pause/unpause, peak memory, OOM.
                config_path = cdir / "bundle" / "config.json"
                config = json.loads(config_path.read_text())
                config.setdefault("linux", {})["cgroupsPath"] = f"wasmlab/{cid}"
                config_path.write_text(json.dumps(config))
            meta = {"id": cid, "name": name, "image": image, "image_digest": unpacked.digest,
                    "command": unpacked.args, "created": time.time(), "rm": rm, "detach": detach,
                    "rootfs": unpacked.root}
            (cdir / "meta.json").write_text(json.dumps(meta))
            log_fd = os.open(cdir / "ctr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        try:
            with self._starting_container(cid) as started:
                if detach:
                    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        self._runtime.create(cid, str(cdir / "bundle"), stdin=null, stdout=log_fd, stderr=log_fd)
                    finally:
                        os.close(null)
                    self._emit(ContainerCreated(cid, name, image))
                    if on_created is not None:
                        on_created(cid)
                    self._runtime.start(cid)
                    started(name)
                    return LabRun(cid, name, None)
                if sig_proxy and threading.current_thread() is threading.main_thread():
                    from wasmlab.runtime.signals import Forwarder

                    proxy = Forwarder((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), escalate=True)
                    user_created = on_created

                    def on_created_proxied(created: str) -> None:
                        proxy.target(lambda sig: self._kill_quietly(created, sig))
                        if user_created is not None:
                            user_created(created)

                    on_created = on_created_proxied
                return self._foreground(cid, name, image, cdir, log_fd, stdio, rm, started, on_created)
        except WasmlabError:
            self._discard(cid)
            raise
        finally:
            os.close(log_fd)

    def _foreground(self, cid: str, name: str, image: str, cdir: Path, log_fd: int,
                    stdio: tuple[int, int, int] | None, rm: bool, started: Callable[[str], None],
                    on_created: Callable[[str], None] | None = None) -> LabRun:
        """One `run` request to the runtime (create and start in one step; a Wasm init hands its result
        straight back), with the output relayed to the caller's stdio and to the log."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sinks = stdio or (0, 1, 2)
        relays = [threading.Thread(target=_relay, args=(out_r, (sinks[1], log_fd)), daemon=True),
                  threading.Thread(target=_relay, args=(err_r, (sinks[2], log_fd)), daemon=True)]
        for t in relays:
            t.start()
        if on_created is not None:
            on_created(cid)  # a signal before the container exists finds nothing, and is dropped
        self._emit(ContainerCreated(cid, name, image))
        started(name)
        try:
            res = self._runtime.run(cid, str(cdir / "bundle"), stdio=(sinks[0], out_w, err_w), keep=not rm)
        except BaseException:
            self._kill_quietly(cid, signal.SIGKILL)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
            for t in relays:
                t.join(5)
        result = LabRun(cid, name, res.exit_code, decision=res.decision, timings=res.timings,
                        memory={"max_rss_kb": int(res.memory.get("max_rss_kb") or 0)})
        if rm:
            self._discard_later(cid)
        return result

    def _discard_later(self, cid: str) -> None:
        """Remove a `--rm` container after the answer, off the caller's path (removing folders takes longer
        than running hello.wasm). This lab no longer shows it; close() waits until it is gone."""
        self._removing.add(cid)

        def discard() -> None:
            try:
                self._discard(cid)
            finally:
                self._removing.discard(cid)

        self._cleanups = [t for t in self._cleanups if t.is_alive()]
        cleanup = threading.Thread(target=discard, name=f"wasmlab-rm-{cid}", daemon=True)
        self._cleanups.append(cleanup)
        cleanup.start()

    def _kill_quietly(self, cid: str, signum: int) -> None:
        try:
            self._runtime.kill(cid, signum)
        except WasmlabError:
            pass  # it has just ended

    def _discard(self, cid: str) -> None:
        try:
            self._runtime.delete(cid, force=True)
        except WasmlabError:
            pass
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    def ps(self, *, all: bool = False) -> list[ContainerInfo]:
        rows = []
        for m in self._all_meta():
            info = self._info(m)
            if m.get("rm") and m.get("detach") and info.status not in LISTED and not m.get("creating"):
                self._discard(m["id"])  # `run -d --rm`: gone once it has exited, as with podman
                continue
            if all or info.status in LISTED:
                rows.append(info)
        return sorted(rows, key=lambda r: r.created, reverse=True)

    def _info(self, m: dict[str, Any]) -> ContainerInfo:
        try:
            st = self._runtime.state(m["id"])
            status, extra = ContainerStatus.parse(st["status"]), st.get("wasmlab") or {}
            exit_code = (extra.get("exit") or {}).get("exit_code")
            return ContainerInfo(m["id"], m["name"], m["image"], m["command"], status, m["created"],
                                 extra.get("handler"), exit_code, int(st.get("pid") or 0), st.get("annotations") or {})
        except ContainerNotFound:
            status = ContainerStatus.CREATING if m.get("creating") else ContainerStatus.STOPPED
            return ContainerInfo(m["id"], m["name"], m["image"], m["command"], status, m["created"])

    def _status(self, cid: str) -> ContainerStatus:
        return self._info(self._meta(cid)).status

    def inspect(self, name: str) -> ContainerDetails:
        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        try:
            state: dict[str, Any] | None = self._runtime.state(cid)
        except ContainerNotFound:
            state = None
        return ContainerDetails(info, str(self._dir(cid) / "bundle"), state,
                                str(self._meta(cid).get("rootfs") or "copy"))

    def logs(self, name: str, *, after: int = 0) -> tuple[list[bytes], int]:
        """The container's output from byte AFTER on, and the cursor to pass next time (nothing is read twice)."""
        return self._read_log(self.resolve(name), after)

    def _read_log(self, cid: str, after: int) -> tuple[list[bytes], int]:
        chunks: list[bytes] = []
        try:
            fh = open(self._dir(cid) / "ctr.log", "rb")  # noqa: SIM115
        except FileNotFoundError:
            if not self._dir(cid).is_dir():
                raise ContainerNotFound(f"no container {cid!r}", "list them with `wasmlab ps -a`") from None
            return chunks, after  # being created: no log yet
        with fh:
            fh.seek(max(0, after))
            while chunk := fh.read(65536):
                chunks.append(chunk)
        return chunks, max(0, after) + sum(len(c) for c in chunks)

    def follow(self, name: str, *, after: int = 0, stop: threading.Event | None = None,
               poll: float = 0.1) -> Iterator[bytes]:
        """`logs -f`: the output from AFTER on, as it comes, until the container has no process left (a paused
        one is still followed) or STOP is set. The status is read before the log, so no last words are lost."""
        cid = self.resolve(name)
        cursor = after
        while True:
            alive = self._status(cid).alive
            chunks, cursor = self._read_log(cid, cursor)
            yield from chunks
            if not alive:
                return
            if stop is not None:
                if stop.wait(poll):
                    return
            else:
                time.sleep(poll)

    def stop(self, name: str, *, timeout: float = 10.0) -> ContainerInfo:
        """SIGTERM, then SIGKILL after timeout seconds, as podman stop does."""
        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        if info.status not in LISTED:
            return info
        if info.status is ContainerStatus.PAUSED:
            self._runtime.resume(cid)  # a frozen process cannot act on SIGTERM
        self._runtime.kill(cid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._status(cid) not in LISTED:
                return self._info(self._meta(cid))
            time.sleep(0.02)
        self._runtime.kill(cid, signal.SIGKILL)
        for _ in range(250):
            if self._status(cid) not in LISTED:
                break
            time.sleep(0.02)
        return self._info(self._meta(cid))

    def kill(self, name: str, signum: int = signal.SIGKILL) -> str:
        cid = self.resolve(name)
        self._runtime.kill(cid, signum)
        return cid

    def exec(self, name: str, command: Sequence[str], *, env: Sequence[str] = (), cwd: str | None = None,
             stdio: tuple[int, int, int] | None = None) -> int:
        """Run a command in a running container, like `podman exec`; returns its exit status.

        Through the runtime (Runtime.exec), with stdio (default: this process's 0, 1, 2)."""
        cid = self.resolve(name)
        return self._runtime.exec(cid, list(command), env=_host_env(env), cwd=cwd, stdio=stdio)

    def pause(self, name: str) -> str:
        cid = self.resolve(name)
        self._runtime.pause(cid)
        return cid

    def unpause(self, name: str) -> str:
        cid = self.resolve(name)
        self._runtime.resume(cid)
        return cid

    def _image_users(self, image: str) -> list[ContainerInfo]:
        """The containers (running or not) made from the image that IMAGE names."""
        digest = self._images.store.resolve(image).digest
        users = []
        for m in self._all_meta():
            used = m.get("image_digest")
            if used is None:  # made before the digest was recorded: go by the name it was run as
                try:
                    used = self._images.store.resolve(m["image"]).digest
                except WasmlabError:
                    continue
            if used == digest:
                users.append(self._info(m))
        return users

    def rm(self, name: str, *, force: bool = False) -> str:
        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        if info.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED) and not force:
            raise InvalidState(f"container {info.name} is running", f"`wasmlab stop {info.name}` or use `rm -f`")
        self._discard(cid)
        return cid


def _lines(phase: str, progress: ProgressCallback | None) -> Callable[[str], None] | None:
    """An archive's one-line progress notes, as Progress."""
    if progress is None:
        return None
    sink = progress
    return lambda what: sink(Progress(phase, what))


def _transfers(phase: str, progress: ProgressCallback | None) -> Callable[[TransferEvent], None] | None:
    """A registry transfer's events, as Progress in bytes."""
    if progress is None:
        return None
    sink = progress

    def on_event(event: TransferEvent) -> None:
        sink(Progress(phase, f"{event.kind} {event.digest[:19]}", event.done, event.total, "bytes"))

    return on_event


def _relay(src: int, sinks: tuple[int, ...]) -> None:
    """Copy a container's output to the terminal and its log as it comes."""
    try:
        while True:
            chunk = os.read(src, 65536)
            if not chunk:
                return
            for fd in sinks:
                try:
                    os.write(fd, chunk)
                except OSError:
                    pass
    finally:
        os.close(src)


def _host_env(env: Sequence[str]) -> list[str]:
    """`-e NAME` without a value passes the caller's NAME through, as podman does (left out if unset)."""
    out = []
    for entry in env:
        name = entry.partition("=")[0]
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise UsageError(f"invalid environment entry {entry!r}",
                             "write -e NAME=VALUE, or -e NAME to pass on this shell's value")
        if "=" in entry:
            out.append(entry)
        elif entry in os.environ:
            out.append(f"{entry}={os.environ[entry]}")
    return out


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
