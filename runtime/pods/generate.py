"""kube generate: from a Pod file, what the seed tells a user to set up by hand on a real cluster (the pod, a
RuntimeClass, CRI-O's and containerd's runtime configuration), written to one folder."""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from wasmlab.runtime.errors import UsageError
from wasmlab.runtime.pods.plan import GENERATED_RUNTIME_CLASS
from wasmlab.runtime.pods.propagation import DEFAULT_POD_ANNOTATIONS
from wasmlab.runtime.spec.pod import DNS_LABEL, PodFile, load_pods

DEFAULT_RUNTIME = GENERATED_RUNTIME_CLASS  # the plan warns when a pod names another
DEFAULT_RUNTIME_PATH = "/usr/bin/crun"
FILES = ("pod.yaml", "runtimeclass.yaml", "crio.conf", "containerd.toml")
SEED_GLOB = "module.wasm.image/variant.*"
_TOML_STRING = re.compile(r'^[^"\\\x00-\x1f\x7f]*$')


@dataclass(frozen=True)
class Generated:
    """What kube generate wrote: the folder, the files, the RuntimeClass (handler) name and the pods it names."""

    out_dir: Path
    files: tuple[Path, ...]
    runtime: str
    runtime_path: str
    pods: tuple[str, ...]
    notes: tuple[str, ...] = ()


def runtime_of(runtime_path: str | None) -> tuple[str, str]:
    """(handler name, binary path): crun by default, else the runtime named by its absolute path."""
    if runtime_path is None:
        return DEFAULT_RUNTIME, DEFAULT_RUNTIME_PATH
    if not runtime_path.startswith("/") or not _TOML_STRING.match(runtime_path):
        raise UsageError(f"--runtime-path {runtime_path!r} is not an absolute path",
                         "give the OCI runtime's absolute path on the node, e.g. /usr/local/bin/wasmlab-oci")
    name = os.path.basename(runtime_path.rstrip("/"))
    if len(name) > 63 or not DNS_LABEL.match(name):
        raise UsageError(f"the runtime's file name {name!r} cannot name a RuntimeClass handler (a DNS-1123 label)",
                         "install the runtime under a lowercase name of letters, digits and '-', e.g. wasmlab-oci")
    return name, runtime_path


def with_runtime_class(document: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The document with runtimeClassName set where Kubernetes reads it (a Deployment: in its pod template)."""
    out = copy.deepcopy(document)
    spec = out["spec"]["template"]["spec"] if out.get("kind") == "Deployment" else out["spec"]
    spec["runtimeClassName"] = runtime
    return out


def runtime_class(runtime: str) -> dict[str, Any]:
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": runtime},
            "handler": runtime}


def crio_conf(runtime: str, runtime_path: str, source: str) -> str:
    return f"""\
# CRI-O: a runtime handler for {runtime}, written by `wasmlab kube generate {source}`.
# Put it in /etc/crio/crio.conf.d/ (or merge it into /etc/crio/crio.conf) and restart CRI-O.
# Pods choose this handler through the RuntimeClass {runtime!r} (runtimeclass.yaml); other pods keep the default.
# To make it every pod's runtime instead, set default_runtime = "{runtime}" under [crio.runtime].
#
# No annotation allowlist is needed: CRI-O passes every pod annotation (module.wasm.image/variant included) to
# every container of the pod, and to its infra container, which CRI-O marks
# io.kubernetes.cri-o.ContainerType=sandbox (crun runs such a container natively). CRI-O's allowed_annotations key
# is something else: the experimental io.kubernetes.cri-o.* annotations a handler may act on (deprecated in favour
# of workloads), so it is left out. Image annotations never reach the runtime (cri-o issue 6906): annotate the pod.
[crio.runtime.runtimes.{runtime}]
runtime_path = "{runtime_path}"
runtime_type = "oci"
runtime_root = "/run/{runtime}"
"""


def containerd_toml(runtime: str, runtime_path: str, source: str, *,
                    pod_annotations: Sequence[str] = DEFAULT_POD_ANNOTATIONS, runtime_root: str | None = None) -> str:
    """containerd's CRI runtime for the handler; pod_annotations and the shim's Root (the runtime's --root) are
    what the lab's private containerd changes (a JSON string is a TOML basic string)."""
    allowlist = ", ".join(json.dumps(entry) for entry in pod_annotations)
    root = f"\n    Root = {json.dumps(runtime_root)}" if runtime_root else ""
    return f"""\
# containerd 1.6 CRI: a runtime for {runtime}, written by `wasmlab kube generate {source}`.
# Merge it into /etc/containerd/config.toml and restart containerd. Pods choose this runtime through the
# RuntimeClass {runtime!r} (runtimeclass.yaml); other pods keep runc, the default.
version = 2

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{runtime}]
  runtime_type = "io.containerd.runc.v2"
  # containerd passes a pod annotation on to the containers (and to the pod's sandbox, marked
  # io.kubernetes.cri.container-type=sandbox) only when an entry of this list matches its key with Go's
  # path.Match, which must match the whole key and whose "*" never crosses a "/".
  # The seed article's ["{SEED_GLOB}"] matches nothing: the key is module.wasm.image/variant, with no dot
  # after "variant", so the annotation never reaches {runtime} and a Wasm container fails as "not executable".
  # ["module.wasm.image/*"] matches module.wasm.image/variant (measured with containerd 1.6.20).
  pod_annotations = [{allowlist}]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{runtime}.options]
    BinaryName = "{runtime_path}"{root}
"""


def generate(file: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, runtime_path: str | None = None,
             allow_host_path: bool = False) -> Generated:
    """Write pod.yaml, runtimeclass.yaml, crio.conf and containerd.toml into out_dir. Every file is written in full
    or not at all; nothing is written when the Pod file is refused."""
    runtime, binary = runtime_of(runtime_path)
    pods: PodFile = load_pods(file, allow_host_path=allow_host_path)
    notes = []
    for pod in pods.pods:
        if pod.runtime_class_name and pod.runtime_class_name != runtime:
            notes.append(f"pod {pod.identity}: runtimeClassName {pod.runtime_class_name} replaced by {runtime}")
    source = os.path.basename(os.fspath(file))
    header = (f"# {source}, with runtimeClassName {runtime} (written by `wasmlab kube generate`); apply "
              "runtimeclass.yaml first.\n")
    documents = [with_runtime_class(d, runtime) for d in pods.documents]
    contents = {
        "pod.yaml": header + yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False),
        "runtimeclass.yaml": yaml.safe_dump(runtime_class(runtime), sort_keys=False),
        "crio.conf": crio_conf(runtime, binary, source),
        "containerd.toml": containerd_toml(runtime, binary, source),
    }
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a folder", "give -o a folder to write the four files into")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        target = out / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(contents[name])
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        written.append(target)
    return Generated(out_dir=out, files=tuple(written), runtime=runtime, runtime_path=binary,
                     pods=tuple(p.identity for p in pods.pods), notes=tuple(notes))
