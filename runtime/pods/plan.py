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


@dataclass(frozen=True)
class PlannedPod:
    pod: Pod
    annotations: PodAnnotations


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
                                            image_annotations=images)) for p in pods.pods)
    warnings = [*pods.warnings, *(w for p in planned for w in p.annotations.warnings)]
    return PodPlan(source=pods.source, propagation=mode, pod_annotations=allowlist, pods=planned,
                   warnings=tuple(warnings))
