"""Every message between a Runtime and its zygote, declared once: requests, replies and container events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wasmlab.runtime.store.state import ExitRecord

MAX_MSG = 1 << 20
REAPED_FILE = "reaped.json"  # a container's final figures, left in its state folder when its client is gone


@dataclass
class Message:
    """A message on the socket: its class name travels as "type", its fields as they are."""

    TYPE: ClassVar[str] = ""

    def encode(self) -> bytes:
        body = dict(self.__dict__)
        body["type"] = self.TYPE
        if isinstance(body.get("exit"), ExitRecord):
            body["exit"] = body["exit"].__dict__
        return json.dumps(body).encode()


# -- client -> zygote (each carries a request id; the fds travel beside it) ----------------------------------

@dataclass
class Create(Message):
    """Fork a container to 'created'. fds: stdin, stdout, stderr."""

    TYPE: ClassVar[str] = "create"
    rid: int
    id: str
    bundle: str
    annotations: dict[str, str] = field(default_factory=dict)
    pid_file: str | None = None
    console_socket: str | None = None
    events: bool = True          # somebody listens: send ContainerCreated too
    record: bool = False         # somebody records runs: send ContainerReaped with the final figures
    log: str | None = None       # a folder: the zygote relays stdout and stderr into its k8s-file ctr.log
    log_max: int = 0             # the log's size cap in bytes (0: none)
    rm_folder: str = ""          # `--rm`: the caller's folder for it, removed with it if it ends after its caller
    rm_link: str = ""            # `--rm`: its name's link (removed then too, while it still names this id)
    with_caller: bool = False    # it dies with its caller (a build's RUN step): killed once the caller is gone


@dataclass
class Run(Message):
    """Create and start at once; answered by the exit. fds: stdin, stdout, stderr, and the result pipe."""

    TYPE: ClassVar[str] = "run"
    rid: int
    id: str
    bundle: str
    annotations: dict[str, str] = field(default_factory=dict)
    remove: bool = True          # the zygote deletes the container once it is reaped
    events: bool = True
    record: bool = False
    rm_folder: str = ""          # as Create's
    rm_link: str = ""


@dataclass
class Pin(Message):
    """Make a pod's network, IPC and UTS namespaces, pinned under folder (runtime/linux/nspin.py); the reply's
    state maps each OCI namespace type to its pinned path."""

    TYPE: ClassVar[str] = "pin"
    rid: int
    folder: str
    hostname: str | None = None


@dataclass
class Settle(Message):
    """Answer once none of these containers has a process left, and each is recorded or deleted."""

    TYPE: ClassVar[str] = "settle"
    rid: int
    ids: list[str] = field(default_factory=list)


@dataclass
class Ping(Message):
    """Are you there? With modules, the answer lists what the zygote has imported (what every fork copies)."""

    TYPE: ClassVar[str] = "ping"
    rid: int
    modules: bool = False


# -- zygote -> client ----------------------------------------------------------------------------------------

@dataclass
class Hello(Message):
    """The zygote is ready to fork."""

    TYPE: ClassVar[str] = "hello"
    pid: int


@dataclass
class Fatal(Message):
    """The zygote could not start."""

    TYPE: ClassVar[str] = "fatal"
    message: str


@dataclass
class Reply(Message):
    """The answer to a request: ok, or the typed error (WasmlabError.as_dict) that refused it."""

    TYPE: ClassVar[str] = "reply"
    rid: int
    ok: bool = True
    error: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    modules: list[str] = field(default_factory=list)


@dataclass
class ContainerCreated(Message):
    TYPE: ClassVar[str] = "created"
    id: str
    pid: int
    decision: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContainerExited(Message):
    """The workload is over: a Wasm init says so itself, before its teardown; others when reaped.

    With rid, it is also the answer to that `run` (one message, not two)."""

    TYPE: ClassVar[str] = "exit"
    id: str
    exit: ExitRecord
    reports: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    rid: int | None = None
    state: dict[str, Any] | None = None


@dataclass
class ContainerReaped(Message):
    """The process is gone: the final figures (the exit as reported, plus rusage and the cgroup's memory)."""

    TYPE: ClassVar[str] = "reaped"
    id: str
    exit: ExitRecord
    memory: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    handler: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerError(Message):
    """A container's init failed after it was created (the typed error, as a dict)."""

    TYPE: ClassVar[str] = "error"
    id: str
    error: dict[str, Any] = field(default_factory=dict)


_TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in (
    Create, Run, Pin, Settle, Ping, Hello, Fatal, Reply, ContainerCreated, ContainerExited, ContainerReaped,
    ContainerError)}


def decode(data: bytes) -> Message:
    """The message these bytes encode; ValueError for anything else."""
    body = json.loads(data)
    kind = body.pop("type", None) if isinstance(body, dict) else None
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"not a zygote message: {data[:80]!r}")
    try:
        if isinstance(body.get("exit"), dict):
            body["exit"] = ExitRecord(**body["exit"])
        return cls(**body)
    except TypeError as exc:  # a field missing or unknown: a peer of another version, or not a peer at all
        raise ValueError(f"malformed zygote {kind!r} message ({exc}): {data[:80]!r}") from None


def as_event(msg: ContainerCreated | ContainerExited | ContainerReaped | ContainerError) -> dict[str, Any]:
    """The dict a Runtime subscriber receives (event name plus fields), as before the protocol was typed."""
    out = {k: v for k, v in msg.__dict__.items() if k not in ("rid", "state")}
    if isinstance(out.get("exit"), ExitRecord):
        out["exit"] = out["exit"].__dict__
    return {"event": msg.TYPE, **out}
