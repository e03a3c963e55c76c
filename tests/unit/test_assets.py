"""The sample workloads in assets/built: checksums, and the same behaviour as Wasm and as native code."""

from __future__ import annotations

import hashlib
import platform
import re
import resource
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime

ASSETS = Path(__file__).resolve().parents[2] / "assets"
BUILT = ASSETS / "built"
PROGRAMS = ["hello", "argsenv", "sys", "files", "cpu", "memgrow", "loop", "exitcode", "trap", "cwd"]
LINUX_ONLY = ["pause"]  # the pod's infra process
native_only_x86_64 = pytest.mark.skipif(
    platform.machine() != "x86_64" or platform.system() != "Linux",
    reason="the native builds are x86_64 Linux binaries",
)


@dataclass
class Outcome:
    code: int | None  # exit code; None when the program trapped / died by a signal
    stdout: str
    trap: str | None = None  # wasm: the trap code name; native: the signal name


_ENGINE = wasmtime.Engine()


def run_wasm(
    name: str, args: list[str], env: dict[str, str], root: Path, memory_limit: int | None = None
) -> Outcome:
    """Run assets/built/wasm/<name>.wasm in-process with WASI preview1, `root` preopened as "/"."""
    module = wasmtime.Module.from_file(_ENGINE, str(BUILT / "wasm" / f"{name}.wasm"))
    linker = wasmtime.Linker(_ENGINE)
    linker.define_wasi()
    store = wasmtime.Store(_ENGINE)
    if memory_limit is not None:
        store.set_limits(memory_size=memory_limit)
    config = wasmtime.WasiConfig()
    config.argv = [name, *args]
    config.env = list(env.items())
    config.preopen_dir(str(root), "/")
    out = root.parent / f"{root.name}.stdout"
    config.stdout_file = str(out)
    store.set_wasi(config)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    code: int | None = 0
    trap = None
    try:
        start(store)
    except wasmtime.ExitTrap as e:
        code = e.code
    except wasmtime.Trap as e:
        code, trap = None, e.trap_code.name if e.trap_code else str(e)
    return Outcome(code, out.read_text(), trap)


def run_native(name: str, args: list[str], env: dict[str, str], address_space: int | None = None) -> Outcome:
    """Run assets/built/linux/<name> with exactly this argv (argv[0] = name) and environment."""

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    p = subprocess.run(
        [name, *args],
        executable=BUILT / "linux" / name,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=limit if address_space is not None else None,
    )
    if p.returncode < 0:
        return Outcome(None, p.stdout, signal.Signals(-p.returncode).name)
    return Outcome(p.returncode, p.stdout)


def test_sha256sums_match_the_built_files() -> None:
    lines = (BUILT / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, rel = line.split(maxsplit=1)
        listed[rel] = digest
    expected = {f"wasm/{n}.wasm" for n in PROGRAMS} | {f"linux/{n}" for n in PROGRAMS + LINUX_ONLY}
    assert set(listed) == expected
    for rel, digest in listed.items():
        assert hashlib.sha256((BUILT / rel).read_bytes()).hexdigest() == digest, rel


def test_seed_image_holds_the_built_hello() -> None:
    seed = ASSETS / "containerfiles" / "seed"
    assert (seed / "Containerfile").read_text() == 'FROM scratch\nCOPY hello.wasm /\nCMD ["/hello.wasm"]\n'
    assert (seed / "hello.wasm").read_bytes() == (BUILT / "wasm" / "hello.wasm").read_bytes()


@pytest.mark.parametrize("name", PROGRAMS)
def test_containerfiles_copy_existing_files(name: str) -> None:
    for variant in ("compat", "compat-smart", "linux"):
        text = (ASSETS / "containerfiles" / name / f"Containerfile.{variant}").read_text()
        sources = re.findall(r"^COPY\s+(\S+)\s", text, re.MULTILINE)
        assert sources and all((BUILT / s).is_file() for s in sources), (variant, sources)


# name, args, env, a line the output must contain
CASES = [
    ("hello", [], {}, "hello world from wasmlab !!!!"),
    ("argsenv", ["one", "two words"], {"GREETING": "hi", "EMPTY": ""}, "argv[2]=two words"),
    ("sys", [], {}, "getentropy: 16 bytes, two draws differ"),
    ("cpu", ["20000"], {}, "primes below 20000: 2262"),
    ("memgrow", ["8"], {}, "reached 8 MiB (checksum 9216)"),
    ("loop", ["3", "10"], {}, "tick 3"),
    ("exitcode", [], {}, "exiting with 0"),
    ("exitcode", ["0"], {}, "exiting with 0"),
    ("exitcode", ["3"], {}, "exiting with 3"),
    ("exitcode", ["42"], {}, "exiting with 42"),
]


@native_only_x86_64
@pytest.mark.parametrize(
    ("name", "args", "env", "expect"), [pytest.param(*c, id="-".join([c[0], *c[1]])) for c in CASES]
)
def test_wasm_and_native_agree(
    name: str, args: list[str], env: dict[str, str], expect: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wasm = run_wasm(name, args, env, root)
    native = run_native(name, args, env)
    assert wasm == native
    assert expect in wasm.stdout.splitlines()
    want_code = int(args[0]) if name == "exitcode" and args else 0
    assert wasm.code == want_code


@native_only_x86_64
def test_files_agree_and_clean_up(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    host_dir = tmp_path / "native"
    wasm = run_wasm("files", [], {}, root)  # default DIR /tmp, created inside the preopened root
    native = run_native("files", [str(host_dir)], {})
    assert wasm == native
    assert wasm.code == 0
    assert "read greeting.txt: 30 bytes: hello from the files workload" in wasm.stdout
    assert "listing wasmlab-files: 2 entries" in wasm.stdout
    assert list((root / "tmp").iterdir()) == [] and list(host_dir.iterdir()) == []


@native_only_x86_64
def test_memgrow_fails_cleanly_under_a_memory_limit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wasm = run_wasm("memgrow", ["64"], {}, root, memory_limit=32 << 20)
    native = run_native("memgrow", ["64"], {}, address_space=32 << 20)
    for outcome in (wasm, native):
        assert outcome.code == 1
        assert outcome.stdout.splitlines()[-1].startswith("malloc failed after ")


@native_only_x86_64
def test_trap_traps_in_both(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wasm = run_wasm("trap", [], {}, root)
    native = run_native("trap", [], {})
    assert wasm == Outcome(None, "about to trap\n", "UNREACHABLE")
    assert native == Outcome(None, "about to trap\n", "SIGILL")
