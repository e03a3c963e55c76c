"""wasmlab's pod verbs: `kube play` (running the pods), `kube down`, and `pod ps|inspect|rm|logs|stats|top|exists|
stop|start|restart|kill|prune`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wasmlab.lab import present
from wasmlab.lab.cli.common import confirm, open_lab, print_json, stats_flags, stop_seconds
from wasmlab.runtime.errors import UsageError, WasmlabError

POD_HELP = "NAME, NAMESPACE/NAME, or the pod's id (or the start of it)"


def kube_play(args: argparse.Namespace) -> int:
    """`kube play FILE` (and `--down`): start the pods, print each pod's id, warn once."""
    if args.down:
        return kube_down(args)
    with open_lab(args) as lab:
        res = lab.kube_play(args.file, propagation=args.propagation, pod_annotations=args.pod_annotations,
                            engine=args.engine, allow_host_path=args.allow_host_path,
                            sandbox_rule=args.sandbox_rule)
    for warning in res.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if args.json:
        print_json(res.as_dict())
        return 0
    for pod in res.pods:
        print(f"Pod {pod.identity}: {pod.id}" + (f" (runtimeClassName {pod.runtime_class})" if pod.runtime_class
                                                 else ""))
        for c in pod.containers:
            if c.role != "sandbox":
                print(f"  {c.role:<9} {c.name:<20} {c.handler or '-':<9} {c.id[:12]}")
    return 0


def kube_down(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        gone = lab.kube_down(args.file)
    for pod in gone:
        print(f"Pod {pod.identity} removed ({pod.id})")
    return 0


def cmd_pod_ps(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        pods = lab.pods()
    if args.json:
        print_json([p.as_dict() for p in pods])
        return 0
    if args.quiet:
        for p in pods:
            print(p.id)
        return 0
    width = max([len(p.identity) for p in pods] + [4]) + 2
    status = max([len(p.status) for p in pods] + [6]) + 2
    print(f"{'POD ID':<14}{'NAME':<{width}}{'STATUS':<{status}}{'CREATED':<18}{'RESTARTS':<10}CONTAINERS")
    for p in pods:
        apps = [c for c in p.containers if c.role == "container"]
        up = sum(1 for c in apps if c.status == "running")
        print(f"{p.id:<14}{p.identity:<{width}}{p.status:<{status}}{present.ago(p.created):<18}{p.restarts:<10}"
              f"{up}/{len(apps)} " + ", ".join(_container_state(c) for c in apps))
    return 0


def _container_state(c: Any) -> str:
    """app(running), app(exited 0), app(CrashLoopBackOff, exited 1, restarts 3, next in 8s)."""
    import time

    state = c.state if c.state and c.state != "Running" else c.status
    said = [("exited" if state == "stopped" else state)
            + ("" if c.exit_code is None or c.status == "running" else
               f" {c.exit_code}" if state == "stopped" else f", exited {c.exit_code}")]
    if c.restarts:
        said.append(f"restarts {c.restarts}")
    if c.next_restart:
        said.append(f"next in {max(0.0, c.next_restart - time.time()):.0f}s")
    return f"{c.name}({', '.join(said)})"


def cmd_pod_inspect(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        pods = [lab.pod_inspect(name, namespace=args.namespace) for name in args.pods]
    print_json([p.as_dict() for p in pods] if len(pods) > 1 else pods[0].as_dict())
    return 0


def cmd_pod_rm(args: argparse.Namespace) -> int:
    """As podman: every pod named (or every pod with -a, in -n's namespace if given) is tried."""
    from wasmlab.lab.cli.containers import say_on_stderr

    return _each_pod(args, lambda lab, name: lab.pod_rm(name, namespace=args.namespace, force=args.force,
                                                        timeout=args.time, progress=say_on_stderr))


def cmd_pod_exists(args: argparse.Namespace) -> int:
    """podman's pod exists: nothing printed; 0 when the pod is played, 1 when it is not."""
    with open_lab(args) as lab:
        return 0 if lab.pod_exists(args.pod, namespace=args.namespace) else 1


def _each_pod(args: argparse.Namespace, verb: Any, *, skip: type[WasmlabError] | None = None) -> int:
    """As podman: VERB(lab, name) for every pod named (or every pod with -a: with -n, that namespace's), its id
    printed; each failure is one Error line, and the first one's exit status is returned once all were tried.
    With -a, a pod failing with SKIP is left out silently (`pod kill -a` skips the pods with nothing running)."""
    from wasmlab.lab.cli import exit_status

    every = getattr(args, "all", False)
    failed: WasmlabError | None = None
    said: set[str] = set()
    with open_lab(args) as lab:
        names = args.pods
        if every:
            if names:
                raise UsageError(f"pod {args.pod_verb} -a takes no pod names", f"pod {args.pod_verb} -a, or name them")
            names = [p.identity for p in lab.pods() if args.namespace in (None, p.namespace)]
        elif not names:
            raise UsageError(f"pod {args.pod_verb}: name at least one pod", f"wasmlab pod {args.pod_verb} POD"
                             + (" (or -a for every pod)" if hasattr(args, "all") else ""))
        for name in names:
            try:
                print(verb(lab, name).id, flush=True)
            except WasmlabError as exc:
                if every and skip is not None and isinstance(exc, skip):
                    continue
                if exc.one_line() not in said:  # a bad flag (-s 0) fails each pod alike: said once
                    said.add(exc.one_line())
                    print(f"Error: {exc.one_line()}", file=sys.stderr, flush=True)
                failed = failed or exc
    if failed is not None:
        return exit_status(failed, remover=args.pod_verb == "rm")
    return 0


def cmd_pod_stop(args: argparse.Namespace) -> int:
    from wasmlab.lab.cli.containers import say_on_stderr

    return _each_pod(args, lambda lab, name: lab.pod_stop(name, namespace=args.namespace, timeout=args.time,
                                                          progress=say_on_stderr))


def cmd_pod_start(args: argparse.Namespace) -> int:
    return _each_pod(args, lambda lab, name: lab.pod_start(name, namespace=args.namespace))


def cmd_pod_restart(args: argparse.Namespace) -> int:
    from wasmlab.lab.cli.containers import say_on_stderr

    return _each_pod(args, lambda lab, name: lab.pod_restart(name, namespace=args.namespace, timeout=args.time,
                                                             progress=say_on_stderr))


def cmd_pod_kill(args: argparse.Namespace) -> int:
    from wasmlab.runtime.errors import PodNotRunning

    return _each_pod(args, lambda lab, name: lab.pod_kill(name, namespace=args.namespace, signal_name=args.signal),
                     skip=PodNotRunning)


def cmd_pod_prune(args: argparse.Namespace) -> int:
    """podman's pod prune: the confirmation is asked on a terminal only, and -f skips it."""
    if not args.force and sys.stdin.isatty() and not confirm("WARNING! This will remove all stopped/exited pods.",
                                                             "prune"):
        return 1
    with open_lab(args) as lab:
        for pod in lab.pod_prune():
            print(pod.id)
    return 0


def cmd_pod_logs(args: argparse.Namespace) -> int:
    """podman's pod logs: each line after its container's name (not with -c); -f follows them all as they come,
    until the pod's containers have ended."""
    if args.tail is not None and args.tail < 0:
        raise UsageError(f"--tail {args.tail}: give a number of lines, 0 or more", "e.g. --tail 20")
    out = sys.stdout.buffer
    several = args.container is None
    with open_lab(args) as lab:
        if args.follow:
            lines: Any = lab.pod_follow(args.pod, container=args.container, namespace=args.namespace,
                                        tail=args.tail)
        else:
            lines = lab.pod_logs(args.pod, container=args.container, namespace=args.namespace)
            if args.tail is not None:
                lines = lines[len(lines) - args.tail:] if args.tail else []
        for name, entry in lines:
            if several:
                out.write(f"{name} ".encode())
            out.write(entry.data)
            if args.follow:
                out.flush()
    out.flush()
    return 0


def cmd_pod_stats(args: argparse.Namespace) -> int:
    """podman's pod stats: one row per pod, its cgroup parent's figures (the live stream's pod samples), redrawn
    as `stats` redraws its table; --no-stream prints one sample."""
    from wasmlab.lab.cli.lifecycle import show_samples, stats_format

    fmt = stats_format(args, present.POD_STATS_TABLE, present.POD_STATS_FIELDS, "wasmlab pod stats -i 1")
    with open_lab(args) as lab:
        batches = lab.pod_stats(args.pods, namespace=args.namespace, all=args.all, interval=args.interval)
        try:
            show_samples(args, batches, fmt, present.POD_STATS_FIELDS)
        finally:
            batches.close()
    return 0


def cmd_pod_top(args: argparse.Namespace) -> int:
    """podman's pod top: every running container's processes (wasmlab top's columns), after its container."""
    from wasmlab.lab.cli.lifecycle import duration

    with open_lab(args) as lab:
        rows = lab.pod_top(args.pod, namespace=args.namespace)
    if args.json:
        print_json([{"container": name, **r.as_dict()} for name, r in rows])
        return 0
    width = max([len(name) for name, _ in rows] + [9]) + 2
    print(f"{'CONTAINER':<{width}}{'USER':<10}{'PID':>6} {'PPID':>6} {'%CPU':>6} {'ELAPSED':>12} {'TTY':<7}"
          f"{'TIME':>10}  COMMAND")
    for name, r in rows:
        print(f"{name:<{width}}{r.user:<10}{r.pid:>6} {r.ppid:>6} {r.cpu_percent:>6.1f} {duration(r.elapsed):>12} "
              f"{r.tty:<7}{duration(r.cpu_seconds):>10}  {r.command}")
    return 0


def cmd_inspect_ns(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        rows = lab.inspect_ns(args.target, namespace=args.namespace)
    if args.json:
        print_json([r.as_dict() for r in rows])
        return 0
    kinds = ("net", "ipc", "uts", "pid", "mnt", "cgroup", "user")
    # Namespace columns are headed NET NS ... CGROUP NS (the last column is the cgroup path); widths fit the data.
    table = [["POD", "CONTAINER", "PID", *(f"{k.upper()} NS" for k in kinds), "CGROUP PATH"]]
    for r in rows:
        cells = []
        for k in kinds:
            try:
                e = r.entry(k)
                cells.append(f"{e.inode} {e.shared}")
            except KeyError:
                cells.append("-")
        table.append([r.pod or "-", r.container, str(r.pid or "-"), *cells, r.cgroup or r.status])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for r in rows:
        print(f"\n{r.pod + ' ' if r.pod else ''}{r.container} ({r.role}, {r.status})")
        if r.runtime_class:
            print(f"  runtimeClassName: {r.runtime_class} (on a cluster: the node handler {r.runtime_class}; "
                  "here: wasmlab's runtime)")
        if r.processes:
            print(f"  {'HOST PID':<10}{'POD PID':<9}COMMAND")
            for p in r.processes:
                print(f"  {p.host_pid:<10}{p.pod_pid:<9}{'  ' * p.depth}{p.command}")
        for g in r.cgroups:
            print(f"  cgroup {g.controllers or '(unified)'}: {g.path}")
        if r.mounts:
            print(f"  {len(r.mounts)} mounts (relative to its root):")
            for m in r.mounts:
                print(f"    {m.target:<28} {m.fstype:<10} {m.source}{'' if m.root == '/' else f' [{m.root}]'}"
                      f" {m.options}")
        w = r.wasi
        if w is not None:
            print(f"  WASI: engine {w.engine}, module {w.module}")
            print(f"    argv: {' '.join(w.argv)}")
            print(f"    env: {' '.join(w.env)}")
            for pre in w.preopens:
                print(f"    preopen {pre.guest:<12} {pre.mode} {pre.path} (host {pre.host})")
            for mem in w.memories:
                top = "no maximum" if mem.maximum_pages is None else f"maximum {mem.maximum_pages} pages"
                print(f"    memory{' (imported)' if mem.imported else ''}: initial {mem.initial_pages} pages "
                      f"({present.size(mem.initial_bytes)}), {top}")
            if w.memory_at_exit_bytes is not None:
                print(f"    memory at exit: {w.memory_at_exit_bytes // 65536} pages "
                      f"({present.size(w.memory_at_exit_bytes)})")
            if w.memory_note:
                print(f"    ({w.memory_note})")
    return 0


def register_kube(verbs: Any, play: argparse.ArgumentParser) -> None:
    """The flags `kube play` takes to run pods, and `kube down` (called by lab/cli/pods.py)."""
    play.add_argument("--down", action="store_true", help="stop and remove the pods of FILE (as `kube down`)")
    play.add_argument("--engine", choices=("wasmtime", "wasmer"),
                      help="the Wasm engine of every pod (else each pod's wasmlab.io/engine annotation)")
    play.add_argument("--sandbox-rule", choices=("on", "off"), default="on",
                      help="off: the sandbox-rule-off scenario only (assets/pods/sandbox-rule-off.yaml): the infra "
                           "container is not run natively, as without crun's rule")
    down = verbs.add_parser("down", help="stop and remove the pods of a Kubernetes YAML file")
    down.add_argument("file", metavar="FILE.yaml")
    down.set_defaults(func=kube_down)


def register(sub: Any) -> None:
    pod = sub.add_parser("pod", help="pods played from Kubernetes YAML: ps, inspect, rm, logs, stats, top, "
                                     "exists, stop, start, restart, kill, prune")
    verbs = pod.add_subparsers(dest="pod_verb", metavar="VERB")
    pod.set_defaults(func=lambda args: pod.print_help() or 2)

    for verb in ("ps", "ls", "list"):  # podman's names for one verb, each with its own usage line
        ps = verbs.add_parser(verb, help="list the pods, their state and containers"
                              + ("" if verb == "ps" else " (as pod ps)"))
        ps.add_argument("-q", "--quiet", action="store_true", help="print the pod ids only")
        ps.add_argument("--json", action="store_true", help="print the pods as JSON")
        ps.set_defaults(func=cmd_pod_ps)

    ins = verbs.add_parser("inspect", help="a pod as JSON: its sandbox, cgroup and containers")
    ins.add_argument("pods", nargs="+", metavar="POD", help=POD_HELP)
    ins.add_argument("-n", "--namespace", help="the pods' Kubernetes namespace (default: default)")
    ins.set_defaults(func=cmd_pod_inspect)

    rm = verbs.add_parser("rm", help="remove pods (their containers, cgroup and emptyDir volumes); prints each "
                                     "pod's id")
    rm.add_argument("pods", nargs="*", metavar="POD", help=POD_HELP)
    rm.add_argument("-a", "--all", action="store_true", help="remove every pod (with -n: every pod of that namespace)")
    rm.add_argument("-f", "--force", action="store_true",
                    help="kill running pods first: SIGKILL at once, unless -t gives them time")
    rm.add_argument("-t", "--time", type=stop_seconds, metavar="SECONDS",
                    help="with -f: SIGTERM first, SIGKILL after SECONDS (podman waits 10 by default; "
                         "without -t, SIGKILL at once)")
    rm.add_argument("-n", "--namespace", help="the pods' Kubernetes namespace (default: default)")
    rm.set_defaults(func=cmd_pod_rm)

    lg = verbs.add_parser("logs", help="the output of a pod's containers, each line after its container's name")
    lg.add_argument("pod", metavar="POD", help=POD_HELP)
    lg.add_argument("-c", "--container", help="only this container's output")
    lg.add_argument("-n", "--namespace", help="the pod's Kubernetes namespace (default: default)")
    lg.add_argument("--tail", type=int, metavar="N", help="only the last N lines (of all its containers, by time)")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="keep printing new lines as they come, until the pod's containers have ended (Ctrl-C "
                         "ends it too)")
    lg.set_defaults(func=cmd_pod_logs)

    ss = verbs.add_parser("stats", help="live CPU, memory, network and block I/O, PIDs of pods (one row per pod, "
                                        "from its cgroup parent)")
    ss.add_argument("pods", nargs="*", metavar="POD", help=POD_HELP + " (default: every running pod)")
    ss.add_argument("-a", "--all", action="store_true", help="every pod, those with nothing running too (at zero)")
    ss.add_argument("-n", "--namespace", help="the pods' Kubernetes namespace (default: default)")
    stats_flags(ss, present.POD_STATS_FIELDS)
    ss.set_defaults(func=cmd_pod_stats)

    tp = verbs.add_parser("top", help="the processes of every running container of a pod, after its container")
    tp.add_argument("pod", metavar="POD", help=POD_HELP)
    tp.add_argument("-n", "--namespace", help="the pod's Kubernetes namespace (default: default)")
    tp.add_argument("--json", action="store_true", help="print the processes as JSON")
    tp.set_defaults(func=cmd_pod_top)

    ex = verbs.add_parser("exists", help="exit 0 if a pod is played, 1 if not (nothing printed)")
    ex.add_argument("pod", metavar="POD", help=POD_HELP)
    ex.add_argument("-n", "--namespace", help="the pod's Kubernetes namespace (default: default)")
    ex.set_defaults(func=cmd_pod_exists)

    def several(verb: str, text: str, func: Any, *, every: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(verb, help=text)
        parser.add_argument("pods", nargs="*" if every else "+", metavar="POD", help=POD_HELP)
        if every:
            parser.add_argument("-a", "--all", action="store_true",
                                help=f"{verb} every pod (with -n: every pod of that namespace)")
        parser.add_argument("-n", "--namespace", help="the pods' Kubernetes namespace (default: default)")
        parser.set_defaults(func=func)
        return parser

    def stop_time(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-t", "--time", type=stop_seconds, default=10, metavar="SECONDS",
                            help="seconds to wait after SIGTERM before SIGKILL (default 10; 0 kills at once)")

    stop_time(several("stop", "stop pods: their containers (SIGTERM, then SIGKILL), and their keeper, so nothing "
                              "restarts them; prints each pod's id", cmd_pod_stop))
    several("start", "start stopped pods again (their restartPolicy back in force); prints each pod's id",
            cmd_pod_start)
    stop_time(several("restart", "stop, then start pods; prints each pod's id", cmd_pod_restart))
    kl = several("kill", "send a signal to each running container of pods (SIGKILL unless -s says otherwise); "
                         "restartPolicy then applies", cmd_pod_kill)
    kl.add_argument("-s", "--signal", default="KILL", metavar="SIGNAL",
                    help="the signal: a name (TERM, SIGTERM) or a number (default KILL)")
    pr = verbs.add_parser("prune", help="remove every pod whose containers are all stopped; prints their ids")
    pr.add_argument("-f", "--force", action="store_true",
                    help="do not ask for a confirmation (asked on a terminal only, as podman does)")
    pr.set_defaults(func=cmd_pod_prune)

    ns = sub.add_parser("inspect-ns", help="each pod container's namespaces: shared with the sandbox, the host, "
                                           "or its own (inodes, as /proc/PID/ns)")
    ns.add_argument("target", nargs="?", metavar="POD|CONTAINER", help="one pod or container (default: every pod)")
    ns.add_argument("-n", "--namespace", help="the pod's Kubernetes namespace (default: default)")
    ns.add_argument("--json", action="store_true", help="print the rows as JSON")
    ns.set_defaults(func=cmd_inspect_ns)
