"""A pod's sandbox: the infra container (pause) holding the pod's namespaces, and how each container joins them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import ImageError, SetupError
from wasmlab.runtime.images.service import Images
from wasmlab.runtime.linux import cgroups

ASSETS = Path(__file__).resolve().parents[2] / "assets"
PAUSE_IMAGE = "wasmlab/pause:1"
PAUSE_CONTAINERFILE = ASSETS / "pause" / "Containerfile"
# What the infra container holds for the whole pod (pid too with shareProcessNamespace), as under the CRI.
SHARED = ("network", "ipc", "uts")
SANDBOX_TYPE = {"io.kubernetes.cri.container-type": "sandbox"}
PINS = "ns"  # the pod folder's subfolder holding its pinned namespaces (runtime/linux/nspin.py)
INFRA_NAME = "POD"  # the kubelet's name for it (k8s_POD_...): no Kubernetes container name is upper case


def ensure_pause_image(images: Images) -> str:
    """wasmlab/pause:1, built once from assets/pause (FROM scratch, the static pause) where it is missing."""
    try:
        images.inspect(PAUSE_IMAGE)
        return PAUSE_IMAGE
    except ImageError:
        pass
    if not (ASSETS / "built" / "linux" / "pause").is_file():
        raise SetupError("the pod infra program assets/built/linux/pause is missing",
                         "rebuild the assets: scripts/build-assets.sh")
    images.build(ASSETS / "built", PAUSE_CONTAINERFILE, tag=PAUSE_IMAGE)
    return PAUSE_IMAGE


def container_name(namespace: str, pod: str, container: str) -> str:
    """The lab container's name: `namespace_pod_container` (Kubernetes names hold no '_', so it is unambiguous)."""
    return f"{namespace}_{pod}_{container}"


def pod_cgroup(pod_id: str) -> str:
    """The pod's cgroup parent (relative to each hierarchy): $WASMLAB_CGROUP_PARENT/pod-<id>."""
    return f"{cgroups.default_parent()}/pod-{pod_id}"


@dataclass(frozen=True)
class PodSlot:
    """Where one container goes in its pod: the pod, its cgroup parent, and the namespaces to join by path (none
    for the infra container, which makes them). Applied to the container's config.json before it is created."""

    pod: str                                   # namespace/name
    cgroup_parent: str                         # relative cgroup path of the pod
    join: dict[str, str] = field(default_factory=dict)   # namespace type -> /proc/<infra pid>/ns/<type>
    hostname: str | None = None                # the infra container sets the pod's (the UTS namespace's) name
    drop_annotations: frozenset[str] = frozenset()  # image annotations a CRI never passes on

    def apply(self, config: dict[str, Any], cid: str) -> None:
        linux = config.setdefault("linux", {})
        linux["cgroupsPath"] = f"{self.cgroup_parent}/{cid}"
        spaces = [ns for ns in linux.get("namespaces") or [] if ns.get("type") not in self.join]
        spaces += [{"type": kind, "path": path} for kind, path in self.join.items()]
        linux["namespaces"] = spaces
        if "uts" in self.join:
            config.pop("hostname", None)  # the pod's UTS namespace has its name: the infra container set it
        elif self.hostname is not None:
            config["hostname"] = self.hostname
        notes = config.get("annotations") or {}
        for key in self.drop_annotations:
            notes.pop(key, None)


def joined(infra_pid: int, share_pid: bool) -> dict[str, str]:
    """The namespace paths a container of the pod joins (pid only with shareProcessNamespace)."""
    kinds = (*SHARED, "pid") if share_pid else SHARED
    return {kind: f"/proc/{infra_pid}/ns/{'net' if kind == 'network' else kind}" for kind in kinds}


def loopback_up(infra_pid: int) -> None:
    """`ip link set lo up` in the pod's network namespace: 127.0.0.1 works between its containers."""
    from wasmlab.runtime.linux.portforward import loopback_up as up

    try:
        netns = os.open(f"/proc/{infra_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SetupError(f"cannot open the pod's network namespace: {exc.strerror}",
                         "the infra container ended early: see `wasmlab pod logs`") from None
    hostns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        up(netns, hostns)
    except OSError as exc:
        raise SetupError(f"cannot bring the pod's loopback up: {exc.strerror}", "run as root") from None
    finally:
        os.close(netns)
        os.close(hostns)


def remove_cgroup(rel: str) -> None:
    """Remove the pod's cgroup parent once its containers' cgroups are gone (each hierarchy)."""
    cgroups.open_existing(rel).remove()
