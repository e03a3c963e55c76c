"""The bench's series (lab/series.py) hold what the charts draw, and the charts are drawn from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wasmlab.lab import series


def stat(*samples: float) -> dict[str, Any]:
    return {"median": sorted(samples)[len(samples) // 2], "min": min(samples), "max": max(samples),
            "n": len(samples), "samples": list(samples)}


def results() -> dict[str, Any]:
    def rounds(ms: tuple[float, ...], mib: tuple[float, ...]) -> dict[str, Any]:
        return {"wasmtime": {"ms": stat(*ms), "peak_mib": stat(*mib)},
                "runc": {"ms": stat(*(m * 4 for m in ms)), "peak_mib": stat(*(m + 1 for m in mib))}}

    return {
        "date": "2026-12-01 20:00:00 UTC", "n": 3, "machine": {"kernel": "6.18", "cpus": 2},
        "engines": {"wasmtime": {"available": True}, "runc": {"available": True},
                    "crun": {"available": False, "error": "cgroups in hybrid mode not supported"}},
        "scenarios": {
            "startup": {"results": rounds((5.0, 6.0, 7.0), (2.0, 2.1, 2.2))},
            "footprint": {"results": rounds((40.0, 41.0, 42.0), (66.0, 67.0, 68.0))},
            "scaling": {"ns": [1, 10], "results": {
                "wasmtime": [{"n": 1, "per_container_ms": 9.0, "per_container_mib": 1.5},
                             {"n": 10, "per_container_ms": 6.0, "per_container_mib": 2.0}],
                "runc": [{"n": 1, "per_container_ms": 40.0, "per_container_mib": 2.2},
                         {"n": 10, "per_container_ms": 45.0, "per_container_mib": 1.0}]}},
            "bloated": {"images": {
                "compat": {"disk_bytes": 2_000, "compressed_bytes": 1_000, "ms": stat(20.0, 21.0),
                           "peak_mib": stat(2.0, 2.1)},
                "bloated": {"disk_bytes": 200_000_000, "compressed_bytes": 75_000_000, "ms": stat(400.0, 420.0),
                            "peak_mib": stat(29.0, 29.5)}}},
        },
    }


def test_startup_and_footprint_give_one_series_per_engine_in_run_order() -> None:
    start = series.bench_startup(results())
    assert [(s.label, s.unit, s.xs, s.ys) for s in start] == [
        ("wasmtime", "ms", (1.0, 2.0, 3.0), (5.0, 6.0, 7.0)), ("runc", "ms", (1.0, 2.0, 3.0), (20.0, 24.0, 28.0))]
    foot = series.bench_footprint(results())
    assert [(s.label, s.unit, s.ys) for s in foot] == [("wasmtime", "MiB", (66.0, 67.0, 68.0)),
                                                       ("runc", "MiB", (67.0, 68.0, 69.0))]


def test_scaling_gives_time_and_memory_per_container_against_n() -> None:
    got = {(s.label, s.unit): (s.xs, s.ys) for s in series.bench_scaling(results())}
    assert got == {("wasmtime", "ms"): ((1.0, 10.0), (9.0, 6.0)), ("wasmtime", "MiB"): ((1.0, 10.0), (1.5, 2.0)),
                   ("runc", "ms"): ((1.0, 10.0), (40.0, 45.0)), ("runc", "MiB"): ((1.0, 10.0), (2.2, 1.0))}


def test_bloated_gives_size_startup_and_peak_per_image() -> None:
    got = {(s.label, s.unit): s.ys for s in series.bench_bloated(results())}
    assert got == {("compat", "ms"): (20.0, 21.0), ("compat", "MiB"): (2.0, 2.1), ("compat", "MB"): (0.002, 0.001),
                   ("bloated", "ms"): (400.0, 420.0), ("bloated", "MiB"): (29.0, 29.5),
                   ("bloated", "MB"): (200.0, 75.0)}


def test_a_scenario_that_did_not_run_gives_no_series() -> None:
    empty: dict[str, Any] = {"scenarios": {}}
    assert series.bench_startup(empty) == series.bench_footprint(empty) == []
    assert series.bench_scaling(empty) == series.bench_bloated(empty) == []


def test_the_charts_are_drawn_from_the_series(tmp_path: Path) -> None:
    from wasmlab.lab import charts

    figs = charts.bench_charts(results())
    assert set(figs) == {"startup", "footprint", "scaling", "bloated"}
    ax = figs["startup"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["wasmtime", "runc"]
    for ax, want in zip(figs["scaling"].axes, ({"wasmtime": (9.0, 6.0), "runc": (40.0, 45.0)},
                                               {"wasmtime": (1.5, 2.0), "runc": (2.2, 1.0)}), strict=True):
        assert {line.get_label(): tuple(line.get_ydata()) for line in ax.get_lines()} == want
    assert "crun" in " ".join(t.get_text() for t in figs["startup"].texts), "a refusing anchor is named on the chart"
    written = charts.write_bench_charts(results(), tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.{e}" for n in figs for e in ("png", "svg"))


def with_runtime(res: dict[str, Any]) -> dict[str, Any]:
    ms = {"median_ms": 7.0, "min_ms": 5.0, "max_ms": 11.0, "p10_ms": 5.0, "p90_ms": 10.0, "n": 3}
    res = {**res, "command": "wasmlab bench --quick --out /tmp/x"}
    res["scenarios"] = {**res["scenarios"], "runtime": {"n": 3, "floor": ms, "wasm_wasmtime": ms, "runc": ms}}
    return res


def test_every_chart_states_its_date_command_kernel_and_n() -> None:
    from wasmlab.lab import charts

    figs = charts.bench_charts(with_runtime(results()))
    assert set(figs) == {"startup", "footprint", "scaling", "bloated", "runtime"}
    for name, fig in figs.items():
        text = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
        for want in ("2026-12-01 20:00:00 UTC", "wasmlab bench --quick --out /tmp/x", "kernel 6.18", "n="):
            assert want in text, (name, want, text)


def test_the_scaling_chart_shows_each_start_min_and_max_and_its_legend_covers_no_point() -> None:
    from wasmlab.lab import charts

    res = results()
    for rows in res["scenarios"]["scaling"]["results"].values():
        for row in rows:
            m = row["per_container_ms"]
            row["start_ms"] = stat(m - 1, m, m + 3)
    got = {(s.label, s.unit): (s.lows, s.highs) for s in series.bench_scaling(res)}
    assert got[("wasmtime", "ms")] == ((8.0, 5.0), (12.0, 9.0)) and got[("wasmtime", "MiB")] == ((), ())
    fig = charts.bench_charts(res)["scaling"]
    fig.canvas.draw()
    ms_ax, mib_ax = fig.axes[:2]
    assert ms_ax.containers, "min-max error bars on the start-up panel"
    bars = ms_ax.containers[0].lines[2][0].get_segments()
    assert sorted((float(seg[0][1]), float(seg[1][1])) for seg in bars) == [(5.0, 9.0), (8.0, 12.0)]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "the engines are named"
    for legend in legends:
        box = legend.get_window_extent()
        for ax in (ms_ax, mib_ax):
            for line in ax.get_lines():
                for x, y in ax.transData.transform(line.get_xydata()):
                    assert not box.contains(x, y), f"the legend covers {line.get_label()}'s point"


def test_value_labels_stay_inside_their_plot() -> None:
    from wasmlab.lab import charts

    figs = charts.bench_charts(with_runtime(results()))
    for name in ("startup", "footprint", "bloated", "runtime"):
        fig = figs[name]
        fig.canvas.draw()
        for ax in fig.axes:
            right = ax.get_window_extent().x1
            for text in ax.texts:
                if text.get_text().strip():
                    assert text.get_window_extent().x1 <= right, (name, text.get_text())
