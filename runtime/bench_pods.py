"""The pod benchmarks of `make bench`: a mixed pod against one Linux container, a Wasm container joining a pod's
namespaces against a standalone one (Runtime level), 50 pods kept running, and what kube down leaves."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

MIXED_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{module.wasm.image/variant: compat-smart}}
spec:
  restartPolicy: Never
  containers:
  - {{name: app, image: wasmlab/loop:compat}}
  - {{name: sidecar, image: wasmlab/busybox:latest, command: [/bin/sleep, "3600"]}}
"""
SLEEPER = ["/bin/sleep", "3600"]


def _summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"median_ms": statistics.median(s), "p10_ms": s[len(s) // 10], "p90_ms": s[(len(s) * 9) // 10],
            "min_ms": s[0], "max_ms": s[-1], "n": len(s)}


def _range(summary: dict[str, float]) -> str:
    """min-max of a summary ("" for figures from before min and max were kept)."""
    return f"{summary['min_ms']:.1f}-{summary['max_ms']:.1f} ms" if "min_ms" in summary else ""


def _ms(fn: Callable[[], object]) -> float:
    t = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1e6


def leftovers(home: Path, cgroup_parent: str) -> dict[str, list[str]]:
    """What the lab left on the host: processes run from this home's state, mounts under it, pod cgroups under
    the parent (every hierarchy), network namespaces held by none of this host's ordinary processes but ours."""
    from wasmlab.runtime.store.home import runtime_root

    roots = (str(home), str(runtime_root(home)))
    procs, netns = [], set()
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().decode("utf-8", "replace")
            cgroup = Path(f"/proc/{name}/cgroup").read_text()
        except OSError:
            continue
        if f"/{cgroup_parent}/pod-" in cgroup:
            procs.append(f"{name} {cmd.replace(chr(0), ' ').strip()}")
            try:
                netns.add(os.readlink(f"/proc/{name}/ns/net"))
            except OSError:
                pass
        elif any(r in cmd for r in roots) and "wasmlab.runtime.zygote" not in cmd:
            procs.append(f"{name} {cmd.replace(chr(0), ' ').strip()}")
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if any(line.split()[4].startswith(r + "/") for r in roots)]
    cgroups = []
    for top in Path("/sys/fs/cgroup").iterdir():
        parent = top / cgroup_parent
        if parent.is_dir():
            cgroups += [str(p) for p in parent.glob("pod-*")]
    return {"processes": procs, "mounts": mounts, "cgroups": cgroups, "net_namespaces": sorted(netns)}


def pod_figures(n: int, progress: Callable[[str], None] = lambda s: None,
                cgroup_parent: str | None = None) -> dict[str, Any]:
    """The pod figures, from one run: medians of N interleaved rounds, and the 50-pod sequence. Given a
    CGROUP_PARENT, the pods' cgroups go under it, so what is left after kube down is counted among this run's
    cgroups alone, never another lab's pods under the shared parent."""
    from wasmlab.runtime import Lab
    from wasmlab.runtime.linux import cgroups

    work = Path(tempfile.mkdtemp(prefix="wasmlab-bench-pods-"))
    home = work / "home"
    out: dict[str, Any] = {"n": n}
    parent_before = os.environ.get(cgroups.PARENT_ENV)
    if cgroup_parent is not None:
        os.environ[cgroups.PARENT_ENV] = cgroup_parent  # read by this Lab's zygotes, which start below
    try:
        with Lab(home) as lab:
            progress("pods: samples")
            lab.samples()
            files = []
            for i in range(max(n, 1) + 3):
                f = work / f"mixed-{i}.yaml"
                f.write_text(MIXED_POD.format(name=f"mixed-{i}"))
                files.append(f)
            # A mixed pod, played until every container runs, against one detached Linux container.
            pod_ms, single_ms = [], []
            progress("pods: mixed pod against one Linux container")
            for i, f in enumerate(files):
                t_pod = _ms(partial(lab.kube_play, f))
                t0 = time.perf_counter_ns()
                one = lab.run("wasmlab/busybox:latest", SLEEPER, detach=True)
                t_one = (time.perf_counter_ns() - t0) / 1e6
                lab.kube_down(f)
                lab.rm(one.id, force=True)
                if i >= 3:  # the first rounds warm the zygotes, the pause image and the caches
                    pod_ms.append(t_pod)
                    single_ms.append(t_one)
            out["mixed_pod"] = _summary(pod_ms)
            out["single_linux"] = _summary(single_ms)
            out["mixed_ratio"] = out["mixed_pod"]["median_ms"] / out["single_linux"]["median_ms"]
            progress("pods: joining a pod's namespaces against standalone (Runtime level)")
            out.update(join_figures(lab, work, max(3 * n, 60)))  # a ~1 ms difference: more rounds
            progress("pods: 50 pods of 3 containers, kept running")
            out.update(fifty_pods(lab, work, 50))
            out["left_after_down"] = leftovers(home, cgroups.default_parent())
    finally:
        with Lab(home) as lab:
            lab.reset()
        shutil.rmtree(work, ignore_errors=True)
        if cgroup_parent is not None:
            if parent_before is None:
                os.environ.pop(cgroups.PARENT_ENV, None)
            else:
                os.environ[cgroups.PARENT_ENV] = parent_before
    return out


def join_figures(lab: Any, work: Path, n: int) -> dict[str, Any]:
    """Runtime.run of the hello module, standalone (its own network, IPC, UTS namespaces) against joining a
    running pod's (no network namespace to make), interleaved, same run."""
    from wasmlab.runtime.pods.sandbox import joined

    pod_file = work / "host-pod.yaml"
    pod_file.write_text(textwrap.dedent(MIXED_POD.format(name="host-pod")))
    [pod] = lab.kube_play(pod_file).pods
    rt = lab._runtime  # the Runtime the lab uses: the same zygote, as `wasmlab-oci` would
    bundles = {}
    for kind in ("standalone", "joined"):
        bundle = work / f"bundle-{kind}"
        lab._images.prepare("wasmlab/hello:compat", bundle)
        config = json.loads((bundle / "config.json").read_text())
        spaces = [ns for ns in config["linux"]["namespaces"] if ns["type"] not in ("network", "ipc", "uts")]
        if kind == "joined":
            spaces += [{"type": k, "path": p} for k, p in joined(pod.infra_pid, False).items()]
            config.pop("hostname", None)
        else:
            spaces += [{"type": k} for k in ("network", "ipc", "uts")]
        config["linux"]["namespaces"] = spaces
        config.setdefault("annotations", {})["module.wasm.image/variant"] = "compat"
        (bundle / "config.json").write_text(json.dumps(config))
        bundles[kind] = bundle
    null = os.open(os.devnull, os.O_RDWR)
    samples: dict[str, list[float]] = {k: [] for k in bundles}
    try:
        for i in range(n + 3):
            for kind, bundle in bundles.items():
                cid = f"bench-{kind}-{i}"
                t = _ms(partial(rt.run, cid, str(bundle), stdio=(null, null, null)))
                if i >= 3:
                    samples[kind].append(t)
    finally:
        os.close(null)
        lab.kube_down(pod_file)
    out: dict[str, Any] = {f"wasm_{k}": _summary(v) for k, v in samples.items()}
    out["join_ratio"] = out["wasm_joined"]["median_ms"] / out["wasm_standalone"]["median_ms"]
    return out


def fifty_pods(lab: Any, work: Path, count: int) -> dict[str, Any]:
    """COUNT pods of 3 containers (sandbox, Wasm app, Linux sidecar) played one after the other and kept running;
    the last against the median of pods 2-6; then all of them down."""
    times = []
    files = []
    for i in range(count):
        f = work / f"many-{i}.yaml"
        f.write_text(MIXED_POD.format(name=f"many-{i}"))
        files.append(f)
        times.append(_ms(partial(lab.kube_play, f)))
    base = statistics.median(times[1:6])
    tail = statistics.median(times[-5:])  # the last five: a trend one noisy sample cannot fake
    t = time.perf_counter_ns()
    for f in files:
        lab.kube_down(f)
    down_ms = (time.perf_counter_ns() - t) / 1e6
    return {"fifty": {"count": count, "times_ms": times, "median_2_6_ms": base, "last_ms": times[-1],
                      "last_ratio": times[-1] / base, "median_46_50_ms": tail, "tail_ratio": tail / base,
                      "down_all_ms": down_ms}}


def pod_markdown(res: dict[str, Any]) -> str:
    """The pod figures as a markdown section for docs/bench.md."""
    m, s, f = res["mixed_pod"], res["single_linux"], res["fifty"]
    left = res["left_after_down"]
    lines = [
        "## Pods",
        "",
        f"Medians of {res['mixed_pod']['n']} interleaved rounds.",
        "",
        "| What | Median | min-max | Target |",
        "|---|---|---|---|",
        f"| Mixed pod played (sandbox, Wasm app, Linux sidecar) | {m['median_ms']:.1f} ms | "
        f"{m['min_ms']:.1f}-{m['max_ms']:.1f} ms | |",
        f"| One Linux container (`Lab.run -d`) | {s['median_ms']:.1f} ms | {s['min_ms']:.1f}-{s['max_ms']:.1f} ms "
        "| |",
        f"| Mixed pod / one container | **{res['mixed_ratio']:.2f}x** | | <= 3x |",
        f"| Wasm hello, `Runtime.run`, standalone | {res['wasm_standalone']['median_ms']:.1f} ms | "
        f"{_range(res['wasm_standalone'])} | |",
        f"| Wasm hello, `Runtime.run`, joining a pod | {res['wasm_joined']['median_ms']:.1f} ms | "
        f"{_range(res['wasm_joined'])} | |",
        f"| Joining / standalone ({res['wasm_joined']['n']} interleaved rounds) "
        f"| **{res['join_ratio']:.2f}x** | | < 1x |",
        f"| 50th pod of 50 kept running / median of pods 2-6 | **{f['last_ratio']:.2f}x** "
        f"({f['last_ms']:.1f} / {f['median_2_6_ms']:.1f} ms) | | <= 1.5x |",
        f"| Median of pods 46-50 / median of pods 2-6 | {f['tail_ratio']:.2f}x "
        f"({f['median_46_50_ms']:.1f} / {f['median_2_6_ms']:.1f} ms) | | |",
        f"| kube down of the 50 pods | {f['down_all_ms']:.0f} ms | | |",
        "",
        "Left after kube down: " + (", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in left.items())
                                    if any(left.values()) else "no process, mount, cgroup or network namespace."),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    figures = pod_figures(int(sys.argv[1]) if len(sys.argv) > 1 else 10, progress=lambda s: print(s, file=sys.stderr))
    figures["fifty"]["times_ms"] = [round(t, 1) for t in figures["fifty"]["times_ms"]]
    print(json.dumps(figures, indent=1))
    print(pod_markdown(figures))
