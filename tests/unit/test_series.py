"""Chart series (lab/series.py) from history rows and stream ticks, and the matplotlib figures built on them."""

from __future__ import annotations

from wasmlab.lab import charts, series
from wasmlab.runtime import MetricSample, MetricsTick, RunRecord

MIB = 1 << 20


def _runs() -> list[RunRecord]:
    rows = [("wasmtime", 6.0, 3.4), ("native", 5.0, 1.5), ("wasmer", 9.0, 12.0), ("wasmtime", 7.0, 3.5),
            ("native", 4.0, 1.4), ("wasmtime", 8.0, 3.6), ("native", 5.5, None)]
    out = []
    for seq, (engine, create, peak) in enumerate(rows, start=1):
        out.append(RunRecord(id=f"r{seq}", handler=engine, exit_code=0, seq=seq, create_ms=create,
                             cgroup_peak_bytes=int(peak * MIB) if peak is not None else None, init_max_rss_kb=30000))
    return list(reversed(out))  # as history() gives them: newest first


def _ticks() -> list[MetricsTick]:
    ticks = []
    for i in range(4):
        at = 50.0 + i * 0.25
        samples = (MetricSample(at, "container", "a1", "busy", None, "native", 100.0 - i, (1 + i) * MIB, 4 * MIB),
                   MetricSample(at, "container", "b2", "ticker", "default/p", "wasmtime", 0.5, 8 * MIB, 8 * MIB),
                   MetricSample(at, "pod", "p", "default/p", "default/p", None, 0.5, 9 * MIB, 9 * MIB))
        ticks.append(MetricsTick(at, samples[:1] if i == 0 else samples))
    return ticks


def test_startup_and_footprint_series_are_one_per_engine_in_run_order() -> None:
    startup = series.startup_by_engine(_runs())
    assert [(s.label, s.xs, s.ys, s.unit) for s in startup] == [
        ("wasmtime", (1.0, 4.0, 6.0), (6.0, 7.0, 8.0), "ms"),
        ("wasmer", (3.0,), (9.0,), "ms"),
        ("native", (2.0, 5.0, 7.0), (5.0, 4.0, 5.5), "ms")]
    footprint = series.footprint_by_engine(_runs())
    # The cgroup peak in MiB, never the init's RSS (30000 kB here); a run without a cgroup is left out.
    assert [(s.label, s.xs, tuple(round(y, 3) for y in s.ys), s.unit) for s in footprint] == [
        ("wasmtime", (1.0, 4.0, 6.0), (3.4, 3.5, 3.6), "MiB"),
        ("wasmer", (3.0,), (12.0,), "MiB"),
        ("native", (2.0, 5.0), (1.5, 1.4), "MiB")]


def test_live_series_are_one_per_container_in_seconds_since_the_first_tick() -> None:
    cpu = series.live_cpu(_ticks())
    assert [(s.label, s.xs, s.ys, s.unit) for s in cpu] == [
        ("busy", (0.0, 0.25, 0.5, 0.75), (100.0, 99.0, 98.0, 97.0), "%"),
        ("ticker", (0.25, 0.5, 0.75), (0.5, 0.5, 0.5), "%")]  # the pod's own sample is not a container's
    memory = series.live_memory(_ticks())
    assert [(s.label, s.ys, s.unit) for s in memory] == [("busy", (1.0, 2.0, 3.0, 4.0), "MiB"),
                                                         ("ticker", (8.0, 8.0, 8.0), "MiB")]
    assert series.live_cpu([]) == []


def test_too_few_says_so_below_three_points_and_nothing_from_three() -> None:
    assert series.too_few([]) is not None and "no points" in (series.too_few([]) or "")
    two = [series.Series("wasmtime", (1.0, 2.0), (5.0, 6.0), "ms")]
    assert "only 2 points" in (series.too_few(two) or "")
    assert series.too_few(series.startup_by_engine(_runs())) is None
    assert series.too_few(two, minimum=2) is None


def test_series_module_imports_no_plotting_or_ui_library() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(series.__file__).read_text())
    imported = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"matplotlib", "textual", "textual_plotext", "ipywidgets", "plotext"}


def test_the_history_figure_draws_the_series_asked_for() -> None:
    fig = charts.history_figure(_runs())
    left, right = fig.axes
    assert [ln.get_label() for ln in left.get_lines()] == ["wasmtime", "wasmer", "native"]
    wasmtime = left.get_lines()[0]
    assert list(wasmtime.get_xdata()) == [1.0, 4.0, 6.0] and list(wasmtime.get_ydata()) == [6.0, 7.0, 8.0]
    assert left.get_ylabel() == "ms" and right.get_ylabel() == "MiB"
    assert [[round(float(y), 3) for y in ln.get_ydata()] for ln in right.get_lines()] == [
        [3.4, 3.5, 3.6], [12.0], [1.5, 1.4]]


def test_a_figure_with_too_few_points_shows_the_sentence_instead_of_an_axis() -> None:
    fig = charts.history_figure(_runs()[-2:])  # two runs
    left, _ = fig.axes
    assert not left.get_lines() and not left.axison
    assert any("Not enough data to chart" in t.get_text() for t in left.texts)
    live = charts.live_figure(_ticks())
    cpu, memory = live.axes
    assert [ln.get_label() for ln in cpu.get_lines()] == ["busy", "ticker"]
    assert cpu.get_ylabel() == "%" and memory.get_ylabel() == "MiB"


def test_live_pids_and_the_live_summary_line_every_face_shows() -> None:
    from wasmlab.runtime import MetricSample, MetricsTick

    a = MetricSample(1.0, "container", "a1", "busy", None, "native", 0.0, 0, 0, None, 3, 10, 4000, None, None)
    b = MetricSample(1.0, "container", "b2", "web", None, "wasmtime", 0.0, 0, 0, 64 << 20, 1, 0, 0, 1500, 500)
    pod = MetricSample(1.0, "pod", "p", "default/p", "default/p", None, 0.0, 0, 0, None, 9, 0, 0, 0, 0)
    ticks = [MetricsTick(1.0, (a, b, pod))]
    assert [(s.label, s.ys, s.unit) for s in series.live_pids(ticks)] == [("busy", (3.0,), "PIDs"),
                                                                          ("web", (1.0,), "PIDs")]
    # The host-network container (None) adds no network bytes; the pod is not counted twice.
    assert series.live_summary(ticks[0]) == "2 running, 4 PIDs, net 1.5kB / 500B, block 10B / 4kB"
    assert series.live_summary(MetricsTick(2.0, ())) == "nothing running"
