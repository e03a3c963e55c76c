"""The command line's wall time against podman's (issue 16): `wasmlab run --rm`, cold and through the warm
helper, beside `podman --runtime runc run --rm` (Linux image) and `podman --runtime wasmlab-oci` (Wasm image), and
`wasmlab ps` / `wasmlab images` beside `podman ps` / `podman images`, all interleaved, medians. `cli_figures(n)`
gives the numbers; `markdown(figures)` a table for docs/.

    python -m wasmlab.runtime.bench.cli [N]
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LINUX_IMAGE = "localhost/wasmlab/busybox:latest"
WASM_IMAGE = "localhost/wasmlab/hello:compat"
PODMAN_FLAGS = ["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
VERBS = ("ps", "images")  # measured beside podman's own, cold and warm


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)
    took = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        from wasmlab.runtime.errors import BenchFailed

        last = (r.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise BenchFailed(f"`{' '.join(cmd[:3])} ...` failed ({r.returncode}): {last}",
                          "run the same command by hand to see why")
    return took


def _served(wasmlab: str, env: dict[str, str]) -> int:
    """How many commands the warm helper of ENV's home has served."""
    r = subprocess.run([wasmlab, "system", "status", "--json"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    try:
        return int((json.loads(r.stdout).get("warm_helper") or {}).get("served") or 0)
    except (ValueError, AttributeError):
        return 0


def _count(cmd: list[str], env: dict[str, str]) -> int:
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    return len(r.stdout.split())


def _compile_bytecode(env: dict[str, str]) -> None:
    """The lab's modules compiled once, as an install does: with PYTHONDONTWRITEBYTECODE set (and no bytecode yet)
    every command would compile its modules again, which is not what a user's wasmlab pays."""
    import importlib.util

    specs = [importlib.util.find_spec(name) for name in ("wasmlab.runtime", "wasmlab.lab")]  # located, not imported
    folders = [os.path.dirname(os.path.abspath(s.origin)) for s in specs if s is not None and s.origin]
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", *folders], env=env, timeout=300, check=False,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cli_figures(n: int = 8) -> dict[str, Any]:
    """Medians (ms) of n interleaved rounds of each command, and the ratios the issue asks for."""
    wasmlab = _bin("wasmlab")
    base = Path(tempfile.mkdtemp(prefix="clib-", dir="/tmp"))  # podman wants short runroot paths
    home = base / "home"
    env = {k: v for k, v in os.environ.items() if k != "WASMLAB_WARM"}
    env["WASMLAB_HOME"] = str(home)
    env["WASMLAB_WARM"] = "0"  # the cold runs must not start a helper of their own
    # The warm runs use a home of their own, whose helper stays up (the cold home has none): both interleave.
    # WASMLAB_WARM=0 would keep them off the helper too: theirs names its idle time.
    warm_env = {**env, "WASMLAB_HOME": str(base / "warm-home"), "WASMLAB_WARM": "120"}
    podman = ["podman", "--root", str(base / "root"), "--runroot", str(base / "rr"), "--tmpdir", str(base / "tmp"),
              *PODMAN_FLAGS]
    try:
        _compile_bytecode(env)
        for e in (env, warm_env):
            subprocess.run([wasmlab, "samples", "-q"], env=e, check=True, timeout=600, stdin=subprocess.DEVNULL)
        subprocess.run([wasmlab, "system", "service", "--idle", "120"], env=warm_env, check=True, timeout=60,
                       stdout=subprocess.DEVNULL)
        for image, tar in ((LINUX_IMAGE, "bb.tar"), (WASM_IMAGE, "hello.tar")):
            subprocess.run([wasmlab, "save", "-o", str(base / tar), image], env=env, check=True, timeout=120)
            subprocess.run([*podman, "load", "-q", "-i", str(base / tar)], check=True, timeout=300,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        commands = {
            "podman_runc_linux": [*podman, "--runtime", "runc", "run", "--rm", *ULIMITS, LINUX_IMAGE, "true"],
            "podman_wasmlab_oci_wasm": [*podman, "--runtime", _bin("wasmlab-oci"), "run", "--rm", *ULIMITS,
                                        WASM_IMAGE],
            "cold_linux": [wasmlab, "run", "--rm", LINUX_IMAGE, "true"],
            "cold_wasm": [wasmlab, "run", "--rm", WASM_IMAGE],
            "warm_linux": [wasmlab, "run", "--rm", LINUX_IMAGE, "true"],
            "warm_wasm": [wasmlab, "run", "--rm", WASM_IMAGE],
            # The other verbs (issue 16, quickverbs): a listing of each home's images and of its (no) containers.
            "podman_ps": [*podman, "ps"],
            "cold_ps": [wasmlab, "ps"],
            "warm_ps": [wasmlab, "ps"],
            "podman_images": [*podman, "images"],
            "cold_images": [wasmlab, "images"],
            "warm_images": [wasmlab, "images"],
        }
        listed = {"wasmlab": _count([wasmlab, "images", "-q"], env), "podman": _count([*podman, "images", "-q"], env)}
        times: dict[str, list[float]] = {k: [] for k in commands}
        for round_ in range(n + 1):  # round 0 is not measured: page cache, first unpack of each image
            for key, cmd in commands.items():
                took = _wall(cmd, warm_env if key.startswith("warm") else env)
                if round_:
                    times[key].append(took)
        served = _served(wasmlab, warm_env)
        warm_runs = (n + 1) * sum(1 for k in commands if k.startswith("warm"))
        if served < warm_runs:
            from wasmlab.runtime.errors import BenchFailed

            raise BenchFailed(f"the warm helper served {served} of the {warm_runs} warm commands: the warm figures "
                              "would be cold ones", "check `wasmlab system status` and WASMLAB_WARM")
        med = {k: round(statistics.median(v), 1) for k, v in times.items()}
        return {
            "warm_served": served,
            "date": time.strftime("%Y-%m-%d %H:%M"), "kernel": platform.release(), "rounds": n,
            "median_ms": med, "min_ms": {k: round(min(v), 1) for k, v in times.items()},
            "max_ms": {k: round(max(v), 1) for k, v in times.items()},
            "ratio": {
                "cold_linux_vs_podman_runc": round(med["cold_linux"] / med["podman_runc_linux"], 2),
                "warm_linux_vs_podman_runc": round(med["warm_linux"] / med["podman_runc_linux"], 2),
                "cold_wasm_vs_podman_wasmlab_oci": round(med["cold_wasm"] / med["podman_wasmlab_oci_wasm"], 2),
                "warm_wasm_vs_podman_wasmlab_oci": round(med["warm_wasm"] / med["podman_wasmlab_oci_wasm"], 2),
                **{f"{way}_{verb}_vs_podman_{verb}": round(med[f"{way}_{verb}"] / med[f"podman_{verb}"], 2)
                   for verb in VERBS for way in ("cold", "warm")},
            },
            "target": 0.35,
            "images_listed": listed,
            "commands": {k: " ".join(v) for k, v in commands.items()},
        }
    finally:
        subprocess.run([wasmlab, "system", "stop"], env=warm_env, timeout=60, stdout=subprocess.DEVNULL)
        subprocess.run([*podman, "rmi", "-a", "-f"], timeout=300, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


def markdown(fig: dict[str, Any]) -> str:
    r = fig["ratio"]
    lo, hi = fig.get("min_ms", {}), fig.get("max_ms", {})
    m = {k: f"{v} ({lo[k]}-{hi[k]})" if k in lo and k in hi else str(v) for k, v in fig["median_ms"].items()}
    return "\n".join([
        f"`wasmlab run --rm` against podman ({fig['date']}, kernel {fig['kernel']}, medians of {fig['rounds']} "
        "interleaved rounds, ms, min-max in brackets):",
        "",
        "| image | podman | wasmlab cold | wasmlab warm | cold / podman | warm / podman |",
        "|---|---:|---:|---:|---:|---:|",
        f"| Linux (busybox `true`), podman --runtime runc | {m['podman_runc_linux']} | {m['cold_linux']} | "
        f"{m['warm_linux']} | {r['cold_linux_vs_podman_runc']}x | {r['warm_linux_vs_podman_runc']}x |",
        f"| Wasm (hello, compat), podman --runtime wasmlab-oci | {m['podman_wasmlab_oci_wasm']} | {m['cold_wasm']} | "
        f"{m['warm_wasm']} | {r['cold_wasm_vs_podman_wasmlab_oci']}x | {r['warm_wasm_vs_podman_wasmlab_oci']}x |",
        "",
        f"Target: at most {fig['target']}x.",
        *_verbs_markdown(fig, m),
    ])


def _verbs_markdown(fig: dict[str, Any], m: dict[str, str]) -> list[str]:
    """`wasmlab ps` and `wasmlab images` against podman's, when the run measured them (runs before quickverbs
    did not)."""
    r = fig["ratio"]
    if not all(f"cold_{verb}" in m for verb in VERBS):
        return []
    listed = fig.get("images_listed") or {}
    return ["", f"The other verbs, in the same rounds, with no container (`images` lists {listed.get('wasmlab', '?')} "
            f"images in wasmlab's home, the samples', and {listed.get('podman', '?')} in podman's store):", "",
            "| command | podman | wasmlab cold | wasmlab warm | cold / podman | warm / podman |",
            "|---|---:|---:|---:|---:|---:|",
            *(f"| `{verb}` | {m[f'podman_{verb}']} | {m[f'cold_{verb}']} | {m[f'warm_{verb}']} | "
              f"{r[f'cold_{verb}_vs_podman_{verb}']}x | {r[f'warm_{verb}_vs_podman_{verb}']}x |" for verb in VERBS)]


if __name__ == "__main__":
    figures = cli_figures(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
    import json

    print(json.dumps(figures, indent=2))
    print(markdown(figures))
