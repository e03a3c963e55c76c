"""wasmlab's lab-wide verbs: doctor, history, samples, system (df, reset, info), version, info and tui."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from wasmlab.lab import present
from wasmlab.lab.cli.common import ProgressLine, confirm, open_lab, print_json
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
    # Every time a moment in ms from the create request; three memory figures, each under its own name, in MiB
    # as the bench shows them (present.TIMES_LEGEND and MEMORY_LEGEND, which --help prints).
    print(f"{'WHEN':<16}{'NAME':<20}{'IMAGE':<28}{'ENGINE':<10}{present.CODE:<5}{present.CREATE:>8}"
          f"{present.START:>8}{present.FIRST_BYTE:>9}{present.EXITED:>8}"
          f"{present.CGROUP_PEAK.upper():>13}{present.GUEST.upper():>11}{present.INIT_RSS.upper():>11}  CACHE")
    for r in rows:
        code = "-" if r.exit_code is None else str(r.exit_code)
        print(f"{present.ago(r.started_at, short=True):<16}{(r.name or r.id)[:18]:<20}"
              f"{present.middle(r.image or '-', 26):<28}{r.handler:<10}{code:<5}"
              f"{present.ms(r.create_ms):>8}{present.ms(r.start_ms):>8}{present.ms(r.first_byte_ms):>9}"
              f"{present.ms(r.exit_ms):>8}{present.memory(r.cgroup_peak_bytes):>13}{present.memory(r.guest_bytes):>11}"
              f"{present.memory(r.init_max_rss_kb * 1024):>11}  {r.cache or '-'}")
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
    """podman's system df: what images, their snapshots, containers, logs, caches, the history and the work of
    builds, loads and unpacks (Leftovers: reclaimable once their owner is gone, by `image prune`) take on disk."""
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

    from wasmlab.runtime import runtime_root

    with open_lab(args) as lab:
        home = lab.home
        if not args.force and not confirm(
                f"This removes every container, image, log, cache and the history under {home}.", "reset"):
            return 1
        from wasmlab.lab.cli import warm

        # Its spare zygote lives in the runtime folder that reset waits for and removes.
        if warm.stop(runtime_root(home)) is not None:
            print("wasmlab: stopped the warm helper of this lab home first", file=sys.stderr)
        freed = lab.reset()
    print(f"Removed everything under {home} ({present.size(freed)} freed)")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    """podman's system service: a helper that keeps wasmlab warm for this lab home, until idle for --idle s."""
    from wasmlab.lab.cli import warm

    home, run_root = _warm_paths()
    if args.idle <= 0:
        raise UsageError(f"--idle {args.idle:g} is not a number of seconds above 0", "for example --idle 300")
    info = warm.status(run_root)
    if info is None:
        pid = warm.start_helper(home, run_root, idle=args.idle, wait=True)
        if pid is None:
            raise UsageError("the warm helper did not start", "run it again with WASMLAB_DEBUG=1 to see why")
        info = {"pid": pid, "socket": str(warm.socket_path(run_root)), "idle": args.idle}
    print(f"warm helper {info['pid']} listens on {info['socket']} (stops after {info['idle']:g} s idle)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Whether a warm helper serves this lab home, and since when it is idle."""
    from wasmlab.lab.cli import warm

    _home, run_root = _warm_paths()
    info = warm.status(run_root)
    if args.json:
        print_json({"warm_helper": info})
        return 0
    if info is None:
        print("warm helper: not running (the next `wasmlab run` starts one, unless WASMLAB_WARM=0; "
              "`wasmlab system service` starts one now)")
        return 0
    print(f"warm helper: running, pid {info['pid']}, socket {info['socket']}, {info['served']} commands served, "
          f"{info['running']} running, idle {info['idle_for']:g} s of {info['idle']:g} s")
    return 0


def cmd_stop_service(args: argparse.Namespace) -> int:
    from wasmlab.lab.cli import warm

    _home, run_root = _warm_paths()
    stopped = warm.stop_helper(run_root)
    if stopped is None:
        print("warm helper: not running")
        return 0
    pid, running = stopped
    # It stops at once: the commands it had started go on in their own processes, and end normally.
    still = ("" if not running else " (the command it started goes on in its own process, and ends normally)"
             if running == 1 else f" (the {running} commands it started go on, each in its own process, and end "
             "normally)")
    print(f"warm helper {pid} stopped{still}")
    return 0


def _warm_paths() -> tuple[Any, Any]:
    from wasmlab.lab.cli import warm
    from wasmlab.runtime import lab_home, runtime_root

    home = lab_home()  # a bad home: its one-line error, as every verb gives
    paths = warm.lab_paths()
    return paths if paths is not None else (home, runtime_root(home))


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
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # Without a terminal the app would wait on input that never comes (and spin).
        raise UsageError("the terminal UI needs a terminal, and stdin or stdout is not one",
                         "run `wasmlab` in a terminal; `wasmlab --help` lists the commands, `wasmlab serve` "
                         "opens the UI in a browser")
    try:
        from wasmlab.lab.tui.app import main as tui_main
    except ImportError as exc:
        raise UsageError(f"the terminal UI is not available: {exc}", "run `make lab` to install it") from None
    return int(tui_main() or 0)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from wasmlab.lab.tui.serve import serve
    except ImportError as exc:
        raise UsageError(f"wasmlab serve is not available: {exc}", "run `make lab` to install textual-serve") from None
    return serve(args.host, args.port, token=not args.no_token, public_url=args.public_url)


def register(sub: Any) -> None:
    dr = sub.add_parser("doctor", help="check what this machine can do")
    dr.add_argument("--json", action="store_true", help="print the report as JSON")
    dr.set_defaults(func=cmd_doctor)

    hi = sub.add_parser("history", help="the run history: timings and memory of past runs",
                        description="The run history, newest first. " + present.TIMES_LEGEND + ". "
                                    + present.MEMORY_LEGEND + ".")
    hi.add_argument("-n", "--last", type=int, default=20, help="how many runs to show, 1 or more (default 20)")
    hi.add_argument("--handler", choices=("native", "wasmtime", "wasmer"),
                    help="only runs of this handler: native, wasmtime or wasmer")
    hi.add_argument("--json", action="store_true", help="print the runs as JSON")
    hi.set_defaults(func=cmd_history)

    sm = sub.add_parser("samples", help="build the sample images (every program in assets/ as compat, "
                                        "compat-smart and Linux images, and a busybox sidecar)")
    sm.add_argument("--no-busybox", action="store_true", help="skip the busybox sidecar image")
    sm.add_argument("--json", action="store_true", help="print the images built as JSON")
    sm.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    sm.set_defaults(func=cmd_samples)

    sy = sub.add_parser("system", help="the lab as a whole: disk usage (df), info, reset, and the warm helper "
                                       "(service, status, stop)")
    ssub = sy.add_subparsers(dest="system_verb", metavar="COMMAND")
    df = ssub.add_parser("df", help="show what images, snapshots, containers, logs, caches and leftovers take "
                                    "on disk")
    df.add_argument("--json", action="store_true", help="print the figures as JSON")
    df.set_defaults(func=cmd_df)
    rs = ssub.add_parser("reset", help="stop every container and empty the lab home (asks first)")
    rs.add_argument("-f", "--force", action="store_true", help="do not ask for a confirmation")
    rs.set_defaults(func=cmd_reset)

    sv = ssub.add_parser("service", help="keep wasmlab warm for this lab home: `run` then starts in "
                                         "milliseconds (a helper that stops after --idle seconds unused)")
    sv.add_argument("--idle", type=float, default=300.0, metavar="SECONDS",
                    help="stop after this many seconds without a command (default 300)")
    sv.set_defaults(func=cmd_service)
    st = ssub.add_parser("status", help="show whether a warm helper serves this lab home")
    st.add_argument("--json", action="store_true", help="print it as JSON")
    st.set_defaults(func=cmd_status)
    sp = ssub.add_parser("stop", help="stop this lab home's warm helper")
    sp.set_defaults(func=cmd_stop_service)
    for where, verb, text in ((sub, "version", "show wasmlab's version and its engines'"),
                              (sub, "info", "show the host, cgroups, engines, lab home and root mode"),
                              (ssub, "info", "show the host, cgroups, engines, lab home and root mode")):
        vi = where.add_parser(verb, help=text)
        vi.add_argument("-f", "--format", metavar="json", help="json: print it as JSON")
        vi.set_defaults(func=cmd_version if verb == "version" else cmd_info)

    tui = sub.add_parser("tui", help="open the terminal UI")
    tui.set_defaults(func=cmd_tui)

    sv = sub.add_parser("serve", help="publish the terminal UI in a browser (textual-serve), behind a token")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    sv.add_argument("--public-url", help="the address browsers use, when it is not http://HOST:PORT")
    sv.add_argument("--no-token", action="store_true", help="no token: anyone who reaches the port gets the lab")
    sv.set_defaults(func=cmd_serve)
