"""wasmlab: podman's verbs over the embedded lab (build, run, ps, logs, images, ...); no arguments opens the TUI."""

from __future__ import annotations

import os
import sys

from wasmlab.runtime.errors import UsageError, WasmlabError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of every command's start)
if TYPE_CHECKING:
    import argparse

# This module is imported by every `wasmlab` before anything else: it imports only what `run` needs first
# (issue 16). The verb groups, argparse and the Lab come after the zygote was started (cold) or not at all
# (through the warm helper).


# The verb group that registers each quick verb (issue 16, quickverbs): the cold path builds that group's parsers
# alone for them (every group's imports and parsers cost ~25 ms). A test checks the full parser agrees.
VERB_GROUPS = {"ps": "containers", "logs": "containers", "inspect": "containers", "rm": "containers",
               "stop": "containers", "images": "images", "pod": "pod"}


def parser(group: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every verb; with GROUP (a module of wasmlab.lab.cli), that group's verbs alone."""
    from wasmlab.lab.cli.common import VerbParser

    if group:
        import importlib

        verb_groups = [importlib.import_module(f"wasmlab.lab.cli.{group}")]
    else:
        from wasmlab.lab.cli import bench, containers, images, lifecycle, pod, pods, system

        # The order of `wasmlab --help`: the verbs of the seed first.
        verb_groups = [images, containers, lifecycle, pods, pod, system, bench]
    p = VerbParser(prog="wasmlab", description="Run WebAssembly and Linux containers side by side. "
                   "With no command, opens the terminal UI.")
    p.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    p.add_argument("--version", action="store_true", help="print wasmlab's version")
    # Every verb's parser is a VerbParser too, so a mistake after a verb prints that verb's usage.
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=VerbParser)
    for module in verb_groups:
        module.register(sub)
    return p


# Verbs a warm helper runs when one is up (issue 16, quickverbs): its forked copy has argparse, the verb groups and
# the Lab imported and the parser built, so only the command's own work is left. Not through it: the TUI, `system`
# (its stop and reset wait for the helper itself), `bench` (it measures processes of its own), and the verbs that
# start containers (`run` has its own way, with a spare zygote).
HELPER_VERBS = frozenset({"ps", "images", "logs", "inspect", "rm", "stop", "pod", "--help", "-h"})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = _verb(argv)
    if verb == "run":
        from wasmlab.lab.cli import warm

        code = warm.run_quickly(argv)  # through the warm helper when one answers; else a zygote starts now
        if code is not None:
            return code
    elif verb == "--version" and set(argv) <= {"--version", "--debug"}:
        return print_version()  # what argparse would come to, without it
    elif verb in HELPER_VERBS:
        from wasmlab.lab.cli import warm

        code = warm.run_if_warm(argv)  # through the warm helper when one is up; never starts one
        if code is not None:
            return code
    return run_command(argv)


def _verb(argv: list[str]) -> str | None:
    """The verb, when the words before it are only --debug (what the quick path understands)."""
    for word in argv:
        if word != "--debug":
            return word
    return None


def run_command(argv: list[str], p: argparse.ArgumentParser | None = None) -> int:
    """The command line in this process (the cold path, and the warm helper's forked command, which passes the
    parser the helper built once)."""
    verb = next((a for a in argv if not a.startswith("-")), None)
    if p is None:
        quick = verb in VERB_GROUPS and all(a == "--debug" for a in argv[:argv.index(verb or "")])
        p = parser(VERB_GROUPS[verb or ""] if quick else None)
    verbs = _verbs(p)
    if verb is not None and verb not in verbs:
        import difflib

        close = " or ".join(f"`wasmlab {v}`" for v in difflib.get_close_matches(verb, verbs, n=2))
        p.print_usage(sys.stderr)
        hint = f"did you mean {close}?" if close else "`wasmlab --help` lists the commands"
        print(f"Error: {UsageError(f'unknown command {verb!r}', hint).one_line()}", file=sys.stderr)
        return PODMAN_ERROR
    args = p.parse_args(argv)
    if args.version:
        return print_version()
    func = getattr(args, "func", None)
    if args.verb is None:
        from wasmlab.lab.cli import system

        func = system.cmd_tui
    elif func is None:
        p.parse_args([args.verb, "--help"])
        return PODMAN_ERROR
    try:
        from wasmlab.runtime import absolute_home_env

        if note := absolute_home_env():
            print(f"wasmlab: {note}", file=sys.stderr)
        return int(func(args))
    except WasmlabError as exc:
        return report(exc, debug=args.debug, remover=getattr(func, "__name__", "") in REMOVERS)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `wasmlab ps --json | head`: the reader has what it wanted. Quiet, as other tools are.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def print_version() -> int:
    from wasmlab.runtime import __version__

    print(f"wasmlab version {__version__}")
    return 0


def _verbs(p: argparse.ArgumentParser) -> list[str]:
    import argparse

    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


# podman's exit statuses (podman-run(1), podman-rm(1), podman-rmi(1)), so that a script can tell the lab's own
# failure from its container's: 125 for an error of the lab itself (a bad flag, an unknown image or name), 126
# for a command that cannot be invoked, 127 for one that cannot be found; `run` and `start -a` otherwise exit
# with the container's status. rm, rmi and pod rm answer 1 for a name that does not exist and 2 for one in use.
PODMAN_ERROR = 125
REMOVERS = frozenset({"cmd_rm", "cmd_rmi", "cmd_pod_rm"})


def exit_status(exc: WasmlabError, *, remover: bool = False) -> int:
    """The exit status podman gives for this error (the typed error keeps its own code for the API)."""
    from wasmlab.runtime.errors import ContainerNotFound, ImageNotFound, InvalidState, PodNotFound

    if exc.exit_code in (126, 127):
        return exc.exit_code
    if remover and isinstance(exc, (ContainerNotFound, ImageNotFound, PodNotFound)):
        return 1
    if remover and isinstance(exc, InvalidState):
        return 2
    return PODMAN_ERROR


def report(exc: WasmlabError, *, debug: bool = False, remover: bool = False) -> int:
    """One line on stderr (the traceback too with --debug); the exit status to return."""
    if debug:
        import traceback

        traceback.print_exc()
    print(f"Error: {exc.one_line()}", file=sys.stderr)
    return exit_status(exc, remover=remover)
