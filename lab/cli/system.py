"""wasmlab's lab-wide verbs: doctor, history, samples, system (df, reset, info), version, info and tui."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from wasmlab.lab import present
from wasmlab.lab.cli.common import ProgressLine, open_lab, print_json
from wasmlab.runtime.errors import UsageError


def cmd_doctor(args: argparse.Namespace) -> int:
    from wasmlab.runtime import Lab

    report = Lab.doctor()  # needs no lab home: it says what is wrong with one
    if args.json:
        print_json(report)
        return 0
    for key, value in report.items():
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print(f"  - {item}")
        else:
            print(f"{key}: {value}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        rows = lab.history(args.last, handler=args.handler)
    if args.json:
        print_json([r.as_dict() for r in rows])
        return 0
    # Milliseconds from the create request; three memory figures, each under its own name (see present.INIT_RSS).
    print(f"{'WHEN':<16}{'NAME':<20}{'ENGINE':<10}{'EXIT':<6}{'CREATE':>8}{'1ST BYTE':>9}{'EXIT ms':>9}"
          f"{present.CGROUP_PEAK.upper():>13}{present.GUEST.upper():>10}{present.INIT_RSS.upper():>10}  CACHE")
    for r in rows:
        code = "-" if r.exit_code is None else str(r.exit_code)
        print(f"{present.ago(r.started_at, short=True):<16}{(r.name or r.id)[:18]:<20}{r.handler:<10}{code:<6}"
              f"{present.ms(r.create_ms):>8}{present.ms(r.first_byte_ms):>9}{present.ms(r.exit_ms):>9}"
              f"{present.maybe_size(r.cgroup_peak_bytes):>13}{present.maybe_size(r.guest_bytes):>10}"
              f"{present.size(r.max_rss_kb * 1024):>10}  {r.cache or '-'}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    line = ProgressLine("samples", show_progress=not (args.json or args.quiet))
    try:
        with open_lab(args) as lab:
            built = lab.samples(busybox=not args.no_busybox, progress=line)
    finally:
        line.close()
    if args.json:
        print_json([dataclasses.asdict(b) for b in built])
    elif not args.quiet:
        for b in built:
            print(f"{b.name:<34}{present.short_id(b.id)}")  # the IMAGE ID `wasmlab images` shows
    return 0


def cmd_df(args: argparse.Namespace) -> int:
    """podman's system df: what images, containers, logs, caches and the history take on disk."""
    with open_lab(args) as lab:
        rows = lab.df()
    if args.json:
        print_json([dataclasses.asdict(r) for r in rows])
        return 0
    print(f"{'TYPE':<12}{'TOTAL':>7}{'ACTIVE':>8}{'SIZE':>12}{'RECLAIMABLE':>14}")
    for r in rows:
        share = f" ({100 * r.reclaimable // r.size}%)" if r.size else ""
        print(f"{r.kind:<12}{r.total:>7}{r.active:>8}{present.size(r.size):>12}{present.size(r.reclaimable):>9}"
              f"{share}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """podman's system reset: after a confirmation (or --force), stop every container and empty the lab home."""
    import sys

    with open_lab(args) as lab:
        home = lab.home
        if not args.force:
            sys.stderr.write(f"This removes every container, image, log, cache and the history under {home}.\n"
                             "Are you sure you want to continue? [y/N] ")
            sys.stderr.flush()
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                print("reset cancelled: nothing was removed", file=sys.stderr)
                return 1
        freed = lab.reset()
    print(f"Removed everything under {home} ({present.size(freed)} freed)")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    """podman's version: wasmlab's and the engines' versions (no lab home needed)."""
    from wasmlab.runtime import Lab

    _check_format(args.format)
    report = Lab.version()
    if args.format == "json":
        print_json({"Client": report})
        return 0
    print("Client:       wasmlab")
    for key, value in report.items():
        print(f"{key + ':':<14}{value}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """podman's info: host, kernel, cgroups, engines, the lab home and how roots are made (YAML-like, or JSON)."""
    _check_format(args.format)
    with open_lab(args) as lab:
        report = lab.info()
    if args.format == "json":
        print_json(report)
        return 0
    _yaml(report, 0)
    return 0


def _check_format(fmt: str | None) -> None:
    if fmt not in (None, "json"):
        raise UsageError(f"--format {fmt!r} is not known here", "use --format json, or leave it out")


def _yaml(value: Any, indent: int) -> None:
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            print(f"{pad}{key}:")
            _yaml(item, indent + 1)
        elif isinstance(item, list):
            print(f"{pad}{key}:")
            for entry in item:
                print(f"{pad}- {entry}")
        else:
            print(f"{pad}{key}: {item}")


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        from wasmlab.lab.tui.app import main as tui_main
    except ImportError as exc:
        raise UsageError(f"the terminal UI is not available: {exc}", "run `make lab` to install it") from None
    return int(tui_main() or 0)


def register(sub: Any) -> None:
    dr = sub.add_parser("doctor", help="check what this machine can do")
    dr.add_argument("--json", action="store_true", help="print the report as JSON")
    dr.set_defaults(func=cmd_doctor)

    hi = sub.add_parser("history", help="the run history: timings and memory of past runs")
    hi.add_argument("-n", "--last", type=int, default=20, help="how many runs to show (default 20)")
    hi.add_argument("--handler", help="only runs of this handler: native, wasmtime or wasmer")
    hi.add_argument("--json", action="store_true", help="print the runs as JSON")
    hi.set_defaults(func=cmd_history)

    sm = sub.add_parser("samples", help="build the sample images (every program in assets/ as compat, "
                                        "compat-smart and Linux images, and a busybox sidecar)")
    sm.add_argument("--no-busybox", action="store_true", help="skip the busybox sidecar image")
    sm.add_argument("--json", action="store_true", help="print the images built as JSON")
    sm.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    sm.set_defaults(func=cmd_samples)

    sy = sub.add_parser("system", help="the lab as a whole: disk usage (df), info and reset")
    ssub = sy.add_subparsers(dest="system_verb", metavar="COMMAND")
    df = ssub.add_parser("df", help="show what images, containers, logs and caches take on disk")
    df.add_argument("--json", action="store_true", help="print the figures as JSON")
    df.set_defaults(func=cmd_df)
    rs = ssub.add_parser("reset", help="stop every container and empty the lab home (asks first)")
    rs.add_argument("-f", "--force", action="store_true", help="do not ask for a confirmation")
    rs.set_defaults(func=cmd_reset)

    for where, verb, text in ((sub, "version", "show wasmlab's version and its engines'"),
                              (sub, "info", "show the host, cgroups, engines, lab home and root mode"),
                              (ssub, "info", "show the host, cgroups, engines, lab home and root mode")):
        vi = where.add_parser(verb, help=text)
        vi.add_argument("-f", "--format", metavar="json", help="json: print it as JSON")
        vi.set_defaults(func=cmd_version if verb == "version" else cmd_info)

    tui = sub.add_parser("tui", help="open the terminal UI")
    tui.set_defaults(func=cmd_tui)
