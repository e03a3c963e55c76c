"""The bloated image the seed argues against: Debian, python3 and wasmtime starting the module; built once, cached."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import SetupError

SUITE = "bookworm"
RECIPE = 1  # bump when the recipe below changes: the cache key changes with it
# The module's runner inside the image: what a "Linux image with a Wasm runtime" runs as its entrypoint.
RUNNER = """import sys
import wasmtime

engine = wasmtime.Engine()
store = wasmtime.Store(engine)
wasi = wasmtime.WasiConfig()
wasi.argv = sys.argv[1:]
wasi.inherit_stdin()
wasi.inherit_stdout()
wasi.inherit_stderr()
store.set_wasi(wasi)
linker = wasmtime.Linker(engine)
linker.define_wasi()
module = wasmtime.Module.from_file(engine, sys.argv[1])
instance = linker.instantiate(store, module)
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap as exc:
    sys.exit(exc.code)
"""


def cache_dir() -> Path:
    """Outside the lab home (a reset must not throw 60 s of work away): $WASMLAB_CACHE, else
    /var/cache/wasmlab as root, else $XDG_CACHE_HOME/wasmlab."""
    if os.environ.get("WASMLAB_CACHE"):
        return Path(os.environ["WASMLAB_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/wasmlab")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wasmlab"


def mirror() -> str:
    """The Debian archive this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if parts[:1] == ["URIs:"] and len(parts) > 1 and "security" not in parts[1]:
                return parts[1]
            if parts[:1] == ["deb"] and len(parts) > 2 and "security" not in line:
                return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


def _wasmtime_package() -> tuple[Path, str]:
    from importlib.metadata import version

    import wasmtime

    return Path(wasmtime.__file__).parent, version("wasmtime")


def key() -> str:
    """What the cached root depends on: the suite, the archive, the wasmtime wheel and the recipe."""
    _, ver = _wasmtime_package()
    return hashlib.sha256(f"{SUITE} {mirror()} wasmtime=={ver} recipe={RECIPE}".encode()).hexdigest()[:16]


def cached_root() -> Path | None:
    root = cache_dir() / "bloated" / key() / "rootfs"
    return root if (root / "usr" / "local" / "bin" / "run-wasm.py").is_file() else None


def ensure_root(progress: Any = lambda s: None) -> tuple[Path, dict[str, Any]]:
    """The cached root, built first where it is missing (debootstrap minbase + python3, then the wasmtime
    package of this lab's own environment copied in; about a minute). Built aside and renamed into place, so
    an interrupted build leaves no half root that looks done."""
    found = cached_root()
    info_file = cache_dir() / "bloated" / key() / "build.txt"
    if found is not None:
        return found, {"cached": True, "build_s": _read_float(info_file)}
    debootstrap = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap")
                                                  else None)
    if debootstrap is None:
        raise SetupError("the bloated image needs debootstrap", "apt-get install debootstrap (or ./scripts/setup.sh)")
    if os.geteuid() != 0:
        raise SetupError("building the bloated image needs root (debootstrap)", "run `wasmlab bench` as root")
    final = cache_dir() / "bloated" / key()
    tmp = final.with_name(final.name + f".building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t = time.monotonic()
    try:
        progress(f"bloated image: debootstrap --variant=minbase --include=python3 {SUITE} (about a minute, once)")
        proc = subprocess.run([debootstrap, "--variant=minbase", "--include=python3", SUITE, str(tmp / "rootfs"),
                               mirror()], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise SetupError(f"debootstrap failed: {lines[-1] if lines else proc.returncode}",
                             f"check that this machine reaches {mirror()}")
        root = tmp / "rootfs"
        package, _ = _wasmtime_package()
        pyver = sorted((root / "usr" / "lib").glob("python3.*"))
        if not pyver:
            raise SetupError("debootstrap made a root without python3", "delete the cache and try again")
        shutil.copytree(package, root / "usr" / "lib" / "python3" / "dist-packages" / "wasmtime",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (root / "usr" / "local" / "bin" / "run-wasm.py").write_text(RUNNER)
        # What an image does not carry: device nodes (the runtime makes /dev), apt's downloaded archives.
        for sub in ("dev", "var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / sub).glob("*"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        build_s = time.monotonic() - t
        (tmp / "build.txt").write_text(f"{build_s:.1f}\n")
        if final.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # another bench built it meanwhile
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / "rootfs", {"cached": False, "build_s": build_s}


def _read_float(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


CONTAINERFILE = """FROM scratch
COPY rootfs/ /
COPY hello.wasm /hello.wasm
CMD ["/usr/bin/python3", "/usr/local/bin/run-wasm.py", "/hello.wasm"]
"""


def compressed_size(blob: Path, cache: Path | None = None) -> int:
    """The gzip size (level 6, as podman pushes) of one layer blob; kept beside the cached root by digest."""
    import zlib

    if cache is not None:
        try:
            return int((cache / f"{blob.name}.gz-size").read_text())
        except (OSError, ValueError):
            pass
    with open(blob, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            return blob.stat().st_size  # stored compressed already
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    total = 0
    with open(blob, "rb") as fh:
        while chunk := fh.read(1 << 20):
            total += len(comp.compress(chunk))
    total += len(comp.flush())
    if cache is not None:
        try:
            (cache / f"{blob.name}.gz-size").write_text(str(total))
        except OSError:
            pass
    return total


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
        details = lab.image_inspect(name)
        gz = sum(compressed_size(images.store.blob_path(layer.digest), context if kind == "bloated" else None)
                 for layer in details.layers)
        out["images"][kind] = {"name": name, "disk_bytes": details.summary.size, "compressed_bytes": gz}
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
