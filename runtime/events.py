"""The Lab's typed events (containers created, started and exited, runs recorded, images built and removed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LabEvent:
    """Base of every event `Lab.subscribe` delivers; ``at`` is when it happened (time.time())."""

    def as_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class ContainerCreated(LabEvent):
    id: str
    name: str = ""
    image: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ContainerStarted(LabEvent):
    id: str
    name: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ContainerExited(LabEvent):
    """The workload is over: its exit code, the signal that ended it (None if it exited), timings (ms) and memory."""

    id: str
    name: str = ""
    exit_code: int | None = 0        # None: unknowable (its zygote died and the host's init reaped it)
    signal: int | None = None
    oom_killed: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RunRecorded(LabEvent):
    """A finished run landed in the history (``seq`` is its row)."""

    id: str
    name: str = ""
    seq: int = 0
    exit_code: int | None = 0
    signal: int | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ImageBuilt(LabEvent):
    name: str | None
    digest: str
    id: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ImageRemoved(LabEvent):
    """A name went (``untagged``), and with its last name the image (``deleted``, its digest)."""

    ref: str
    untagged: list[str] = field(default_factory=list)
    deleted: str | None = None
    at: float = field(default_factory=time.time)


Subscriber = Callable[[LabEvent], None]
