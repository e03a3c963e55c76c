"""wasmlab-oci: the runc-compatible command line of the embedded runtime (one function per OCI verb)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2"
# runc verbs that wasmlab-oci does not implement: callers (conmon, containerd's shim) get a one-line error
# instead of a usage dump.
UNSUPPORTED = ("update", "events", "checkpoint", "restore")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wasmlab-oci", description="An OCI runtime with Wasm handlers (runc-compatible).")
    p.add_argument("--root", help="state folder (default /run/wasmlab, or $XDG_RUNTIME_DIR/wasmlab rootless)")
    p.add_argument("--log", help="write errors to this file")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--systemd-cgroup", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--debug", action="store_true", help="print tracebacks")
    p.add_argument("--rootless", default="auto", help="accepted for runc compatibility")
    p.add_argument("--criu", help=argparse.SUPPRESS)
    p.add_argument("--engine", choices=("wasmtime", "wasmer"), help="default Wasm engine (or $WASMLAB_ENGINE)")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")

    def bundle_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-b", "--bundle", default=".", help="the bundle folder (holds config.json)")
        sp.add_argument("--console-socket", help="AF_UNIX socket that receives the pty master")
        sp.add_argument("--pid-file", help="write the container's pid here")
        sp.add_argument("--no-pivot", action="store_true", help="use MS_MOVE and chroot instead of pivot_root")
        sp.add_argument("--no-new-keyring", action="store_true")
        sp.add_argument("--preserve-fds", type=int, default=0)
        sp.add_argument("id")

    bundle_args(sub.add_parser("create", help="create a container (it waits for start)"))
    r = sub.add_parser("run", help="create and start a container, and wait for it")
    bundle_args(r)
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("--keep", action="store_true", help="do not delete the container after it exits")
    sub.add_parser("start", help="start a created container").add_argument("id")
    st = sub.add_parser("state", help="print the container's state as JSON")
    st.add_argument("id")
    k = sub.add_parser("kill", help="send a signal to the container's init")
    k.add_argument("-a", "--all", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="TERM")
    d = sub.add_parser("delete", help="delete a container")
    d.add_argument("-f", "--force", action="store_true")
    d.add_argument("id")
    ls = sub.add_parser("list", help="list containers")
    ls.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true")
    ps = sub.add_parser("ps", help="show the processes of a container")
    ps.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    sub.add_parser("features", help="print what this runtime supports, as JSON")
    for verb in UNSUPPORTED:
        sub.add_parser(verb, add_help=False, help="(a runc verb wasmlab-oci does not support yet)")
    sub.add_parser("pause", help="freeze every process of a container").add_argument("id")
    sub.add_parser("resume", help="thaw a paused container").add_argument("id")
    ex = sub.add_parser("exec", help="run a new process in a running container")
    ex.add_argument("-p", "--process", help="a runtime-spec process.json (instead of COMMAND)")
    ex.add_argument("-d", "--detach", action="store_true")
    ex.add_argument("--pid-file")
    ex.add_argument("--console-socket")
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("--cwd", default=None)
    ex.add_argument("-e", "--env", action="append", default=[])
    ex.add_argument("-u", "--user", help="UID[:GID]")
    ex.add_argument("--preserve-fds", type=int, default=0)
    ex.add_argument("--no-new-privs", action="store_true")
    ex.add_argument("id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    sp = sub.add_parser("spec", help="write a default config.json")
    sp.add_argument("-b", "--bundle", default=".")
    sp.add_argument("--rootless", action="store_true")
    ex = sub.add_parser("explain", help="explain which handler would run a bundle, and why")
    ex.add_argument("-b", "--bundle", default=".")
    ex.add_argument("--json", action="store_true")
    return p


def _log_error(args: argparse.Namespace, message: str) -> None:
    sys.stderr.write(f"wasmlab-oci: error: {message}\n")  # one prefix, as argparse's usage errors have
    if getattr(args, "log", None):
        try:
            with open(args.log, "a") as fh:
                if args.log_format == "json":
                    fh.write(json.dumps({"level": "error", "msg": message,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
                else:
                    fh.write(f"error: {message}\n")
        except OSError:
            pass


def _handlers(annotations: dict[str, str], engine: str) -> dict[str, Any]:
    from wasmlab.runtime.handlers import registry
    from wasmlab.runtime.handlers.detect import HANDLER_ANNOTATION, VARIANT_ANNOTATION

    if not (HANDLER_ANNOTATION in annotations or VARIANT_ANNOTATION in annotations):
        from wasmlab.runtime.handlers.native import NativeHandler

        native = NativeHandler()
        return {"native": native}
    from wasmlab.runtime.handlers.detect import engines_wanted

    # Warm every engine the annotations may pick: nothing can be imported after pivot_root.
    return registry.load(prepare=engines_wanted(annotations, engine) or ("wasmtime",))


def cmd_create(args: argparse.Namespace, *, autostart: bool = False) -> int:
    from wasmlab.runtime import init
    from wasmlab.runtime.launch import launch
    from wasmlab.runtime.signals import Forwarder
    from wasmlab.runtime.spec import runtime as spec_mod
    from wasmlab.runtime.store.state import StateDir, check_id

    check_id(args.id)
    spec = spec_mod.load(args.bundle)
    plan = init.plan(spec, args.id, no_pivot=args.no_pivot)
    engine = args.engine or os.environ.get("WASMLAB_ENGINE") or "wasmtime"
    handlers = _handlers(spec.annotations, engine)
    sd = StateDir(_root(args), args.id)
    forwarder = Forwarder() if autostart and not args.detach else None  # as `runc run`
    launched = launch(plan, sd, handlers=handlers, default_engine=engine, console_socket=args.console_socket,
                      pid_file=args.pid_file, autostart=autostart, owner="cli",
                      record_exit=not autostart)  # we exit after create: a Wasm init records its own exit
    if forwarder is not None:
        forwarder.target(lambda signum: _kill_quietly(launched.pid, signum))
    if launched.cgroup is None and any(plan.resources.get(k) for k in ("memory", "pids", "cpu")):
        sys.stderr.write("wasmlab-oci: warning: the memory, pids and cpu limits are not applied: rootless, "
                         "this machine gives us no cgroup to write them to (hint: run as root, or use a "
                         "cgroup v2 host with delegation)\n")
    if not autostart:
        return 0
    return _wait_foreground(args, launched)


def _kill_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_foreground(args: argparse.Namespace, launched: Any) -> int:
    from wasmlab.runtime.lifecycle import Containers
    from wasmlab.runtime.store.state import ExitRecord, StateDir, decode_wait_status

    if args.detach:
        return 0
    _, status, usage = os.wait4(launched.pid, 0)
    code, sig = decode_wait_status(status)
    oom = bool(launched.cgroup and launched.cgroup.oom_killed())
    rec = ExitRecord(exit_code=code, signal=sig, oom_killed=oom, finished_at=time.time(),
                     max_rss_kb=usage.ru_maxrss, user_ms=usage.ru_utime * 1e3, system_ms=usage.ru_stime * 1e3)
    StateDir(_root(args), args.id).write_exit(rec)
    if os.environ.get("WASMLAB_HOME"):
        _record(args.id, launched, rec)
    if not args.keep:
        Containers(_root(args)).delete(args.id, force=True)
    return code


def _record(cid: str, launched: Any, rec: Any) -> None:
    """Given a lab home (WASMLAB_HOME), `run` lands in its history like the lab's own runs."""
    import sqlite3

    from wasmlab.runtime.errors import WasmlabError
    from wasmlab.runtime.store.history import History, RunRecord
    from wasmlab.runtime.store.home import lab_home

    timings = dict(launched.timings)
    total = (time.time() - float(launched.state.get("created") or time.time())) * 1e3 + timings.get("create_ms", 0.0)
    try:
        history = History(lab_home() / "history.db")
        history.record(RunRecord(
            id=cid, handler=str((launched.decision or {}).get("handler") or ""), exit_code=rec.exit_code,
            signal=rec.signal, started_at=time.time() - total / 1e3, oom_killed=rec.oom_killed,
            create_ms=float(timings.get("ready") or timings.get("create_ms") or 0.0), total_ms=total,
            init_max_rss_kb=rec.max_rss_kb, timings=timings,
            cgroup_peak_bytes=(launched.cgroup.memory() if launched.cgroup else {}).get("peak") or None))
        history.close()
    except (WasmlabError, OSError, sqlite3.Error) as exc:
        sys.stderr.write(f"wasmlab-oci: warning: the run was not recorded in the lab's history: {exc} "
                         "(hint: check WASMLAB_HOME)\n")


def cmd_run(args: argparse.Namespace) -> int:
    from wasmlab.runtime.linux import syscalls as sc

    # With a user namespace the init is a grandchild: become its reaper so we can wait for it.
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    return cmd_create(args, autostart=True)


def _root(args: argparse.Namespace) -> str:
    from wasmlab.runtime.store.state import default_root

    return os.path.abspath(args.root or default_root())


def _containers(args: argparse.Namespace) -> Any:
    from wasmlab.runtime.lifecycle import Containers

    return Containers(_root(args))


def cmd_start(args: argparse.Namespace) -> int:
    _containers(args).start(args.id)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    state = _containers(args).state(args.id)
    print(json.dumps(state, indent=2))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    _containers(args).kill(args.id, args.signal, all_processes=args.all)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from wasmlab.runtime.errors import ContainerNotFound
    from wasmlab.runtime.store.state import StateDir, check_id

    check_id(args.id)
    # runc: `delete --force` of a container that is already gone succeeds. containerd's shim calls it after
    # every plain `delete`, conmon after a failed `create`; both log an error when it fails. Return before
    # taking the container's lock, which would leave a .ID.lock file behind in the root.
    if args.force and not os.path.isdir(StateDir(_root(args), args.id).path):
        return 0
    try:
        _containers(args).delete(args.id, force=args.force)
    except ContainerNotFound:
        if not args.force:
            raise
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    items = _containers(args).list()
    if args.quiet:
        for it in items:
            print(it["id"])
    elif args.format == "json":
        print(json.dumps([{"id": it["id"], "pid": it.get("pid", 0), "status": it["status"], "bundle": it["bundle"],
                           "created": it["wasmlab"].get("created"), "handler": it["wasmlab"].get("handler"),
                           "annotations": it.get("annotations")} for it in items]))
    else:
        print(f"{'ID':<24} {'PID':<8} {'STATUS':<10} {'HANDLER':<10} BUNDLE")
        for it in items:
            print(f"{it['id']:<24} {it.get('pid', 0):<8} {it['status']:<10} {it['wasmlab'].get('handler') or '-':<10} "
                  f"{it['bundle']}")
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    import subprocess

    pids = _containers(args).ps(args.id)
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    out = subprocess.run(["ps", *(args.ps_args or ["-ef"])], capture_output=True, text=True).stdout.splitlines()
    if not out:
        return 1
    header, rows = out[0], out[1:]
    col = header.split().index("PID") if "PID" in header.split() else 1
    print(header)
    for row in rows:
        parts = row.split()
        if len(parts) > col and parts[col].isdigit() and int(parts[col]) in pids:
            print(row)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from wasmlab.runtime.handlers import registry
    from wasmlab.runtime.handlers.detect import KNOWN_ANNOTATIONS
    from wasmlab.runtime.linux import cgroups, mounts, seccomp
    from wasmlab.runtime.linux.process import CAPABILITIES
    from wasmlab.runtime.spec.runtime import HOOK_KINDS, NAMESPACE_TYPES

    lay = cgroups.layout()
    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(set(mounts._FLAGS) | set(mounts._PROPAGATION)),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": list(CAPABILITIES),
            "cgroup": {"v1": lay.mode in ("v1", "hybrid"), "v2": lay.mode in ("v2", "hybrid"), "systemd": False,
                       "systemdUser": False},
            "seccomp": {"enabled": seccomp.library() is not None},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "wasmlab-oci " + VERSION},
        "wasmlab": {"handlers": registry.describe(), "annotations": list(KNOWN_ANNOTATIONS),
                    "defaultEngine": args.engine or os.environ.get("WASMLAB_ENGINE") or "wasmtime"},
    }
    print(json.dumps(features, indent=2))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from wasmlab.runtime.errors import UsageError
    from wasmlab.runtime.spec.runtime import default_config

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise UsageError(f"{path} already exists", "remove it first, or choose another --bundle")
    with open(path, "w") as fh:
        json.dump(default_config(rootless=args.rootless or os.geteuid() != 0), fh, indent=2)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from wasmlab.runtime.explain import explain
    from wasmlab.runtime.handlers import installed, registry

    plugins = tuple(name for name, _target in installed.entry_points(registry.ENTRY_POINT_GROUP))
    decision = explain(args.bundle, default_engine=args.engine or os.environ.get("WASMLAB_ENGINE") or "wasmtime",
                       extra_engines=plugins)
    if args.json:
        print(json.dumps(decision.as_dict(), indent=2))
    else:
        print(f"handler: {decision.handler}")
        print(f"rule:    {decision.rule}")
        if decision.annotation:
            print(f"because: {decision.annotation[0]}={decision.annotation[1]} (from {decision.source})")
        for step in decision.steps:
            print(f"  - {step}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from wasmlab.runtime.errors import UsageError
    from wasmlab.runtime.execute import check_running, exec_process, load_process

    containers = _containers(args)
    state = containers.state(args.id)
    check_running(state["status"], args.id)
    if args.process:
        process = load_process(args.process)
    else:
        if not args.command:
            raise UsageError("exec needs a command or --process", f"for example: exec {args.id} sh")
        with open(os.path.join(state["bundle"], "config.json")) as fh:
            base = json.load(fh).get("process") or {}
        process = dict(base, args=args.command, terminal=args.tty)
        if args.cwd:
            process["cwd"] = args.cwd
        process["env"] = list(base.get("env") or []) + list(args.env)
        if args.user:
            uid, _, gid = args.user.partition(":")
            process["user"] = {"uid": int(uid), "gid": int(gid or uid)}
        if args.no_new_privs:
            process["noNewPrivileges"] = True
    return exec_process(state, process, detach=args.detach, pid_file=args.pid_file,
                        console_socket=args.console_socket)


def cmd_pause(args: argparse.Namespace) -> int:
    _containers(args).pause(args.id)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _containers(args).resume(args.id)
    return 0


def cmd_unsupported(args: argparse.Namespace) -> int:
    from wasmlab.runtime.errors import UsageError

    raise UsageError(f"`{args.verb}` is not supported by wasmlab-oci yet",
                     "run the workload with `run` or `create` + `start`, or use runc for this container")


COMMANDS = {"create": cmd_create, "run": cmd_run, "start": cmd_start, "state": cmd_state, "kill": cmd_kill,
            "delete": cmd_delete, "list": cmd_list, "ps": cmd_ps, "features": cmd_features, "spec": cmd_spec,
            "explain": cmd_explain, "exec": cmd_exec, "pause": cmd_pause, "resume": cmd_resume,
            **{verb: cmd_unsupported for verb in UNSUPPORTED}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-v"]):
        print(f"wasmlab-oci version {VERSION}\nspec: {SPEC_VERSION}")
        return 0
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.verb not in UNSUPPORTED:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.version:
        print(f"wasmlab-oci version {VERSION}\nspec: {SPEC_VERSION}")
        return 0
    if args.debug:
        os.environ["WASMLAB_DEBUG"] = "1"  # the container init prints its traceback too
    for key, value in (("MALLOC_ARENA_MAX", "1"), ("TOKIO_WORKER_THREADS", "1")):
        os.environ.setdefault(key, value)  # see wasmlab.runtime.zygote.ENGINE_ENV
    if not args.verb:
        _parser().print_help()
        return 2
    from wasmlab.runtime.errors import WasmlabError

    try:
        return COMMANDS[args.verb](args)
    except WasmlabError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        _log_error(args, exc.one_line())
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        _log_error(args, f"{exc.strerror or exc}{where} (hint: {_os_hint(args, exc)})")
        return 1


def _os_hint(args: argparse.Namespace, exc: OSError) -> str:
    """A hint for a bare system error, from what the command was doing with which path."""
    name = str(exc.filename or "")
    pid_file = getattr(args, "pid_file", None)
    if pid_file and name.startswith(os.path.abspath(pid_file)):
        return "--pid-file must name a file in a folder that exists and is writable"
    if args.root and name.startswith(os.path.abspath(args.root)):
        return "--root must be a folder this user can create and write (default: /run/wasmlab as root)"
    if getattr(args, "bundle", None) and name.startswith(os.path.abspath(args.bundle)):
        return "--bundle must be a folder that exists (with config.json and rootfs/)"
    return "check the paths given on the command line; --debug shows where it failed"


if __name__ == "__main__":
    sys.exit(main())
