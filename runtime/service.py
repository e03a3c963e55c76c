"""The Lab: the one service every face calls (images, containers by name, logs, history, events), over one lab home."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wasmlab.runtime.errors import (
    ContainerExists,
    ContainerNotFound,
    HandlerError,
    InvalidState,
    PodNotFound,
    PrivilegeError,
    SetupError,
    TerminalRefused,
    UsageError,
    WasmlabError,
)
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
from wasmlab.runtime.handlers.base import EXIT_NO_ENTRYPOINT
from wasmlab.runtime.handlers.detect import ENGINE_ANNOTATION, WASM_ENGINES, check_variant
from wasmlab.runtime.linux import cgroups
from wasmlab.runtime.options import RunOptions, refuse_unsupported
from wasmlab.runtime.progress import Progress, ProgressCallback
from wasmlab.runtime.status import ContainerStatus
from wasmlab.runtime.store import creator, ctrlog
from wasmlab.runtime.store.atomic import Lock
from wasmlab.runtime.store.home import checked_home, lab_home, runtime_root
from wasmlab.runtime.store.migrate import open_home
from wasmlab.runtime.store.names import NameIndex, meta_holds

if TYPE_CHECKING:
    from wasmlab.runtime.images.archive import LoadResult, SaveResult
    from wasmlab.runtime.images.build import BuildEvent, BuildResult
    from wasmlab.runtime.images.registry import PullResult, PushResult, TransferEvent
    from wasmlab.runtime.images.runflags import RunFlags
    from wasmlab.runtime.images.samples import Sample
    from wasmlab.runtime.images.service import ImageDetails, Images, ImageSummary, PruneResult, RemoveResult
    from wasmlab.runtime.images.unpack import RootLayers
    from wasmlab.runtime.lifecycle import Runtime
    from wasmlab.runtime.linux.portforward import PortMapping
    from wasmlab.runtime.linux.proctable import ProcessRow
    from wasmlab.runtime.metrics.stream import MetricSample, MetricsStream, MetricsTick
    from wasmlab.runtime.pods.containerd import CriRun
    from wasmlab.runtime.pods.generate import Generated
    from wasmlab.runtime.pods.inspect import ContainerNamespaces
    from wasmlab.runtime.pods.plan import PodPlan
    from wasmlab.runtime.pods.play import ContainerRequest, ContainerView, PlayResult, PodInfo
    from wasmlab.runtime.pods.sandbox import PodSlot
    from wasmlab.runtime.store.ctrlog import LogEntry
    from wasmlab.runtime.store.history import History, RunRecord
    from wasmlab.runtime.store.spares import SpareFolders
    from wasmlab.runtime.store.usage import DiskUsage

NAME_ANNOTATION = "wasmlab.io/name"
IMAGE_ANNOTATION = "wasmlab.io/image"
POD_ANNOTATION = "wasmlab.io/pod"  # the pod a container runs in: its history row says so
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
    ports: list[str] = field(default_factory=list)  # published: "127.0.0.1:8080->80/tcp"
    pod: str = ""  # namespace/name of its pod, if it has one

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
    rootfs: str = "copy"        # how its root was made: "overlay" of shared snapshots, a "copy", or "" (not yet)

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

    def __init__(self, home: str | os.PathLike[str] | None = None, *, default_engine: str | None = None,
                 log_size_max: int | None = None) -> None:
        self.home = open_home(checked_home(home) if home is not None else lab_home())
        self._default_engine = default_engine
        # podman's log_size_max: each container's log (both generations) stays under it; 0 for no cap.
        self._log_max = ctrlog.DEFAULT_MAX if log_size_max is None else max(0, int(log_size_max))
        self._containers_dir = self.home / "containers"
        self._parts: dict[str, Any] = {}
        self._parts_lock = threading.Lock()
        self._events_lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._runtime_unsubscribe: Callable[[], None] | None = None
        self._starting: dict[str, list[LabEvent]] = {}  # exits heard before their ContainerStarted went out
        self._removing: set[str] = set()                # `--rm` containers being removed after the answer
        # name -> id links, checked against each container's meta.json (store/names.py).
        self._names = NameIndex(self.home / ".container-names", meta_holds(self._containers_dir, self._removing))
        # `--rm` containers whose final events (exit, recorded) may come after their folder is gone: id -> name.
        self._finishing: dict[str, str] = {}
        self._cleanup_queue: queue.SimpleQueue[str | threading.Event | _Refill | None] = queue.SimpleQueue()
        self._cleaner: threading.Thread | None = None  # one worker for every removal after the answer
        self._refill_queued = False                    # a refill of the spare container folders is queued
        self._publishing: dict[str, list[PortMapping]] = {}  # -p of runs being created
        self._forwarders: dict[str, subprocess.Popen[bytes]] = {}  # started here: reaped here
        self._streams: weakref.WeakSet[MetricsStream] = weakref.WeakSet()  # live metrics: closed with the Lab
        self._first_bytes: dict[str, _FirstByte] = {}  # foreground runs: when their relay saw stdout's first byte
        self._sizes: dict[str, tuple[str, tuple[int | None, int]]] = {}  # image -> (digest, sizes): for the rows

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

        def make() -> Runtime:
            runtime = Runtime(root=str(runtime_root(self.home)), default_engine=self._default_engine,
                              home=str(self.home))
            runtime.enrich_records(self._enrich_record)
            return runtime

        return self._part("runtime", make)

    def _enrich_record(self, row: RunRecord) -> None:
        """On the recorder's thread, before a run's row is written: what only the Lab knows (the first byte its
        relay saw, the image's sizes) and the guest's share (the cgroup peak minus the engine's hello baseline)."""
        first = self._first_bytes.pop(row.id, None)
        if first is not None:
            first.done.wait(5)  # the relay has finished (it ends with the run, which ended before this row)
            request = row.timings.get("request_s")
            if first.at is not None and request is not None:  # both on the monotonic clock processes share
                row.first_byte_ms = max(0.0, (first.at - request) * 1e3)
        if row.image:
            try:
                row.image_size_bytes, row.image_compressed_bytes = self._image_sizes(row.image)
            except WasmlabError:
                pass
        if row.cgroup_peak_bytes and row.handler:
            from wasmlab.runtime.metrics.baseline import Baselines

            base = self._part("baselines", lambda: Baselines(self.home)).get(row.handler, self._runtime)
            if base is not None:
                row.guest_bytes = max(0, row.cgroup_peak_bytes - base)

    def _image_sizes(self, image: str) -> tuple[int | None, int]:
        digest = self._images.store.resolve(image).digest
        cached = self._sizes.get(image)
        if cached is None or cached[0] != digest or cached[1][0] is None:
            cached = (digest, self._images.sizes(image))
            self._sizes[image] = cached
        return cached[1]

    @property
    def _spares(self) -> SpareFolders:
        """Container folders made ahead, when idle (see `_make_spare`): a run takes one by a rename."""
        from wasmlab.runtime.store.spares import SpareFolders

        return self._part("spares", lambda: SpareFolders(self.home / SPARES, self._make_spare, keep=2))

    @staticmethod
    def _make_spare(folder: Path) -> None:
        """A container folder as `run` fills it (meta.json, the log, the bundle's folders and files), empty."""
        from wasmlab.runtime.images.unpack import make_bundle_skeleton

        make_bundle_skeleton(folder / "bundle")
        for name in ("meta.json", ctrlog.LOG_NAME):
            os.close(os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))

    @property
    def _history(self) -> History:
        from wasmlab.runtime.store.history import History

        return self._part("history", lambda: History(self.home / "history.db"))

    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()
        if self._cleaner is not None:
            self._cleanup_queue.put(None)  # after every `run --rm` removal left for after the answer
            self._cleaner.join()
            self._cleaner = None
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
        import sys

        keepers = sys.modules.get("wasmlab.runtime.pods.keeper")  # imported only if this Lab played a pod
        if keepers is not None:
            keepers.reap_spawned()

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
            finishing = self._finishing.get(cid)
            if held is None and finishing is None and not self._dir(cid).is_dir():
                return
            name = finishing if finishing is not None else self._name_of(cid)
            if kind == "recorded":
                self._finishing.pop(cid, None)  # its last event
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

        def on_output(argv: list[str], chunk: bytes) -> None:
            if progress is not None:
                progress(Progress("build", f"output of RUN {' '.join(argv)[:60]}",
                                  output=chunk.decode("utf-8", "replace")))

        # RUN steps run in containers of this lab's runtime, recorded in the build's work folder so that a
        # killed build's containers are found and removed (see images/runstep.py).
        res = self._images.build(context, containerfile, tag=tag, annotations=annotations, labels=labels,
                                 platform=platform, build_args=build_args, target=target,
                                 progress=on_step, runtime=self._runtime, run_output=on_output)
        self._emit(ImageBuilt(res.name, res.digest, res.id))
        return res

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
            if in_pods := sorted({u.pod for u in users if u.pod}):
                raise InvalidState(f"image {image} is in use by pod{'s' if len(in_pods) > 1 else ''} "
                                   f"{', '.join(in_pods)}", f"`wasmlab pod rm {in_pods[0]}` first")
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
        """`podman image prune`: unnamed images and the blobs no image uses; with ALL, as podman's `-a`, every
        image that no container (running or not, pods' included) was made from, named or not."""
        unused: list[str] = []
        freed = 0
        blobs_before = self._blob_count() if all else 0
        if all:
            used = self._used_image_digests()
            for image in self._images.list(all=True):
                if image.digest not in used:
                    removed = self.rmi(image.id)  # by ID: the image and all its names, with its snapshots
                    unused.append(removed.deleted or image.digest)
                    freed += removed.reclaimed
        pruned = self._images.prune(dangling=True)
        # Removing an image by ID takes its blobs with it: counted here, or -a would say "0 blobs".
        blobs = max(pruned.blobs, blobs_before - self._blob_count()) if all else pruned.blobs
        return replace(pruned, images=unused + [d for d in pruned.images if d not in unused],
                       reclaimed=pruned.reclaimed + freed, blobs=blobs)

    def _blob_count(self) -> int:
        try:
            return sum(1 for _ in os.scandir(self._images.store.blobs_dir))
        except FileNotFoundError:
            return 0

    def inspect_any(self, name: str) -> dict[str, Any]:
        """`podman inspect` without --type: a container by that name or ID, else an image, else a pod; each as a
        JSON-ready dict. One line naming all three when there is none."""
        from wasmlab.runtime.errors import ImageNotFound, NothingNamed, PodNotFound

        try:
            return self.inspect(name).as_dict()
        except ContainerNotFound:
            pass
        try:
            details = self.image_inspect(name)
            return {"image": details.summary.__dict__, "manifest": details.manifest, "config": details.config}
        except ImageNotFound:
            pass
        try:
            return self.pod_inspect(name).as_dict()
        except (PodNotFound, UsageError):
            raise NothingNamed(f"no container, image or pod named {name!r}",
                               "`wasmlab ps -a`, `wasmlab images` and `wasmlab pod ps` list them") from None

    def _used_image_digests(self) -> set[str]:
        return {d for m in self._all_meta() if (d := self._made_from(m)) is not None}

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

    def bloated_image(self, *, build: bool = False, progress: ProgressCallback | None = None) -> ImageSummary:
        """The bloated image (Debian, python3 and wasmtime starting the module itself; every sample module in
        /wasm) in this lab as localhost/wasmlab/bloated:latest, imported from the machine's cache: about 1 s,
        nothing when this lab's copy is current. Its root is built (debootstrap, about 40 s, once per machine)
        only with BUILD; otherwise a missing root raises BloatedImageNotBuilt, saying how to build it."""
        from wasmlab.runtime.errors import BloatedImageNotBuilt, ImageError
        from wasmlab.runtime.images import bloated

        root = bloated.cached_root()
        if root is None:
            if not build:
                raise BloatedImageNotBuilt(
                    f"the bloated image is not built on this machine yet (cache: {bloated.cache_dir()}/bloated)",
                    "`wasmlab bench --scenario bloated` builds it once (about a minute)")
            root, _ = bloated.ensure_root(lambda what: progress(Progress("bloated", what)) if progress else None)
        mark = bloated.stamp()
        for image in self._images.list():
            if bloated.LAB_IMAGE in image.names and image.labels.get(bloated.LABEL) == mark:
                return image
        archive = bloated.archive_path(root, mark)
        loaded = archive.is_file()
        if loaded:
            if progress is not None:
                progress(Progress("bloated", f"importing the cached bloated image ({archive.name})"))
            self.load(archive)
        else:
            context, containerfile = bloated.lab_context(root)
            self.build(context, containerfile, tag=bloated.LAB_IMAGE, labels={bloated.LABEL: mark},
                       progress=progress)
            bloated.keep_archive(root, mark, lambda path: self._images.save([bloated.LAB_IMAGE], path,
                                                                            format="oci-archive"))
        for image in self._images.list():
            if bloated.LAB_IMAGE in image.names and image.labels.get(bloated.LABEL) == mark:
                if loaded:
                    self._emit(ImageBuilt(bloated.LAB_IMAGE, image.digest, image.id))  # a build fired its own
                return image
        raise ImageError(f"the bloated image did not arrive in this lab (from {archive})",
                         f"delete {archive} and try again")

    # -- history and the machine --------------------------------------------------------------------------------
    def history(self, last: int = 20, *, handler: str | None = None, since_seq: int = 0) -> list[RunRecord]:
        """The newest runs first (with since_seq: every run after that one, oldest first)."""
        if last < 1:  # SQLite takes a negative LIMIT as none at all: -5 would have listed every run
            raise UsageError(f"the number of runs to show must be 1 or more, not {last}",
                             "ask for the last N runs, e.g. `wasmlab history -n 5`")
        self._runtime.collect_runs()  # runs that ended while no lab listened (`run -d`, then the command exited)
        return self._history.recent(last, handler=handler, since_seq=since_seq)

    def metrics(self, *, interval: float = 0.25, callback: Callable[[MetricsTick], None] | None = None,
                clock: Callable[[], float] | None = None) -> MetricsStream:
        """The live stream: CPU and memory (now and peak) of each running container and pod, every INTERVAL s.

        With CALLBACK, a daemon thread calls it once per tick until close(); without, iterate the stream. It
        reads state and cgroup files only (never the zygote), so it cannot hold up a container. close() the
        stream when done (this Lab's close() closes those it made)."""
        from wasmlab.runtime.metrics.stream import MetricsStream, RuntimeTargets, Watched
        from wasmlab.runtime.pods.play import all_records

        def describe(cid: str) -> tuple[str, str | None]:
            try:
                meta = self._meta(cid)
            except ContainerNotFound:
                return "", None
            return str(meta.get("name") or ""), (str(meta.get("pod") or "") or None)

        containers = RuntimeTargets(str(runtime_root(self.home)), describe)
        pods: dict[str, Watched] = {}

        def discover() -> list[Watched]:
            found = containers()
            wanted = {w.pod for w in found if w.pod}
            if wanted - set(pods):  # a pod not seen before: its record gives its id and cgroup parent
                for rec in all_records(self.home):
                    identity = f"{rec.get('namespace')}/{rec.get('name')}"
                    pods[identity] = Watched("pod", str(rec.get("id") or identity), identity, identity,
                                             cgroup=str(rec.get("cgroup") or "") or None)
            return found + [pods[p] for p in sorted(wanted) if p in pods]

        stream = MetricsStream(discover, interval=interval, callback=callback, clock=clock)
        self._streams.add(stream)
        return stream

    def root_mode(self) -> str:
        """How this lab makes container roots: "overlay" (shared snapshots) or "copy" (see `wasmlab doctor`)."""
        return self._images.root_mode()

    @staticmethod
    def doctor() -> dict[str, Any]:
        """What this machine lets the lab do: privileges, user namespaces, cgroups, handlers, tools."""
        from wasmlab.runtime.doctor import diagnose

        return diagnose()

    # -- housekeeping: podman's system df and system reset -------------------------------------------------------
    def df(self) -> list[DiskUsage]:
        """`system df`: what images, their unpacked layers (snapshots), containers (their bundles), logs, caches,
        the history, and the work of builds, loads and unpacks (in progress, or left by killed ones: `image
        prune` removes those) take on disk. Each file is counted once, on one row: together they are `du`."""
        from wasmlab.runtime.store.usage import DiskUsage, allocated

        def is_log(name: str) -> bool:
            return name.startswith(ctrlog.LOG_NAME)

        images = self.images(all=True)
        metas = self._all_meta()
        used = {m.get("image_digest") for m in metas}
        infos = {m["id"]: self._info(m) for m in metas}
        running = {cid for cid, info in infos.items() if info.status.alive}
        # Work of builds, loads and unpacks (in progress, or left by killed ones: reclaimable) is counted
        # first, on its own row; what it holds is then not counted again under Images or Snapshots.
        seen: set[tuple[int, int]] = set()
        leftovers = [(live, allocated([path], seen=seen)) for path, live in self._images.leftovers()]
        image_size = allocated([self.home / "images"], seen=seen)
        unused_images = [i for i in images if i.digest not in used]
        rows = [DiskUsage("Images", len(images), len(images) - len(unused_images), image_size,
                          min(image_size, sum(i.size for i in unused_images)))]
        # The layers unpacked once (shared by containers as overlay lower folders): in use while an image that
        # a container was made from needs them; the others go with `image prune -a` (with their last image).
        snapshots = self._images.snapshots
        needed = snapshots.used_by(self._images.store, [i for i in self._images.store.images() if i.digest in used])
        snap_sizes = {f.name: allocated([f], seen=seen) for f in snapshots.folders()}
        rows.append(DiskUsage("Snapshots", len(snap_sizes), len(needed & set(snap_sizes)),
                              sum(snap_sizes.values()) + allocated([snapshots.root], seen=seen),
                              sum(size for name, size in snap_sizes.items() if name not in needed)))
        bundles = {cid: allocated([self._dir(cid)], skip=is_log) for cid in infos}
        rows.append(DiskUsage("Containers", len(infos), len(running), sum(bundles.values()),
                              sum(size for cid, size in bundles.items() if cid not in running)))
        logs = {cid: allocated([self._dir(cid) / n for n in (ctrlog.LOG_NAME, ctrlog.LOG_NAME + ctrlog.OLDER)])
                for cid in infos}
        rows.append(DiskUsage("Logs", sum(1 for size in logs.values() if size), len(running & set(logs)),
                              sum(logs.values()), sum(size for cid, size in logs.items() if cid not in running)))
        cache = self.home / "cache"
        files = sum(len(f) for _, _, f in os.walk(cache))
        cache_size = allocated([cache])
        rows.append(DiskUsage("Caches", files, 0, cache_size, cache_size))
        history = [self.home / n for n in ("history.db", "history.db-wal", "history.db-shm")]
        rows.append(DiskUsage("History", sum(1 for p in history if p.exists()), 0, allocated(history), 0))
        rows.append(DiskUsage("Leftovers", len(leftovers), sum(1 for live, _ in leftovers if live),
                              sum(size for _, size in leftovers), sum(size for live, size in leftovers if not live)))
        return rows

    def reset(self) -> int:
        """`system reset`: stop and remove every container (with its processes, forwarder, mounts and cgroup),
        then empty the lab home. Returns the bytes freed. This Lab is closed afterwards."""
        from wasmlab.runtime.linux import pidfd
        from wasmlab.runtime.linux import syscalls as sc
        from wasmlab.runtime.store.atomic import remove_tree
        from wasmlab.runtime.store.usage import allocated, empty_folder, mounts_under

        before = allocated([self.home])
        from wasmlab.runtime.pods import keeper
        from wasmlab.runtime.pods.play import all_records
        from wasmlab.runtime.pods.sandbox import remove_cgroup

        records = all_records(self.home)
        for record in records:
            keeper.end(record.get("keeper"))  # before the containers: no restart races their removal
        keeper.end_all(self.home)  # any other (a pod whose record is gone)
        pod_cgroups = [str(r.get("cgroup") or "") for r in records]
        for m in self._all_meta():
            self._discard(m["id"])
        for rel in filter(None, pod_cgroups):
            remove_cgroup(rel)
        runtime = self._runtime
        for state in runtime.list():  # containers of this home the Lab did not name (RUN steps, wasmlab-oci)
            try:
                runtime.delete(str(state["id"]), force=True)
            except WasmlabError:
                pass
        self.close()
        # Zygotes of this home (other commands' `run -d`) end once their containers are gone: wait for them.
        run_root = runtime_root(self.home)
        root = str(run_root).encode()
        for proc in os.listdir("/proc"):
            if not proc.isdigit() or int(proc) == os.getpid():
                continue
            try:
                cmdline = open(f"/proc/{proc}/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
            except OSError:
                continue
            if b"wasmlab.runtime.zygote" in cmdline and root in cmdline:
                pidfd.end(int(proc))
        for point in mounts_under(str(self.home)):
            if point != str(self.home):
                try:
                    sc.umount2(point, 2)  # MNT_DETACH
                except OSError:
                    pass
        empty_folder(str(self.home))
        if run_root != self.home / "run":
            remove_tree(str(run_root))  # the containers' state on the tmpfs
        return before - allocated([self.home])

    # -- pods: kube play and down, pod ps, inspect, rm and logs --------------------------------------------------
    def kube_play(self, file: str | os.PathLike[str], *, propagation: str = "crio",
                  pod_annotations: Sequence[str] | None = None, engine: str | None = None,
                  allow_host_path: bool = False, sandbox_rule: str = "on") -> PlayResult:
        """`podman kube play`: each pod of FILE gets a sandbox (an infra container running pause that holds the
        network, IPC and UTS namespaces, and PID with shareProcessNamespace) and a cgroup parent; its init
        containers run to completion in order, then its containers start, each joining the sandbox's namespaces.
        Annotations reach the containers as CRI-O or containerd would pass them (see pod_plan). Either every pod
        of the file starts, or nothing stays (processes, mounts, cgroups, namespaces, folders).
        sandbox_rule="off" is the sandbox-rule-off scenario's setting (refused for pods not annotated
        wasmlab.io/scenario: sandbox-rule-off): the infra container loses crun's rule that runs it natively.
        Each pod with restartPolicy Always or OnFailure gets a pod keeper, which restarts its containers."""
        from wasmlab.runtime.pods.control import refuse_rootless
        from wasmlab.runtime.pods.keeper import backoff_base
        from wasmlab.runtime.pods.play import KeeperSettings, PlayResult, check_engine, check_sandbox_rule, play

        refuse_rootless("kube play")
        check_engine(engine)
        keeping = KeeperSettings(backoff_base(), self._default_engine, self._log_max)  # a bad setting: one line
        plan = self.pod_plan(file, propagation=propagation, pod_annotations=pod_annotations,
                             allow_host_path=allow_host_path)
        check_sandbox_rule(plan, sandbox_rule)
        warnings = list(plan.warnings)
        if sandbox_rule == "off":
            warnings.append("--sandbox-rule off (a lab scenario): each pod's infra container gets the pod's "
                            "annotations without the rule that runs it natively")
        return PlayResult(play(self, self.home, plan, engine=engine, sandbox_rule=sandbox_rule, keeping=keeping),
                          warnings)

    def kube_down(self, file: str | os.PathLike[str]) -> list[PodInfo]:
        """`podman kube down`: stop and remove the pods FILE describes (those that are played)."""
        from wasmlab.runtime.errors import PodNotFound
        from wasmlab.runtime.pods.play import pod_dir, remove_pod
        from wasmlab.runtime.spec.pod import load_pods

        pods = load_pods(file, allow_host_path=True).pods
        gone = [remove_pod(self, self.home, p.namespace, p.name, force=True) for p in pods
                if pod_dir(self.home, p.namespace, p.name).exists()]
        if not gone:
            raise PodNotFound(f"none of the pods of {file} is played ({', '.join(p.identity for p in pods)})",
                              "`wasmlab pod ps` lists the pods")
        return gone

    def pods(self) -> list[PodInfo]:
        """`podman pod ps`: every played pod, with its state and containers."""
        from wasmlab.runtime.pods.keeper import reap_spawned
        from wasmlab.runtime.pods.play import all_records, info_of

        reap_spawned()  # those another process ended (a TUI lists pods often: no zombie piles up)
        return [info_of(self, self.home, r) for r in all_records(self.home)]

    def pod_inspect(self, name: str, *, namespace: str | None = None) -> PodInfo:
        """One pod, by NAME (in NAMESPACE, default "default") or NAMESPACE/NAME."""
        from wasmlab.runtime.pods.play import info_of, load_record, resolve

        ns, pod = resolve(self.home, name, namespace)
        return info_of(self, self.home, load_record(self.home, ns, pod))

    def pod_rm(self, name: str, *, namespace: str | None = None, force: bool = False, timeout: float | None = None,
               progress: ProgressCallback | None = None) -> PodInfo:
        """`podman pod rm [-f] [-t N]`: remove a pod, its containers, its cgroup parent and its emptyDir volumes.
        FORCE: a running pod's containers are killed (SIGKILL at once; with TIMEOUT, SIGTERM first and SIGKILL
        after TIMEOUT s, as pod_stop)."""
        from wasmlab.runtime.pods.play import remove_pod, resolve

        if timeout is not None and not 0 <= timeout < float("inf"):
            raise UsageError(f"pod rm -t {timeout:g}: give seconds, 0 or more", "for example: pod rm -f -t 2 NAME")
        ns, pod = resolve(self.home, name, namespace)
        return remove_pod(self, self.home, ns, pod, force=force, timeout=timeout, progress=progress)

    # -- podman's other pod verbs: exists, stop, start, restart, kill, prune (runtime/pods/control.py) -----------
    def pod_exists(self, name: str, *, namespace: str | None = None) -> bool:
        """`podman pod exists`: whether a pod of that name is played (no error for a missing one)."""
        from wasmlab.runtime.pods import control
        from wasmlab.runtime.pods.play import resolve

        control.refuse_rootless("pod exists")
        ns, pod = resolve(self.home, name, namespace)
        return control.exists(self.home, ns, pod)

    def pod_stop(self, name: str, *, namespace: str | None = None, timeout: float = 10.0,
                 progress: ProgressCallback | None = None) -> PodInfo:
        """`podman pod stop [-t N]`: its keeper ended (so nothing restarts it), its containers stopped (SIGTERM,
        SIGKILL after TIMEOUT s, as stop), its infra container too when its namespaces are pinned. It stays
        stopped (`pod ps`: Exited) until `pod start`."""
        from wasmlab.runtime.pods import control
        from wasmlab.runtime.pods.play import resolve

        control.refuse_rootless("pod stop")
        if not timeout >= 0 or timeout == float("inf"):  # nan compares false
            raise UsageError(f"pod stop -t {timeout:g}: give seconds, 0 or more", "e.g. -t 2 (0 kills at once)")
        ns, pod = resolve(self.home, name, namespace)
        return control.stop(self, self.home, ns, pod, timeout=timeout, progress=progress)

    def pod_start(self, name: str, *, namespace: str | None = None) -> PodInfo:
        """`podman pod start`: a stopped pod's sandbox (in its pinned namespaces) and containers started again,
        and its keeper: its restartPolicy is in force again. A running pod is left as it is."""
        from wasmlab.runtime.pods import control
        from wasmlab.runtime.pods.keeper import backoff_base
        from wasmlab.runtime.pods.play import KeeperSettings, resolve

        control.refuse_rootless("pod start")
        keeping = KeeperSettings(backoff_base(), self._default_engine, self._log_max)
        ns, pod = resolve(self.home, name, namespace)
        return control.start(self, self.home, ns, pod, keeping=keeping)

    def pod_restart(self, name: str, *, namespace: str | None = None, timeout: float = 10.0,
                    progress: ProgressCallback | None = None) -> PodInfo:
        """`podman pod restart`: pod_stop, then pod_start."""
        from wasmlab.runtime.pods import control

        control.refuse_rootless("pod restart")
        self.pod_stop(name, namespace=namespace, timeout=timeout, progress=progress)
        return self.pod_start(name, namespace=namespace)

    def pod_kill(self, name: str, *, namespace: str | None = None, signal_name: str | int = "KILL") -> PodInfo:
        """`podman pod kill [-s SIGNAL]`: the signal (KILL by default) to each running container of the pod; one
        that dies of it is restarted per restartPolicy, as one that died by itself."""
        from wasmlab.runtime.lifecycle import parse_kill_signal
        from wasmlab.runtime.pods import control
        from wasmlab.runtime.pods.play import resolve

        control.refuse_rootless("pod kill")
        signum = parse_kill_signal(signal_name)
        ns, pod = resolve(self.home, name, namespace)
        return control.kill(self, self.home, ns, pod, signum)

    def pod_prune(self) -> list[PodInfo]:
        """`podman pod prune`: remove every pod whose containers are all stopped and that nothing will restart
        (a stopped pod, or one whose containers completed); the pods removed."""
        from wasmlab.runtime.pods import control
        from wasmlab.runtime.pods.play import all_records

        control.refuse_rootless("pod prune")
        return control.prune(self, self.home, all_records(self.home))

    def pod_logs(self, name: str, *, container: str | None = None,
                 namespace: str | None = None) -> list[tuple[str, LogEntry]]:
        """`podman pod logs [-c CONTAINER]`: the lines of the pod's containers (not the infra's), by time,
        each with the Kubernetes name of the container that wrote it."""
        info = self.pod_inspect(name, namespace=namespace)
        chosen = [info.container(container)] if container else [c for c in info.containers if c.role != "sandbox"]
        out: list[tuple[str, LogEntry]] = []
        for c in chosen:
            try:
                entries, _ = self.log_entries(c.id)
            except ContainerNotFound:
                continue
            out.extend((c.name, e) for e in ctrlog.lines(entries))
        out.sort(key=lambda item: item[1].ns)
        return out

    # -- a pod's live views: pod stats, pod top, pod logs -f (runtime/pods/live.py) ---------------------------------
    def pod_stats(self, names: Sequence[str] = (), *, namespace: str | None = None, all: bool = False,
                  interval: float = 5.0) -> Generator[list[MetricSample], None, None]:
        """`podman pod stats [-a] [POD...]`: every INTERVAL s, one sample per pod, from its cgroup parent (the live
        stream's pod samples: metrics()). The pods NAMES (each with something running, unless ALL), else every pod
        with something running (ALL: every pod, one with nothing running at zero). The first list comes at once
        and has no CPU figure yet (a rate needs two readings). A missing pod is refused before anything is
        sampled; close the iterator (or leave its loop) to stop the stream."""
        from wasmlab.runtime.pods import control, live
        from wasmlab.runtime.pods.play import all_records

        control.refuse_rootless("pod stats")
        chosen = [self.pod_inspect(n, namespace=namespace) for n in names]
        if not all:
            for pod in chosen:
                if not any(c.status in ("running", "paused") for c in pod.containers):
                    raise InvalidState(f"pod {pod.identity} is not running: nothing in it to measure",
                                       f"`wasmlab pod start {pod.identity}` starts it; `wasmlab pod stats -a` "
                                       "shows it at zero")
        wanted = {p.identity for p in chosen} or None
        among = namespace if not chosen else None  # -n without pods: that namespace's pods only

        def every() -> list[live.PodRef]:
            return [live.PodRef(str(r.get("id") or ""), f"{r.get('namespace')}/{r.get('name')}")
                    for r in all_records(self.home) if among in (None, r.get("namespace"))]

        stream = self.metrics(interval=interval)

        def batches() -> Generator[list[MetricSample], None, None]:
            with stream:
                yield from live.pod_batches(stream, wanted, every if all else None, namespace=among)

        return batches()

    def pod_top(self, name: str, *, namespace: str | None = None) -> list[tuple[str, ProcessRow]]:
        """`podman pod top`: the processes of every running container of the pod (its infra container's, named
        POD, too), as top() shows one container's, each with its container's Kubernetes name."""
        from wasmlab.runtime.pods import control

        control.refuse_rootless("pod top")
        pod = self.pod_inspect(name, namespace=namespace)
        rows: list[tuple[str, ProcessRow]] = []
        for c in pod.containers:
            if c.status not in ("running", "paused"):
                continue
            try:
                rows.extend((c.name, row) for row in self.top(c.id))
            except (InvalidState, ContainerNotFound):
                continue  # it ended (or went) meanwhile
        if not rows:
            raise InvalidState(f"pod {pod.identity} has no running container: top shows running processes",
                               f"`wasmlab pod start {pod.identity}` starts it")
        return rows

    def pod_follow(self, name: str, *, container: str | None = None, namespace: str | None = None,
                   tail: int | None = None, stop: threading.Event | None = None,
                   poll: float = 0.1) -> Iterator[tuple[str, LogEntry]]:
        """`podman pod logs -f [-c CONTAINER] [--tail N]`: the lines of the pod's containers (not the infra's) so
        far, then as they come, each with its container's Kubernetes name, followed as follow_entries() follows
        one (every POLL s), until none of them runs and its keeper (restartPolicy Always/OnFailure) is gone, or
        STOP is set. A missing pod or container is refused at once, before the first line."""
        from wasmlab.runtime.pods import control, live
        from wasmlab.runtime.pods.play import load_record, resolve

        control.refuse_rootless("pod logs")
        if tail is not None and tail < 0:
            raise UsageError(f"--tail {tail}: give a number of lines, 0 or more", "e.g. --tail 20")
        pod = self.pod_inspect(name, namespace=namespace)
        chosen = [pod.container(container)] if container else [c for c in pod.containers if c.role != "sandbox"]
        ns, pod_name = resolve(self.home, name, namespace)

        def alive(cid: str) -> bool:
            try:
                return self._status(cid).alive
            except ContainerNotFound:
                return False

        def read(cid: str, cursor: int) -> tuple[list[LogEntry], int]:
            try:
                return self._read_log(cid, cursor)
            except ContainerNotFound:
                return [], cursor

        def kept() -> bool:
            """Whether the pod's keeper may still restart one of them (not once `pod stop` ended it)."""
            from wasmlab.runtime.pods.play import info_of

            try:
                return info_of(self, self.home, load_record(self.home, ns, pod_name)).keeper_pid != 0
            except PodNotFound:
                return False

        return live.follow([live.Followed(c.name, c.id) for c in chosen], read=read, alive=alive, kept=kept,
                           tail=tail, stop=stop, poll=poll)

    def inspect_ns(self, target: str | None = None, *, namespace: str | None = None) -> list[ContainerNamespaces]:
        """`wasmlab inspect-ns [POD|CONTAINER]`: for every container of every pod (or of one pod, or one container),
        each namespace's inode and whether it is the host's (the lab's own), the sandbox's or its own; its pid tree
        (host and pod pids), its mounts and its cgroups (from /proc); for a Wasm container, the WASI view."""
        from wasmlab.runtime.errors import PodNotFound
        from wasmlab.runtime.pods import inspect as nsinspect

        if target is None:
            pods = self.pods()
        else:
            try:
                pods = [self.pod_inspect(target, namespace=namespace)]
            except PodNotFound:
                cid = self.resolve(target)
                info = self._info(self._meta(cid))
                if not info.pod:
                    return [self._ns_row("", info.name, "container", info.pid, str(info.status), {}, cid,
                                         info.handler)]
                pod = self.pod_inspect(info.pod)
                sandbox = nsinspect.inodes(pod.infra_pid)
                entry = pod.container(cid)
                row = self._ns_row(pod.identity, entry.name, entry.role, entry.pid, entry.status, sandbox,
                                   entry.id, entry.handler)
                row.runtime_class = pod.runtime_class
                return [row]
        rows = []
        for pod in pods:
            sandbox = nsinspect.inodes(pod.infra_pid)
            for c in pod.containers:
                row = self._ns_row(pod.identity, c.name, c.role, c.pid, c.status,
                                   {} if c.role == "sandbox" else sandbox, c.id, c.handler)
                row.runtime_class = pod.runtime_class
                rows.append(row)
        return rows

    def _ns_row(self, pod: str, name: str, role: str, pid: int, status: str, sandbox: dict[str, int],
                cid: str = "", handler: str | None = None) -> ContainerNamespaces:
        from wasmlab.runtime.handlers.detect import WASM_ENGINES
        from wasmlab.runtime.pods import inspect as nsinspect

        row = nsinspect.ContainerNamespaces(pod, name, role, pid, status)
        if pid:
            row.namespaces = nsinspect.classify(pid, sandbox, nsinspect.host_namespaces())
            row.cgroup = nsinspect.cgroup_path(pid)
            row.processes = nsinspect.pid_tree(pid)
            row.mounts = nsinspect.mounts(pid)
            row.cgroups = nsinspect.cgroups(pid)
        if cid and handler is not None and handler in WASM_ENGINES:
            from wasmlab.runtime.pods import wasi

            try:
                row.wasi = wasi.view(handler, str(self._dir(cid) / "bundle"), cid, pid,
                                     None if pid else self._memory_at_exit(cid))
            except WasmlabError:
                row.wasi = None  # its bundle is gone (removed meanwhile)
        return row

    def _memory_at_exit(self, cid: str) -> int | None:
        """The guest's linear memory when it exited, from its run record (wasmtime reports it)."""
        rec = self.run_record(cid, wait=1.0)
        size = None if rec is None else rec.memory.get("wasm_memory_bytes")
        return size if isinstance(size, int) else None

    def run_record(self, cid: str, *, wait: float = 2.0) -> RunRecord | None:
        """The history row of run CID (its memory figures, each under its own name, and its timings), waiting
        up to WAIT seconds for it: a run's final figures come from its reaper just after its exit."""
        recorded = threading.Event()
        stop = self._runtime.subscribe(lambda e: recorded.set() if e.get("event") == "recorded"
                                       and e.get("id") == cid else None)
        try:
            for attempt in range(2):
                self._runtime.collect_runs()
                rec = self._history.run(cid)
                if rec is not None:
                    return rec
                if attempt or not recorded.wait(wait):
                    break
        finally:
            stop()
        return None

    def _pod_container(self, text: str) -> str:
        """POD/CONTAINER or NAMESPACE/POD/CONTAINER: the lab container's id."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ContainerNotFound(f"no container named {text!r}", "write POD/CONTAINER or NAMESPACE/POD/CONTAINER")
        pod = "/".join(parts[:-1])
        return self.pod_inspect(pod).container(parts[-1]).id

    # The PodHost side (runtime/pods/play.py calls these; faces do not).
    def pod_image_exists(self, image: str) -> bool:
        from wasmlab.runtime.errors import ImageError

        try:
            self._images.inspect(image)
            return True
        except ImageError:
            return False

    def pod_images(self) -> Images:
        return self._images

    def pod_run(self, request: ContainerRequest, gate: Callable[[], None] | None = None) -> str:
        return self.run(request.image, request.command, name=request.name, detach=True,
                        annotations=request.annotations, env=request.env, engine=request.engine,
                        entrypoint=request.entrypoint, options=request.options, _pod_slot=request.slot,
                        _gate=gate).id

    def pod_pin(self, folder: str, hostname: str) -> dict[str, str]:
        return self._runtime.pin_namespaces(folder, hostname)

    def pod_view(self, cid: str) -> ContainerView:
        from wasmlab.runtime.pods.play import ContainerView

        info = self._info(self._meta(cid))
        return ContainerView(str(info.status), info.exit_code, info.pid, info.handler)

    def pod_wait(self, cid: str) -> int | None:
        self._runtime.wait_stopped(cid)
        self._runtime.exit_record(cid)
        return self._info(self._meta(cid)).exit_code

    def pod_last_line(self, cid: str) -> str:
        entries, _ = self.log_entries(cid, tail=1)
        return b"".join(e.data for e in entries).decode("utf-8", "replace").strip()[:200]

    def pod_remove(self, cid: str) -> None:
        self._discard(cid)

    def pod_stop_containers(self, cids: list[str], timeout: float, progress: ProgressCallback | None) -> None:
        self._stop_together(cids, timeout, progress)

    def pod_start_again(self, cid: str) -> int:
        """A pod's stopped container started again, as `start` starts one (its root, log and published ports
        kept), detached; its pid."""
        meta = self._meta(cid)
        info = self._info(meta)
        cdir = self._dir(cid)
        with Lock(cdir / ".start.lock"), _held(cdir):
            if info.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                try:
                    self._runtime.delete(cid)  # its process is gone; its bundle and log stay
                except ContainerNotFound:
                    pass
                published = self._check_publish(_publish_specs(meta))
                if published:
                    self._publishing[cid] = published
                self._start_detached(cid, info.name, cdir, False)
        return int(self._runtime.state(cid).get("pid") or 0)

    def pod_signal(self, cid: str, signum: int) -> bool:
        try:
            self._runtime.kill(cid, signum)
        except (ContainerNotFound, InvalidState):
            return False
        return True

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

    def containerd_demo(self, allowlist: Sequence[str]) -> CriRun:
        """The seed's pod through the real containerd's CRI: a private containerd (Debian's 1.6) whose CRI plugin has
        this pod_annotations allowlist and the runtime handler wasmlab-oci, this lab's pause and compat hello
        images imported into it, and a pod annotated module.wasm.image/variant=compat run as the kubelet would.
        About 1.5 s; containerd is stopped and everything it made removed before this returns."""
        import sys
        import tempfile

        from wasmlab.runtime.errors import ImageError, ImageNotFound
        from wasmlab.runtime.pods.containerd import HELLO_REF, demonstrate
        from wasmlab.runtime.pods.propagation import path_match
        from wasmlab.runtime.pods.sandbox import ensure_pause_image

        if os.geteuid() != 0:
            raise PrivilegeError("the containerd demonstration needs root: containerd's CRI runs pods as root",
                                 "run it as root; without root, `wasmlab kube play --dry-run --propagation "
                                 "containerd FILE` shows which annotations containerd's rule lets through")
        patterns = [str(p) for p in allowlist]
        if not patterns or not all(patterns) or isinstance(allowlist, str):
            raise UsageError("give containerd's pod_annotations allowlist as a list of patterns",
                             'e.g. ["module.wasm.image/*"]')
        for pattern in patterns:
            path_match(pattern, "")  # BadPattern where Go's path.Match would say ErrBadPattern: refused before a start
        runtime_path = str(Path(sys.executable).parent / "wasmlab-oci")
        if not os.access(runtime_path, os.X_OK):
            runtime_path = shutil.which("wasmlab-oci") or ""
        if not runtime_path:
            raise SetupError("wasmlab-oci is not installed next to this Python", "make setup")
        try:
            self._images.inspect(HELLO_REF)
        except ImageError:
            raise ImageNotFound(f"no image {HELLO_REF} in this lab", "build the samples: wasmlab samples") from None
        pause = ensure_pause_image(self._images)
        with tempfile.TemporaryDirectory(prefix="wasmlab-cri-") as folder:
            archive = Path(folder) / "images.tar"
            self._images.save([pause, HELLO_REF], archive, format="oci-archive")
            return demonstrate(archive, os.path.abspath(runtime_path), patterns)

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
        """Every container's record. A folder whose creator died before its container existed (its record
        unwritten, or still "creating", and its creator lock free) is no container: it is removed here."""
        out = []
        if self._containers_dir.is_dir():
            for entry in sorted(self._containers_dir.iterdir()):
                if entry.name in self._removing or entry.name.startswith("."):
                    continue  # gone as far as anyone asking this lab is concerned (or being removed)
                try:
                    meta = json.loads((entry / "meta.json").read_bytes())
                except FileNotFoundError:
                    continue  # a folder in the microseconds before its creator locked it
                except (OSError, ValueError):
                    meta = None  # a spare taken by a creator: empty until its container is made
                if (not isinstance(meta, dict) or meta.get("creating")) and self._sweep_stale(entry.name):
                    continue
                if isinstance(meta, dict):
                    out.append(meta)
        return out

    def _sweep_stale(self, cid: str) -> bool:
        """Remove container CID's folder if its creator died before the container existed (its record is not
        written whole and nobody holds its creator lock); True if it did (or the folder is gone)."""
        folder = self._dir(cid)
        fd = creator.take_if_free(folder)
        if fd is None:
            return not os.path.lexists(folder)
        try:
            try:
                meta = json.loads((folder / "meta.json").read_bytes())
            except (OSError, ValueError):
                meta = None
            if isinstance(meta, dict) and not meta.get("creating"):
                return False  # made whole meanwhile: a container
            aside = self._containers_dir / f".{cid}.stale-{os.getpid()}"
            try:
                os.rename(folder, aside)
            except OSError:
                return False
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                self._names.release(meta["name"], cid)
            shutil.rmtree(aside, ignore_errors=True)
            return True
        finally:
            os.close(fd)

    def resolve(self, name_or_id: str) -> str:
        """The container id for a name, an id, or a unique id prefix."""
        if not name_or_id.strip():
            raise UsageError("no container name given", "list them with `wasmlab ps -a`")
        if _NAME.match(name_or_id) and (owner := self._names.owner(name_or_id)) is not None:
            return owner  # a name, from its link (store/names.py): no container's meta.json read but its own
        metas = self._all_meta()
        for m in metas:
            if name_or_id in (m["name"], m["id"]):
                return str(m["id"])
        matches = [m for m in metas if m["id"].startswith(name_or_id)]
        if len(matches) == 1:
            return str(matches[0]["id"])
        if "/" in name_or_id:
            return self._pod_container(name_or_id)
        raise ContainerNotFound(f"no container named {name_or_id!r}", "list them with `wasmlab ps -a`")

    def run(self, image: str, command: Sequence[str] | None = None, *, name: str | None = None, rm: bool = False,
            detach: bool = False, annotations: Mapping[str, str] | None = None, env: Sequence[str] | None = None,
            engine: str | None = None, entrypoint: Sequence[str] | None = None,
            stdio: tuple[int, int, int] | None = None, on_created: Callable[[str], None] | None = None,
            sig_proxy: bool = False, options: RunOptions | None = None,
            progress: ProgressCallback | None = None, _pod_slot: PodSlot | None = None,
            _create_only: bool = False, _gate: Callable[[], None] | None = None) -> LabRun:
        """Run IMAGE like `podman run`. In the foreground, output goes to stdio (and the log) and this waits.

        on_created(id) is called once the container exists. With sig_proxy (podman's --sig-proxy; from the
        main thread, in the foreground), SIGTERM, SIGINT and SIGHUP sent to this process go to the container,
        and a second one kills it (a Linux pid 1 may ignore the first).

        _gate (a pod's containers, detached) is called once the bundle is made, just before the create: the pod
        holds every container there until all of them, and the pod's namespaces, are ready, so that their creates
        reach the zygote together. A gate that raises a WasmlabError removes this container."""
        if engine is not None and engine not in WASM_ENGINES:
            raise UsageError(f"unknown engine {engine!r}", f"use one of {', '.join(WASM_ENGINES)}")
        asked = image
        options = options or RunOptions()
        refuse_unsupported(options)
        _refuse_detached_tty(options, detach)
        published = self._check_publish(options.publish)
        flags = self._run_flags(options)
        if flags is not None:
            platform_annotations: dict[str, str] = {}
            image = self._image_for_run(image, flags, platform_annotations)
            annotations = {**platform_annotations, **(annotations or {})}
            env = [*flags.env, *(env or [])]
        cid = secrets.token_hex(6)
        if published:
            self._publishing[cid] = published
        chosen = bool(name)
        name = name or f"wasmlab_{cid[:6]}"
        if not _NAME.match(name):
            raise UsageError(f"invalid container name {name!r}",
                             "names start with a letter or digit, then letters, digits, '_', '.' or '-'")
        anns = dict(annotations or {})
        check_variant(anns)  # before anything is made: a typo in --annotation is one line, nothing left behind
        if engine:
            anns[ENGINE_ANNOTATION] = engine
        anns[NAME_ANNOTATION] = name
        anns[IMAGE_ANNOTATION] = image
        if _pod_slot is not None:
            anns[POD_ANNOTATION] = _pod_slot.pod
        cdir = self._dir(cid)
        self._containers_dir.mkdir(parents=True, exist_ok=True)
        # A container folder made ahead (its bundle's folders and empty files) is taken by one rename; a name
        # made from a fresh random id: nobody else can claim it.
        # The folder is locked (store/creator.py) from before anyone can see it until this call returns: a record
        # whose creator died (SIGKILL mid-unpack) is then told apart from one being made, and swept.
        held = -1
        try:
            if not chosen:
                held = self._spares.claim_held(cdir)
                ahead = held >= 0
                if not ahead:
                    cdir.mkdir()
                    held = creator.hold(cdir)
                    os.close(os.open(cdir / "meta.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            else:
                with Lock(self._containers_dir.parent / ".container-names.lock"):
                    # Checked and claimed under one lock (the name's link, then a first meta.json): two runs with
                    # one --name cannot both win. One link read, however many containers there are (store/names.py).
                    self._names.ensure(self._all_meta)
                    if not self._names.claim(name, cid):
                        owner = self._names.owner(name)
                        if owner is None or not self._sweep_stale(owner) or not self._names.claim(name, cid):
                            raise ContainerExists(f"the name {name!r} is in use",
                                                  f"`wasmlab rm {name}` or pick another --name")
                    held = self._spares.claim_held(cdir)
                    ahead = held >= 0
                    if not ahead:
                        cdir.mkdir(parents=True)
                        held = creator.hold(cdir)
                    _write_meta(cdir / "meta.json", {"id": cid, "name": name, "image": image, "command": [],
                                                     "created": time.time(), "rm": rm, "detach": detach,
                                                     "creating": True})
        except BaseException:
            if held >= 0:
                os.close(held)
            raise
        try:
            return self._run_held(cid, name, image, command, cdir, ahead, rm, detach, anns, env, entrypoint, stdio,
                                  on_created, sig_proxy, options, progress, flags, _pod_slot, _create_only, _gate,
                                  asked=asked)
        finally:
            os.close(held)

    def _run_held(self, cid: str, name: str, image: str, command: Sequence[str] | None, cdir: Path, ahead: bool,
                  rm: bool, detach: bool, anns: dict[str, str], env: Sequence[str] | None,
                  entrypoint: Sequence[str] | None, stdio: tuple[int, int, int] | None,
                  on_created: Callable[[str], None] | None, sig_proxy: bool, options: RunOptions,
                  progress: ProgressCallback | None, flags: RunFlags | None, _pod_slot: PodSlot | None,
                  _create_only: bool, _gate: Callable[[], None] | None, *, asked: str) -> LabRun:
        """run's second half, while its folder's creator lock is held: the bundle, then the container. ASKED is
        the image as the caller named it (IMAGE may be the platform's choice)."""
        try:
            def edit(config: dict[str, Any], root: RootLayers) -> None:
                """The container's own changes to config.json, made before it is written (once)."""
                if _pod_slot is not None:
                    # In its pod: the pod's namespaces by path, a cgroup under the pod's, no image annotations.
                    _pod_slot.apply(config, cid)
                if flags is not None:
                    self._apply_run_flags(flags, config, root)
                if os.geteuid() == 0 and _pod_slot is None:
                    # A cgroup of its own, as podman gives each container: pause/unpause, peak memory, OOM.
                    config.setdefault("linux", {})["cgroupsPath"] = cgroups.normalize_path("", cid)
                if options.tty:
                    # The init takes a pty as its stdio (a Wasm init too: wasmtime's guest sees a character
                    # device; wasmer-sdk shows every guest character devices, and pumps the pty).
                    config.setdefault("process", {})["terminal"] = True

            unpacked = self._images.prepare(image, cdir / "bundle", args=list(command) if command else None,
                                           env=_host_env(env or []), annotations=anns,
                                           entrypoint=list(entrypoint) if entrypoint is not None else None,
                                           edit=edit, ahead=ahead)
            # The image's full name, as podman's ps shows it ("bb" is listed as localhost/bb:latest), as pods do.
            meta = {"id": cid, "name": name, "image": unpacked.image, "image_digest": unpacked.digest,
                    "command": unpacked.args, "created": time.time(), "rm": rm, "detach": detach,
                    "rootfs": unpacked.root}
            if _pod_slot is not None:
                meta["pod"] = _pod_slot.pod
            if _create_only:  # `create`: made, never started; its -p is taken up again by each start
                meta.update(never_started=True, publish=list(options.publish))
            if not options.tty:  # a terminal's output is one stream of raw bytes, logged as it comes
                meta["log"] = ctrlog.LOG_FORMAT
            _write_meta(cdir / "meta.json", meta)
            # A terminal's output goes to the log as it comes; other output is written as records (LogWriter).
            log_fd = (os.open(cdir / ctrlog.LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                      if options.tty else -1)
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        if _create_only:
            self._publishing.pop(cid, None)
            self._emit(ContainerCreated(cid, name, image))
            return LabRun(cid, name, None)
        failed = False
        try:
            with self._starting_container(cid) as started:
                if detach:
                    if _gate is not None:
                        _gate()
                    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        # The zygote relays the output into the log as k8s-file records: it outlives this process.
                        self._runtime.create(cid, str(cdir / "bundle"), stdin=null, stdout=null, stderr=null,
                                             log=str(cdir), log_max=self._log_max,
                                             rm_with=self._rm_with(cid, name, rm))
                    finally:
                        os.close(null)
                    self._forward_ports(cid)
                    self._emit(ContainerCreated(cid, name, image))
                    if on_created is not None:
                        on_created(cid)
                    self._runtime.start(cid)
                    started(name)
                    return LabRun(cid, name, None)
                if sig_proxy and threading.current_thread() is threading.main_thread():
                    from wasmlab.runtime.signals import Forwarder

                    # After the first stop signal, SIGKILL follows in STOP_TIMEOUT s unless it stopped, said
                    # through progress once it has not stopped within a second (a Linux PID 1 may ignore it).
                    proxy = Forwarder((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), escalate=True,
                                      on_first_stop=lambda sig: self._escalate_later(cid, name, sig, progress))
                    user_created = on_created

                    def on_created_proxied(created: str) -> None:
                        proxy.target(lambda sig: self._kill_quietly(created, sig))
                        if user_created is not None:
                            user_created(created)

                    on_created = on_created_proxied
                try:
                    if options.tty:
                        return self._foreground_tty(cid, name, image, cdir, log_fd, stdio, rm, started, on_created,
                                                    interactive=options.interactive)
                    return self._foreground(cid, name, image, cdir, stdio, rm, started, on_created)
                finally:
                    if sig_proxy and threading.current_thread() is threading.main_thread():
                        proxy.close()
        except WasmlabError as exc:
            failed = True
            self._discard(cid)
            better = self._argument_as_program(exc, asked, image, command, entrypoint)
            if better is not exc:
                raise better from exc
            raise
        except BaseException:
            failed = True
            raise
        finally:
            if log_fd >= 0:
                os.close(log_fd)
            if not failed:  # after the run, off its path; a refused run leaves the home as it was
                self._refill_later()

    def _argument_as_program(self, exc: WasmlabError, asked: str, image: str, command: Sequence[str] | None,
                             entrypoint: Sequence[str] | None) -> WasmlabError:
        """`run IMAGE 64` where 64 was meant for the image's program: arguments replace the image's CMD, as with
        podman, so 64 became the program and is missing. The same error, its hint the command that keeps the
        program. Only on that failure (nothing is looked at before a run)."""
        if not command or entrypoint is not None or exc.exit_code != EXIT_NO_ENTRYPOINT:
            return exc
        word = command[0]
        if "/" in word and not _is_number(word):
            return exc
        try:
            section = self.image_inspect(image).config.get("config") or {}
        except WasmlabError:
            return exc
        cmd = [str(a) for a in section.get("Cmd") or []]
        if section.get("Entrypoint") or not cmd or cmd[0] == word:
            return exc
        import shlex

        return HandlerError(exc.message, "arguments replace the image's CMD, as with podman: give its program "
                            f"first: wasmlab run {asked} {shlex.join([cmd[0], *command])}", exit_code=exc.exit_code)

    # -- podman run's flags (RunOptions) -------------------------------------------------------------------------
    @staticmethod
    def _run_flags(options: RunOptions) -> RunFlags | None:
        """The options checked (one line per mistake, before anything is made), or None when none is given."""
        if not options.given():
            return None
        from wasmlab.runtime.images.runflags import parse

        return parse(options, rootless=os.geteuid() != 0)

    def _image_for_run(self, image: str, flags: RunFlags, annotations: dict[str, str]) -> str:
        """--pull and --platform: pull from the registry the name gives when asked (or when missing), check
        the stored image's platform, and mark a wasi/wasm one as Wasm (as podman with crun does)."""
        from wasmlab.runtime.errors import ImageError
        from wasmlab.runtime.store import media

        missing: ImageError | None = None
        try:
            details = self._images.inspect(image)
        except ImageError as exc:
            missing = exc
        if flags.pull == "always" or (missing is not None and flags.pull == "missing"):
            self.pull(image, platform=flags.platform, tls_verify=flags.tls_verify)
            details = self._images.inspect(image)
        elif missing is not None:
            raise ImageError(missing.message, f"`wasmlab pull {image}`, or run with --pull missing") from None
        if flags.platform is not None:
            want_os, want_arch = flags.platform
            wasi = want_os.startswith("wasi") or want_arch == "wasm"
            has_os, has_arch = str(details.config.get("os") or ""), str(details.config.get("architecture") or "")
            arch_of = {"x86_64": "amd64", "aarch64": "arm64"}
            if wasi:
                annotations[media.WASM_VARIANT] = media.WASM_VARIANT_COMPAT
            elif (has_os, arch_of.get(has_arch, has_arch)) != (want_os, arch_of.get(want_arch, want_arch)):
                raise ImageError(f"image {image} is {has_os}/{has_arch}, not {want_os}/{want_arch}",
                                 f"pull that platform: wasmlab run --pull always --platform {want_os}/{want_arch} "
                                 f"{image}")
        return image

    def _apply_run_flags(self, flags: RunFlags, config: dict[str, Any], root: RootLayers) -> None:
        from wasmlab.runtime.images.runflags import apply, is_wasm

        wasm = is_wasm(config, root, self._default_engine or "wasmtime")
        apply(flags, config, root, wasm=wasm, rootless=os.geteuid() != 0)

    def _foreground(self, cid: str, name: str, image: str, cdir: Path, stdio: tuple[int, int, int] | None,
                    rm: bool, started: Callable[[str], None],
                    on_created: Callable[[str], None] | None = None) -> LabRun:
        """The container's output relayed to the caller's stdio and into the log (k8s-file records).

        One `run` request to the runtime (create and start in one step; a Wasm init hands its result straight
        back), unless ports are published: their forwarder needs the created container's network namespace
        before the workload starts, so those go create, forward, start, wait."""
        sinks = stdio or (0, 1, 2)
        log = ctrlog.LogWriter(cdir, self._log_max)
        first = self._first_bytes[cid] = _FirstByte()
        relay: threading.Thread | None = None
        ours: list[int] = []
        try:
            if self._publishing.get(cid):
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                relay = threading.Thread(target=_relay_output, args=([(out_r, sinks[1], b"stdout"),
                                                                       (err_r, sinks[2], b"stderr")], log, first),
                                         daemon=True)
                relay.start()
                ours = [out_w, err_w]
                try:
                    state = self._runtime.create(cid, str(cdir / "bundle"), stdin=sinks[0], stdout=out_w,
                                                 stderr=err_w, rm_with=self._rm_with(cid, name, rm))
                finally:
                    for fd in ours:
                        os.close(fd)
                    ours = []
                self._forward_ports(cid)
                self._emit(ContainerCreated(cid, name, image))
                if on_created is not None:
                    on_created(cid)
                self._runtime.start(cid)
                started(name)
                rec = self._runtime.wait(cid)
                result = LabRun(cid, name, rec.exit_code, decision=state.get("decision") or {},
                                timings=state.get("timings") or {}, memory={"max_rss_kb": rec.max_rss_kb})
            else:
                def sent() -> None:
                    # The request is on its way: from now on the Runtime finds the container (a look waits,
                    # if need be, until the zygote has recorded it), so a signal passed on from on_created
                    # reaches it. One that came earlier was held by the proxy, and is passed on now.
                    self._emit(ContainerCreated(cid, name, image))
                    if on_created is not None:
                        on_created(cid)
                    started(name)

                streams = {1: (sinks[1], b"stdout"), 2: (sinks[2], b"stderr")}

                def relay_piece(which: int, chunk: bytes) -> None:
                    sink, stream = streams[which]
                    if first.at is None and which == 1:
                        first.at = time.perf_counter()
                    with contextlib.suppress(OSError):
                        os.write(sink, chunk)
                    log.write(stream, chunk)

                # The output is relayed by this thread while it waits for the exit: no thread to start and join.
                res = self._runtime.run(cid, str(cdir / "bundle"), stdio=(sinks[0], None, None), keep=not rm,
                                        on_output=relay_piece, on_sent=sent, rm_with=self._rm_with(cid, name, rm))
                result = LabRun(cid, name, res.exit_code, decision=res.decision, timings=res.timings,
                                memory={"max_rss_kb": int(res.memory.get("max_rss_kb") or 0)})
        except BaseException:
            self._kill_quietly(cid, signal.SIGKILL)
            raise
        finally:
            for fd in ours:
                os.close(fd)
            if relay is not None:
                relay.join(5)
            first.done.set()
            log.close()
            self._release_ports(cid)
        if rm:
            self._discard_later(cid, name)
        return result

    def _rm_with(self, cid: str, name: str, rm: bool) -> tuple[str, str]:
        """A `--rm` container's folder and name link, which its zygote removes with it if it ends after this
        process is gone (killed: SIGKILL runs no cleanup), as podman's conmon removes a --rm container."""
        return (str(self._dir(cid)), str(self._names.folder / name)) if rm else ("", "")

    def _discard_later(self, cid: str, name: str) -> None:
        """Remove a `--rm` container after the answer, off the caller's path (removing folders takes longer
        than running hello.wasm). This lab no longer shows it; close() waits until it is gone. Its RunRecorded
        still goes out when its row is written, folder or not."""
        with self._events_lock:
            self._finishing[cid] = name
            while len(self._finishing) > 256:  # rows never recorded (no history) must not pile up
                del self._finishing[next(iter(self._finishing))]
        self._removing.add(cid)
        self._later(cid)

    def _refill_later(self) -> None:
        """Make the spare container folders a run takes (after the removals queued before: off the path)."""
        if not self._refill_queued:
            self._refill_queued = True
            self._later(_REFILL)

    def _later(self, item: str | _Refill) -> None:
        if self._cleaner is None:
            self._cleaner = threading.Thread(target=self._clean, name="wasmlab-rm", daemon=True)
            self._cleaner.start()
        self._cleanup_queue.put(item)

    def _clean(self) -> None:
        while (item := self._cleanup_queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()  # settle(): everything queued before it is done
                continue
            if isinstance(item, _Refill):
                self._refill_queued = False
                with contextlib.suppress(OSError, WasmlabError):
                    self._spares.refill()  # spares only save time: a full disk shows on the next run's own path
                continue
            try:
                self._discard(item)
            finally:
                self._removing.discard(item)

    def settle(self) -> None:
        """Wait until the `--rm` containers whose removal was left for after their answer are gone."""
        if self._cleaner is not None:
            done = threading.Event()
            self._cleanup_queue.put(done)
            done.wait()

    def _foreground_tty(self, cid: str, name: str, image: str, cdir: Path, log_fd: int,
                        stdio: tuple[int, int, int] | None, rm: bool, started: Callable[[str], None],
                        on_created: Callable[[str], None] | None = None, *, interactive: bool) -> LabRun:
        """`run -t`: the container's init takes a pty as its stdio (the OCI console socket, as runc's
        terminal mode under conmon); its output goes to the user's terminal and the log, and with
        INTERACTIVE what the user types goes in (raw mode, restored however the run ends)."""
        from wasmlab.runtime import terminal

        sinks = stdio or (0, 1, 2)
        with terminal.ConsoleSocket() as console:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                state = self._runtime.create(cid, str(cdir / "bundle"), stdin=null, stdout=log_fd, stderr=log_fd,
                                             console_socket=console.path, rm_with=self._rm_with(cid, name, rm))
            finally:
                os.close(null)
            master = console.receive(10)  # sent before the init reported ready: already queued
        self._emit(ContainerCreated(cid, name, image))
        if on_created is not None:
            on_created(cid)
        exited_r, exited_w = os.pipe2(os.O_CLOEXEC)
        outcome: list[Any] = []

        def wait_exit() -> None:
            try:
                outcome.append(self._runtime.wait(cid))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)
            finally:
                os.close(exited_w)

        waiter = threading.Thread(target=wait_exit, name=f"wasmlab-wait-{cid[:6]}", daemon=True)
        user = sinks[0] if os.isatty(sinks[0]) else sinks[1] if os.isatty(sinks[1]) else None
        try:
            self._runtime.start(cid)
            started(name)
            waiter.start()
            with terminal.raw_mode(sinks[0] if interactive else None, output=sinks[1]), \
                    terminal.window_follower(master, user):
                terminal.relay(master, sinks[0] if interactive else None, (sinks[1], log_fd), exited_r)
            waiter.join()
        except BaseException:
            self._runtime.kill(cid, signal.SIGKILL)
            raise
        finally:
            os.close(master)
            os.close(exited_r)
        rec = outcome[0]
        if isinstance(rec, BaseException):
            raise rec
            self._release_ports(cid)
        result = LabRun(cid, name, rec.exit_code, decision=state.get("decision") or {},
                        timings=state.get("timings") or {}, memory={"max_rss_kb": rec.max_rss_kb})
        if rm:
            self._discard(cid)
        return result

    def _kill_quietly(self, cid: str, signum: int) -> None:
        try:
            self._runtime.kill(cid, signum)
        except WasmlabError:
            pass  # it has just ended

    def _discard(self, cid: str) -> None:
        self._publishing.pop(cid, None)
        self._release_ports(cid)
        try:
            self._runtime.delete(cid, force=True)
        except WasmlabError:
            pass
        try:
            name = self._meta(cid).get("name")
        except ContainerNotFound:
            name = None
        shutil.rmtree(self._dir(cid), ignore_errors=True)
        if isinstance(name, str):
            self._names.release(name, cid)

    # -- published ports: a forwarder process per container (runtime/linux/portforward.py) ---------------------
    @staticmethod
    def _check_publish(specs: Sequence[str]) -> list[PortMapping]:
        if not specs:
            return []
        from wasmlab.runtime.linux.portforward import parse_publish

        mappings = [parse_publish(spec) for spec in specs]
        if os.geteuid() != 0:
            raise PrivilegeError("publishing ports (-p) needs root here: rootless forwarding is not implemented",
                                 "run as root, or reach the service from inside: wasmlab exec NAME wget -qO- "
                                 "127.0.0.1:PORT")
        return mappings

    def _forward_ports(self, cid: str) -> None:
        """After create, before start: listen on each host port (a port in use fails the run in one line) and
        start the forwarder, which brings the container's loopback up and ends when its process does."""
        mappings = self._publishing.pop(cid, None)
        if not mappings:
            return
        from wasmlab.runtime.linux import portforward
        from wasmlab.runtime.store.state import proc_start_time

        pid = int(self._runtime.state(cid).get("pid") or 0)
        proc, ready_r = portforward.spawn(pid, mappings)
        self._forwarders[cid] = proc
        try:
            answer = portforward.answer(ready_r)
        finally:
            meta = self._meta(cid)
            meta["ports"] = [str(m) for m in mappings]
            meta["forwarder"] = {"pid": proc.pid, "start": proc_start_time(proc.pid) or 0}
            (self._dir(cid) / "meta.json").write_text(json.dumps(meta))
        if answer != "ok":
            raise SetupError(f"cannot publish ports: {answer or 'the forwarder ended'}", "see `wasmlab doctor`")

    def _release_ports(self, cid: str) -> None:
        """Stop the container's forwarder (if any) and wait until it is gone: its ports are free on return."""
        from wasmlab.runtime.linux import pidfd

        proc = self._forwarders.pop(cid, None)
        try:
            fwd = self._meta(cid).get("forwarder") or {}
        except ContainerNotFound:
            fwd = {}
        if fwd.get("pid"):
            pidfd.end(int(fwd["pid"]), int(fwd.get("start") or 0) or None, first=signal.SIGTERM, then=None)
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def ps(self, *, all: bool = False) -> list[ContainerInfo]:
        rows = []
        for m in self._all_meta():
            info = self._info(m)
            if self._discard_ended_rm(m, info):
                continue
            if all or (info.status in LISTED and not m.get("never_started")):  # podman: created ones with -a
                rows.append(info)
        return sorted(rows, key=lambda r: r.created, reverse=True)

    def _discard_ended_rm(self, m: dict[str, Any], info: ContainerInfo) -> bool:
        """A `--rm` container that has ended and that nobody is to remove any more goes now (True): `run -d
        --rm` (gone once it has exited, as with podman), or one whose caller died (its creator lock is free)
        before it, or its zygote, could remove it."""
        if not m.get("rm") or info.status in LISTED or not (m.get("detach") or creator.is_free(self._dir(m["id"]))):
            return False
        self._discard(m["id"])
        return True

    def _info(self, m: dict[str, Any]) -> ContainerInfo:
        info = self._info_row(m)
        info.ports = list(m.get("ports") or [])
        info.pod = str(m.get("pod") or "")
        return info

    def _info_row(self, m: dict[str, Any]) -> ContainerInfo:
        try:
            st = self._runtime.state(m["id"])
            status, extra = ContainerStatus.parse(st["status"]), st.get("wasmlab") or {}
            exit_code = (extra.get("exit") or {}).get("exit_code")
            return ContainerInfo(m["id"], m["name"], m["image"], m["command"], status, m["created"],
                                 extra.get("handler"), exit_code, int(st.get("pid") or 0), st.get("annotations") or {})
        except ContainerNotFound:
            status = (ContainerStatus.CREATING if m.get("creating") else
                      ContainerStatus.CREATED if m.get("never_started") else ContainerStatus.STOPPED)
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
        meta = self._meta(cid)
        # Containers made before roots were recorded were copies; one still being made has no root yet.
        rootfs = meta.get("rootfs") or ("" if meta.get("creating") else "copy")
        return ContainerDetails(info, str(self._dir(cid) / "bundle"), state, str(rootfs))

    def logs(self, name: str, *, after: int = 0) -> tuple[list[bytes], int]:
        """The container's output from cursor AFTER on, and the cursor to pass next time (nothing is read twice)."""
        entries, cursor = self._read_log(self.resolve(name), after)
        data = b"".join(e.data for e in entries)
        return ([data] if data else []), cursor

    def log_entries(self, name: str, *, after: int = 0, tail: int | None = None,
                    since: str | float | None = None) -> tuple[list[LogEntry], int]:
        """`logs --tail N --since TIME`: whole lines (time, stream, bytes) from cursor AFTER on, and the next
        cursor. SINCE is podman's: RFC 3339, unix seconds or a duration (10m); a number is unix seconds."""
        cid = self.resolve(name)
        since_ns = self._since(cid, since)
        if tail is not None and tail < 0:
            raise UsageError(f"--tail {tail} is not a number of lines", "write --tail 10, or leave it out for all")
        entries, cursor = self._read_log(cid, after)
        if since_ns is not None:
            entries = [e for e in entries if e.ns >= since_ns]
        if tail is not None:
            entries = ctrlog.lines(entries)
            entries = entries[len(entries) - tail:] if tail else []
        return entries, cursor

    def _since(self, cid: str, since: str | float | None) -> int | None:
        if since is None:
            return None
        if self._meta(cid).get("log") != ctrlog.LOG_FORMAT:
            raise UsageError("this container's log was written before wasmlab recorded times",
                             "leave out --since (and -t): its lines have no time")
        if isinstance(since, (int, float)):
            return int(since * 1e9)
        return ctrlog.parse_since(since)

    def _read_log(self, cid: str, after: int) -> tuple[list[LogEntry], int]:
        cdir = self._dir(cid)
        if not cdir.is_dir():
            raise ContainerNotFound(f"no container {cid!r}", "list them with `wasmlab ps -a`")
        raw = self._meta(cid).get("log") != ctrlog.LOG_FORMAT
        return ctrlog.read(cdir, after, raw=raw)

    def follow(self, name: str, *, after: int = 0, stop: threading.Event | None = None,
               poll: float = 0.1) -> Iterator[bytes]:
        """`logs -f`: the output from AFTER on, as it comes, until the container has no process left (a paused
        one is still followed) or STOP is set. The status is read before the log, so no last words are lost."""
        for entry in self.follow_entries(name, after=after, stop=stop, poll=poll):
            yield entry.data

    def follow_entries(self, name: str, *, after: int = 0, tail: int | None = None, since: str | float | None = None,
                       stop: threading.Event | None = None, poll: float = 0.1) -> Iterator[LogEntry]:
        """`logs -f --tail N --since TIME`: the records so chosen, then new ones as they come (see follow)."""
        cid = self.resolve(name)
        alive = self._status(cid).alive
        entries, cursor = self.log_entries(cid, after=after, tail=tail, since=since)
        yield from entries
        while alive:
            if stop is not None:
                if stop.wait(poll):
                    return
            else:
                time.sleep(poll)
            alive = self._status(cid).alive
            entries, cursor = self._read_log(cid, cursor)
            yield from entries

    def stop(self, name: str, *, timeout: float = 10.0, progress: ProgressCallback | None = None) -> ContainerInfo:
        """SIGTERM, then SIGKILL after timeout seconds, as podman stop does. Waits on the exit itself (a pidfd),
        and when the container has not stopped within a second, says through PROGRESS that SIGKILL follows,
        and when (a Linux PID 1 ignores the signals it has no handler for: a shell does not stop on SIGTERM)."""
        cid = self.resolve(name)
        self._stop_together([cid], timeout, progress)
        return self._info(self._meta(cid))

    def _stop_together(self, cids: Sequence[str], timeout: float, progress: ProgressCallback | None) -> None:
        """stop's work for several containers at once (a pod's): SIGTERM to each, then one wait of TIMEOUT s
        shared by all of them (not one after the other), SIGKILL to those still there; each exit recorded."""
        live = []
        for cid in cids:
            meta = self._meta(cid)
            info = self._info(meta)
            if info.status in LISTED and not meta.get("never_started"):
                live.append(info)
        if not live:
            return
        if timeout < 0:
            raise UsageError(f"stop -t {timeout:g}: a time cannot be negative", "give seconds, e.g. stop -t 2 NAME")
        for info in live:
            if info.status is ContainerStatus.PAUSED:
                self._runtime.resume(info.id)  # a frozen process cannot act on SIGTERM
            if timeout > 0:
                self._kill_quietly(info.id, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for info in live:
            left = round(max(0.0, deadline - time.monotonic()), 1)
            if timeout == 0 or left > 0:
                self._escalate(info.id, info.name, signal.SIGTERM, left, progress)
            elif not self._runtime.wait_stopped(info.id, 0):  # the shared wait is over
                if progress is not None:
                    progress(Progress("stop", f"{info.name} did not stop on SIGTERM within {timeout:g} s: "
                                              "sending SIGKILL"))
                self._kill_quietly(info.id, signal.SIGKILL)
                self._runtime.wait_stopped(info.id, 5)
            self._release_ports(info.id)
            self._runtime.exit_record(info.id)  # stopped means its exit is known: wait for the reaper's record

    def _escalate(self, cid: str, name: str, sent: int, timeout: float, progress: ProgressCallback | None,
                  hint: str = "stop -t SECONDS sets the wait") -> None:
        """After SENT: wait for the exit (a pidfd, no polling) up to TIMEOUT s, then SIGKILL. If it has not
        stopped within a second, say through PROGRESS that SIGKILL follows, and when."""
        say = progress or (lambda _p: None)
        signame = signal.Signals(sent).name
        if timeout > 0:
            first = min(timeout, STOP_NOTICE_AFTER)
            if self._runtime.wait_stopped(cid, first):
                return
            rest = timeout - first
            if rest > 0:
                at = time.strftime("%H:%M:%S", time.localtime(time.time() + rest))
                say(Progress("stop", f"{name} did not stop on {signame}: SIGKILL follows in {rest:g} s (at {at}); "
                                     f"{hint}"))
                if self._runtime.wait_stopped(cid, rest):
                    return
        if timeout > 0:  # -t 0 asked for SIGKILL at once (as podman): nothing to tell
            say(Progress("stop", f"{name} did not stop on {signame} within {timeout:g} s: sending SIGKILL"))
        self._kill_quietly(cid, signal.SIGKILL)
        self._runtime.wait_stopped(cid, 5)

    def _escalate_later(self, cid: str, name: str, sent: int, progress: ProgressCallback | None) -> None:
        """A foreground run got its first stop signal (Ctrl-C): the same escalation as stop's, off the
        signal handler, on a thread that ends with the container."""
        def escalate() -> None:
            try:
                again = "Ctrl-C" if sent == signal.SIGINT else signal.Signals(sent).name
                self._escalate(cid, name, sent, STOP_TIMEOUT, progress, f"{again} again kills it now")
            except WasmlabError:
                pass  # it ended and was removed meanwhile

        threading.Thread(target=escalate, name=f"wasmlab-stop-{cid[:6]}", daemon=True).start()

    def exec(self, name: str, command: Sequence[str], *, env: Sequence[str] = (), cwd: str | None = None,
             stdio: tuple[int, int, int] | None = None, tty: bool = False, interactive: bool = True,
             sig_proxy: bool = False) -> int:
        """Run a command in a running container, like `podman exec`; returns its exit status.

        Through the runtime (Runtime.exec), with stdio (default: this process's 0, 1, 2). TTY: a pty in the
        container, the user's terminal raw meanwhile (podman's -t; INTERACTIVE is -i). SIG_PROXY: Ctrl-C
        and stop signals sent to this process reach the exec'd process (from the main thread)."""
        cid = self.resolve(name)
        self._refuse_never_started(cid)
        return self._runtime.exec(cid, list(command), env=_host_env(env), cwd=cwd, stdio=stdio, tty=tty,
                                  interactive=interactive, sig_proxy=sig_proxy)

    def wait(self, name: str, timeout: float | None = None) -> int | None:
        """`podman wait`: block until the container has stopped; its exit code (None when it cannot be known)."""
        cid = self.resolve(name)
        self._refuse_never_started(cid)
        if not self._runtime.wait_stopped(cid, timeout):
            raise InvalidState(f"container {name} is still running after {timeout:g} s",
                               f"`wasmlab stop {name}` stops it")
        rec = self._runtime.exit_record(cid)
        return rec.exit_code if rec is not None else self._info(self._meta(cid)).exit_code

    def kill(self, name: str, signal_name: str | int = "KILL") -> str:
        """`podman kill`: send a signal (KILL by default; a name, SIG name or number) to a running container."""
        from wasmlab.runtime.lifecycle import parse_kill_signal

        cid = self.resolve(name)
        signum = parse_kill_signal(signal_name)
        self._refuse_never_started(cid)
        if self._status(cid) not in LISTED:
            raise InvalidState(f"container {name} is not running",
                               f"`wasmlab ps -a` shows it; `wasmlab rm {name}` removes it")
        self._runtime.kill(cid, signum)
        return cid

    def pause(self, name: str) -> str:
        cid = self.resolve(name)
        self._refuse_never_started(cid)
        self._runtime.pause(cid)
        return cid

    def unpause(self, name: str) -> str:
        cid = self.resolve(name)
        self._refuse_never_started(cid)
        self._runtime.resume(cid)
        return cid

    def _refuse_never_started(self, cid: str) -> None:
        try:
            meta = self._meta(cid)
        except ContainerNotFound:
            return  # a pod's container: its pod made and started it
        if meta.get("never_started"):
            name = meta.get("name") or cid
            raise InvalidState(f"container {name} is created but was never started",
                               f"`wasmlab start {name}` starts it")

    def _image_users(self, image: str) -> list[ContainerInfo]:
        """The containers (running or not) made from the image that IMAGE names."""
        digest = self._images.store.resolve(image).digest
        infos = [(m, self._info(m)) for m in self._all_meta() if self._made_from(m) == digest]
        return [info for m, info in infos if not self._discard_ended_rm(m, info)]

    def _made_from(self, meta: dict[str, Any]) -> str | None:
        """The digest of the image a container was made from (by the name it was run as, for containers made
        before the digest was recorded); None when that name no longer resolves."""
        digest = meta.get("image_digest")
        if digest is None:
            try:
                digest = self._images.store.resolve(meta["image"]).digest
            except WasmlabError:
                return None
        return str(digest)

    def rm(self, name: str, *, force: bool = False) -> str:
        """`podman rm`. A pod's containers go with their pod (`pod rm`, `kube down`): removing one alone would
        leave the pod naming a container it no longer has, and its infra container holds the others' namespaces."""
        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        if info.pod:
            raise InvalidState(f"container {info.name} belongs to pod {info.pod}: it goes with its pod",
                               f"`wasmlab pod rm {info.pod}` (or `wasmlab kube down FILE`)")
        if info.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED) and not force:
            raise InvalidState(f"container {info.name} is running", f"`wasmlab stop {info.name}` or use `rm -f`")
        self._discard(cid)
        return cid

    # -- create, start, restart, rename, container prune, top, port, version, info (podman's other verbs) ---------
    def create(self, image: str, command: Sequence[str] | None = None, *, name: str | None = None,
               rm: bool = False, annotations: Mapping[str, str] | None = None, env: Sequence[str] | None = None,
               engine: str | None = None, entrypoint: Sequence[str] | None = None,
               options: RunOptions | None = None, progress: ProgressCallback | None = None) -> LabRun:
        """`podman create`: the container made (its bundle, root and name) and not started: status "created",
        no process until `start`. Its -p is published at each start."""
        if options is not None and options.tty:
            raise TerminalRefused("wasmlab cannot create a container with a terminal (-t) to start later",
                                  "run it at once instead: wasmlab run -it IMAGE")
        return self.run(image, command, name=name, rm=rm, detach=True, annotations=annotations, env=env,
                        engine=engine, entrypoint=entrypoint, options=options, progress=progress,
                        _create_only=True)

    def start(self, name: str, *, attach: bool = False, interactive: bool = False,
              stdio: tuple[int, int, int] | None = None, sig_proxy: bool = False,
              progress: ProgressCallback | None = None) -> LabRun:
        """`podman start`: run a created container, or a stopped one again. It is the same container: its id,
        name, root (the upper layer keeps what it wrote) and log (new output is appended); its command runs
        anew. ATTACH (-a): in the foreground, the output goes to stdio (and the log) and this waits for the
        exit code; INTERACTIVE (-i) also gives it stdin; SIG_PROXY (from the main thread) sends the stop
        signals this process gets to the container, as run's. A running container is left as it is."""
        cid = self.resolve(name)
        meta = self._meta(cid)
        info = self._info(meta)
        if meta.get("pod"):
            raise InvalidState(f"container {info.name} belongs to pod {meta['pod']}",
                               f"its pod starts it: `wasmlab kube play`, or `wasmlab pod rm {meta['pod']}`")
        if info.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            if attach:
                raise InvalidState(f"container {info.name} is already {info.status}",
                                   f"`wasmlab logs -f {info.name}` follows its output")
            return LabRun(cid, info.name, None)
        if info.status is ContainerStatus.CREATING:
            raise InvalidState(f"container {info.name} is still being created", "try again once `run` returns")
        if meta.get("log") != ctrlog.LOG_FORMAT:
            raise InvalidState(f"container {info.name} was run with a terminal (-t): wasmlab cannot start it again",
                               "run a new one: wasmlab run -it IMAGE")
        cdir = self._dir(cid)
        with Lock(cdir / ".start.lock"), _held(cdir):  # its creator lock too: never taken for a dead caller's
            if info.status is ContainerStatus.CREATED and not meta.get("never_started"):
                self._runtime.start(cid)  # made by the runtime, waiting for its start (a `run -d` midway)
                return LabRun(cid, info.name, None)
            try:
                self._runtime.delete(cid)  # a stopped one: its process is gone; its bundle and log stay
            except ContainerNotFound:
                pass
            published = self._check_publish(_publish_specs(meta))
            before = json.dumps(meta)
            meta.pop("never_started", None)
            meta["detach"] = not attach
            (cdir / "meta.json").write_text(json.dumps(meta))
            if published:
                self._publishing[cid] = published
            if not attach:
                try:
                    return self._start_detached(cid, info.name, cdir, bool(meta.get("rm")))
                except BaseException:
                    if cdir.is_dir() and not self._runtime_knows(cid):
                        (cdir / "meta.json").write_text(before)  # never made: as it was (created, or stopped)
                    raise
            sinks = stdio or (0, 1, 2)
            null = -1 if interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            proxy = None
            if sig_proxy and threading.current_thread() is threading.main_thread():
                from wasmlab.runtime.signals import Forwarder

                proxy = Forwarder((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), escalate=True,
                                  on_first_stop=lambda sig: self._escalate_later(cid, info.name, sig, progress))
            forward = proxy
            try:
                with self._starting_container(cid) as started:
                    return self._foreground(
                        cid, info.name, info.image, cdir, (sinks[0] if interactive else null, sinks[1], sinks[2]),
                        bool(meta.get("rm")), started,
                        None if forward is None else
                        lambda created: forward.target(lambda sig: self._kill_quietly(created, sig)))
            finally:
                if proxy is not None:
                    proxy.close()
                if null >= 0:
                    os.close(null)

    def _start_detached(self, cid: str, name: str, cdir: Path, rm: bool) -> LabRun:
        """start without -a: as `run -d`, the zygote writes the output into the log, and this returns."""
        with self._starting_container(cid) as started:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._runtime.create(cid, str(cdir / "bundle"), stdin=null, stdout=null, stderr=null,
                                     log=str(cdir), log_max=self._log_max, rm_with=self._rm_with(cid, name, rm))
            except BaseException:
                self._publishing.pop(cid, None)
                raise
            finally:
                os.close(null)
            try:
                self._forward_ports(cid)
                self._runtime.start(cid)
            except BaseException:
                self._publishing.pop(cid, None)
                self._release_ports(cid)
                self._kill_quietly(cid, signal.SIGKILL)
                raise
            started(name)
            return LabRun(cid, name, None)

    def _runtime_knows(self, cid: str) -> bool:
        try:
            self._runtime.state(cid)
        except ContainerNotFound:
            return False
        return True

    def restart(self, name: str, *, timeout: float = 10.0, progress: ProgressCallback | None = None) -> LabRun:
        """`podman restart`: stop (SIGTERM, then SIGKILL after TIMEOUT s) if it runs, then start it again."""
        cid = self.resolve(name)
        if not self._meta(cid).get("never_started"):
            self.stop(cid, timeout=timeout, progress=progress)
        return self.start(cid)

    def rename(self, name: str, new_name: str) -> str:
        """`podman rename`: give a container (running or not) another name; its id stays."""
        cid = self.resolve(name)
        if pod := self._meta(cid).get("pod"):
            raise InvalidState(f"container {name} belongs to pod {pod}: its name is the pod's YAML's",
                               "rename it in the YAML, then `wasmlab kube play` it again")
        if not _NAME.match(new_name):
            raise UsageError(f"invalid container name {new_name!r}",
                             "names start with a letter or digit, then letters, digits, '_', '.' or '-'")
        with Lock(self._containers_dir.parent / ".container-names.lock"):
            self._names.ensure(self._all_meta)
            if not self._names.claim(new_name, cid):
                raise ContainerExists(f"the name {new_name!r} is in use",
                                      f"`wasmlab rm {new_name}` or pick another name")
            meta = self._meta(cid)
            old_name, meta["name"] = meta["name"], new_name
            _write_meta(self._dir(cid) / "meta.json", meta)
            self._names.release(old_name, cid)
        return cid

    def container_prune(self) -> list[str]:
        """`podman container prune`: remove every container that is not running (stopped, or created and never
        started); the ids removed. A pod's containers are left to their pod (`wasmlab pod rm`)."""
        removed = []
        for m in self._all_meta():
            if m.get("pod"):
                continue
            status = self._info(m).status
            if status is ContainerStatus.STOPPED or (status is ContainerStatus.CREATED and m.get("never_started")):
                self._discard(m["id"])
                removed.append(str(m["id"]))
        return removed

    def top(self, name: str) -> list[ProcessRow]:
        """`podman top`: the container's processes, as ps shows them (pids as the container sees them)."""
        from wasmlab.runtime.linux.proctable import processes

        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        if info.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            raise InvalidState(f"container {info.name} is not running ({info.status}): top shows a running one's "
                               "processes", f"`wasmlab start {info.name}` starts it")
        rows = processes(self._runtime.ps(cid) or ([info.pid] if info.pid else []))
        if info.handler not in (None, "native"):
            # A Wasm init is a fork of the lab's zygote: /proc shows the zygote's command line, not the guest's.
            rows = [replace(r, command=" ".join(info.command) or r.command) if r.host_pid == info.pid else r
                    for r in rows]
        return rows

    def running(self, names: Sequence[str]) -> list[str]:
        """The ids of the containers NAMES (for `stats NAME...`); one line for a name unknown or not running."""
        ids = []
        for name in names:
            cid = self.resolve(name)
            info = self._info(self._meta(cid))
            if info.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                raise InvalidState(f"container {info.name} is not running ({info.status})",
                                   f"`wasmlab start {info.name}` starts it; `wasmlab ps` lists the running ones")
            ids.append(cid)
        return ids

    def ports(self, name: str) -> list[PortMapping]:
        """`podman port`: the container's published ports (-p)."""
        from wasmlab.runtime.linux.portforward import parse_publish

        cid = self.resolve(name)
        return [parse_publish(spec) for spec in _publish_specs(self._meta(cid))]

    @staticmethod
    def version() -> dict[str, str]:
        """`podman version`: wasmlab's, Python's and the engines' versions, and the OS/architecture."""
        import platform
        from importlib import metadata

        from wasmlab.runtime import __version__

        def of(package: str) -> str:
            try:
                return metadata.version(package)
            except metadata.PackageNotFoundError:
                return "not installed"

        return {"Version": __version__, "Python": platform.python_version(), "wasmtime": of("wasmtime"),
                "wasmer-sdk": of("wasmer-sdk"), "OS/Arch": f"linux/{_ARCH.get(platform.machine(), platform.machine())}"}

    def info(self) -> dict[str, Any]:
        """`podman info`: the host (kernel, CPUs, memory, cgroups, root mode), the engines, and the store
        (home, how container roots are made, containers by status, images)."""
        import platform

        report = self.doctor()
        counts = {str(s): 0 for s in (ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.CREATED,
                                      ContainerStatus.STOPPED)}
        for m in self._all_meta():
            status = str(self._info(m).status)
            counts[status] = counts.get(status, 0) + 1
        mem = 0
        try:
            mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pass
        return {
            "host": {"hostname": platform.node(), "kernel": platform.release(), "os": "linux",
                     "arch": _ARCH.get(platform.machine(), platform.machine()), "cpus": os.cpu_count() or 0,
                     "memTotal": mem, "mode": report["mode"], "cgroups": report["cgroups"],
                     "cgroupControllers": report["cgroup controllers"], "userNamespaces": report["user namespaces"],
                     "seccomp": report["seccomp"]},
            "engines": report["handlers"],
            "store": {"home": str(self.home), "rootMode": self.root_mode(), "containers": counts,
                      "images": len(self.images())},
            "version": self.version(),
        }



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
        # In podman's words: "Copying blob sha256:ab12... done", "Writing manifest".
        what = {"skip": "blob {} already there", "done": "copying blob {} done",
                "manifest": "writing manifest {}"}.get(event.kind, "copying blob {}")
        sink(Progress(phase, what.format(event.digest[:19]), event.done, event.total, "bytes"))

    return on_event


def _refuse_detached_tty(options: RunOptions, detach: bool) -> None:
    if options.tty and detach:
        raise TerminalRefused("a detached container gets no terminal in wasmlab (-d with -t)",
                              "keep it running with `wasmlab run -d --name NAME IMAGE sleep infinity`, "
                              "then `wasmlab exec -it NAME sh`")


@dataclass
class _FirstByte:
    """When a foreground run's relay read the first byte of its stdout (time.perf_counter: CLOCK_MONOTONIC)."""

    at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)  # set once the relay has ended


@contextmanager
def _held(folder: Path) -> Iterator[None]:
    fd = creator.hold(folder)
    try:
        yield
    finally:
        os.close(fd)


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    """meta.json, into the file a spare folder holds already when it does (or a new one). Truncated only when
    it held more: ext4 flushes a file truncated to nothing when it is closed (auto_da_alloc)."""
    data = json.dumps(meta).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if os.fstat(fd).st_size > len(data):
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class _Refill:
    """The cleaner's cue to make spare container folders."""


_REFILL = _Refill()
# Container folders made ahead (store/spares.py): beside containers/, which holds containers only (ps, df).
SPARES = ".spare-containers"


def _relay_output(pipes: list[tuple[int, int, bytes]], log: ctrlog.LogWriter, first: _FirstByte | None = None) -> None:
    """Copy a container's output (each pipe to its sink: the terminal) as it comes, and into its log as
    k8s-file records: one thread for both streams, so they reach the log in the order they were read. FIRST
    notes when stdout's first byte came."""
    import selectors

    sinks = {fd: (sink, stream) for fd, sink, stream in pipes}
    with selectors.DefaultSelector() as sel:
        for fd in sinks:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    continue
                sink, stream = sinks[key.fd]
                if first is not None and first.at is None and stream == b"stdout":
                    first.at = time.perf_counter()
                try:
                    os.write(sink, chunk)
                except OSError:
                    pass
                log.write(stream, chunk)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


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


# How long `stop` waits quietly before it says that SIGKILL follows, and podman's default wait (stop -t).
STOP_NOTICE_AFTER = 1.0
STOP_TIMEOUT = 10.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _publish_specs(meta: dict[str, Any]) -> list[str]:
    """The -p specs of a container: as `create` kept them, or from the ports a run published
    ("127.0.0.1:8080->80/tcp" is -p 127.0.0.1:8080:80)."""
    if "publish" in meta:
        return [str(p) for p in meta["publish"]]
    specs = []
    for port in meta.get("ports") or []:
        host, _, ctr = str(port).partition("->")
        specs.append(f"{host}:{ctr.split('/')[0]}")
    return specs
