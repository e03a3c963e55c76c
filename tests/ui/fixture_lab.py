"""A Lab stand-in with fixed data, for the TUI's snapshots only: a snapshot needs fixed ids, names and times, which
real runs cannot give (every run has a fresh id and timing). It answers the Lab calls the screens make, with
values of the Lab's own types. The functional tests (test_tui.py, test_tui_lab.py) use the real runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmlab.runtime import ContainerInfo, ContainerStatus, ImageSummary, PodContainer, PodInfo, RunRecord

FROZEN = 1_790_000_000.0  # the snapshots' clock: every age is counted from here
ISO = "2026-09-20T10:00:00Z"


def image(n: int, names: list[str], variant: str, size: int) -> ImageSummary:
    os_, arch = ("wasi", "wasm") if variant else ("linux", "amd64")
    return ImageSummary(names[0] if names else None, names, f"sha256:{n:02d}" + "ab" * 31,
                        f"sha256:{n:02d}" + "cd" * 31, ISO, size, os_, arch, bool(variant), {}, {}, variant)


IMAGES = [
    image(1, ["localhost/mywasm-image:latest", "localhost/myrepo/mywasmimage:latest"], "compat", 11_345),
    image(2, ["localhost/wasmlab/hello:compat"], "compat", 11_300),
    image(3, ["localhost/wasmlab/hello:compat-smart"], "compat-smart", 11_300),
    image(4, ["localhost/wasmlab/hello:linux"], "", 11_280),
    image(5, ["localhost/wasmlab/busybox:latest"], "", 2_130_000),
]

CONTAINERS = [
    ContainerInfo("a1b2c3d4e5f6", "hello-wasmtime", "localhost/wasmlab/hello:compat", ["/hello.wasm"],
                  ContainerStatus.STOPPED, FROZEN - 120, "wasmtime", 0, 0),
    ContainerInfo("b2c3d4e5f6a1", "hello-wasmer", "localhost/wasmlab/hello:compat", ["/hello.wasm"],
                  ContainerStatus.STOPPED, FROZEN - 90, "wasmer", 0, 0),
    ContainerInfo("c3d4e5f6a1b2", "trap", "localhost/wasmlab/trap:compat", ["/trap.wasm"],
                  ContainerStatus.STOPPED, FROZEN - 60, "wasmtime", 134, 0),
    ContainerInfo("d4e5f6a1b2c3", "web", "localhost/wasmlab/busybox:latest", ["/bin/httpd", "-f"],
                  ContainerStatus.RUNNING, FROZEN - 30, "native", None, 4242),
    ContainerInfo("f6a1b2c3d4e5", "default_mixed-compat-smart_app", "localhost/wasmlab/hello:compat",
                  ["/hello.wasm"], ContainerStatus.RUNNING, FROZEN - 45, "wasmtime", None, 5001,
                  pod="default/mixed-compat-smart"),
]

POD = PodInfo("mixed-compat-smart", "default", "0f1e2d3c4b5a", "Running", FROZEN - 45,
              "assets/pods/mixed-compat-smart.yaml", "crio", "/wasmlab/pod-0f1e2d3c4b5a", 5000, [
                  PodContainer("POD", "e5f6a1b2c3d4", "mixed-compat-smart-infra", "wasmlab/pause", "sandbox",
                               "running", None, 5000, "native"),
                  PodContainer("app", "f6a1b2c3d4e5", "mixed-compat-smart-app", "wasmlab/hello:compat", "container",
                               "running", None, 5001, "wasmtime"),
                  PodContainer("sidecar", "a1a2a3a4a5a6", "mixed-compat-smart-sidecar", "wasmlab/busybox:latest",
                               "container", "running", None, 5002, "native"),
              ], "Never")

KINDS = ("net", "ipc", "uts", "pid", "mnt", "cgroup", "user")


def ns_row(pod: str, name: str, role: str, pid: int, shared: dict[str, str]) -> Any:
    from wasmlab.runtime.pods.inspect import ContainerNamespaces, NamespaceEntry

    entries = [NamespaceEntry(k, 4026531000 + i + (0 if shared.get(k, "private") != "private" else pid),
                              shared.get(k, "private")) for i, k in enumerate(KINDS)]
    return ContainerNamespaces(pod, name, role, pid, "running", f"/wasmlab/{name}", entries)


POD_SHARES = {"net": "sandbox", "ipc": "sandbox", "uts": "sandbox", "cgroup": "host", "user": "host"}
NAMESPACES = [
    ns_row("default/mixed-compat-smart", "POD", "sandbox", 5000, {"cgroup": "host", "user": "host"}),
    ns_row("default/mixed-compat-smart", "app", "container", 5001, POD_SHARES),
    ns_row("default/mixed-compat-smart", "sidecar", "container", 5002, POD_SHARES),
]
WEB_NS = [ns_row("", "web", "container", 4242, {"cgroup": "host", "user": "host"})]


def history() -> list[RunRecord]:
    rows = []
    figures = {"wasmtime": [11.8, 10.9, 11.2, 10.7, 11.0], "wasmer": [31.0, 29.5, 30.2, 29.9],
               "native": [35.1, 34.0, 34.6]}
    seq = 0
    for handler, values in figures.items():
        for i, ms in enumerate(values):
            seq += 1
            rows.append(RunRecord(f"{seq:012x}", handler, 0, FROZEN - 600 + seq * 10, f"run-{handler}-{i}",
                                  "localhost/wasmlab/hello:compat" if handler != "native"
                                  else "localhost/wasmlab/hello:linux", None, False, ms, ms * 4,
                                  {"wasmtime": 9_000, "wasmer": 24_000, "native": 1_200}[handler] + i * 100, "warm",
                                  seq=seq, start_ms=ms * 1.1, first_byte_ms=ms * 1.2, exit_ms=ms * 3,
                                  cgroup_peak_bytes={"wasmtime": 7, "wasmer": 21, "native": 1}[handler] * 2**20
                                  + i * 2**16, guest_bytes=(i + 1) * 2**12))
    return sorted(rows, key=lambda r: r.seq, reverse=True)


class FixtureLab:
    """The Lab calls the TUI's screens make, answered from the fixed data above."""

    home = Path("/var/lib/wasmlab-fixture")

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        return lambda: None

    def close(self) -> None:
        pass

    def images(self, *, all: bool = False) -> list[ImageSummary]:
        return list(IMAGES)

    def ps(self, *, all: bool = False) -> list[ContainerInfo]:
        return [c for c in CONTAINERS if all or c.status == ContainerStatus.RUNNING]

    def pods(self) -> list[PodInfo]:
        return [POD]

    def pod_inspect(self, name: str, *, namespace: str | None = None) -> PodInfo:
        return POD

    def inspect_ns(self, target: str | None = None, *, namespace: str | None = None) -> list[Any]:
        return list(NAMESPACES) if target is None else list(WEB_NS)

    def history(self, last: int = 20, *, handler: str | None = None, since_seq: int = 0) -> list[RunRecord]:
        return history()[:last]
