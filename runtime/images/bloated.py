"""The bloated image the seed argues against (Debian, python3 and wasmtime starting the module): its root, built
once and cached outside the lab home, and the lab's own copy of it, imported from that cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import SetupError, WasmlabError

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




# -- the lab's copy ------------------------------------------------------------------------------------------------
LAB_IMAGE = "localhost/wasmlab/bloated:latest"
LABEL = "wasmlab.bloated"  # the stamp of what the lab's copy was made from: the cache key and the modules
MODULES = Path(__file__).resolve().parents[2] / "assets" / "built" / "wasm"
# Every sample module rides along, so the face-off runs the same program in it as on the other contenders: its
# arguments are the module (/wasm/PROGRAM.wasm) and the module's own arguments.
LAB_CONTAINERFILE = """FROM scratch
COPY rootfs/ /
COPY wasm/ /wasm/
ENTRYPOINT ["/usr/bin/python3", "/usr/local/bin/run-wasm.py"]
CMD ["/wasm/hello.wasm"]
"""


def stamp(modules: Path = MODULES) -> str:
    """The cache key, the Containerfile and the modules: the lab's copy is current when its label says this."""
    digest = hashlib.sha256(f"{key()}\n{LAB_CONTAINERFILE}".encode())
    for path in sorted(modules.glob("*.wasm")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def archive_path(root: Path, mark: str) -> Path:
    """The lab's copy saved once as an OCI archive beside the root: loading it (about 1 s) is quicker than
    building the layer again from the root (3 to 5 s)."""
    return root.parent / f"lab-image-{mark}.oci.tar"


def lab_context(root: Path, modules: Path = MODULES) -> tuple[Path, Path]:
    """The build context beside the cached root (rootfs/ and wasm/) and its Containerfile."""
    folder = root.parent
    wasm = folder / "wasm"
    wasm.mkdir(exist_ok=True)
    for old in wasm.glob("*.wasm"):
        if not (modules / old.name).is_file():
            old.unlink()
    for path in sorted(modules.glob("*.wasm")):
        data = path.read_bytes()
        target = wasm / path.name
        if not target.is_file() or target.read_bytes() != data:
            tmp = target.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    containerfile = folder / "Containerfile.lab"
    if not containerfile.is_file() or containerfile.read_text() != LAB_CONTAINERFILE:
        tmp = containerfile.with_name(f".Containerfile.lab.{os.getpid()}")
        tmp.write_text(LAB_CONTAINERFILE)
        os.replace(tmp, containerfile)
    return folder, containerfile


def keep_archive(root: Path, mark: str, save: Any) -> None:
    """SAVE(path) writes the lab's copy as an archive; written aside and renamed into place, the older ones
    dropped. Best effort: a cache that cannot be written only costs the next lab a build."""
    final = archive_path(root, mark)
    tmp = final.with_name(f".{final.name}.{os.getpid()}")
    try:
        save(tmp)
        os.replace(tmp, final)
        for old in root.parent.glob("lab-image-*.oci.tar"):
            if old != final:
                old.unlink(missing_ok=True)
    except (OSError, WasmlabError):
        pass
    finally:
        tmp.unlink(missing_ok=True)
