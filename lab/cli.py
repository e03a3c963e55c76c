"""wasmlab: podman's verbs over the embedded lab (build, run, ps, logs, images, ...); no arguments opens the TUI."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from wasmlab.runtime.errors import UsageError, WasmlabError
from wasmlab.runtime.signals import Forwarder


def _kv(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"{what} {item!r} is not KEY=VALUE", f"write it as {what} key=value")
        out[k] = v
    return out


def _lab(args: argparse.Namespace) -> Any:
    from wasmlab.runtime.service import Lab

    return Lab(default_engine=getattr(args, "engine", None))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _ago(ts: float | str) -> str:
    if isinstance(ts, str):
        try:
            from datetime import datetime

            ts = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return str(ts) or "-"
    delta = max(0.0, time.time() - ts)
    for secs, unit in ((86400, "days"), (3600, "hours"), (60, "minutes")):
        if delta >= secs:
            return f"{int(delta // secs)} {unit} ago"
    return f"{int(delta)} seconds ago"


class _Bar:
    """A one-line progress display on a terminal; plain lines otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()

    def __call__(self, event: Any) -> None:
        text = getattr(event, "message", None) or str(event)
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        if done is not None and total:
            width = 30
            filled = int(width * min(1.0, done / total))
            text = f"[{'#' * filled}{'.' * (width - filled)}] {_size(done)}/{_size(total)} {text}"
        if self.tty:
            sys.stderr.write(f"\r\x1b[2K{self.label}: {text[:150]}")
        else:
            sys.stderr.write(f"{self.label}: {text}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# -- verbs -------------------------------------------------------------------------------------------------------

def cmd_build(args: argparse.Namespace) -> int:
    lab = _lab(args)
    bar = _Bar("build")
    try:
        res = lab.images.build(args.context, args.file, tag=args.tag, annotations=_kv(args.annotation, "--annotation"),
                               labels=_kv(args.label, "--label"), platform=args.platform,
                               build_args=_kv(args.build_arg, "--build-arg"),
                               progress=None if args.quiet else bar, runtime=lab.runtime)
    finally:
        if not args.quiet:
            bar.close()
        lab.close()
    if args.json:
        _print_json(res.__dict__)
    else:
        if res.name and not args.quiet:
            print(f"Successfully tagged {res.name}", file=sys.stderr)
        print(res.id.removeprefix("sha256:")[:12] if not args.quiet else res.id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _refuse_tty(args)
    with _lab(args) as lab:
        # As podman's --sig-proxy; a Linux pid 1 may ignore the first stop signal, so a second one kills.
        proxy = None if args.detach else Forwarder((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), escalate=True)
        res = lab.run(args.image, args.command or None, name=args.name, rm=args.rm, detach=args.detach,
                      annotations=_kv(args.annotation, "--annotation"), env=args.env, engine=args.engine,
                      entrypoint=[args.entrypoint] if args.entrypoint else None,
                      on_created=(lambda cid: proxy.target(lambda sig: _kill_quietly(lab, cid, sig)))
                      if proxy else None)
    if args.detach:
        print(res.id)
        return 0
    if args.json:
        _print_json(res.__dict__)
    return int(res.exit_code or 0)


def _kill_quietly(lab: Any, cid: str, signum: int) -> None:
    try:
        lab.runtime.kill(cid, signum)
    except WasmlabError:
        pass  # it has just ended


def _tty_flags(parser: argparse.ArgumentParser) -> None:
    """podman's -i and -t (typed together as -it): stdin is always attached in the foreground; there is no
    terminal yet, which -t says in one line instead of argparse's "unrecognized arguments"."""
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached (always so)")
    parser.add_argument("-t", "--tty", action="store_true", help="not supported yet: there is no terminal")


def _refuse_tty(args: argparse.Namespace) -> None:
    if getattr(args, "tty", False):
        raise UsageError("wasmlab has no terminal for containers yet (-t)",
                         "drop -t: output still streams and stdin is attached, e.g. wasmlab exec -i NAME sh")


def cmd_exec(args: argparse.Namespace) -> int:
    _refuse_tty(args)
    if not args.command:
        raise UsageError("exec needs a command", f"for example: wasmlab exec {args.container} /bin/sh -c 'ls /'")
    with _lab(args) as lab:
        return int(lab.exec(args.container, args.command, env=args.env or []))


def cmd_ps(args: argparse.Namespace) -> int:
    with _lab(args) as lab:
        rows = lab.ps(all=args.all)
    if args.json:
        _print_json([r.as_dict() for r in rows])
        return 0
    if args.quiet:
        for r in rows:
            print(r.id)
        return 0
    print(f"{'CONTAINER ID':<14}{'IMAGE':<34}{'COMMAND':<24}{'CREATED':<18}{'STATUS':<14}{'HANDLER':<10}NAMES")
    for r in rows:
        status = f"Exited ({r.exit_code})" if r.status == "stopped" and r.exit_code is not None else r.status.title()
        print(f"{r.id[:12]:<14}{r.image[:32]:<34}{' '.join(r.command)[:22]:<24}{_ago(r.created):<18}"
              f"{status:<14}{r.handler or '-':<10}{r.name}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    with _lab(args) as lab:
        for chunk in lab.logs(args.container, follow=args.follow):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    with _lab(args) as lab:
        for name in args.containers:
            lab.stop(name, timeout=args.time)
            print(name)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    with _lab(args) as lab:
        for name in args.containers:
            (lab.pause if args.verb == "pause" else lab.unpause)(name)
            print(name)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """As podman: every container named is tried; the first error is reported once all were."""
    if not args.all and not args.containers:
        raise UsageError("rm needs a container name or id, or --all", "list them with `wasmlab ps -a`")
    failed: WasmlabError | None = None
    with _lab(args) as lab:
        names = [r.id for r in lab.ps(all=True)] if args.all else args.containers
        for name in names:
            try:
                lab.rm(name, force=args.force)
            except WasmlabError as exc:
                if failed is None:
                    failed = exc
                print(f"Error: {exc.one_line()}", file=sys.stderr)
                continue
            print(name)
    if failed is not None:
        return failed.exit_code or 1
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    lab = _lab(args)
    out = []
    try:
        for name in args.names:
            try:
                out.append(lab.inspect(name))
            except WasmlabError:
                details = lab.images.inspect(name)
                out.append({"image": details.summary.__dict__, "manifest": details.manifest, "config": details.config})
    finally:
        lab.close()
    _print_json(out)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    rows = Images().list(all=args.all)
    if args.json:
        _print_json([r.__dict__ for r in rows])
        return 0
    if args.quiet:
        for r in rows:
            print(r.short_id)
        return 0
    print(f"{'REPOSITORY':<40}{'TAG':<14}{'IMAGE ID':<15}{'CREATED':<18}{'SIZE':<10}{'PLATFORM':<14}WASM VARIANT")
    for r in rows:
        names = r.names or ["<none>:<none>"]
        for n in names:
            repo, _, tag = n.rpartition(":") if ":" in n.rsplit("/", 1)[-1] else (n, "", "latest")
            print(f"{repo:<40}{tag:<14}{r.short_id:<15}{_ago(r.created):<18}{_size(r.size):<10}"
                  f"{r.os + '/' + r.architecture:<14}{r.variant}")
    return 0


def cmd_image_inspect(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    images = Images()
    out = []
    for name in args.names:
        d = images.inspect(name)
        out.append({"summary": d.summary.__dict__, "manifest": d.manifest, "config": d.config,
                    "layers": [layer.__dict__ for layer in d.layers]})
    _print_json(out)
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    images = Images()
    for target in args.targets:
        images.tag(args.source, target)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    with _lab(args) as lab:
        for name in args.images:
            res = lab.rmi(name, force=args.force)
            for n in res.untagged:
                print(f"Untagged: {n}")
            if res.deleted:
                print(f"Deleted: {res.deleted}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images
    from wasmlab.runtime.images.samples import build_samples

    bar = _Bar("samples") if not (args.json or args.quiet) else None
    try:
        built = build_samples(Images(), busybox=not args.no_busybox, progress=bar or (lambda s: None))
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        _print_json([b.__dict__ for b in built])
    elif not args.quiet:
        for b in built:
            print(f"{b.name:<34}{b.digest[7:19]}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    res = Images().prune(dangling=not args.all)
    print(f"Removed {len(res.images)} images and {res.blobs} blobs, {_size(res.reclaimed)} freed")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    if not args.output:
        raise UsageError("save needs -o FILE", "for example: wasmlab save -o image.tar IMAGE")
    if args.format == "wasm-artifact":
        if len(args.images) != 1:
            raise UsageError("a Wasm artifact holds one module: save one image at a time",
                             "wasmlab save --format wasm-artifact -o hello.tar IMAGE")
        Images().export_wasm(args.images[0], args.output)
        return 0
    Images().save(args.images, args.output, format=args.format)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    for name in Images().load(args.input).names:
        print(f"Loaded image: {name}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    bar = _Bar("push")
    try:
        res = Images().push(args.image, args.destination, tls_verify=args.tls_verify, progress=bar)
    finally:
        bar.close()
    if args.json:
        _print_json(res.__dict__)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from wasmlab.runtime.images import Images

    bar = _Bar("pull")
    try:
        res = Images().pull(args.image, tls_verify=args.tls_verify, progress=bar)
    finally:
        bar.close()
    if args.json:
        _print_json(res.__dict__)
    else:
        print(getattr(res, "digest", ""))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from wasmlab.runtime.doctor import diagnose

    report = diagnose()
    if args.json:
        _print_json(report)
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
    from wasmlab.runtime.metrics.history import History
    from wasmlab.runtime.store.home import lab_home

    rows = History(lab_home() / "history.db").recent(args.last, handler=args.handler)
    if args.json:
        _print_json([r.as_dict() for r in rows])
        return 0
    print(f"{'WHEN':<18}{'NAME':<22}{'HANDLER':<10}{'EXIT':<6}{'CREATE ms':>10}{'TOTAL ms':>10}{'PEAK RSS':>10}  CACHE")
    for r in rows:
        print(f"{_ago(r.started_at):<18}{(r.name or r.id)[:20]:<22}{r.handler:<10}{r.exit_code:<6}{r.create_ms:>10.2f}"
              f"{r.total_ms:>10.2f}{_size(r.max_rss_kb * 1024):>10}  {r.cache}")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        from wasmlab.lab.tui.app import main as tui_main
    except ImportError as exc:
        raise UsageError(f"the terminal UI is not available: {exc}", "run `make lab` to install it") from None
    return int(tui_main() or 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wasmlab", description="Run WebAssembly and Linux containers side by side. "
                                "With no command, opens the terminal UI.")
    p.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    p.add_argument("--version", action="store_true")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")

    b = sub.add_parser("build", help="build an image from a Containerfile")
    b.add_argument("-f", "--file", help="the Containerfile (default CONTEXT/Containerfile or Dockerfile)")
    b.add_argument("-t", "--tag")
    b.add_argument("--annotation", action="append", metavar="K=V")
    b.add_argument("--label", action="append", metavar="K=V")
    b.add_argument("--platform", help="wasi/wasm or linux/amd64")
    b.add_argument("--build-arg", action="append", metavar="K=V")
    b.add_argument("-q", "--quiet", action="store_true")
    b.add_argument("--json", action="store_true")
    b.add_argument("context", nargs="?", default=".")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("run", help="run a command in a new container")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("--name")
    r.add_argument("--annotation", action="append", metavar="K=V")
    r.add_argument("-e", "--env", action="append", metavar="K=V")
    r.add_argument("--engine", choices=("wasmtime", "wasmer"))
    r.add_argument("--entrypoint")
    r.add_argument("--json", action="store_true", help="print the run's decision and timings")
    _tty_flags(r)
    r.add_argument("image")
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(func=cmd_run)

    ex = sub.add_parser("exec", help="run a command in a running container")
    ex.add_argument("-e", "--env", action="append", metavar="K=V")
    _tty_flags(ex)
    ex.add_argument("container")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_ps)

    lg = sub.add_parser("logs", help="show a container's output")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("container")
    lg.set_defaults(func=cmd_logs)

    st = sub.add_parser("stop", help="stop containers (SIGTERM, then SIGKILL)")
    st.add_argument("-t", "--time", type=float, default=10.0)
    st.add_argument("containers", nargs="+")
    st.set_defaults(func=cmd_stop)

    for verb, text in (("pause", "freeze every process of containers"), ("unpause", "thaw paused containers")):
        pz = sub.add_parser(verb, help=text)
        pz.add_argument("containers", nargs="+")
        pz.set_defaults(func=cmd_pause)

    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("-a", "--all", action="store_true")
    rm.add_argument("containers", nargs="*")
    rm.set_defaults(func=cmd_rm)

    ins = sub.add_parser("inspect", help="show a container or image as JSON")
    ins.add_argument("names", nargs="+")
    ins.set_defaults(func=cmd_inspect)

    image = sub.add_parser("image", help="manage images")
    isub = image.add_subparsers(dest="image_verb", metavar="COMMAND")
    ii = isub.add_parser("inspect", help="show images as JSON")
    ii.add_argument("names", nargs="+")
    ii.set_defaults(func=cmd_image_inspect)
    ipr = isub.add_parser("prune", help="remove dangling images and unused blobs")
    ipr.add_argument("-a", "--all", action="store_true")
    ipr.set_defaults(func=cmd_prune)
    # podman spells these two ways: `images` / `image ls`, `rmi` / `image rm`, `tag` / `image tag`.
    for ls in (sub.add_parser("images", help="list images"), isub.add_parser("ls", help="list images")):
        ls.add_argument("-a", "--all", action="store_true")
        ls.add_argument("-q", "--quiet", action="store_true")
        ls.add_argument("--json", action="store_true")
        ls.set_defaults(func=cmd_images)
    for rmi in (sub.add_parser("rmi", help="remove images"), isub.add_parser("rm", help="remove images")):
        rmi.add_argument("images", nargs="+")
        rmi.add_argument("-f", "--force", action="store_true",
                         help="also remove the containers that use the image (stopping running ones)")
        rmi.set_defaults(func=cmd_rmi)
    for tg in (sub.add_parser("tag", help="add names to an image"), isub.add_parser("tag", help="add names")):
        tg.add_argument("source")
        tg.add_argument("targets", nargs="+")
        tg.set_defaults(func=cmd_tag)

    sv = sub.add_parser("save", help="write images to an archive")
    sv.add_argument("-o", "--output")
    sv.add_argument("--format", default="oci-archive",
                    choices=("oci-archive", "docker-archive", "oci-dir", "wasm-artifact"),
                    help="wasm-artifact: the CNCF Wasm OCI artifact (one application/wasm layer; a .tar "
                         "output is an oci-archive, anything else an OCI layout folder)")
    sv.add_argument("images", nargs="+")
    sv.set_defaults(func=cmd_save)
    ld = sub.add_parser("load", help="read images from an archive")
    ld.add_argument("-i", "--input", required=True)
    ld.set_defaults(func=cmd_load)

    for verb, helptext, fn in (("push", "push an image to a registry", cmd_push),
                               ("pull", "pull an image from a registry", cmd_pull)):
        sp = sub.add_parser(verb, help=helptext)
        sp.add_argument("--tls-verify", type=lambda v: v.lower() not in ("false", "0", "no"), default=True,
                        metavar="BOOL")
        sp.add_argument("--json", action="store_true")
        sp.add_argument("image")
        if verb == "push":
            sp.add_argument("destination", nargs="?")
        sp.set_defaults(func=fn)

    dr = sub.add_parser("doctor", help="check what this machine can do")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)

    hi = sub.add_parser("history", help="the run history: timings and memory of past runs")
    hi.add_argument("-n", "--last", type=int, default=20)
    hi.add_argument("--handler")
    hi.add_argument("--json", action="store_true")
    hi.set_defaults(func=cmd_history)

    sm = sub.add_parser("samples", help="build the sample images (every program in assets/ as compat, "
                                        "compat-smart and Linux images, and a busybox sidecar)")
    sm.add_argument("--no-busybox", action="store_true", help="skip the busybox sidecar image")
    sm.add_argument("--json", action="store_true")
    sm.add_argument("-q", "--quiet", action="store_true")
    sm.set_defaults(func=cmd_samples)

    tui = sub.add_parser("tui", help="open the terminal UI")
    tui.set_defaults(func=cmd_tui)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from wasmlab.runtime import __version__

        print(f"wasmlab version {__version__}")
        return 0
    func = getattr(args, "func", None)
    if args.verb is None:
        func = cmd_tui
    elif func is None:
        parser.parse_args([args.verb, "--help"])
        return 2
    try:
        return int(func(args))
    except WasmlabError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"Error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code if exc.exit_code != 0 else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `wasmlab ps --json | head`: the reader has what it wanted. Quiet, as other tools are.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
