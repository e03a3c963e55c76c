"""wasmlab's container verbs: run, exec, ps, logs, stop, pause/unpause, kill, wait, rm and inspect."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from wasmlab.lab import present
from wasmlab.lab.cli.common import kv, open_lab, print_json, stop_seconds, tty_flags
from wasmlab.runtime import Progress, RunOptions
from wasmlab.runtime.errors import UsageError, WasmlabError


def cmd_run(args: argparse.Namespace) -> int:
    # With --json, stdout is the JSON alone (for jq and scripts): the workload's output goes to stderr, as
    # podman keeps stdout for what a script reads (`podman run -d` prints only the id there).
    stdio = (0, 2, 2) if args.json and not args.detach else None
    if getattr(args, "tty", False) and not args.detach:
        warn_if_no_terminal()
    with open_lab(args) as lab:
        # As podman's --sig-proxy: in the foreground, stop signals go to the container.
        res = lab.run(args.image, args.command or None, name=args.name, rm=args.rm, detach=args.detach,
                      annotations=kv(args.annotation, "--annotation"), env=args.env, engine=args.engine,
                      entrypoint=[args.entrypoint] if args.entrypoint else None, sig_proxy=not args.detach,
                      stdio=stdio, options=run_options(args), progress=say_on_stderr)
    if args.detach:
        print(res.id)
        return 0
    if args.json:
        print_json(res.as_dict())
    if res.exit_code is None:
        print("Error: the container's exit status is unknown: its zygote died and the host's init reaped it "
              "(hint: `wasmlab ps -a` shows it; run it again)", file=sys.stderr)
        return 125
    return int(res.exit_code)




def warn_if_no_terminal() -> None:
    """As podman: -t with a stdin that is no terminal (a pipe, /dev/null) works, but not as a terminal would."""
    if not os.isatty(0):
        print("Warning: the input device is not a terminal: -t gives the container one, but what is typed here "
              "(Ctrl-C, line editing) does not reach it as from a terminal", file=sys.stderr)


def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        raise UsageError("exec needs a command", f"for example: wasmlab exec {args.container} /bin/sh -c 'ls /'")
    if args.tty:
        warn_if_no_terminal()
    with open_lab(args) as lab:
        # As podman: -t gives a terminal and -i attaches stdin to it; Ctrl-C reaches the process.
        return int(lab.exec(args.container, args.command, env=args.env or [], tty=args.tty,
                            interactive=args.interactive or not args.tty, sig_proxy=True))


def cmd_ps(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        rows = lab.ps(all=args.all)
    if args.format:
        from wasmlab.lab.cli.template import CONTAINER_FIELDS, render

        sys.stdout.write(render(args.format, rows, CONTAINER_FIELDS, lambda r: r.as_dict()))
        return 0
    if args.json:
        print_json([r.as_dict() for r in rows])
        return 0
    if args.quiet:
        for r in rows:
            print(r.id)
        return 0
    pod = getattr(args, "pod", False)
    width = max([len(r.pod) for r in rows] + [3]) + 2 if pod else 0
    print(f"{'CONTAINER ID':<14}{'IMAGE':<34}{'COMMAND':<24}{'CREATED':<18}{'STATUS':<14}{'HANDLER':<10}"
          + (f"{'POD':<{width}}" if pod else "") + "NAMES")
    for r in rows:
        print(f"{r.id[:12]:<14}{r.image[:32]:<34}{' '.join(r.command)[:22]:<24}{present.ago(r.created):<18}"
              f"{present.status(r):<14}{r.handler or '-':<10}" + (f"{r.pod or '-':<{width}}" if pod else "")
              + r.name)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """podman's logs: --tail N, --since TIME, -t (each line's time, as the log recorded it) and -f."""
    out = sys.stdout.buffer
    with open_lab(args) as lab:
        if args.follow:
            entries: Any = lab.follow_entries(args.container, tail=args.tail, since=args.since)
        else:
            entries, _cursor = lab.log_entries(args.container, tail=args.tail, since=args.since)
        for entry in entries:
            if args.timestamps:
                if not entry.time:
                    raise UsageError("this container's log was written before wasmlab recorded times",
                                     "leave out -t: its lines have no time")
                out.write(entry.time.encode() + b" ")
            out.write(entry.data)
            out.flush()
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        for name in args.containers:
            lab.stop(name, timeout=args.time, progress=say_on_stderr)
            print(name)
    return 0


def say_on_stderr(p: Progress) -> None:
    """A note from the Lab while it works (stop: SIGKILL follows, and when), one line on stderr."""
    print(f"wasmlab: {p.what}", file=sys.stderr, flush=True)


def cmd_pause(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        for name in args.containers:
            (lab.pause if args.pausing else lab.unpause)(name)
            print(name)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        for name in args.containers:
            lab.kill(name, args.signal)
            print(name)
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        for name in args.containers:
            code = lab.wait(name)
            print("unknown" if code is None else code)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """As podman: every container named is tried; the first error is reported once all were."""
    if not args.all and not args.containers:
        raise UsageError("rm needs a container name or id, or --all", "list them with `wasmlab ps -a`")
    failed: WasmlabError | None = None
    with open_lab(args) as lab:
        # --all: every container that is not a pod's (those go with their pod: `pod rm`, `kube down`)
        names = [r.id for r in lab.ps(all=True) if not r.pod] if args.all else args.containers
        for name in names:
            try:
                lab.rm(name, force=args.force)
            except WasmlabError as exc:
                if failed is None:
                    failed = exc
                print(f"Error: {exc.one_line()}", file=sys.stderr)
                continue
            if not args.quiet:
                print(name)
    if failed is not None:
        from wasmlab.lab.cli import exit_status

        return exit_status(failed, remover=True)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """A container by that name, else an image, else a pod (as podman's inspect without --type)."""
    with open_lab(args) as lab:
        out = [lab.inspect_any(name) for name in args.names]
    print_json(out)
    return 0


def run_options(args: argparse.Namespace) -> RunOptions:
    """podman run's flags, as the Lab takes them (it checks the values, so every face gets the same errors)."""
    return RunOptions(volumes=args.volume or [], mounts=args.mount or [], memory=args.memory, cpus=args.cpus,
                      workdir=args.workdir, env_files=args.env_file or [], user=args.user, read_only=args.read_only,
                      hostname=args.hostname, network=args.network, platform=args.platform, pull=args.pull,
                      init=args.init, tls_verify=args.tls_verify, tty=bool(getattr(args, "tty", False)),
                      interactive=bool(getattr(args, "interactive", False)), publish=args.publish or [])


def run_flags(r: argparse.ArgumentParser) -> None:
    """The flags of `run` that become RunOptions: mounts, limits, identity, network, image choice, init."""
    r.add_argument("-v", "--volume", action="append", metavar="HOST:CTR[:ro]",
                   help="bind-mount a host folder (live, also for Wasm on both engines); :ro makes it read-only")
    r.add_argument("--mount", action="append", metavar="type=bind|tmpfs,...",
                   help="a mount, podman's syntax: type=bind,source=/h,destination=/c[,ro] or "
                        "type=tmpfs,destination=/c[,tmpfs-size=64m]")
    r.add_argument("-m", "--memory", metavar="SIZE",
                   help="memory limit, e.g. 32m (a cgroup; wasmtime guests see malloc fail, others are OOM-killed)")
    r.add_argument("--cpus", type=float, metavar="N", help="CPU limit in CPUs, e.g. 0.5 (a cgroup quota)")
    r.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container (made if missing)")
    r.add_argument("--env-file", action="append", metavar="FILE", help="read KEY=VALUE lines into the environment")
    r.add_argument("-u", "--user", metavar="UID[:GID]", help="run as this user: numbers, or a name of the "
                                                             "image's /etc/passwd")
    r.add_argument("--read-only", action="store_true",
                   help="mount the root read-only (Linux containers get a tmpfs /tmp, /var/tmp and /run)")
    r.add_argument("--hostname", metavar="NAME", help="the container's hostname")
    r.add_argument("--network", choices=("none", "host"),
                   help="none (the default: a namespace with only lo) or host (share the host's network)")
    r.add_argument("--platform", metavar="OS/ARCH", help="the image's platform; wasi/wasm runs it as Wasm")
    r.add_argument("--pull", choices=("never", "missing", "always"),
                   help="pull the image from its registry: never, when missing, or always")
    r.add_argument("--tls-verify", type=lambda v: v.lower() not in ("false", "0", "no"), default=True,
                   metavar="BOOL", help="--tls-verify=false: pull from a registry without TLS (a local one)")
    r.add_argument("--init", action="store_true",
                   help="run catatonit as PID 1 (Linux containers), so a shell stops on SIGTERM")


def ps_parser(sub: Any, verb: str, text: str = "list containers") -> None:
    """`ps`, and the names podman's container group also gives it (container ls, container list)."""
    ps = sub.add_parser(verb, help=text)
    ps.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    ps.add_argument("-q", "--quiet", action="store_true", help="print the ids only")
    ps.add_argument("--json", action="store_true", help="print the containers as JSON")
    ps.add_argument("--format", metavar="FORMAT",
                    help="json, or {{.Field}} rows such as 'table {{.ID}}\t{{.Names}}\t{{.Status}}' "
                         "(fields: .ID .Names .Image .Command .Status .State .CreatedAt .Ports ...)")
    ps.add_argument("--pod", action="store_true", help="show each container's pod (NAMESPACE/NAME)")
    ps.set_defaults(func=cmd_ps)


def register(sub: Any) -> None:
    r = sub.add_parser("run", help="run a command in a new container")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("-d", "--detach", action="store_true", help="run in the background and print the container's id")
    r.add_argument("--name", help="name the container (default wasmlab_ and 6 hex digits)")
    r.add_argument("--annotation", action="append", metavar="K=V",
                   help="add an annotation, e.g. module.wasm.image/variant=compat (repeatable)")
    r.add_argument("-e", "--env", action="append", metavar="K=V",
                   help="set an environment variable; -e NAME passes this shell's value (repeatable)")
    r.add_argument("--engine", choices=("wasmtime", "wasmer"), help="the engine for a Wasm image (default wasmtime)")
    r.add_argument("--entrypoint", help="override the image's ENTRYPOINT")
    r.add_argument("--json", action="store_true", help="print the run's decision and timings as JSON on stdout "
                   "(the workload's own output then goes to stderr)")
    run_flags(r)
    r.add_argument("-q", "--quiet", action="store_true", help="with -d, print only the container's id (as always)")
    r.add_argument("-p", "--publish", action="append", metavar="[IP:]HOST:CTR",
                   help="reach the container's port CTR at HOST on this machine (127.0.0.1 unless IP is given)")
    tty_flags(r)
    r.add_argument("image")
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)

    ex = sub.add_parser("exec", help="run a command in a running container")
    ex.add_argument("-e", "--env", action="append", metavar="K=V",
                    help="set an environment variable for the command (repeatable)")
    tty_flags(ex)
    ex.add_argument("container")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)

    ps_parser(sub, "ps")

    lg = sub.add_parser("logs", help="show a container's output (a pod's: POD/CONTAINER)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the container stops")
    lg.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    lg.add_argument("--since", metavar="TIME", help="only lines since TIME: RFC 3339, unix seconds or a duration (10m)")
    lg.add_argument("-t", "--timestamps", action="store_true", help="show the time the log recorded for each line")
    lg.add_argument("container")
    lg.set_defaults(func=cmd_logs)

    st = sub.add_parser("stop", help="stop containers (SIGTERM, then SIGKILL)")
    st.add_argument("-t", "--time", type=stop_seconds, default=10, metavar="SECONDS",
                    help="seconds to wait after SIGTERM before SIGKILL (default 10; 0 kills at once)")
    st.add_argument("containers", nargs="+")
    st.set_defaults(func=cmd_stop)

    for verb, text in (("pause", "freeze every process of containers"), ("unpause", "thaw paused containers")):
        pz = sub.add_parser(verb, help=text)
        pz.add_argument("containers", nargs="+")
        pz.set_defaults(func=cmd_pause, pausing=verb == "pause")

    kl = sub.add_parser("kill", help="send a signal to running containers (SIGKILL unless -s says otherwise)")
    kl.add_argument("-s", "--signal", default="KILL", metavar="SIGNAL",
                    help="the signal: a name (TERM, SIGTERM) or a number (default KILL)")
    kl.add_argument("containers", nargs="+", help="names or ids")
    kl.set_defaults(func=cmd_kill)

    wt = sub.add_parser("wait", help="wait until containers stop, and print their exit codes")
    wt.add_argument("containers", nargs="+", help="names or ids")
    wt.set_defaults(func=cmd_wait)

    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="stop running containers first")
    rm.add_argument("-a", "--all", action="store_true", help="remove every container")
    rm.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    rm.add_argument("containers", nargs="*")
    rm.set_defaults(func=cmd_rm)

    ins = sub.add_parser("inspect", help="show containers, images or pods as JSON")
    ins.add_argument("names", nargs="+")
    ins.set_defaults(func=cmd_inspect)
