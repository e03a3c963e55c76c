"""What the verb groups of the wasmlab command share: the Lab it opens, KEY=VALUE options, JSON and progress."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from wasmlab.runtime.errors import UsageError

if TYPE_CHECKING:
    from wasmlab.runtime import Lab, Progress

# Every verb group imports this module to build the parser: the Lab (the service, ~40 ms of imports) comes when a
# verb opens it, and only then (issue 16, quickverbs).


class VerbParser(argparse.ArgumentParser):
    """A verb's parser (and the top-level one): a mistake prints THIS verb's usage and one "Error:" line with a
    hint, exit 2, as podman does; an unknown flag is refused here rather than by the top-level parser, which
    would print its own usage and leave the learner guessing which verb took offence."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            first = extras[0]
            self.error(f"unknown flag: {first}" if first.startswith("-") else f"unexpected argument: {first}")
        return ns, extras

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if kwargs.get("nargs") == argparse.REMAINDER and not action.option_strings:
            action.required = False  # argparse would list a COMMAND that may be empty as "required"
        return action

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        hint = f"`{self.prog} --help` lists what it takes"
        print(f"Error: {UsageError(message, hint).one_line()}", file=sys.stderr)
        sys.exit(125)  # podman's status for a mistake on its own command line


def stop_seconds(text: str) -> int:
    """`-t/--time` of stop, restart and pod stop/restart: whole seconds, 0 or more, as podman takes (it refuses
    1.5, -1, nan and inf with 125, as this does through VerbParser.error)."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise argparse.ArgumentTypeError(f"-t {text}: give whole seconds, 0 or more (e.g. -t 2; -t 0 kills at "
                                         "once), as podman takes")
    return int(value)


def kv(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"{what} {item!r} is not KEY=VALUE", f"write it as {what} key=value")
        out[k] = v
    return out


def open_lab(args: argparse.Namespace) -> Lab:
    from wasmlab.runtime import Lab

    return Lab(default_engine=getattr(args, "engine", None))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


class ProgressLine:
    """Renders the Lab's Progress on stderr: one line redrawn in place on a terminal, nothing otherwise.
    A RUN step's own output is always shown (a learner needs it when the step fails), unless quiet."""

    def __init__(self, label: str, *, show_progress: bool = True, show_output: bool = True) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.show_progress = show_progress and self.tty
        self.show_output = show_output
        self.drawn = False

    def __call__(self, p: Progress) -> None:
        if p.output:
            if self.show_output:
                self._clear()
                sys.stderr.write(p.output if p.output.endswith("\n") else p.output + "\n")
                sys.stderr.flush()
            return
        if self.show_progress:
            from wasmlab.lab import present

            sys.stderr.write(f"\r\x1b[2K{self.label}: {present.progress_line(p)[:150]}")
            sys.stderr.flush()
            self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[2K")
            self.drawn = False

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


def tty_flags(parser: argparse.ArgumentParser) -> None:
    """podman's -i and -t (typed together as -it): a terminal in the container, and the keyboard attached to it."""
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="attach stdin (always so without -t; with -t, what you type goes in)")
    parser.add_argument("-t", "--tty", action="store_true",
                        help="give the process a terminal (a pty): a shell prompt, line editing, Ctrl-C")


def confirm(warning: str, what: str) -> bool:
    """podman's question before removing things: WARNING, then "[y/N]" read from stdin; False (and a line saying
    nothing was removed by WHAT) unless the answer is yes."""
    sys.stderr.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() in ("y", "yes"):
        return True
    print(f"{what} cancelled: nothing was removed", file=sys.stderr)
    return False


def stats_flags(ss: argparse.ArgumentParser, fields: dict[str, Any]) -> None:
    """The sampling and output flags `stats` and `pod stats` share (stats_format and show_samples read them)."""
    ss.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    ss.add_argument("--no-reset", action="store_true", help="do not clear the terminal between samples")
    ss.add_argument("--format", metavar="FORMAT", help="json (each sample as a JSON list), or a template such as "
                                                      "'table {{.Name}}\\t{{.PIDS}}' (fields: " +
                                                      ", ".join("." + k for k in fields) + ")")
    ss.add_argument("--json", action="store_true", help="print each sample as JSON (as --format json)")
    ss.add_argument("-i", "--interval", type=float, metavar="SECONDS",
                    help="seconds between samples (default 5, as podman; with --no-stream 1: the CPU figure is "
                         "measured over it)")
