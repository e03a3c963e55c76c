"""Every run measured: timings, cache, the three memory figures (init RSS, cgroup peak, guest share), image sizes
and tags, recorded through the Lab; the guest's share of `memgrow 256` is 256 MiB on every engine."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmlab.runtime import Lab, RunRecord

from tests.conftest import need_root

pytestmark = [pytest.mark.root, pytest.mark.slow]
MIB = 1 << 20
# (engine, image, command): the Wasm build on both engines, and the native Linux build of the same program.
MEMGROW = (("wasmtime", "wasmlab/memgrow:compat", ["/memgrow.wasm", "256"]),
           ("wasmer", "wasmlab/memgrow:compat", ["/memgrow.wasm", "256"]),
           ("native", "wasmlab/memgrow:linux", ["/memgrow", "256"]))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_root()
    home = tmp_path_factory.mktemp("recorded") / "home"
    with Lab(home) as lab:
        lab.samples()
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


def _quiet() -> tuple[int, int, int]:
    null = os.open(os.devnull, os.O_RDWR)
    return (null, null, null)


def _rows(home: Path, ids: list[str]) -> dict[str, RunRecord]:
    with Lab(home) as lab:
        return {r.id: r for r in lab.history(1000) if r.id in ids}


def test_memgrow_256_records_a_guest_share_within_ten_percent_of_256_mib_on_every_engine(home: Path) -> None:
    ids = []
    with Lab(home) as lab:
        for engine, image, command in MEMGROW:
            res = lab.run(image, command, rm=True, engine=engine if engine != "native" else None, stdio=_quiet())
            assert res.exit_code == 0, engine
            ids.append(res.id)
    rows = _rows(home, ids)  # the Lab closed: every row is written
    got = {rows[i].handler: rows[i] for i in ids}
    assert set(got) == {"wasmtime", "wasmer", "native"}
    for engine, row in got.items():
        assert row.guest_bytes is not None and row.cgroup_peak_bytes is not None, engine
        assert abs(row.guest_bytes / MIB - 256) <= 25.6, (engine, row.guest_bytes / MIB)
        assert row.guest_bytes < row.cgroup_peak_bytes  # the engine's hello baseline was taken off
    # The baselines are kept in the home, one per engine and its version; their hello runs are not history.
    kept = json.loads((home / "metrics" / "baselines.json").read_text())
    assert set(kept) >= {"wasmtime", "wasmer", "native"}
    assert all(v["peak_bytes"] > 0 and v["version"].startswith(k) for k, v in kept.items())
    with Lab(home) as lab:
        assert not [r for r in lab.history(1000) if r.id.startswith("baseline-")]


def test_a_changed_engine_version_measures_the_baseline_again(home: Path) -> None:
    with Lab(home) as lab:
        lab.run("wasmlab/hello:compat", rm=True, stdio=_quiet())
    path = home / "metrics" / "baselines.json"
    kept = json.loads(path.read_text())
    kept["wasmtime"] = {"version": "wasmtime 0.0.1; an older one", "peak_bytes": 1}
    path.write_text(json.dumps(kept))
    with Lab(home) as lab:
        res = lab.run("wasmlab/hello:compat", rm=True, stdio=_quiet())
    again = json.loads(path.read_text())["wasmtime"]
    assert again["version"] != "wasmtime 0.0.1; an older one" and again["peak_bytes"] > 1 << 20
    row = _rows(home, [res.id])[res.id]
    assert row.guest_bytes is not None and row.guest_bytes < 2 * MIB  # hello is the baseline: no 1-byte one


def test_a_foreground_run_records_each_step_the_cache_the_memory_figures_and_its_tags(home: Path) -> None:
    with Lab(home) as lab:
        lab.run("wasmlab/hello:compat", rm=True, stdio=_quiet())  # compiles the module, if no test did before
        walls = {}
        for key, image in (("warm", "wasmlab/hello:compat"), ("native", "wasmlab/hello:linux")):
            t0 = time.perf_counter()
            walls[key] = lab.run(image, rm=True, stdio=_quiet()), (time.perf_counter() - t0) * 1e3
        (warm, warm_wall), (native, native_wall) = walls["warm"], walls["native"]
        detached = lab.run("wasmlab/hello:compat", detach=True)
        assert lab.wait(detached.id, 30) == 0
        lab.rm(detached.id)
    rows = _rows(home, [warm.id, native.id, detached.id])
    w, n, d = rows[warm.id], rows[native.id], rows[detached.id]
    for row, wall in ((w, warm_wall), (n, native_wall)):
        assert row.first_byte_ms is not None and row.exit_ms is not None and row.delete_ms is not None
        assert row.start_ms is not None, f"{row.handler}: no start recorded"  # native too (it was None)
        # Every timing a moment from the create request, in the order things happened: ready, the workload
        # began, its first byte reached the lab (the relay may read it after the zygote saw the exit, on a loaded
        # machine), deleted after the exit. Native's first byte had come before its create (16.1 < 16.7).
        assert 0 < row.create_ms <= row.start_ms <= row.first_byte_ms <= wall, (row, wall)
        assert row.start_ms <= row.exit_ms <= row.delete_ms and row.total_ms >= row.exit_ms, row
        assert row.kernel == os.uname().release and os.uname().machine in row.machine
        assert row.image_compressed_bytes and row.image_size_bytes and row.image_size_bytes > 0
        # Three memory figures, each its own: the init's peak RSS is the Python process (tens of MB), the
        # cgroup's peak is what the container cost, and the guest's share is that minus hello's baseline.
        assert row.init_max_rss_kb * 1024 > row.cgroup_peak_bytes > (row.guest_bytes or 0)  # type: ignore[operator]
    assert w.cache_hit is True and w.cache in ("memory", "disk", "instance")  # compiled by the run before
    assert n.cache is None  # no module: no cache, and "" no more
    assert n.cache_hit is None and n.handler == "native"
    assert d.first_byte_ms is None  # detached: its output went straight to its log
    assert d.exit_ms is not None and d.image == "wasmlab/hello:compat"
    assert d.cgroup_peak_bytes  # removed right after its exit: the peak read when the exit came is kept


def test_a_pods_containers_are_tagged_with_their_pod(home: Path, tmp_path: Path) -> None:
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: tagged
          annotations:
            module.wasm.image/variant: compat-smart
        spec:
          restartPolicy: Never
          containers:
          - name: app
            image: wasmlab/hello:compat
        """))
    with Lab(home) as lab:
        [pod] = lab.kube_play(yaml).pods
        app = pod.container("app")
        lab.pod_wait(app.id)
        lab.pod_rm(pod.identity, force=True)
    row = _rows(home, [app.id])[app.id]
    assert row.pod == "default/tagged" and row.handler == "wasmtime" and row.cgroup_peak_bytes


def test_the_overhead_and_rate_benchmarks_count_what_they_claim(lab_home: Path) -> None:
    from wasmlab.runtime.metrics.overhead import recording_overhead, stream_rate

    res = recording_overhead(20)
    assert res["runs"] == 20 and res["recorded"] == 20  # every timed run with recording on is in the history
    assert res["on_total_ms"] >= res["drain_ms"] >= 0 and res["off_total_ms"] > 0
    assert res["on_min_ms"] <= res["on_median_ms"] <= res["on_max_ms"]
    rate = stream_rate(1.0, interval=0.25, containers=2)
    assert rate["samples_per_tick"] == 2 and rate["ticks"] >= 5
    assert 200 <= rate["gap_median_ms"] <= 300


def test_wasmlab_history_names_each_memory_figure(home: Path) -> None:
    import subprocess

    from tests.conftest import ROOT

    with Lab(home) as lab:
        lab.run("wasmlab/hello:compat", rm=True, stdio=_quiet())
        lab.run("wasmlab/hello:compat", detach=True, name="bg")
        lab.wait("bg", 30)
        lab.rm("bg")
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "wasmlab"), "history", "--last", "2"], capture_output=True,
                         text=True, env=dict(os.environ, WASMLAB_HOME=str(home)), timeout=60, check=True).stdout
    header, *lines = out.splitlines()
    assert all(label in header for label in ("CGROUP PEAK", "GUEST", "INIT RSS", "1ST BYTE", "ENGINE"))
    assert "PEAK RSS" not in header  # the old label mixed the init's RSS up with the container's peak
    # The image beside the engine; CODE (the exit code) apart from EXITED (the moment of the exit, in ms).
    assert header.split()[:12] == ["WHEN", "NAME", "IMAGE", "ENGINE", "CODE", "CREATE", "START", "1ST", "BYTE",
                                   "EXITED", "CGROUP", "PEAK"], header
    # Which of the two is newer depends on when each row was written (the --rm run's on the recorder's thread).
    [detached] = [line for line in lines if line.split()[2] == "bg"]
    fields = detached.split()  # "3s ago" is two words
    assert len(lines) == 2 and fields[3] == "wasmlab/hello:compat" and fields[5] == "0"
    assert fields[7] != "-" and fields[8] == "-"  # its start is known; a detached run has no first byte
    # Memory in MiB, as the bench shows it (it said 76.4 MB); the guest's share of hello is KiB at most.
    assert fields[11] == "MiB" and fields[13] in ("B", "KiB", "MiB") and fields[15] == "MiB", detached


def test_a_detached_run_removed_by_another_command_stays_in_the_history(home: Path) -> None:
    """`wasmlab run -d` exits before its container; `wait` and `rm` come from other commands. The run's record,
    left in its state folder for the next lab to collect, must not go with `rm`."""
    import subprocess

    from tests.conftest import ROOT

    def wl(*args: str) -> str:
        return subprocess.run([str(ROOT / ".venv" / "bin" / "wasmlab"), *args], capture_output=True, text=True,
                              env=dict(os.environ, WASMLAB_HOME=str(home)), timeout=60, check=True).stdout

    cid = wl("run", "-d", "--name", "left", "wasmlab/hello:compat").strip()
    assert wl("wait", "left").strip() == "0"
    wl("rm", "left")
    rows = _rows(home, [cid])
    assert cid in rows and rows[cid].exit_code == 0 and rows[cid].name == "left", rows


def test_a_sigtermed_wasm_run_records_its_start_and_no_made_up_cache(home: Path) -> None:
    """A guest stopped by SIGTERM never sends its final report: its start still came (sent before the guest
    ran), and its cache is unknown (None, shown "-"), not ""."""
    import threading

    out_r, out_w = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    done: list[int | None] = []
    with Lab(home) as lab:
        runner = threading.Thread(target=lambda: done.append(lab.run(
            "wasmlab/loop:compat", ["/loop.wasm", "0", "50"], name="termed", stdio=(null, out_w, null)).exit_code))
        runner.start()
        try:
            with os.fdopen(out_r, "rb") as out:
                assert out.readline() == b"tick 1\n"  # handshake: the guest runs
                lab.kill("termed", "TERM")
                runner.join(30)
        finally:
            os.close(out_w)
            os.close(null)
        assert not runner.is_alive() and done
        row = lab.run_record(lab.resolve("termed"))
        lab.rm("termed")
    assert row is not None and row.handler == "wasmtime" and (row.exit_code == 143 or row.signal == 15), row
    assert row.start_ms is not None and row.create_ms <= row.start_ms <= (row.exit_ms or 0), row
    assert row.cache is None and row.as_dict()["cache"] is None


def test_a_runs_image_sizes_are_the_ones_images_and_the_bench_show(home: Path) -> None:
    """One definition of each (runtime/images/sizes.py): on disk = the store's blobs (`images` SIZE), compressed =
    the layers gzipped as a push sends them. History had said 16384 / 11344 for hello:compat, the bench 11.3 kB
    / 1.4 kB, `images` 11.3 kB."""
    from wasmlab.runtime.images.service import Images

    with Lab(home) as lab:
        res = lab.run("wasmlab/hello:compat", rm=True, stdio=_quiet())
        row = lab.run_record(res.id)
        [listed] = [i for i in lab.images() if "localhost/wasmlab/hello:compat" in i.names]
    disk, compressed = Images(home).sizes("wasmlab/hello:compat")
    assert row is not None and (row.image_size_bytes, row.image_compressed_bytes) == (disk, compressed)
    assert disk == listed.size and compressed < disk  # hello's layer is a plain tar: gzip makes it smaller
