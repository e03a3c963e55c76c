"""What `wasmlab bench` prints and refuses: one scenario list, every section's figures, --compare over every
scenario, one-line errors before any measuring, and progress lines when stderr is no terminal."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
RUN = json.loads((ROOT / "docs" / "bench" / "latest.json").read_text())  # a full run, committed


def test_one_scenario_list_for_help_errors_and_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    from wasmlab.lab.cli import parser
    from wasmlab.runtime.bench import SCENARIOS, BenchOptions
    from wasmlab.runtime.bench_catalog import BENCH_SCENARIO_NAMES, BENCH_SCENARIOS
    from wasmlab.runtime.errors import UsageError

    assert {s.name for s in BENCH_SCENARIOS if s.face == "runtime"} == set(SCENARIOS)
    assert "tui" in BENCH_SCENARIO_NAMES and set(RUN["scenarios"]) <= set(BENCH_SCENARIO_NAMES)
    with pytest.raises(SystemExit):
        parser().parse_args(["bench", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    with pytest.raises(UsageError) as err:
        BenchOptions(scenarios=("nope",)).chosen()
    for name in BENCH_SCENARIO_NAMES:
        assert f"{name} (" in help_text, name
        assert name in err.value.hint, name
    assert BenchOptions().chosen() == list(BENCH_SCENARIO_NAMES)
    assert "tui" not in BenchOptions(quick=True).chosen() and BenchOptions(scenarios=("tui",)).chosen() == ["tui"]


def test_every_section_of_the_table_prints_its_figures() -> None:
    from wasmlab.lab.cli.bench import _tui_lines
    from wasmlab.runtime.bench import table

    text = table(RUN, faces={"tui": _tui_lines})
    sections = {}
    for block in text.split("\n\n")[1:]:
        title, *rows = block.splitlines()
        sections[title.split(":")[0]] = rows
    assert set(sections) == set(RUN["scenarios"])
    for name, rows in sections.items():
        assert rows and any(ch.isdigit() for ch in "".join(rows)), f"{name} prints a title and nothing else"
    cli = RUN["scenarios"]["cli"]
    assert f"{cli['median_ms']['cold_wasm']:.1f} ms ({cli['min_ms']['cold_wasm']:.1f}-" in "\n".join(sections["cli"])
    assert f"p95 {RUN['scenarios']['tui']['p95_ms']:.0f} ms" in "\n".join(sections["tui"])
    assert any(row.strip().startswith("floor: lean fork, unshare, exit") for row in sections["runtime"])


def test_compare_covers_every_scenario_with_enough_digits() -> None:
    from wasmlab.runtime.bench import compare, compare_table

    before = copy.deepcopy(RUN)
    before["scenarios"]["bloated"]["images"]["compat"]["disk_bytes"] = 10_000
    changes = compare(RUN, before)
    assert {c.figure.split("/")[0] for c in changes} == set(RUN["scenarios"])
    names = {c.figure for c in changes}
    for want in ("runtime/floor/median_ms", "runtime/ratios/wasm_wasmtime_vs_runc", "cli/median_ms/cold_wasm",
                 "tui/p95_ms", "recording/overhead/overhead", "pod-figures/mixed_ratio", "pods/down_ms"):
        assert want in names, want
    assert not [n for n in names if n.endswith(("/min", "/max", "/date", "/n"))], "spreads and inputs are no figures"
    row = next(line.split() for line in compare_table(changes, before).splitlines()
               if "bloated/compat/disk_mb" in line)
    now = RUN["scenarios"]["bloated"]["images"]["compat"]["disk_bytes"] / 1e6
    assert 0.001 < now < 0.1 and row[1:] == ["0.01", f"{now:.4g}", f"{(now / 0.01 - 1) * 100:+.1f}%"]


def test_progress_is_one_line_per_step_when_stderr_is_no_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from wasmlab.lab.cli.bench import StepLines
    from wasmlab.runtime import Progress

    line = StepLines("bench")
    for i in range(1, 4):
        line(Progress("bench", f"round {i}", i, 3, "steps"))
    line.close()
    assert capsys.readouterr().err.splitlines() == ["bench: [1/3] round 1", "bench: [2/3] round 2",
                                                    "bench: [3/3] round 3"]
    quiet = StepLines("bench", quiet=True)
    quiet(Progress("bench", "round 1", 1, 3, "steps"))
    assert capsys.readouterr().err == "", "--json prints no progress"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASMLAB, "bench", "--quick", "--scenario", "startup", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "says"), [
    (["--out", "/proc/nope"], "cannot write into --out /proc/nope (No such file or directory)"),
    (["--out", "{tmp}/file/sub"], "cannot write into --out {tmp}/file/sub"),
    (["--out", "{tmp}/file"], "--out {tmp}/file is a file"),
    (["--markdown", "/proc/nope/bench.md", "--out", "{tmp}/out"], "cannot write --markdown /proc/nope/bench.md"),
    (["--markdown", "{tmp}", "--out", "{tmp}/out"], "--markdown {tmp} is a folder"),
    (["--scenario", "nope", "--out", "{tmp}/out"], "unknown scenario 'nope'"),
    (["--compare", "{tmp}/file", "--out", "{tmp}/out"], "{tmp}/file is not a bench result"),
    (["--scaling", "1,x", "--out", "{tmp}/out"], "argument --scaling: '1,x' is not a list of counts"),
])
def test_a_bad_flag_is_one_line_with_a_hint_before_anything_is_measured(tmp_path: Path, args: list[str],
                                                                         says: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    r = bench(*(a.format(tmp=tmp_path) for a in args))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and says.format(tmp=tmp_path) in last and "(hint: " in last, r.stderr
    assert "bench: " not in r.stderr, "nothing was measured"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing left behind"
