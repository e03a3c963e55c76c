"""The typed errors of wasmlab: one line a learner understands, a hint, and an exit code."""

from __future__ import annotations


class WasmlabError(Exception):
    """Base of every error wasmlab raises on purpose.

    ``message`` is one line saying what went wrong; ``hint`` says how to fix it;
    ``exit_code`` is what a command-line face exits with.
    """

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, hint: str = "", *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message and the hint on a single line, as faces print it."""
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message

    def as_dict(self) -> dict[str, object]:
        return {"error": self.kind, "message": self.message, "hint": self.hint, "exit_code": self.exit_code}


class SpecError(WasmlabError):
    """A bundle or its config.json does not follow the OCI runtime-spec."""

    exit_code = 2
    kind = "invalid-spec"

    def __init__(self, field: str, problem: str, hint: str = "") -> None:
        self.field = field
        super().__init__(f"config.json: {field}: {problem}", hint or "see https://github.com/opencontainers/runtime-spec/blob/main/config.md")


class ContainerNotFound(WasmlabError):
    exit_code = 3
    kind = "not-found"


class ContainerExists(WasmlabError):
    exit_code = 4
    kind = "exists"


class InvalidState(WasmlabError):
    """The verb is not allowed in the container's current state."""

    exit_code = 5
    kind = "invalid-state"


class SetupError(WasmlabError):
    """The sandbox could not be built (namespaces, mounts, cgroups, ...)."""

    exit_code = 6
    kind = "setup"


class PrivilegeError(WasmlabError):
    exit_code = 7
    kind = "privilege"


class HandlerError(WasmlabError):
    """No handler can run the workload, or the chosen one refused it."""

    exit_code = 8
    kind = "handler"


class WasmModuleError(HandlerError):
    """The Wasm module is invalid, truncated, or cannot be linked."""

    exit_code = 9
    kind = "invalid-module"


class ImageError(WasmlabError):
    exit_code = 10
    kind = "image"


class BuildError(ImageError):
    exit_code = 11
    kind = "build"


class StoreError(ImageError):
    exit_code = 12
    kind = "store"


class RegistryError(ImageError):
    exit_code = 13
    kind = "registry"


class UsageError(WasmlabError):
    exit_code = 2
    kind = "usage"


_KINDS: dict[str, type[WasmlabError]] = {}


def _register() -> None:
    stack: list[type[WasmlabError]] = [WasmlabError]
    while stack:
        cls = stack.pop()
        _KINDS.setdefault(cls.kind, cls)
        stack.extend(cls.__subclasses__())


def error_from_dict(data: dict[str, object]) -> WasmlabError:
    """Rebuild a typed error sent across a process boundary (see WasmlabError.as_dict)."""
    if not _KINDS:
        _register()
    cls = _KINDS.get(str(data.get("kind") or data.get("error")), WasmlabError)
    err = WasmlabError.__new__(cls)
    WasmlabError.__init__(err, str(data.get("message", "unknown error")), str(data.get("hint", "")))
    code = data.get("exit_code")
    if isinstance(code, int):
        err.exit_code = code
    if isinstance(err, SpecError):
        err.field = ""
    return err


class ZygoteGone(SetupError):
    """The helper process that forks containers died; what it started keeps running."""

    kind = "zygote-gone"

    def __init__(self, message: str = "the wasmlab zygote (the helper that starts containers) died",
                 hint: str = "containers it started keep running and can be stopped or deleted; "
                             "the next call starts a new zygote", **kw: int) -> None:
        super().__init__(message, hint, **kw)


class HomeError(UsageError):
    """The lab home (WASMLAB_HOME) cannot hold the lab's data: under /proc or /sys, or not a folder."""

    kind = "bad-home"


class DiskFull(WasmlabError):
    """A write into the lab home failed because its disk (or the user's quota there) is full."""

    exit_code = 14
    kind = "disk-full"
    folder = ""

    def __init__(self, folder: str, *, quota: bool = False) -> None:
        self.folder = str(folder)
        what = "the disk quota is used up" if quota else "the disk is full"
        super().__init__(f"{what}: no space left to write in {self.folder}",
                         "free space on that disk (`wasmlab image prune` removes unused images and leftovers, "
                         "`wasmlab rmi` removes images), or set WASMLAB_HOME to a folder on a bigger disk")


class WasmExecRefused(InvalidState):
    """exec into a Wasm container: its image has no programs to run beside its one module."""

    kind = "wasm-exec"
    exit_code = 127

    @classmethod
    def of(cls, name: str, engine: str, program: str, is_module: bool) -> WasmExecRefused:
        what = (f"{program} is a Wasm module, and exec starts Linux programs, not a second module"
                if is_module else f"exec starts Linux programs, and {program} is not in its image")
        return cls(f"container {name or '?'} runs one Wasm module under {engine}: {what}",
                   f"a Wasm container has no shell: read its output with `wasmlab logs {name}`, or run the module "
                   "again in a new container with `wasmlab run --rm IMAGE ARGS`")


class TerminalRefused(UsageError):
    """-t where wasmlab cannot give a terminal (detached, or an engine whose guest only gets pipes)."""

    kind = "no-terminal"


class PortError(UsageError):
    """A published port (-p) cannot be had: in use, or an address this machine does not have."""

    kind = "port"


class PodSpecError(WasmlabError):
    """A Kubernetes YAML file (Pod, Deployment) that wasmlab cannot play: the message names the YAML path."""

    exit_code = 2
    kind = "invalid-pod"
    field = ""
    source = ""

    def __init__(self, field: str, problem: str, hint: str = "", *, source: str = "") -> None:
        self.field = field
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}" if field else f"{where}{problem}",
                         hint or "see https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/")


class BadPattern(UsageError):
    """A containerd pod_annotations entry that Go's path.Match refuses (its ErrBadPattern)."""

    kind = "bad-pattern"


class PodExists(WasmlabError):
    """A pod of that name is already played in that namespace."""

    exit_code = 4
    kind = "pod-exists"


class PodNotFound(WasmlabError):
    """No played pod of that name in that namespace."""

    exit_code = 3
    kind = "no-pod"


class PodStartFailed(WasmlabError):
    """A container of a pod could not be started: the pod was rolled back."""

    exit_code = 6
    kind = "pod-start"


class PodInitFailed(PodStartFailed):
    """An init container exited non-zero: the pod stops there, as in Kubernetes (and is rolled back)."""

    kind = "pod-init"


class BenchFailed(WasmlabError):
    """A bench scenario's container did not run as it must (a wrong exit): its figures would mean nothing."""

    kind = "bench"


class BloatedImageNotBuilt(WasmlabError):
    """The bloated image's root is not in the cache yet: building it takes about a minute, once, and only on ask."""

    kind = "bloated-not-built"


class PodStartAborted(PodStartFailed):
    """A container of a pod was not created because another part of the pod failed first (its namespaces, or
    another container's bundle): the pod is rolled back, and that other failure is the one to show."""

    kind = "pod-start-aborted"


class ImageNotFound(ImageError):
    """No image by that name or ID in the store."""


class NothingNamed(WasmlabError):
    """`inspect` found no container, image or pod by that name."""

    exit_code = 3  # as ContainerNotFound
    kind = "not-found"



class CriError(WasmlabError):
    """A CRI call (runtime.v1, as the kubelet makes it) failed: the method, the gRPC status and the CRI's own
    message, which for StartContainer carries the OCI runtime's error through containerd's shim."""

    kind = "cri"

    def __init__(self, method: str, code: str, detail: str) -> None:
        self.method, self.code, self.detail = method, code, detail
        first = (detail.strip().splitlines() or [""])[0]
        super().__init__(f"CRI {method} failed ({code}): {first}",
                         "see the private containerd's log (CriNode.log) for the whole story")


class ContainerdFailed(WasmlabError):
    """The lab's private containerd did not start, or a step of its setup (ctr images import) failed."""

    kind = "containerd"


class WarmHelperNotStopped(WasmlabError):
    """`wasmlab system stop` asked the warm helper to stop, and it is still there when the wait ran out."""

    kind = "warm-helper-not-stopped"


class PodNotRunning(InvalidState):
    """`pod kill`: the pod has no running container to signal (`pod kill -a` skips such pods, as podman does)."""

    kind = "pod-not-running"
