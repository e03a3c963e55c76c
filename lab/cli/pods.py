"""wasmlab's kube verbs: `kube generate` (files for a real cluster) and `kube play --dry-run` (the pod plan)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wasmlab.lab.cli.common import open_lab, print_json


def cmd_kube_generate(args: argparse.Namespace) -> int:
    from wasmlab.runtime import Lab

    done = Lab.kube_generate(args.file, args.output, runtime_path=args.runtime_path,
                             allow_host_path=args.allow_host_path)
    for note in done.notes:
        print(f"wasmlab: {note}", file=sys.stderr)
    for path in done.files:
        print(path)
    print(f"RuntimeClass {done.runtime} (handler {done.runtime}, {done.runtime_path}) for "
          f"{', '.join(done.pods) or 'no pod'}", file=sys.stderr)
    return 0


def cmd_kube_play(args: argparse.Namespace) -> int:
    if not args.dry_run:
        from wasmlab.lab.cli.pod import kube_play

        return kube_play(args)
    with open_lab(args) as lab:
        plan = lab.pod_plan(args.file, propagation=args.propagation, pod_annotations=args.pod_annotations,
                            allow_host_path=args.allow_host_path)
    for warning in plan.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if args.json:
        print_json(plan.as_dict())
        return 0
    allow = f" (pod_annotations: {', '.join(plan.pod_annotations)})" if plan.propagation == "containerd" else ""
    print(f"propagation: {plan.propagation}{allow}")
    for planned in plan.pods:
        pod = planned.pod
        print(f"\npod {pod.identity} ({pod.kind}{f' {pod.owner}' if pod.owner else ''}, restartPolicy "
              f"{pod.restart_policy})")
        if pod.runtime_class_name:
            print(f"  runtimeClassName {pod.runtime_class_name}: {planned.runtime_class_effect}")
        for c in (planned.annotations.sandbox, *planned.annotations.containers):
            print(f"  {c.role:<9} {c.name}{f'  {c.image}' if c.image else ''}")
            for t in c.traces:
                mark = "passed" if t.passed else "held back"
                by = f" by {t.allowed_by}" if t.allowed_by else ""
                print(f"    {t.origin:<5} {mark:<9} {t.key}={t.value}{by}" + ("" if t.passed else f"  ({t.reason})"))
    return 0


def register(sub: Any) -> None:
    kube = sub.add_parser("kube", help="Kubernetes YAML: generate files for a real cluster, play pods")
    verbs = kube.add_subparsers(dest="kube_verb", metavar="VERB")
    kube.set_defaults(func=lambda args: kube.print_help() or 2)

    gen = verbs.add_parser("generate", help="write pod.yaml, runtimeclass.yaml, crio.conf and containerd.toml "
                                            "for a real cluster")
    gen.add_argument("file", metavar="FILE.yaml")
    gen.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write into")
    gen.add_argument("--runtime-path", metavar="PATH",
                     help="the OCI runtime on the node (default /usr/bin/crun), e.g. /usr/local/bin/wasmlab-oci")
    gen.add_argument("--allow-host-path", action="store_true", help="accept hostPath volumes")
    gen.set_defaults(func=cmd_kube_generate)

    play = verbs.add_parser("play", help="play the pods of a Kubernetes YAML file (--dry-run: the plan only)")
    play.add_argument("file", metavar="FILE.yaml")
    play.add_argument("--dry-run", action="store_true",
                      help="run nothing: show each container's annotations and the warnings")
    play.add_argument("--propagation", choices=("crio", "containerd"), default="crio",
                      help="pass pod annotations on as CRI-O (all) or containerd (the allowlist) does")
    play.add_argument("--pod-annotations", action="append", metavar="GLOB",
                      help="containerd's pod_annotations allowlist entry (repeatable; default module.wasm.image/*)")
    play.add_argument("--allow-host-path", action="store_true", help="accept hostPath volumes")
    play.add_argument("--json", action="store_true", help="print the plan (--dry-run) or the pods played as JSON")
    from wasmlab.lab.cli.pod import register_kube

    register_kube(verbs, play)
    play.set_defaults(func=cmd_kube_play)
