"""wasmlab's verbs for a container's life around run: create, start, restart, rename, port, top, stats, and
podman's `container` group (container ls, rm, inspect, logs, prune, ...)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from wasmlab.lab import present
from wasmlab.lab.cli import containers
from wasmlab.lab.cli.common import confirm, kv, open_lab, print_json, stats_flags, stop_seconds, tty_flags
from wasmlab.runtime.errors import UsageError, WasmlabError


def cmd_create(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        res = lab.create(args.image, args.command or None, name=args.name, rm=args.rm,
                         annotations=kv(args.annotation, "--annotation"), env=args.env, engine=args.engine,
                         entrypoint=[args.entrypoint] if args.entrypoint else None,
                         options=containers.run_options(args), progress=containers.say_on_stderr)
    print(res.id)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    """As podman: each name is printed once started; with -a (one container), its output and exit code."""
    attach = args.attach or args.interactive
    if attach and len(args.containers) > 1:
        raise UsageError("start -a (or -i) takes one container", "start them one at a time to see their output")
    with open_lab(args) as lab:
        failed: WasmlabError | None = None
        for name in args.containers:
            try:
                res = lab.start(name, attach=attach, interactive=args.interactive, sig_proxy=attach,
                                progress=containers.say_on_stderr)
            except WasmlabError as exc:
                if attach or len(args.containers) == 1:
                    raise
                failed = failed or exc
                print(f"Error: {exc.one_line()}", file=sys.stderr)
                continue
            if attach:
                return 125 if res.exit_code is None else int(res.exit_code)
            print(name)
    if failed is not None:
        from wasmlab.lab.cli import exit_status

        return exit_status(failed)
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        for name in args.containers:
            lab.restart(name, timeout=args.time, progress=containers.say_on_stderr)
            print(name)  # as podman 4.3: the name as given
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        lab.rename(args.container, args.new_name)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """podman's container prune: the confirmation is asked on a terminal only, and -f skips it."""
    if not args.force and sys.stdin.isatty() and not confirm("WARNING! This will remove all non running containers.",
                                                             "prune"):
        return 1
    with open_lab(args) as lab:
        for cid in lab.container_prune():
            print(cid)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    """podman's port: `80/tcp -> 127.0.0.1:8080` per published port; with PRIVATE, that port's host address."""
    if args.all == bool(args.container):
        raise UsageError("port takes a container, or -a for all", "for example: wasmlab port web")
    with open_lab(args) as lab:
        names = [r.id for r in lab.ps()] if args.all else [args.container]
        for name in names:
            mappings = lab.ports(name)
            if args.private_port:
                port = args.private_port.split("/")[0]
                hits = [m for m in mappings if str(m.container_port) == port]
                if not hits:
                    raise UsageError(f"container {name} publishes no port {args.private_port}",
                                     f"`wasmlab port {name}` lists what it publishes")
                for m in hits:
                    print(_host_side(m))
                continue
            for m in mappings:
                print(("" if not args.all else name[:12] + "\t") + f"{m.container_port}/tcp -> {_host_side(m)}")
    return 0


def _host_side(m: Any) -> str:
    return f"[{m.host_ip}]:{m.host_port}" if ":" in m.host_ip else f"{m.host_ip}:{m.host_port}"


def cmd_top(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        rows = lab.top(args.container)
    if args.json:
        print_json([r.as_dict() for r in rows])
        return 0
    print(f"{'USER':<10}{'PID':>6} {'PPID':>6} {'%CPU':>6} {'ELAPSED':>12} {'TTY':<7}{'TIME':>10}  COMMAND")
    for r in rows:
        print(f"{r.user:<10}{r.pid:>6} {r.ppid:>6} {r.cpu_percent:>6.1f} {duration(r.elapsed):>12} {r.tty:<7}"
              f"{duration(r.cpu_seconds):>10}  {r.command}")
    return 0


def duration(seconds: float) -> str:
    """ps's [[DD-]hh:]mm:ss."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    out = f"{minutes:02d}:{s:02d}"
    if hours or days:
        out = f"{hours:02d}:{out}"
    return f"{days}-{out}" if days else out


def stopped_sample(row: Any) -> Any:
    """A stopped container's line for `stats -a` (as podman: its figures are zero; nothing runs to measure)."""
    from wasmlab.runtime import MetricSample

    return MetricSample(0.0, "container", row.id, row.name, row.pod or None, row.handler, 0.0, 0, 0, None, 0,
                        0, 0, 0, 0)


def cmd_stats(args: argparse.Namespace) -> int:
    """podman's stats: a table of the running containers (-a: every one), redrawn in place every --interval s (on
    a terminal; else one table per sample); --no-stream prints one sample; --format json or a {{.Field}} template
    prints each sample so. The figures are the live stream's, the ones the TUI and the notebooks chart."""
    fmt = stats_format(args, present.STATS_TABLE, present.STATS_FIELDS, "wasmlab stats -i 1")
    with open_lab(args) as lab:
        if args.containers:
            wanted = ({lab.resolve(n) for n in args.containers} if args.all
                      else set(lab.running(args.containers)))
        else:
            wanted = None

        def batches() -> Iterator[list[Any]]:
            with lab.metrics(interval=args.interval) as stream:
                for tick in stream:
                    samples = [s for s in tick.samples
                               if s.kind == "container" and (wanted is None or s.id in wanted)]
                    if args.all:
                        live = {s.id for s in samples}
                        samples += [stopped_sample(r) for r in lab.ps(all=True)
                                    if r.id not in live and (wanted is None or r.id in wanted)]
                    yield samples

        show_samples(args, batches(), fmt, present.STATS_FIELDS)
    return 0


STREAM_INTERVAL = 5.0     # podman's default --interval
NO_STREAM_INTERVAL = 1.0  # --no-stream without -i: the CPU figure over one second, not five


def stats_format(args: argparse.Namespace, table: str, fields: dict[str, Any], example: str) -> str:
    """The --format of `stats` and `pod stats` (json with --json), checked (with --interval) before anything is
    sampled: a bad one is refused in one line."""
    from wasmlab.lab.cli.template import render

    if args.interval is None:  # one sample over a second with --no-stream (a rate needs two readings), else 5 s
        args.interval = NO_STREAM_INTERVAL if args.no_stream else STREAM_INTERVAL
    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval:g}: the time between samples must be positive",
                         f"for example: {example}")
    if getattr(args, "json", False):
        if args.format not in (None, "json"):
            raise UsageError("--json and --format say two things", "give one of them")
        args.format = "json"
    fmt = args.format or table
    render(fmt, [], fields, present.stats_row)
    return str(fmt)


def show_samples(args: argparse.Namespace, batches: Iterable[list[Any]], fmt: str, fields: dict[str, Any]) -> None:
    """Print each batch of samples as FMT: redrawn in place on a terminal (the table, unless --no-reset), else one
    after the other. The first batch has no CPU figure yet (a rate needs two readings): --no-stream prints the
    second alone."""
    from wasmlab.lab.cli.template import render

    redraw = sys.stdout.isatty() and not args.no_stream and not args.no_reset and args.format is None
    for n, samples in enumerate(batches):
        if args.no_stream and n == 0:
            continue
        if redraw:
            sys.stdout.write("\x1b[H\x1b[2J")
        sys.stdout.write(render(fmt, samples, fields, present.stats_row, minwidth=12))
        sys.stdout.flush()
        if args.no_stream:
            break


def register(sub: Any) -> None:
    verbs(sub)
    container_group(sub)


def verbs(sub: Any) -> None:
    cr = sub.add_parser("create", help="create a container without starting it (`start` runs it)")
    cr.add_argument("--rm", action="store_true", help="remove the container once it has run and exited")
    cr.add_argument("--name", help="name the container (default wasmlab_ and 6 hex digits)")
    cr.add_argument("--annotation", action="append", metavar="K=V",
                    help="add an annotation, e.g. module.wasm.image/variant=compat (repeatable)")
    cr.add_argument("-e", "--env", action="append", metavar="K=V",
                    help="set an environment variable; -e NAME passes this shell's value (repeatable)")
    cr.add_argument("--engine", choices=("wasmtime", "wasmer"), help="the engine for a Wasm image "
                                                                      "(default wasmtime)")
    cr.add_argument("--entrypoint", help="override the image's ENTRYPOINT")
    containers.run_flags(cr)
    cr.add_argument("-p", "--publish", action="append", metavar="[IP:]HOST:CTR",
                    help="reach the container's port CTR at HOST on this machine, from each start on")
    tty_flags(cr)
    cr.add_argument("image")
    cr.add_argument("command", nargs=argparse.REMAINDER)
    cr.set_defaults(func=cmd_create)

    st = sub.add_parser("start", help="start created or stopped containers (a stopped one runs its command again)")
    st.add_argument("-a", "--attach", action="store_true",
                    help="stay attached: show its output and exit with its exit code")
    st.add_argument("-i", "--interactive", action="store_true", help="attach stdin too (implies -a)")
    st.add_argument("containers", nargs="+", help="names or ids")
    st.set_defaults(func=cmd_start)

    rs = sub.add_parser("restart", help="stop containers (if running), then start them again")
    rs.add_argument("-t", "--time", type=stop_seconds, default=10, metavar="SECONDS",
                    help="seconds to wait after SIGTERM before SIGKILL (default 10; 0 kills at once)")
    rs.add_argument("containers", nargs="+", help="names or ids")
    rs.set_defaults(func=cmd_restart)

    rn = sub.add_parser("rename", help="give a container another name")
    rn.add_argument("container", help="its name or id")
    rn.add_argument("new_name", metavar="NEW_NAME", help="the new name")
    rn.set_defaults(func=cmd_rename)

    pt = sub.add_parser("port", help="list a container's published ports (-p)")
    pt.add_argument("-a", "--all", action="store_true", help="every running container's ports")
    pt.add_argument("container", nargs="?", help="its name or id")
    pt.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT",
                    help="only this container port (80 or 80/tcp): print its host address")
    pt.set_defaults(func=cmd_port)

    tp = sub.add_parser("top", help="list a running container's processes")
    tp.add_argument("--json", action="store_true", help="print the processes as JSON")
    tp.add_argument("container", help="its name or id")
    tp.set_defaults(func=cmd_top)

    ss = sub.add_parser("stats", help="live CPU, memory, network and block I/O, PIDs of running containers")
    ss.add_argument("-a", "--all", action="store_true", help="stopped containers too (their figures are zero)")
    stats_flags(ss, present.STATS_FIELDS)
    ss.add_argument("containers", nargs="*", help="only these (names or ids; default every running one)")
    ss.set_defaults(func=cmd_stats)


def container_group(sub: Any) -> None:
    """podman's `container` group: container ls (ps), rm, inspect, logs, create, start, prune, ..."""
    grp = sub.add_parser("container", help="manage containers (podman's container group: ls, rm, inspect, "
                                           "logs, prune, ...)",
                         description="podman's container group: every container verb, ls (ps) and prune.")
    gsub = grp.add_subparsers(dest="container_verb", metavar="COMMAND", parser_class=type(grp))
    containers.register(gsub)
    verbs(gsub)
    pr = gsub.add_parser("prune", help="remove every container that is not running")
    pr.add_argument("-f", "--force", action="store_true", help="do not ask for a confirmation (asked on a "
                                                                 "terminal only)")
    pr.set_defaults(func=cmd_prune)
    for alias in ("ls", "list"):  # podman's names for ps in this group
        containers.ps_parser(gsub, alias, "list containers (as ps)")
