"""wasmlab bench end to end: --quick writes JSON, PNG and SVG; anchors honest; --compare; the bloated image."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CGROUP_PARENT, ROOT, need, need_root, need_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]
WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
CHARTS = ("startup", "footprint", "scaling", "bloated")


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, "bench", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def bench_processes() -> list[int]:
    """Containers of this session's benches still alive (they live in a cgroup under the session's parent)."""
    left = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cgroup") as fh:
                if f"{CGROUP_PARENT}/bench-" in fh.read():
                    left.append(int(name))
        except OSError:
            continue
    return left


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """One `wasmlab bench --quick` for the module (about 20 s; the bloated image only where it is cached)."""
    need_root()
    need_tool("runc")
    out = tmp_path_factory.mktemp("bench") / "out"
    r = bench("--quick", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    text = bench("--quick", "--out", str(out), "--no-charts", "--scenario", "startup", "--engine", "crun")
    assert text.returncode == 0, text.stderr[-3000:]
    return json.loads(r.stdout), out, text.stdout


def test_quick_run_writes_parseable_json_and_png_and_svg_charts(quick: tuple[dict[str, Any], Path, str]) -> None:
    printed, out, _ = quick
    written = printed["results"]
    assert printed["json"] == str(out / "latest.json")
    on_disk = json.loads((out / "latest.json").read_text())
    # The second (crun-only) run of the fixture wrote latest.json after it: it is that run's, and parses too.
    assert on_disk["schema"] == written["schema"] == 1 and on_disk["quick"] is True
    for name in CHARTS:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert b"<svg" in (out / f"{name}.svg").read_bytes()[:2000], name
    assert sorted(str(p) for p in printed["charts"]) == sorted(str(out / f"{n}.{e}") for n in CHARTS
                                                                for e in ("png", "svg"))
    assert written["machine"]["kernel"] == os.uname().release and written["date"] and written["command"]
    assert bench_processes() == [], "bench containers were left running"


def test_every_engine_measured_and_a_refusing_anchor_reported_with_its_line(
        quick: tuple[dict[str, Any], Path, str]) -> None:
    res = quick[0]["results"]
    engines = res["engines"]
    assert list(engines) == ["wasmtime", "wasmer", "native", "runc", "crun"]
    for name in ("wasmtime", "wasmer", "native", "runc"):
        assert engines[name]["available"] is True, engines[name]
    crun = engines["crun"]
    assert crun["available"] is False
    if crun["path"] is None:
        assert "not installed" in crun["error"]
    need(crun["path"] is not None, "crun is not installed (scripts/setup.sh installs it)")
    # The real check on this hybrid-cgroup host: crun refuses, and says so in its own words.
    assert "hybrid" in crun["error"], crun
    assert "crun" not in res["scenarios"]["startup"]["results"], "an anchor that refused has no figures"
    # The text table says so as well, with the line.
    assert f"crun: not measured: {crun['error']}" in quick[2]
    assert "crun" not in quick[2].split("startup:")[1]


def test_the_scenarios_hold_medians_with_min_and_max_and_ratios_against_runc(
        quick: tuple[dict[str, Any], Path, str]) -> None:
    res = quick[0]["results"]
    sc = res["scenarios"]
    assert {"startup", "cpu", "footprint", "scaling", "pods", "bloated"} <= set(sc)
    assert "runtime" not in sc, "--quick leaves the runtime's own figures out"
    for key, program in (("startup", "hello"), ("cpu", "cpu"), ("footprint", "memgrow")):
        assert sc[key]["program"] == program
        for engine in ("wasmtime", "wasmer", "native", "runc"):
            for measure in ("ms", "peak_mib"):
                stat = sc[key]["results"][engine][measure]
                assert stat["n"] == 2 == len(stat["samples"])
                assert 0 < stat["min"] <= stat["median"] <= stat["max"]
        assert sc[key]["ratios_vs_runc"]["runc"]["ms"] == 1.0
        assert sc[key]["ratios_vs_runc"]["wasmtime"]["ms"] > 0
    # memgrow 16 MiB: every engine's cgroup peak holds the 16 MiB it grew (and not ten times that).
    for engine in ("wasmtime", "wasmer", "native", "runc"):
        assert 16 <= sc["footprint"]["results"][engine]["peak_mib"]["median"] < 160, engine
    assert sc["scaling"]["ns"] == [1, 3]
    for engine in ("wasmtime", "wasmer", "native", "runc"):
        rows = sc["scaling"]["results"][engine]
        assert [r["n"] for r in rows] == [1, 3]
        assert all(r["start_all_ms"] > 0 and r["memory_mib"] > 0 for r in rows)
        assert [r["start_ms"]["n"] for r in rows] == [1, 3], "each start is a sample"
        assert all(r["start_ms"]["min"] <= r["per_container_ms"] <= r["start_ms"]["max"] for r in rows)
    assert sc["pods"]["play_ms"]["n"] == 2


def test_compare_shows_each_figure_against_an_earlier_run(quick: tuple[dict[str, Any], Path, str],
                                                          tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(quick[0]["results"]))
    r = bench("--quick", "--scenario", "startup", "--engine", "wasmtime", "--engine", "runc", "--no-charts",
              "--out", str(tmp_path / "now"), "--compare", str(earlier))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"against the run of {quick[0]['results']['date']}" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.strip().startswith("startup/")]
    assert [row[0] for row in rows] == ["startup/wasmtime/ms", "startup/wasmtime/peak_mib", "startup/runc/ms",
                                        "startup/runc/peak_mib"]
    for row in rows:
        before, now, change = float(row[1]), float(row[2]), float(row[3].rstrip("%"))
        # The two figures are printed rounded to 0.01: so is the change they give.
        assert change == pytest.approx((now / before - 1) * 100, abs=1.1 / before + 0.1)


def test_compare_refuses_a_file_that_is_no_bench_result_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps({"floor": {"median_ms": 1}}))
    r = bench("--quick", "--out", str(tmp_path / "out"), "--compare", str(bad), timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        f"Error: {bad} is not a `wasmlab bench` result (no scenarios) (hint: an older `make bench` JSON cannot be "
        "compared: run `wasmlab bench` for both)"]
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists(), "nothing measured, nothing written"


def test_bloated_image_beside_the_compat_one(quick: tuple[dict[str, Any], Path, str], tmp_path: Path) -> None:
    """Built once (about a minute, cached outside the lab home), then imported into the bench's lab."""
    res = quick[0]["results"]
    if "images" not in res["scenarios"]["bloated"]:  # not cached yet: naming the scenario builds it
        assert "not built yet" in res["scenarios"]["bloated"]["skipped"]
        need_tool("debootstrap")
        r = bench("--quick", "--scenario", "bloated", "--out", str(tmp_path / "b"), "--json", timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        res = json.loads(r.stdout)["results"]
    b = res["scenarios"]["bloated"]
    compat, bloated = b["images"]["compat"], b["images"]["bloated"]
    assert compat["disk_bytes"] < 100_000 < 100_000_000 < bloated["disk_bytes"]
    assert compat["compressed_bytes"] < bloated["compressed_bytes"] < bloated["disk_bytes"]
    for image in (compat, bloated):
        assert image["ms"]["n"] == 2 and image["peak_mib"]["n"] == 2
    # python3 importing wasmtime and compiling the module, against a warm embedded engine: slower and bigger.
    assert b["ratios_bloated_vs_compat"]["ms"] > 2 and b["ratios_bloated_vs_compat"]["peak"] > 2
    assert b["build"]["build_s"] and b["build"]["build_s"] > 0


def test_a_warm_wasmtime_guest_grows_past_the_preinstantiation_limit(runtime: Any, tmp_path: Path) -> None:
    """A module instantiated ahead (the warm path) kept that store's 64 MiB limit: memgrow 80 failed from its
    second run on ("malloc failed after 31 MiB"), though the container has no memory limit."""
    from wasmlab.runtime.bench.engines import entrypoint, program_rootfs, write_bundle

    root = program_rootfs(tmp_path, "memgrow", "wasmtime")
    for i in range(3):
        bundle = write_bundle(tmp_path / f"b{i}", root, [entrypoint("memgrow", "wasmtime"), "80"], "wasmtime",
                              f"{CGROUP_PARENT}/memgrow{i}")
        res = runtime.run(f"memgrow{i}", str(bundle))
        assert res.exit_code == 0, res.stdout[-200:]
        assert b"reached 80 MiB" in res.stdout


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, stderr carries one line redrawn in place: a bar with steps done of all, to the last."""
    import pty

    need_root()
    master, slave = pty.openpty()
    proc = subprocess.Popen([WASMLAB, "bench", "--quick", "--scenario", "startup", "--engine", "wasmtime",
                             "--no-charts", "--out", str(tmp_path / "out")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    assert proc.stdout is not None and b"startup:" in proc.stdout.read()
    frames = [f for f in seen.decode().split("\r\x1b[2K") if f.startswith("bench: [")]
    assert len(frames) >= 3, seen
    assert frames[-1].startswith(f"bench: [{'#' * 30}] 4/4 done"), frames[-1]


def test_progress_is_a_line_per_step_on_a_pipe(tmp_path: Path) -> None:
    """With stderr no terminal (a log, `make bench | tee`), each step is a plain line, as podman and pip do: a
    run of minutes is never silent."""
    need_root()
    r = bench("--quick", "--scenario", "startup", "--engine", "wasmtime", "--no-charts", "--out", str(tmp_path),
              timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stderr.splitlines()
    assert "\r" not in r.stderr and "\x1b" not in r.stderr, "no bar drawn on a pipe"
    assert lines[0] == "bench: [1/4] warm-up round" and lines[-1] == "bench: [4/4] done", lines
    assert len(lines) == 4


def test_the_floor_is_timed_in_a_lean_process(runtime: Any) -> None:
    """fork's cost grows with the forking process: timed from the bench's own big process, the floor (fork,
    unshare, exit) took 25 ms, slower than a whole container forked by the lean zygote. FloorProbe times it in
    a bare interpreter, whatever the caller holds."""
    from wasmlab.runtime.bench import micro

    with micro.FloorProbe() as probe:
        with open(f"/proc/{probe.pid}/status") as fh:
            rss_kb = int(next(line for line in fh if line.startswith("VmRSS:")).split()[1])
        assert rss_kb < 20_000, f"the floor's helper holds {rss_kb} kB"
        ballast = [bytearray(1 << 20) for _ in range(150)]  # the caller as big as a bench that ran a while
        for block in ballast:
            block[::4096] = b"x" * len(block[::4096])
        got = micro.interleaved_ms({"lean": (probe, 1), "here": (micro.floor_in_process(), 1)}, 9, warmup=1)
        del ballast
    assert got["lean"]["median_ms"] > 0 and got["lean"]["median_ms"] * 2 < got["here"]["median_ms"], got
