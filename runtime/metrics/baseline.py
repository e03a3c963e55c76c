"""Each engine's hello baseline: the cgroup peak of hello, measured once per engine version and kept in the home."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmlab.runtime.errors import WasmlabError
from wasmlab.runtime.handlers.detect import ENGINE_ANNOTATION
from wasmlab.runtime.recording import BASELINE_ANNOTATION
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import write_json_atomic

if TYPE_CHECKING:
    from wasmlab.runtime.lifecycle import Runtime

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "built"
ENGINES = ("wasmtime", "wasmer", "native")
SAMPLES = 3


def engine_version(engine: str) -> str:
    """What the baseline depends on: the engine's package version (and the kernel's, which charges the pages)."""
    from importlib import metadata

    from wasmlab.runtime import __version__

    package = {"wasmtime": "wasmtime", "wasmer": "wasmer-sdk"}.get(engine)
    try:
        version = metadata.version(package) if package else "native"
    except metadata.PackageNotFoundError:
        version = "absent"
    return f"{engine} {version}; wasmlab {__version__}; kernel {os.uname().release}"


class Baselines:
    """``<home>/metrics/baselines.json``: per engine, its version and the cgroup peak of hello (median of 3 runs).

    A baseline is measured the first time a run of that engine needs it, and again when the engine's version
    (or wasmlab's, or the kernel's) changes. Its runs carry BASELINE_ANNOTATION, so they are not history."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.path = self.home / "metrics" / "baselines.json"
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def known(self, engine: str) -> int | None:
        """The kept baseline in bytes, if it was measured for this engine's version."""
        entry = self._load().get(engine) or {}
        if entry.get("version") == engine_version(engine) and isinstance(entry.get("peak_bytes"), int):
            return int(entry["peak_bytes"])
        return None

    def get(self, engine: str, runtime: Runtime) -> int | None:
        """The baseline, measured now (through RUNTIME) when none is kept for this version; None if it cannot be."""
        if engine not in ENGINES:
            return None
        with self._lock:
            kept = self.known(engine)
            if kept is not None:
                return kept
            peak = measure(engine, runtime, self.home / "cache" / "baseline")
            if peak is None:
                return None
            data = self._load()
            data[engine] = {"version": engine_version(engine), "peak_bytes": peak}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, data, sync=False)
            return peak


def hello_bundle(engine: str, folder: Path) -> Path:
    """A fresh bundle under FOLDER whose rootfs holds the assets' hello for ENGINE (the Linux build for native);
    its config.json is written per run (see measure)."""
    folder.mkdir(parents=True, exist_ok=True)
    bundle = Path(tempfile.mkdtemp(prefix=f"{engine}-", dir=folder))
    (bundle / "rootfs").mkdir()
    if engine == "native":
        shutil.copy2(ASSETS / "linux" / "hello", bundle / "rootfs" / "hello")
    else:
        shutil.copy2(ASSETS / "wasm" / "hello.wasm", bundle / "rootfs" / "hello.wasm")
    return bundle


def _config(engine: str, cid: str) -> dict[str, Any]:
    """hello's config.json, in a cgroup of its own (as the Lab gives each container), marked as a baseline run."""
    from wasmlab.runtime.linux import cgroups
    from wasmlab.runtime.spec.runtime import default_config

    annotations = {BASELINE_ANNOTATION: "1"}
    if engine != "native":
        annotations |= {media.WASM_VARIANT: media.WASM_VARIANT_COMPAT, ENGINE_ANNOTATION: engine}
    config = default_config(["/hello" if engine == "native" else "/hello.wasm"])
    config["process"]["terminal"] = False
    config["annotations"] = annotations
    config.setdefault("linux", {})["cgroupsPath"] = cgroups.normalize_path("", cid)
    return config


def measure(engine: str, runtime: Runtime, folder: Path) -> int | None:
    """The median cgroup peak of SAMPLES hello runs on ENGINE; None where there is no cgroup (not root)."""
    from wasmlab.runtime.metrics.stream import read_cgroup

    if os.geteuid() != 0:
        return None
    bundle = hello_bundle(engine, folder)
    peaks: list[int] = []
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(SAMPLES):
            cid = f"baseline-{engine}-{secrets.token_hex(4)}"
            config = _config(engine, cid)
            (bundle / "config.json").write_text(json.dumps(config))
            try:
                runtime.run(cid, str(bundle), keep=True, stdio=(null, null, null))
                peak = read_cgroup(config["linux"]["cgroupsPath"]).peak
            except WasmlabError:
                peak = None
            finally:
                try:
                    runtime.delete(cid, force=True)
                except WasmlabError:
                    pass
            if peak:
                peaks.append(peak)
    finally:
        os.close(null)
        shutil.rmtree(bundle, ignore_errors=True)
    return int(statistics.median(peaks)) if peaks else None
