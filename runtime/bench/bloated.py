"""The bench's bloated-image scenario: the cached bloated image beside the compat image of the same module."""

from __future__ import annotations

import os
import time
from typing import Any

# The root and its cache live with the images (the service imports the lab's copy from there too).
from wasmlab.runtime.images.bloated import cache_dir, cached_root, ensure_root, key, mirror

__all__ = ["CONTAINERFILE", "cache_dir", "cached_root", "ensure_root", "key", "measure", "mirror"]

CONTAINERFILE = """FROM scratch
COPY rootfs/ /
COPY hello.wasm /hello.wasm
CMD ["/usr/bin/python3", "/usr/local/bin/run-wasm.py", "/hello.wasm"]
"""


def measure(ctx: Any) -> dict[str, Any]:
    """The bloated image beside the compat image of the same module (hello.wasm), both run by `Lab.run`:
    size on disk and compressed, start-up and the peak memory of each run's cgroup, interleaved."""
    import random
    import statistics

    from wasmlab.runtime.bench.engines import ASSETS, MemoryParent
    from wasmlab.runtime.bench.scenarios import MIB, summary
    from wasmlab.runtime.images.service import Images
    from wasmlab.runtime.linux import cgroups

    if cached_root() is None and not ctx.build_bloated:
        return {"skipped": f"not built yet (about a minute, once, cached in {cache_dir()}): "
                           "run `wasmlab bench` without --quick, or with --scenario bloated"}
    root, build = ensure_root(ctx.tick)
    context = root.parent
    (context / "hello.wasm").write_bytes((ASSETS / "wasm" / "hello.wasm").read_bytes())
    lab = ctx.lab
    ctx.tick("bloated image: imported into the bench's lab")
    (ctx.work / "Containerfile.bloated").write_text(CONTAINERFILE)
    lab.build(context, ctx.work / "Containerfile.bloated", tag="bench/hello:bloated")
    compat_ctx = ctx.work / "compat-context"
    compat_ctx.mkdir(exist_ok=True)
    (compat_ctx / "hello.wasm").write_bytes((ASSETS / "wasm" / "hello.wasm").read_bytes())
    (ctx.work / "Containerfile.compat").write_text('FROM scratch\nCOPY hello.wasm /hello.wasm\nCMD ["/hello.wasm"]\n')
    lab.build(compat_ctx, ctx.work / "Containerfile.compat", tag="bench/hello:compat",
              annotations={"module.wasm.image/variant": "compat"})
    images = Images(lab.home)
    kinds = {"compat": "bench/hello:compat", "bloated": "bench/hello:bloated"}
    out: dict[str, Any] = {"title": "hello.wasm as a compat image, and in a Debian image carrying python3 + "
                                    "wasmtime that runs it itself", "build": build, "images": {}}
    for kind, name in kinds.items():
        # The sizes `wasmlab images` and the history show (runtime/images/sizes.py): one definition of each.
        disk, gz = images.sizes(name, gzip_cache=context if kind == "bloated" else None)
        out["images"][kind] = {"name": name, "disk_bytes": disk, "compressed_bytes": gz}
    null = os.open(os.devnull, os.O_RDWR)
    before = os.environ.get(cgroups.PARENT_ENV)
    ms: dict[str, list[float]] = {k: [] for k in kinds}
    peaks: dict[str, list[float]] = {k: [] for k in kinds}
    parents = {k: MemoryParent(f"{ctx.cgroup_base}/image-{k}") for k in kinds}
    order = random.Random(2026)
    names = list(kinds)
    try:
        for r in range(ctx.n + 1):
            ctx.tick(f"bloated against compat: round {r} of {ctx.n} (0: warm-up)")
            order.shuffle(names)
            for kind in names:
                os.environ[cgroups.PARENT_ENV] = parents[kind].rel
                parents[kind].reset()
                t = time.perf_counter_ns()
                res = lab.run(kinds[kind], rm=True, stdio=(null, null, null))
                took = (time.perf_counter_ns() - t) / 1e6
                if res.exit_code != 0:
                    from wasmlab.runtime.errors import BenchFailed

                    raise BenchFailed(f"bench: the {kind} image's hello exited {res.exit_code}",
                                      f"run it alone: wasmlab run {kinds[kind]}; or delete {cache_dir()}/bloated")
                if r:
                    ms[kind].append(took)
                    peaks[kind].append(parents[kind].peak() / MIB)
        lab.settle()
    finally:
        os.close(null)
        if before is None:
            os.environ.pop(cgroups.PARENT_ENV, None)
        else:
            os.environ[cgroups.PARENT_ENV] = before
    for kind in kinds:
        out["images"][kind]["ms"] = summary(ms[kind])
        out["images"][kind]["peak_mib"] = summary(peaks[kind])
    c, b = out["images"]["compat"], out["images"]["bloated"]
    out["ratios_bloated_vs_compat"] = {
        "disk": b["disk_bytes"] / max(1, c["disk_bytes"]),
        "compressed": b["compressed_bytes"] / max(1, c["compressed_bytes"]),
        "ms": statistics.median(ms["bloated"]) / statistics.median(ms["compat"]),
        "peak": (statistics.median(peaks["bloated"]) / statistics.median(peaks["compat"])
                 if statistics.median(peaks["compat"]) else None)}
    return out
