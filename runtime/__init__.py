"""wasmlab.runtime: an embedded OCI runtime with Wasm handlers, and its public API (the Lab service and its types)."""

from __future__ import annotations

from wasmlab.runtime.errors import WasmlabError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `wasmlab --version` and the warm client

__all__ = [
    "BenchOptions", "Change", "bench_markdown", "bench_table", "compare_bench", "compare_bench_table", "load_bench",
    "run_bench", "BENCH_SCENARIOS", "bench_scenario_help", "choose_bench_scenarios",
    "ContainerCreated", "ContainerDetails", "ContainerExited", "ContainerInfo", "ContainerStarted",
    "ContainerStatus", "ImageBuilt", "ImageDetails", "ImageRemoved", "ImageSummary", "Lab", "LabEvent", "LabRun",
    "MetricSample", "MetricsStream", "MetricsTick", "PlayResult", "PodContainer", "PodInfo",
    "Progress", "RemoveResult", "RunOptions", "RunRecord", "RunRecorded", "RunResult", "Runtime", "WasmlabError",
    "__version__",
    "absolute_home_env", "drop_spare_zygotes", "lab_home", "open_home", "prestart_zygote", "runtime_root",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from wasmlab.runtime.bench import (
        BenchOptions,
        Change,
        bench_markdown,
        bench_table,
        compare_bench,
        compare_bench_table,
        load_bench,
        run_bench,
    )
    from wasmlab.runtime.bench_catalog import BENCH_SCENARIOS, bench_scenario_help, choose_bench_scenarios
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
    from wasmlab.runtime.store.home import absolute_home_env, lab_home, runtime_root
    from wasmlab.runtime.store.migrate import open_home
    from wasmlab.runtime.zygote.client import drop_spare_zygotes, prestart_zygote

# Where each public name lives; imported on first use, so `wasmlab-oci --version` and light imports stay fast.
_HOMES = {
    "Runtime": "lifecycle", "RunResult": "lifecycle",
    "Lab": "service", "LabRun": "service", "ContainerInfo": "service", "ContainerDetails": "service",
    "ContainerStatus": "status", "Progress": "progress", "RunOptions": "options",
    "ImageSummary": "images.service", "ImageDetails": "images.service", "RemoveResult": "images.service",
    "RunRecord": "store.history", "absolute_home_env": "store.home",
    **{name: "bench" for name in ("BenchOptions", "Change", "bench_markdown", "bench_table", "compare_bench",
                                  "compare_bench_table", "load_bench", "run_bench")},
    # The bench's one list of scenarios: light, for the parser's --help.
    **{name: "bench_catalog" for name in ("BENCH_SCENARIOS", "bench_scenario_help", "choose_bench_scenarios")},
    "MetricSample": "metrics.stream", "MetricsTick": "metrics.stream", "MetricsStream": "metrics.stream",
    # The command line's quick start (issue 16): where a home's runtime folder is, and a zygote started early.
    "lab_home": "store.home", "runtime_root": "store.home", "open_home": "store.migrate",
    "prestart_zygote": "zygote.client", "drop_spare_zygotes": "zygote.client",
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
