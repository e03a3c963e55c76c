"""A pod plan: the pods of a YAML file with each container's propagated annotations and every warning, before
anything runs (what `kube play --dry-run` shows, and what play starts from)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wasmlab.runtime.pods.propagation import DEFAULT_PROPAGATION, PodAnnotations, check_propagation, propagate
from wasmlab.runtime.spec.pod import Pod, load_pods

# The RuntimeClass (and node handler) `kube generate` writes when no --runtime-path is given (pods/generate.py).
GENERATED_RUNTIME_CLASS = "crun"


def runtime_class_effect(name: str | None) -> str:
    """What a cluster does with a pod's runtimeClassName (wasmlab records it and plays the pod with its own
    runtime either way)."""
    if not name:
        return ("none named: on a cluster the node's default runtime handler runs the pod (runc unless "
                "default_runtime says otherwise); here wasmlab's own runtime does")
    return (f"on a cluster the kubelet looks up the RuntimeClass {name!r} (it must exist, else the pod is refused) "
            f"and asks CRI-O or containerd for its handler, the node's runtime configured under that name "
            f"(`kube generate` writes RuntimeClass and handler {GENERATED_RUNTIME_CLASS}); here wasmlab's own "
            "runtime plays it")


def runtime_class_warning(pods: Sequence[Pod]) -> str | None:
    """One line for the pods naming a RuntimeClass other than the one `kube generate` writes."""
    other = [f"{p.identity} ({p.runtime_class_name})" for p in pods
             if p.runtime_class_name and p.runtime_class_name != GENERATED_RUNTIME_CLASS]
    if not other:
        return None
    return (f"runtimeClassName other than {GENERATED_RUNTIME_CLASS!r} in pod(s) {', '.join(other)}: a cluster runs "
            f"such a pod with the node handler of that name, and `kube generate` writes only RuntimeClass "
            f"{GENERATED_RUNTIME_CLASS} (or the --runtime-path runtime's name), replacing it; wasmlab plays it "
            "with its own runtime")


@dataclass(frozen=True)
class PlannedPod:
    pod: Pod
    annotations: PodAnnotations
    runtime_class_effect: str = ""  # what a cluster does with the pod's runtimeClassName (runtime_class_effect)


@dataclass(frozen=True)
class PodPlan:
    source: str
    propagation: str
    pod_annotations: tuple[str, ...]
    pods: tuple[PlannedPod, ...]
    warnings: tuple[str, ...]  # the ignored fields (one line), notes, then the allowlist warnings

    def pod(self, identity: str) -> PlannedPod:
        """By `namespace/name` (or a bare name in the default namespace)."""
        wanted = identity if "/" in identity else f"default/{identity}"
        for planned in self.pods:
            if planned.pod.identity == wanted:
                return planned
        raise KeyError(identity)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan_pods(file: str | os.PathLike[str], *, propagation: str = DEFAULT_PROPAGATION,
              pod_annotations: Sequence[str] | None = None, allow_host_path: bool = False,
              image_annotations: Callable[[str], Mapping[str, str] | None] = lambda image: None) -> PodPlan:
    """Parse FILE and propagate each pod's annotations; image_annotations looks up an image's manifest annotations
    (None for an image that is not there: play says so, the plan only lists what it can)."""
    mode, allowlist = check_propagation(propagation, pod_annotations)  # before reading: a bad flag fails first
    pods = load_pods(file, allow_host_path=allow_host_path)
    images: dict[str, Mapping[str, str]] = {}
    for pod in pods.pods:
        for c in pod.all_containers:
            if c.image not in images:
                images[c.image] = image_annotations(c.image) or {}
    planned = tuple(PlannedPod(p, propagate(p, propagation=mode, pod_annotations=allowlist,
                                            image_annotations=images), runtime_class_effect(p.runtime_class_name))
                    for p in pods.pods)
    rc_warning = runtime_class_warning(pods.pods)
    warnings = [*pods.warnings, *([rc_warning] if rc_warning else []),
                *(w for p in planned for w in p.annotations.warnings)]
    return PodPlan(source=pods.source, propagation=mode, pod_annotations=allowlist, pods=planned,
                   warnings=tuple(warnings))
