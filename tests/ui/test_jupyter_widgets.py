"""The notebook widgets driven without a browser, against the real runtime: set values, click, read what they show."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One fresh lab home for the module, with the sample images."""
    from wasmlab.runtime import Lab

    need_root()
    home = tmp_path_factory.mktemp("jupyter") / "home"
    home.mkdir()
    lab = Lab(home)
    lab.samples()
    yield lab
    for pod in lab.pods():
        lab.pod_rm(pod.identity, force=True)
    lab.close()


def png_of(output: Any) -> bytes:
    """The PNG an Output widget shows (its last display)."""
    import base64

    data = output.outputs[-1]["data"]["image/png"]
    return data if isinstance(data, bytes) else base64.b64decode(data)


# -- ImageBuilder ------------------------------------------------------------------------------------------------

def test_image_builder_builds_the_seed_image_and_shows_its_digest_and_annotation(lab: Any) -> None:
    from wasmlab.lab.jupyter import ImageBuilder

    builder = ImageBuilder(lab, tag="nb-seed", variant="compat")
    assert "COPY hello.wasm /" in builder.editor.value, "the editor opens on the seed's Containerfile"
    builder.button.click()
    assert builder.error == "", builder.status.value
    built = builder.built
    assert built is not None and built.digest.startswith("sha256:")
    assert built.digest in builder.result.value, "the digest is shown"
    assert "module.wasm.image/variant" in builder.result.value and "compat" in builder.result.value
    assert builder.progress.value == builder.progress.max > 0
    stored = lab.image_inspect("nb-seed")
    assert stored.summary.digest == built.digest
    assert stored.manifest["annotations"]["module.wasm.image/variant"] == "compat"


def test_image_builder_variant_none_builds_without_the_annotation(lab: Any) -> None:
    from wasmlab.lab.jupyter import ImageBuilder

    builder = ImageBuilder(lab, tag="nb-plain")
    builder.variant.value = "none"
    builder.on_build()
    assert builder.built is not None and "module.wasm.image/variant" not in builder.built.annotations
    assert "module.wasm.image/variant" not in (lab.image_inspect("nb-plain").manifest.get("annotations") or {})


def test_image_builder_bad_containerfile_is_one_line_with_a_hint_and_builds_nothing(lab: Any) -> None:
    from wasmlab.lab.jupyter import ImageBuilder

    before = {i.digest for i in lab.images(all=True)}
    builder = ImageBuilder(lab, containerfile="FROM scratch\nCOPY missing.wasm /\n", tag="nb-broken")
    builder.button.click()  # must not raise into the notebook
    assert "missing.wasm" in builder.error and "hint:" in builder.error
    assert "\n" not in builder.error and "Traceback" not in builder.status.value
    assert builder.built is None and not builder.button.disabled
    assert {i.digest for i in lab.images(all=True)} == before


# -- Runner ------------------------------------------------------------------------------------------------------

def test_runner_runs_on_the_engine_chosen_with_the_arguments_given(lab: Any) -> None:
    from wasmlab.lab.jupyter import Runner

    runner = Runner(lab, image="wasmlab/cpu:compat")
    assert "wasmlab/cpu:compat" in runner.image.options
    runner.engine.value = "wasmer"
    runner.args.value = "/cpu.wasm 1000"
    runner.button.click()
    assert runner.error == "", runner.status.value
    assert runner.ran is not None and runner.ran.handler == "wasmer"
    assert "primes below 1000: 168" in runner.output.value
    assert "exit code 0" in runner.exit_code.value
    assert "wasmlab.io/engine=wasmer picks the engine" in runner.decision.value
    assert "create_ms" in runner.timings.value
    # The three memory figures, named as every face names them (it showed only "max RSS of the init", in kB).
    import re

    shown = dict(re.findall(r"<td[^>]*>([a-z ]+(?:RSS|peak)?)</td><td[^>]*>([^<]+)</td>", runner.timings.value))
    assert shown.keys() >= {"cgroup peak", "guest", "init RSS"}, runner.timings.value
    assert shown["cgroup peak"].endswith("MiB") and shown["init RSS"].endswith("MiB"), shown
    assert shown["guest"] != "-" and "max RSS of the init" not in runner.timings.value, shown


def test_runner_auto_lets_the_runtime_decide_and_shows_why(lab: Any) -> None:
    from wasmlab.lab.jupyter import Runner

    runner = Runner(lab, image="wasmlab/exitcode:compat", args="/exitcode.wasm 3")
    runner.on_run()
    assert runner.ran is not None and (runner.ran.exit_code, runner.ran.handler) == (3, "wasmtime")
    assert "exit code 3" in runner.exit_code.value
    runner.image.value = "wasmlab/hello:linux"
    runner.args.value = ""
    runner.on_run()
    assert runner.ran.handler == "native" and "no Wasm annotation" in runner.decision.value


def test_runner_unknown_image_and_bad_arguments_are_one_line(lab: Any) -> None:
    from wasmlab.lab.jupyter import Runner

    runner = Runner(lab, image="no-such-image")
    runner.on_run()
    assert "no-such-image" in runner.error and "hint:" in runner.error
    runner.image.value = "wasmlab/hello:compat"
    runner.args.value = '"unclosed'
    runner.on_run()
    assert "No closing quotation" in runner.error and "hint: close every quote" in runner.error, runner.error
    assert "ValueError" not in runner.error and "\n" not in runner.error
    assert not runner.button.disabled


def test_runner_arguments_replace_the_cmd_as_podman_does(lab: Any) -> None:
    """One semantics for every face: arguments replace the image's CMD, program included (as `wasmlab run` and
    podman); the field says what they replace, and a number taken for the program gets the command that works."""
    from wasmlab.lab.jupyter import Runner
    from wasmlab.lab.jupyter.run import run_image

    runner = Runner(lab, image="wasmlab/exitcode:compat", args="3")
    assert "/exitcode.wasm" in runner.args.placeholder, runner.args.placeholder
    runner.on_run()
    assert runner.ran is None and "entrypoint 3 is missing" in runner.error, runner.error
    assert "wasmlab run wasmlab/exitcode:compat /exitcode.wasm 3" in runner.error, runner.error
    runner.image.value = "wasmlab/cpu:linux"
    assert "/cpu" in runner.args.placeholder
    ran = run_image(lab, "wasmlab/argsenv:compat", ["/argsenv.wasm", "a"])
    assert "argc=2" in ran.stdout and "argv[1]=a" in ran.stdout, ran.stdout


# -- PodLauncher and NamespaceInspector --------------------------------------------------------------------------

def test_pod_launcher_compat_fails_on_the_sidecar_and_leaves_nothing(lab: Any) -> None:
    from wasmlab.lab.jupyter import PodLauncher

    launcher = PodLauncher(lab, preset="mixed-compat-smart")
    launcher.preset.value = "mixed-compat"  # observe: the editor follows the preset
    assert "variant: compat\n" in launcher.editor.value
    launcher.play_button.click()
    assert "sidecar" in launcher.error and "compat-smart" in launcher.error
    assert [p.identity for p in lab.pods()] == []
    launcher.close()


def test_pod_launcher_compat_smart_plays_runs_each_container_on_its_handler_and_down_removes(lab: Any) -> None:
    from wasmlab.lab.jupyter import NamespaceInspector, PodLauncher
    from wasmlab.lab.jupyter.namespaces import shares_with_pod

    launcher = PodLauncher(lab, preset="mixed-compat-smart")
    launcher.play_button.click()
    try:
        assert launcher.error == "", launcher.status.value
        table = launcher.pods_table.value
        assert "wasmtime" in table and "native" in table and "sidecar" in table
        # The table comes right after play, the app's line once it ran: wait for its exit, then Refresh, as a
        # learner would.
        [pod] = launcher.played.pods
        app = next(c for c in pod.containers if c.handler == "wasmtime")
        assert lab.pod_wait(app.id) == 0
        launcher.refresh_button.click()
        assert "hello world from wasmlab" in launcher.logs.value, launcher.logs.value

        inspector = NamespaceInspector(lab)
        assert inspector.target.options == ("(every pod)", "default/mixed-compat-smart")
        assert set(shares_with_pod(inspector.rows, "sidecar")) == {"net", "ipc", "uts"}
        assert "sandbox" in inspector.table.value and "private" in inspector.table.value
        headings = re.findall(r"<th[^>]*>([^<]*)</th>", inspector.table.value)
        assert headings == ["POD/CONTAINER", "ROLE", "PID", "NET NS", "IPC NS", "UTS NS", "PID NS", "MNT NS",
                            "CGROUP NS", "USER NS", "CGROUP PATH"], "named as inspect-ns names them, none twice"
        assert png_of(inspector.chart).startswith(b"\x89PNG"), "the heat map is drawn"
    finally:
        launcher.down_button.click()
    assert launcher.error == "" and lab.pods() == []
    inspector.on_refresh()
    assert inspector.rows == [] and "no pod is played" in inspector.status.value
    launcher.close()


SLEEPER = """\
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers:
  - name: polite
    image: wasmlab/busybox:latest
    command: ["/bin/sh", "-c", "trap 'exit 3' TERM; echo ready; sleep 3600 & wait"]
"""


def readied(lab: Any, pod: str, times: int = 1, timeout: float = 30) -> None:
    """The handshake: the pod's container said `ready` TIMES (its SIGTERM trap is set from then on)."""
    import time

    deadline = time.monotonic() + timeout
    while sum(e.data.strip() == b"ready" for _, e in lab.pod_logs(pod)) < times:
        assert time.monotonic() < deadline, f"{pod} did not say ready {times} times"
        time.sleep(0.02)


def test_pod_launcher_stop_keeps_the_pod_stopped_and_start_brings_it_back(lab: Any) -> None:
    from wasmlab.lab.jupyter import PodLauncher

    launcher = PodLauncher(lab)
    launcher.editor.value = SLEEPER
    launcher.stop_button.click()
    assert launcher.error == "" and "no pod of this file is played" in launcher.status.value
    launcher.play_button.click()
    try:
        assert launcher.error == "", launcher.status.value
        readied(lab, "sleeper")
        launcher.stop_button.click()
        assert launcher.error == "", launcher.status.value
        stopped = lab.pod_inspect("sleeper")
        assert stopped.status == "Exited" and stopped.keeper_pid == 0  # its keeper ended: nothing restarts it
        assert {c.name: c.status for c in stopped.containers} == {"POD": "stopped", "polite": "stopped"}
        assert stopped.container("polite").exit_code == 3  # SIGTERM first
        assert "pod default/sleeper is Exited" in launcher.status.value
        assert "Exited" in launcher.pods_table.value
        launcher.start_button.click()
        assert launcher.error == "", launcher.status.value
        started = lab.pod_inspect("sleeper")
        assert started.status == "Running" and started.keeper_pid > 0  # restartPolicy Always: kept again
        assert {c.status for c in started.containers} == {"running"}
        assert "pod default/sleeper is Running" in launcher.status.value
    finally:
        launcher.down_button.click()
    assert launcher.error == "" and lab.pods() == []
    launcher.close()


def test_pod_launcher_plans_containerd_with_the_seed_allowlist_and_with_the_fix(lab: Any) -> None:
    from wasmlab.lab.jupyter import PodLauncher

    launcher = PodLauncher(lab, preset="containerd-allowlist")
    assert launcher.allowlist.disabled, "CRI-O has no allowlist"
    launcher.propagation.value = "containerd"
    assert not launcher.allowlist.disabled
    # The pitfall's preset opens on the article's allowlist, and the widget says why it matches nothing.
    assert launcher.allowlist.value == "module.wasm.image/variant.*"
    note = html.unescape(launcher.allowlist_note.value)
    assert "the seed article's allowlist" in note and "matches nothing" in note, note
    launcher.play_button.click()  # plays as containerd with the seed's allowlist: the pitfall shows
    assert "/hello.wasm is not executable" in launcher.error and "never reached it" in launcher.error, launcher.error
    assert lab.pods() == [], "the failed play left nothing"
    launcher.plan_button.click()
    rows = launcher.on_plan()
    assert rows[-1][-1].startswith("dropped") and "matches no annotation" in launcher.plan.value
    launcher.allowlist.value = "module.wasm.image/*"
    assert launcher.on_plan()[-1][-1].startswith("passed")
    assert "seed article" not in launcher.allowlist_note.value
    launcher.preset.value = "mixed-compat-smart"
    assert launcher.allowlist.value == "module.wasm.image/*", "other presets open on the allowlist that works"
    launcher.preset.value = "containerd-allowlist"
    assert launcher.allowlist.value == "module.wasm.image/variant.*"
    launcher.editor.value = "kind: Pod\nmetadata: {}\n"
    launcher.on_play()
    assert "apiVersion" in launcher.error and "hint:" in launcher.error
    launcher.close()


# -- HandlerFaceOff and LiveChart --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bloated_cache() -> None:
    """The bloated image's root in the machine's cache: there already on this machine (and in CI here); where it
    is not, built by the path `wasmlab bench --scenario bloated` takes (about 41 s, once), never skipped."""
    from wasmlab.runtime.images.bloated import ensure_root

    ensure_root()


def test_face_off_runs_every_contender_and_charts_their_cgroup_peaks(lab: Any, bloated_cache: None) -> None:
    """Four contenders: the widget brings the cached bloated image into this lab (the service's import)."""
    from wasmlab.lab.jupyter import HandlerFaceOff
    from wasmlab.lab.jupyter.faceoff import face_off_series

    faceoff = HandlerFaceOff(lab, program="cpu", args="2000", rounds=2)
    assert not faceoff.bloated.disabled and faceoff.bloated.value, faceoff.bloated_note.value
    assert "wasmlab/bloated:latest" in faceoff.bloated_note.value
    faceoff.button.click()
    assert faceoff.error == "", faceoff.status.value
    labels = [r.label for r in faceoff.results]
    assert labels == ["wasmtime", "wasmer", "native", "bloated"] * 2, "interleaved rounds"
    assert {r.handler for r in faceoff.results} == {"wasmtime", "wasmer", "native"}, "bloated runs natively"
    assert all(r.exit_code == 0 and r.output == "primes below 2000: 303" for r in faceoff.results), \
        [(r.label, r.output) for r in faceoff.results]
    assert all(r.peak_mib > 0 for r in faceoff.results), "each run's recorded cgroup peak arrived"
    fat = [r for r in faceoff.results if r.label == "bloated"]
    thin = [r for r in faceoff.results if r.label == "wasmtime"]
    assert min(r.peak_mib for r in fat) > max(r.peak_mib for r in thin), "python3 + wasmtime weigh more"
    assert "cgroup peak MiB" in faceoff.table.value and ">bloated</td>" in faceoff.table.value
    assert png_of(faceoff.chart).startswith(b"\x89PNG")
    startup, footprint = face_off_series(faceoff.results)
    assert [s.label for s in startup] == [s.label for s in footprint] == ["wasmtime", "wasmer", "native", "bloated"]
    # Start-up is what the bench measures (create to exit), laid out as the bench's series: the seed's claim
    # shows (python3 and wasmtime start before the module in the bloated image). Create-to-ready had ranked the
    # bloated image first.
    from wasmlab.lab.series import run_samples

    by_label = {label: [r.total_ms for r in faceoff.results if r.label == label] for label in
                ("wasmtime", "wasmer", "native", "bloated")}
    assert startup == run_samples(by_label, "ms")
    median = {s.label: sorted(s.ys)[len(s.ys) // 2] for s in startup}
    assert median["bloated"] > median["wasmtime"] and median["bloated"] > median["native"], median
    assert "start-up (create to exit, median)" in faceoff.status.value and "create to exit" in faceoff.table.value


def test_face_off_without_the_cached_image_says_why_and_how_to_build_it(lab: Any, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty cache: three contenders, and one line naming the command that builds the bloated image."""
    from wasmlab.lab.jupyter import HandlerFaceOff
    from wasmlab.lab.jupyter.faceoff import bloated_image, contenders

    monkeypatch.setenv("WASMLAB_CACHE", str(tmp_path / "empty"))
    name, note = bloated_image(lab)
    assert name is None and "\n" not in note
    assert "not built" in note and "wasmlab bench --scenario bloated" in note, note
    assert [c.label for c in contenders(lab, "hello")] == ["wasmtime", "wasmer", "native"]
    faceoff = HandlerFaceOff(lab, program="hello", rounds=1)
    assert faceoff.bloated.disabled and not faceoff.bloated.value
    assert "wasmlab bench --scenario bloated" in faceoff.bloated_note.value
    assert not (tmp_path / "empty").exists(), "asking built nothing"


def test_live_chart_adds_each_recorded_run_to_the_engine_charts(lab: Any) -> None:
    from wasmlab.lab.jupyter import LiveChart
    from wasmlab.lab.jupyter.run import run_image

    chart = LiveChart(lab, live_canvas=False)
    seen = threading.Event()
    recorded: list[Any] = []

    def on_event(event: Any) -> None:
        LiveChart.on_event(chart, event)
        if type(event).__name__ == "RunRecorded" and chart.records and chart.records[-1].seq == event.seq:
            recorded.append(event)
            seen.set()

    chart.on_event = on_event  # type: ignore[method-assign]
    unsubscribe = lab.subscribe(chart.on_event)
    try:
        ran = run_image(lab, "wasmlab/hello:compat", engine="wasmer")
        assert seen.wait(10), "the run's RunRecorded event did not reach the chart"
    finally:
        unsubscribe()
    assert recorded[-1].id == ran.id and chart.records[-1].id == ran.id and chart.records[-1].handler == "wasmer"
    assert chart.draws >= 2
    assert png_of(chart.chart).startswith(b"\x89PNG")


def test_live_chart_streams_a_running_container_then_stops_its_thread(lab: Any) -> None:
    from wasmlab.lab.jupyter import LiveChart

    chart = LiveChart(lab, live_canvas=False, interval=0.05, redraw_every=0.0)
    got = threading.Event()
    name = "nb-live-loop"

    def on_tick(tick: Any) -> None:
        LiveChart.on_tick(chart, tick)
        if any(s.name == name for s in tick.samples):
            got.set()

    chart.on_tick = on_tick  # type: ignore[method-assign]
    before = set(threading.enumerate())
    chart.start_button.click()
    assert chart.error == "" and chart.running and chart.stop_button.disabled is False
    streaming = set(threading.enumerate()) - before
    assert streaming, "the stream runs on a thread of its own"
    lab.run("wasmlab/loop:compat", name=name, detach=True)
    try:
        assert got.wait(10), "no sample of the running container reached the chart"
    finally:
        lab.rm(name, force=True)
        chart.stop_button.click()
    assert not chart.running and chart.start_button.disabled is False
    assert not any(t.is_alive() for t in streaming), "the stream's thread ended with Stop"
    assert png_of(chart.chart).startswith(b"\x89PNG")


def test_live_chart_draws_on_an_ipympl_canvas_when_asked(lab: Any) -> None:
    from ipympl.backend_nbagg import Canvas
    from wasmlab.lab.jupyter import LiveChart

    chart = LiveChart(lab, live_canvas=True)
    assert isinstance(chart.chart, Canvas) and chart.chart.figure is chart.fig
    draws = chart.draws
    chart.redraw()
    assert chart.draws == draws + 1


# -- exercises ---------------------------------------------------------------------------------------------------

def test_a_check_prints_pass_or_not_yet_and_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    from wasmlab.lab.jupyter.exercises import check

    answer = None
    # None: the printed line is a check cell's only output (a bool showed as Out[n] under it).
    assert check("solved", lambda: 1 + 1 == 2) is None  # type: ignore[func-returns-value]
    assert check("unsolved", lambda: answer.exit_code == 3, "run it") is None  # type: ignore[attr-defined,func-returns-value]
    assert check("undefined", lambda: undefined_name) is None  # type: ignore[name-defined,func-returns-value]  # noqa: F821
    assert capsys.readouterr().out.splitlines() == ["pass: solved", "not yet: unsolved (hint: run it)",
                                                    "not yet: undefined"]


def test_pod_launcher_files_go_with_the_widget(lab: Any) -> None:
    from wasmlab.lab.jupyter import PodLauncher

    launcher = PodLauncher(lab)
    path: Path = launcher.file()
    assert path.exists()
    launcher.close()
    assert not path.parent.exists()
