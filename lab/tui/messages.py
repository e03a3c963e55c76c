"""The TUI's messages: dataclasses that carry service results and runtime events from worker threads to widgets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from wasmlab.runtime import ContainerInfo, ImageSummary, LabEvent, RunRecord


@dataclass
class ImagesLoaded(Message):
    """`lab.images()` answered."""

    images: list[ImageSummary]


@dataclass
class ContainersLoaded(Message):
    """`lab.ps(all=True)` answered."""

    containers: list[ContainerInfo]


@dataclass
class HistoryLoaded(Message):
    """`lab.history()` answered (newest first)."""

    runs: list[RunRecord]


@dataclass
class LoadFailed(Message):
    """A view could not load its rows."""

    message: str
    hint: str = ""


@dataclass
class RuntimeEvent(Message):
    """An event from `lab.subscribe` (ContainerCreated, ContainerExited, ImageBuilt, ...)."""

    event: LabEvent


@dataclass
class ActionDone(Message):
    """A verb (run, stop, rm, rmi) finished; views reload and the app tells the user."""

    verb: str
    target: str
    detail: str = ""


@dataclass
class ActionFailed(Message):
    """A verb failed with a typed error: its one-line message and the hint to fix it."""

    verb: str
    target: str
    message: str
    hint: str = ""


@dataclass
class Described(Message):
    """`lab.inspect` (or `lab.image_inspect`) answered: a JSON document to show."""

    title: str
    document: dict[str, Any] = field(default_factory=dict)


@dataclass
class LogChunk(Message):
    """New output from a container's log."""

    text: str


@dataclass
class LogEnded(Message):
    """The container is no longer running: nothing more will come."""

    status: str
    exit_code: int | None = None


def error_parts(exc: BaseException) -> tuple[str, str]:
    """The one-line message and hint of an error, typed or not."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message), str(getattr(exc, "hint", "") or "")
