"""What every widget shares: a Lab to talk to, a status line, and errors shown as one line with a hint."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import ipywidgets as w
from wasmlab.runtime import WasmlabError

if TYPE_CHECKING:
    from wasmlab.runtime import Lab

# The repository's assets/ (sample programs, Containerfiles, pods): the package is installed in editable mode.
ASSETS = Path(__file__).resolve().parents[2] / "assets"
_F = TypeVar("_F", bound=Callable[..., Any])


def one_line(exc: BaseException) -> str:
    """An error as a learner reads it: wasmlab's message and hint, or the exception's own first line."""
    if isinstance(exc, WasmlabError):
        return exc.one_line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def pre(text: str) -> str:
    """Text shown as it is (monospace, escaped)."""
    return f"<pre style='margin:0'>{html.escape(text)}</pre>"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A small HTML table (escaped cells)."""
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Panel(w.VBox):  # type: ignore[misc]
    """A VBox that holds a Lab and a status line; its click handlers never raise into the notebook."""

    def __init__(self, lab: Lab | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if lab is None:
            from wasmlab.runtime import Lab

            lab = Lab()
        self.lab = lab
        self.status = w.HTML(value="")
        self.error = ""  # the last error's line ("" after a success)

    def say(self, text: str) -> None:
        self.error = ""
        self.status.value = html.escape(text)

    def fail(self, exc: BaseException) -> None:
        self.error = one_line(exc)
        self.status.value = f"<span style='color:#b00'>{html.escape(self.error)}</span>"


def guarded(handler: _F) -> _F:
    """A click or observe handler whose error becomes the panel's status line instead of a traceback."""

    @functools.wraps(handler)
    def wrapper(self: Panel, *args: Any, **kwargs: Any) -> Any:
        try:
            return handler(self, *args, **kwargs)
        except Exception as exc:  # a widget callback: the learner gets one line, never a traceback
            self.fail(exc)
            return None

    return wrapper  # type: ignore[return-value]
