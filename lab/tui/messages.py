"""The TUI's messages: dataclasses that carry service results and runtime events from worker threads to widgets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from wasmlab.runtime import LabEvent


@dataclass
class Loaded(Message):
    """A view's fetch() answered (in its worker thread): the data its show() turns into rows."""

    data: Any


@dataclass
class Progressed(Message):
    """A line of progress from a long service call (build, samples, play)."""

    line: str
    fraction: float | None = None


@dataclass
class Built(Message):
    """A build finished: the image's name."""

    name: str


@dataclass
class Ticked(Message):
    """A tick of the Lab's live metrics stream (posted from the stream's thread)."""

    tick: Any


@dataclass
class ImagesCounted(Message):
    """How many images the lab holds (the app offers to build the samples when there are none)."""

    count: int


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
class RunStarted(Message):
    """A run from the TUI started its container (the app tells runs that start close together at once)."""

    id: str
    name: str


@dataclass
class PlayEnded(Message):
    """A kube play from the TUI is over (its ActionDone or ActionFailed was posted just before)."""

    playing: Any  # the screens.play.Playing it was
    failed: bool


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
    raw: bool = False


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
