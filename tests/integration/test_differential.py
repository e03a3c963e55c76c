"""Differential test: a WASI preview1 program run as a container behaves as when run directly on the same engine.

The issue's promise: for any WASI preview1 program, running it as a container (``Runtime.run`` on a bundle
whose rootfs holds the module) gives the same stdout and exit status as running it directly on the same
engine with the container's root preopened as ``/``. hypothesis draws the programs from a small grammar of
WASI calls (tests/integration/wasi_programs.py): fd_write to stdout and stderr, args_sizes_get/args_get,
environ_sizes_get/environ_get, clock_res_get/clock_time_get on clocks 0..3, random_get, path_open + fd_read
of existing, missing and oddly spelled paths (``..``, ``/x``, ``a//b``, ``x/``), path_open with O_CREAT
(truncate, append, exclusive) + fd_write + fd_seek + read back, path_open(O_DIRECTORY) + fd_readdir,
path_create_directory, path_remove_directory, path_unlink_file, path_rename, path_filestat_get,
fd_prestat_get/fd_prestat_dir_name, and proc_exit. Each program prints only what is deterministic:
errnos, contents, sorted listings, file types and regular files' sizes; never clock values, random bytes,
inode numbers, times or a directory's st_size. The process args and env and the contents of the starting
file tree are drawn too. Each engine gets the hand-written examples below and then EXAMPLES_PER_ENGINE (40;
the environment variable WASMLAB_DIFF_EXAMPLES changes it) drawn programs; derandomize=True, so every run
draws the same ones.

Both sides start from fresh, identical copies of the same tree (plus an empty ``proc`` folder, the
container's /proc mount point). After the run, besides stdout and the exit status, the files the two
programs leave behind are compared as well (the container's rootfs against the direct side's copy).

The direct side runs in a worker subprocess (``python -m tests.integration.wasi_programs ENGINE``), one fork
per program, so that no engine state enters the pytest process:

* wasmtime: the wasmtime package as any embedder uses it: a default ``Engine``, ``Linker.define_wasi``,
  ``WasiConfig`` with ``argv = process.args``, ``env = process.env`` and ``preopen_dir(copy, "/")``; the
  exit status is the one ``wasmtime run`` gives: proc_exit's code, 134 after a trap, 1 after any other
  error, such as proc_exit with a code from 126 up, which wasmtime refuses.
* wasmer: wasmer-sdk has no host-directory preopens, so "directly with the root preopened" means the
  wasmer handler's own mapping (``WasmerHandler.run`` on a ``Workload`` whose one preopen is the copy, as
  ``/``), run outside any container. Every operation of the grammar is covered on wasmer too; what the
  comparison checks there is that the container (namespaces, pivot_root, the /proc mount, the runtime's
  preopen list and cache folder) changes nothing the guest can see, not the SDK's own semantics, which
  differ from wasmtime's (for instance writes outside /workspace do not persist, argv[0] is a basename).
  environ_get's entries are printed sorted (the SDK passes the environment in no particular order); on
  wasmtime they are printed in order as well as sorted.

proc_exit codes are drawn from 0..255 on both engines; test_proc_exit_outside_wasi_range pins 126..255.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.conftest import ROOT, minimal_config, need_root, write_bundle
from tests.integration import wasi_programs as wp
from tests.integration.wasi_programs import (
    Args,
    Clock,
    Environ,
    Mkdir,
    Preopens,
    Program,
    Random,
    ReadDir,
    ReadFile,
    Rename,
    Rmdir,
    Stat,
    Unlink,
    Write,
    WriteFile,
)

pytestmark = pytest.mark.root
EXAMPLES_PER_ENGINE = int(os.environ.get("WASMLAB_DIFF_EXAMPLES", "40"))  # more for a longer hunt


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


class DirectRunner:
    """The worker subprocess that runs modules directly on one engine (see wasi_programs.serve)."""

    def __init__(self, engine: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.wasi_programs", engine],
                                     cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, wasm: Path, root: Path, args: list[str], env: list[str], out: Path) -> tuple[int, bytes, bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"wasm": str(wasm), "root": str(root), "args": args, "env": env,
               "stdout": str(out / "stdout"), "stderr": str(out / "stderr"), "error": str(out / "error")}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the direct runner died (status {self.proc.poll()})"
        reply = json.loads(line)
        assert reply["error"] is None, f"the direct runner failed:\n{reply['error']}"
        return int(reply["exit_code"]), (out / "stdout").read_bytes(), (out / "stderr").read_bytes()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def direct() -> Iterator[dict[str, DirectRunner]]:
    runners: dict[str, DirectRunner] = {}   # started on first use, one per engine
    yield runners
    for runner in runners.values():
        runner.close()


_ids = itertools.count()


def run_both(engine: str, program: Program, runtime: Any, runners: dict[str, DirectRunner],
             work: Path) -> int:
    """Run program as a container and directly, assert they agree, and return the (common) exit status."""
    if engine not in runners:
        runners[engine] = DirectRunner(engine)
    wasm = wp.compile_program(program)
    n = next(_ids)
    case = work / f"case{n}"
    try:
        # the container
        bundle = case / "bundle"
        wp.make_tree(str(bundle / "rootfs"), program, wasm)
        annotations = {"module.wasm.image/variant": "compat"}
        if engine != "wasmtime":
            annotations["run.oci.handler"] = engine
        cfg = minimal_config(program.argv(), annotations=annotations)
        cfg["process"]["env"] = program.environ()
        write_bundle(bundle, cfg)
        res = runtime.run(f"diff-{engine}-{n}", str(bundle), timeout=60)
        assert res.decision["handler"] == engine, res.decision
        # directly
        copy = case / "direct"
        wp.make_tree(str(copy), program, wasm)
        (case / "out").mkdir()
        code, stdout, stderr = runners[engine].run(copy / wp.MODULE_NAME, copy, program.argv(), program.environ(),
                                                   case / "out")
        where = (f"\n--- program ({engine}) ---\n{wp.describe(program)}\n--- container stderr ---\n"
                 f"{res.stderr.decode(errors='replace')}\n--- direct stderr ---\n{stderr.decode(errors='replace')}")
        assert res.stdout == stdout, f"stdout differs{where}"
        assert res.exit_code == code, f"exit status differs: container {res.exit_code}, direct {code}{where}"
        assert wp.snapshot_tree(str(bundle / "rootfs")) == wp.snapshot_tree(str(copy)), \
            f"the files left behind differ{where}"
        return code
    finally:
        shutil.rmtree(case, ignore_errors=True)


# Hand-written regressions: they run first, before the drawn programs.
EVERYTHING = Program(
    ops=(Write(b"hi\n"), Args(), Environ(sort=True), Clock(0), Clock(1), Clock(2), Clock(3), Random(0), Random(32),
         ReadFile("hello.txt"), ReadFile("nope.txt"), WriteFile("new.txt", b"abc"),
         WriteFile("hello.txt", b"XY", "append"), ReadDir("."), ReadDir("data"), Mkdir("newdir"), Mkdir("newdir"),
         Stat("newdir"), Rmdir("newdir"), Unlink("new.txt"), Rename("data/a.txt", "data/z.txt"),
         Stat("hello.txt"), Preopens(), Write(b"to stderr\n", 2)),
    exit_code=7, args=("a b", "\u00fc", ""), env=(("B", "2"), ("A", "1=x")))
ESCAPES = Program(ops=(ReadFile("../hello.txt"), ReadFile("/hello.txt"), Stat("data/sub/../../hello.txt"),
                       ReadFile("data//a.txt"), ReadFile("hello.txt/"), ReadDir("../"), Mkdir("../up"),
                       Rename("hello.txt", "../moved")))
TREE_CHANGES = Program(ops=(Mkdir("tmp/newdir"), WriteFile("tmp/newdir/x", b"1"),
                            WriteFile("tmp/newdir/x", b"2", "excl"), ReadDir("tmp/newdir"),
                            Rename("tmp/newdir", "newdir"), ReadDir("newdir"), Rmdir("newdir"), Unlink("newdir/x"),
                            Rmdir("newdir"), Rmdir("data/empty"), Unlink("data/b.txt"), ReadDir("data")),
                       files=(b"", b"\x00\xff\n", b"b" * 64, b"c"))
EXIT_MIDWAY = Program(ops=(Write(b"no newline"),), exit_code=255, args=("--flag=\u2603", "\t"), env=())
EMPTY = Program(ops=(), env=(("PATH", "/bin"), ("TERM", "xterm")))
ENV_IN_ORDER = Program(ops=(Environ(sort=False), Args()), env=(("Z", "1"), ("A", ""), ("M", "=")))
EXAMPLES = (EVERYTHING, ESCAPES, TREE_CHANGES, EXIT_MIDWAY, EMPTY)


def _property(engine: str, environ_in_order: bool, examples: tuple[Program, ...]) -> Any:
    @settings(max_examples=EXAMPLES_PER_ENGINE, deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(program=wp.programs(environ_in_order=environ_in_order))
    def check(program: Program, runtime: Any, direct: dict[str, DirectRunner], tmp_path: Path) -> None:
        run_both(engine, program, runtime, direct, tmp_path)

    for program in reversed(examples):
        check = example(program=program)(check)
    check.__doc__ = f"Drawn programs on {engine}: the container's stdout, status and files are the direct run's."
    return check


# wasmer-sdk passes the environment in no particular order, so its programs print it sorted.
test_wasmtime_container_matches_direct_run = _property("wasmtime", True, (*EXAMPLES, ENV_IN_ORDER))
test_wasmer_container_matches_direct_run = _property("wasmer", False, EXAMPLES)


@pytest.mark.parametrize("code", [125, 126, 200, 255])
@pytest.mark.parametrize("engine", ["wasmtime", "wasmer"])
def test_proc_exit_outside_wasi_range(engine: str, code: int, runtime: Any, direct: dict[str, DirectRunner],
                                      tmp_path: Path) -> None:
    """proc_exit from 126 up: wasmtime refuses it and exits 1 as `wasmtime run` does; wasmer passes it through."""
    status = run_both(engine, Program(ops=(Write(b"exiting\n"),), exit_code=code), runtime, direct, tmp_path)
    assert status == (1 if engine == "wasmtime" and code >= 126 else code)
