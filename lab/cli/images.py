"""wasmlab's image verbs: build, images, image inspect/prune, tag, rmi, save, load, push and pull."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from wasmlab.lab import present
from wasmlab.lab.cli.common import ProgressLine, confirm, kv, open_lab, print_json
from wasmlab.runtime.errors import UsageError


def cmd_build(args: argparse.Namespace) -> int:
    line = ProgressLine("build", show_progress=not args.quiet)
    try:
        with open_lab(args) as lab:
            res = lab.build(args.context, args.file, tag=args.tag, annotations=kv(args.annotation, "--annotation"),
                            labels=kv(args.label, "--label"), platform=args.platform,
                            build_args=kv(args.build_arg, "--build-arg"), progress=line)
    finally:
        line.close()
    if args.json:
        print_json(dataclasses.asdict(res))
    else:
        if res.name and not args.quiet:
            print(f"Successfully tagged {res.name}", file=sys.stderr)
        print(present.short_id(res.id) if not args.quiet else res.id.removeprefix("sha256:"))  # podman's -q
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        rows = lab.images(all=args.all)
    if args.json:
        print_json([dataclasses.asdict(r) for r in rows])
        return 0
    if args.quiet:
        for r in rows:
            print(r.short_id)
        return 0
    print(f"{'REPOSITORY':<40}{'TAG':<14}{'IMAGE ID':<15}{'CREATED':<18}{'SIZE':<10}{'PLATFORM':<14}WASM VARIANT")
    for r in rows:
        for n in r.names or ["<none>:<none>"]:
            repo, _, tag = n.rpartition(":") if ":" in n.rsplit("/", 1)[-1] else (n, "", "latest")
            print(f"{repo:<40}{tag:<14}{r.short_id:<15}{present.ago(r.created):<18}{present.size(r.size):<10}"
                  f"{r.os + '/' + r.architecture:<14}{r.variant}")
    return 0


def cmd_image_inspect(args: argparse.Namespace) -> int:
    out = []
    with open_lab(args) as lab:
        for name in args.names:
            d = lab.image_inspect(name)
            out.append({"summary": d.summary.__dict__, "manifest": d.manifest, "config": d.config,
                        "layers": [layer.__dict__ for layer in d.layers]})
    print_json(out)
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        for target in args.targets:
            lab.tag(args.source, target)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    with open_lab(args) as lab:
        for name in args.images:
            res = lab.rmi(name, force=args.force)
            if args.quiet:
                continue
            for n in res.untagged:
                print(f"Untagged: {n}")
            if res.deleted_id:
                print(f"Deleted: {res.deleted_id.removeprefix('sha256:')}")  # the image id, as podman prints it
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """podman's image prune: the confirmation is asked on a terminal only, and -f skips it."""
    if not args.force and sys.stdin.isatty():
        what = "all images without at least one container associated with them" if args.all else "all dangling images"
        if not confirm(f"WARNING! This command removes {what}.", "prune"):
            return 1
    with open_lab(args) as lab:
        res = lab.prune(all=args.all)
    print(f"Removed {present.plural(len(res.images), 'image')} and {present.plural(res.blobs, 'blob')}, "
          f"{present.size(res.reclaimed)} freed")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    if not args.output:
        raise UsageError("save needs -o FILE", "for example: wasmlab save -o image.tar IMAGE")
    line = ProgressLine("save")
    try:
        with open_lab(args) as lab:
            res = lab.save(args.images, args.output, format=args.format, progress=line)
    finally:
        line.close()
    for warning in res.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    line = ProgressLine("load")
    try:
        with open_lab(args) as lab:
            res = lab.load(args.input, progress=line)
    finally:
        line.close()
    for name in res.names:
        print(f"Loaded image: {name}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    line = ProgressLine("push")
    try:
        with open_lab(args) as lab:
            res = lab.push(args.image, args.destination, tls_verify=args.tls_verify, progress=line)
    finally:
        line.close()
    if args.json:
        print_json(dataclasses.asdict(res))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    line = ProgressLine("pull", show_progress=not args.quiet)
    try:
        with open_lab(args) as lab:
            res = lab.pull(args.image, tls_verify=args.tls_verify, progress=line)
    finally:
        line.close()
    if args.json:
        print_json(dataclasses.asdict(res))
    else:
        print(res.digest)
    return 0


def register(sub: Any) -> None:
    b = sub.add_parser("build", help="build an image from a Containerfile")
    b.add_argument("-f", "--file", help="the Containerfile (default CONTEXT/Containerfile or Dockerfile)")
    b.add_argument("-t", "--tag", help="name the image, e.g. mywasm-image or localhost/app:1")
    b.add_argument("--annotation", action="append", metavar="K=V",
                   help="add a manifest annotation, e.g. module.wasm.image/variant=compat (repeatable)")
    b.add_argument("--label", action="append", metavar="K=V", help="add a label to the image config (repeatable)")
    b.add_argument("--platform", help="wasi/wasm or linux/amd64")
    b.add_argument("--build-arg", action="append", metavar="K=V", help="set an ARG of the Containerfile (repeatable)")
    b.add_argument("-q", "--quiet", action="store_true", help="print the image id only")
    b.add_argument("--json", action="store_true", help="print the build's result as JSON")
    b.add_argument("context", nargs="?", default=".")
    b.set_defaults(func=cmd_build)

    image = sub.add_parser("image", help="manage images")
    isub = image.add_subparsers(dest="image_verb", metavar="COMMAND")
    ii = isub.add_parser("inspect", help="show images as JSON")
    ii.add_argument("names", nargs="+")
    ii.set_defaults(func=cmd_image_inspect)
    ipr = isub.add_parser("prune", help="remove dangling images and unused blobs")
    ipr.add_argument("-a", "--all", action="store_true",
                     help="as podman: remove every image no container was made from, named or not")
    ipr.add_argument("-f", "--force", action="store_true",
                     help="do not ask for a confirmation (asked on a terminal only, as podman does)")
    ipr.set_defaults(func=cmd_prune)
    # podman spells these two ways: `images` / `image ls`, `rmi` / `image rm`, `tag` / `image tag`.
    for ls in (sub.add_parser("images", help="list images"), isub.add_parser("ls", help="list images")):
        ls.add_argument("-a", "--all", action="store_true", help="show unnamed (intermediate) images too")
        ls.add_argument("-q", "--quiet", action="store_true", help="print the image ids only")
        ls.add_argument("--json", action="store_true", help="print the images as JSON")
        ls.set_defaults(func=cmd_images)
    for rmi in (sub.add_parser("rmi", help="remove images"), isub.add_parser("rm", help="remove images")):
        rmi.add_argument("images", nargs="+")
        rmi.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
        rmi.add_argument("-f", "--force", action="store_true",
                         help="also remove the containers that use the image (stopping running ones)")
        rmi.set_defaults(func=cmd_rmi)
    for tg in (sub.add_parser("tag", help="add names to an image"), isub.add_parser("tag", help="add names")):
        tg.add_argument("source")
        tg.add_argument("targets", nargs="+")
        tg.set_defaults(func=cmd_tag)

    sv = sub.add_parser("save", help="write images to an archive")
    sv.add_argument("-o", "--output", help="the archive (or folder, for oci-dir) to write")
    sv.add_argument("--format", default="oci-archive",
                    choices=("oci-archive", "docker-archive", "oci-dir", "wasm-artifact"),
                    help="wasm-artifact: the CNCF Wasm OCI artifact (one application/wasm layer; a .tar "
                         "output is an oci-archive, anything else an OCI layout folder)")
    sv.add_argument("images", nargs="+")
    sv.set_defaults(func=cmd_save)
    ld = sub.add_parser("load", help="read images from an archive")
    ld.add_argument("-i", "--input", required=True, help="the archive or OCI layout folder to read")
    ld.set_defaults(func=cmd_load)

    for verb, helptext, fn in (("push", "push an image to a registry", cmd_push),
                               ("pull", "pull an image from a registry", cmd_pull)):
        sp = sub.add_parser(verb, help=helptext)
        sp.add_argument("--tls-verify", type=lambda v: v.lower() not in ("false", "0", "no"), default=True,
                        metavar="BOOL", help="false: allow plain HTTP and unverified TLS (a local registry)")
        sp.add_argument("--json", action="store_true", help="print the result as JSON")
        if verb == "pull":
            sp.add_argument("-q", "--quiet", action="store_true", help="no progress: print only the digest")
        sp.add_argument("image")
        if verb == "push":
            sp.add_argument("destination", nargs="?")
        sp.set_defaults(func=fn)
