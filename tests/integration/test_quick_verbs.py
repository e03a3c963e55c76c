"""Every quick `wasmlab` verb as quick as `run` (issue 16, quickverbs): each verb's import budget (cold, and as the
warm helper's thin client), the same output and exit code through the helper as cold, and a helper that keeps
its spare zygote for `run` while it serves the other verbs."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_root
from tests.integration.test_warm_cli import PYTHON, WARM, served, start, status, stop, wl

pytestmark = pytest.mark.root

# What a process imports by the time it exits (sys.modules), not `-X importtime`: importtime does not see modules
# imported through importlib.import_module, which is how the lazy names of wasmlab.runtime (Lab, ...) and the
# verb groups are imported.
MODULES = ("import atexit, sys\n"
           "out, argv = sys.argv[1], sys.argv[2:]\n"
           "atexit.register(lambda: open(out, 'w').write('\\n'.join(sorted(sys.modules))))\n"
           "from wasmlab.lab.cli import main\n"
           "sys.exit(main(argv))\n")

# Never on these verbs' paths: the UI and plotting libraries, the engines, YAML, archives and the network.
HEAVY = ("rich", "yaml", "wasmtime", "matplotlib", "textual", "ipywidgets", "wasmer_sdk", "tarfile", "http", "ssl",
         "email", "zipfile", "urllib.request", "numpy")

START = {"wasmlab", "wasmlab.lab", "wasmlab.lab.cli", "wasmlab.runtime", "wasmlab.runtime.errors"}
CLIENT = START | {"wasmlab.lab.cli.warm", "wasmlab.runtime.store", "wasmlab.runtime.store.home"}
CLI = CLIENT | {"wasmlab.lab.cli.common", "wasmlab.lab.present"}
LAB = {f"wasmlab.runtime.{m}" for m in (
    "service", "events", "handlers", "handlers.base", "handlers.detect", "linux", "linux.cgroups", "options",
    "progress", "status", "store.atomic", "store.creator", "store.ctrlog", "store.migrate", "store.names")}
RUNTIME = {f"wasmlab.runtime.{m}" for m in (
    "lifecycle", "hooks", "linux.pidfd", "recording", "store.history", "store.state", "zygote", "zygote.client",
    "zygote.protocol")}
IMAGES = {f"wasmlab.runtime.{m}" for m in (
    "images", "images.service", "images.sizes", "store.layout", "store.media", "store.reference", "store.usage",
    "store.work")}
PODS = IMAGES | {f"wasmlab.runtime.{m}" for m in (
    "pods", "pods.keeper", "pods.plan", "pods.play", "pods.propagation", "pods.sandbox", "spec", "spec.pod",
    "linux.nspin", "linux.syscalls", "linux.loopback")}  # loopback: split from nspin on main (9caf411)
CONTAINERS = CLI | LAB | {"wasmlab.lab.cli.containers"}
GROUPS = {f"wasmlab.lab.cli.{g}" for g in ("bench", "containers", "images", "lifecycle", "pod", "pods", "system")}

# Each verb's wasmlab modules: one more (the build machinery for `images`, another verb group, the service for
# --help) fails the budget.
BUDGET: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "ps": (("ps",), CONTAINERS | RUNTIME),
    "ps -a": (("ps", "-a"), CONTAINERS | RUNTIME),
    "images": (("images",), CLI | LAB | IMAGES | {"wasmlab.lab.cli.images"}),
    "logs": (("logs", "c1"), CONTAINERS),
    "inspect": (("inspect", "c1"), CONTAINERS | RUNTIME),
    "rm": (("rm", "gone"), CONTAINERS | RUNTIME),
    "stop": (("stop", "c1"), CONTAINERS | RUNTIME),
    "--version": (("--version",), START),
    "--help": (("--help",), CLI | GROUPS | {"wasmlab.runtime.options", "wasmlab.runtime.progress",
                                            "wasmlab.runtime.bench_catalog"}),
    "pod ps": (("pod", "ps"), CLI | LAB | PODS | {"wasmlab.lab.cli.pod"}),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    h = tmp_path_factory.mktemp("quick") / "home"
    assert wl(h, "samples", "-q", "--no-busybox").returncode == 0
    r = wl(h, "run", "--name", "c1", "wasmlab/hello:compat")
    assert r.returncode == 0 and r.stdout == "hello world from wasmlab !!!!\n", r.stderr
    yield h
    if status(h) is not None:
        print("stopping the warm helper of the test home before the leak checks")
        stop(h)
    assert wl(h, "rm", "-f", "c1").returncode == 0  # its cgroup goes with it


def modules_of(home: Path, tmp_path: Path, args: tuple[str, ...],
               warm: str = "0") -> tuple[set[str], subprocess.CompletedProcess[str]]:
    out = tmp_path / "modules.txt"
    env = {**{k: v for k, v in os.environ.items() if k != "WASMLAB_WARM"}, "WASMLAB_HOME": str(home),
           "WASMLAB_WARM": warm}
    r = subprocess.run([PYTHON, "-c", MODULES, str(out), *args], env=env, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    return set(out.read_text().split("\n")), r


def heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if n in HEAVY or n.split(".")[0] in HEAVY)


@pytest.mark.parametrize("verb", list(BUDGET))
def test_import_budget_of_the_quick_verbs(home: Path, tmp_path: Path, verb: str) -> None:
    args, allowed = BUDGET[verb]
    if verb == "rm":
        assert wl(home, "create", "--name", "gone", "wasmlab/hello:compat").returncode == 0
    assert status(home) is None  # cold: the command runs in this process
    names, r = modules_of(home, tmp_path, args)
    assert r.returncode == 0, r.stderr
    assert not heavy(names), heavy(names)
    extra = sorted(n for n in names if n.startswith("wasmlab") and n not in allowed)
    assert not extra, f"`wasmlab {verb}` imports more than its budget: {extra}"
    if verb == "--version":
        assert "argparse" not in names


# `run` too: its own budget test reads `-X importtime`, which cannot see the lazily imported service.
THIN = {**{v: args for v, (args, _) in BUDGET.items() if v != "--version"},
        "run": ("run", "--rm", "wasmlab/hello:compat")}


@pytest.mark.parametrize("verb", list(THIN))
def test_through_the_helper_the_client_stays_thin(home: Path, tmp_path: Path, verb: str) -> None:
    args = THIN[verb]
    if verb == "rm":
        assert wl(home, "create", "--name", "gone", "wasmlab/hello:compat").returncode == 0
    start(home)
    try:
        names, r = modules_of(home, tmp_path, args, warm=WARM["WASMLAB_WARM"])  # WASMLAB_WARM=0 uses no helper
        assert r.returncode == 0 and served(home) == 1, r.stderr
    finally:
        stop(home)
    assert not heavy(names) and "argparse" not in names, sorted(names)
    extra = sorted(n for n in names if n.startswith("wasmlab") and n not in CLIENT)
    assert not extra, f"the client of `wasmlab {verb}` imports {extra}"


AGE = re.compile(r"\b\d+ (second|minute|hour|day)s? ago *")  # the clock's, not the path's: masked


def same_but_age(text: str) -> str:
    return AGE.sub("<age> ", text)


CASES: list[tuple[str, ...]] = [
    ("ps",), ("ps", "-a"), ("ps", "-a", "--json"), ("ps", "-aq"), ("ps", "-a", "--format", "{{.ID}} {{.Names}}"),
    ("ps", "--pod", "-a"), ("ps", "--no-such-flag"), ("ps", "-h"),
    ("images",), ("images", "-q"), ("images", "--json"), ("images", "-a"),
    ("logs", "c1"), ("logs", "--tail", "1", "-t", "c1"), ("logs", "nosuch"),
    ("inspect", "c1"), ("inspect", "wasmlab/hello:compat"), ("inspect", "nosuch"), ("--debug", "inspect", "nosuch"),
    ("rm", "q1"), ("rm", "nosuch"), ("rm", "-f", "nosuch"),
    ("stop", "c1"), ("stop", "nosuch"),
    ("pod", "ps"), ("pod", "ps", "--json"), ("pod",), ("pod", "inspect", "nosuch"),
    ("--help",), ("-h",), ("--debug", "ps"),
]


def test_the_quick_verbs_through_the_helper_equal_the_cold_path(home: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()

    def all_runs() -> list[tuple[int, str, str]]:
        out = []
        for args in CASES:
            if args == ("rm", "q1"):
                assert wl(home, "create", "--name", "q1", "wasmlab/hello:compat").returncode == 0
            r = wl(home, *args, cwd=cwd, extra={"COLUMNS": "101", **WARM})  # a helper is used where one is up
            out.append((r.returncode, r.stdout, r.stderr))
        return out

    assert status(home) is None
    cold = all_runs()
    assert cold[0][0] == 0 and cold[6][0] not in (0, 1) and cold[15][0] == 0 and json.loads(cold[15][1])
    assert "Traceback" in cold[18][2] and cold[19] == (0, "q1\n", "")
    start(home)
    try:
        before = served(home)
        warm = all_runs()
        assert served(home) - before == len(CASES)  # every one went through the helper
    finally:
        stop(home)
    for args, c, w in zip(CASES, cold, warm, strict=True):
        assert (c[0], same_but_age(c[1]), c[2]) == (w[0], same_but_age(w[1]), w[2]), f"{args}: cold {c!r} != warm {w!r}"
        if not AGE.search(c[1]):
            assert c == w, args


def children(pid: int) -> set[int]:
    """PID's zygotes: its children that run wasmlab.runtime.zygote. A command's own forked child, which answers
    its caller before it has exited, is not one (it may still be there when the caller has its answer)."""
    out = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"wasmlab.runtime.zygote" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.add(int(child))
        except OSError:
            continue  # gone meanwhile: a command's child
    return out


def test_the_helper_keeps_its_spare_zygote_for_run_while_it_serves_the_other_verbs(home: Path) -> None:
    pid = start(home)
    try:
        spare = children(pid)
        assert len(spare) == 1, spare  # its spare zygote, ready for the next run
        for args in (("ps", "-a"), ("images", "-q"), ("logs", "c1"), ("pod", "ps")):
            r = wl(home, *args, extra=WARM)
            assert r.returncode == 0, r.stderr
            assert children(pid) == spare, args  # the same zygote: none was dropped, none started
        r = wl(home, "run", "--rm", "wasmlab/hello:compat", extra=WARM)
        assert r.returncode == 0 and r.stdout == "hello world from wasmlab !!!!\n", r.stderr
        assert served(home) == 5
    finally:
        stop(home)
