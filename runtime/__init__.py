"""wasmlab.runtime: an embedded OCI runtime with Wasm handlers, and its public API (the Lab service and its types)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasmlab.runtime.errors import WasmlabError

__all__ = [
    "ContainerCreated", "ContainerDetails", "ContainerExited", "ContainerInfo", "ContainerStarted",
    "ContainerStatus", "ImageBuilt", "ImageDetails", "ImageRemoved", "ImageSummary", "Lab", "LabEvent", "LabRun",
    "MetricSample", "MetricsStream", "MetricsTick", "PlayResult", "PodContainer", "PodInfo",
    "Progress", "RemoveResult", "RunOptions", "RunRecord", "RunRecorded", "RunResult", "Runtime", "WasmlabError",
    "__version__",
    "absolute_home_env",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from wasmlab.runtime.events import (
        ContainerCreated,
        ContainerExited,
        ContainerStarted,
        ImageBuilt,
        ImageRemoved,
        LabEvent,
        RunRecorded,
    )
    from wasmlab.runtime.images.service import ImageDetails, ImageSummary, RemoveResult
    from wasmlab.runtime.lifecycle import RunResult, Runtime
    from wasmlab.runtime.metrics.stream import MetricSample, MetricsStream, MetricsTick
    from wasmlab.runtime.options import RunOptions
    from wasmlab.runtime.pods.play import PlayResult, PodContainer, PodInfo
    from wasmlab.runtime.progress import Progress
    from wasmlab.runtime.service import ContainerDetails, ContainerInfo, Lab, LabRun
    from wasmlab.runtime.status import ContainerStatus
    from wasmlab.runtime.store.history import RunRecord
    from wasmlab.runtime.store.home import absolute_home_env

# Where each public name lives; imported on first use, so `wasmlab-oci --version` and light imports stay fast.
_HOMES = {
    "Runtime": "lifecycle", "RunResult": "lifecycle",
    "Lab": "service", "LabRun": "service", "ContainerInfo": "service", "ContainerDetails": "service",
    "ContainerStatus": "status", "Progress": "progress", "RunOptions": "options",
    "ImageSummary": "images.service", "ImageDetails": "images.service", "RemoveResult": "images.service",
    "RunRecord": "store.history", "absolute_home_env": "store.home",
    "MetricSample": "metrics.stream", "MetricsTick": "metrics.stream", "MetricsStream": "metrics.stream",
    "PlayResult": "pods.play", "PodInfo": "pods.play", "PodContainer": "pods.play",
    **{name: "events" for name in ("LabEvent", "ContainerCreated", "ContainerStarted", "ContainerExited",
                                   "RunRecorded", "ImageBuilt", "ImageRemoved")},
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"wasmlab.runtime.{home}"), name)
