"""The bench's scenarios by name, in run order, with a gloss and whether --quick runs them: the one list that
`wasmlab bench --help`, its unknown-scenario error and the run itself use (light: the parser imports it)."""

from __future__ import annotations

from typing import NamedTuple


class ScenarioEntry(NamedTuple):
    """One scenario of `wasmlab bench`: NAME as --scenario takes it, a learner's GLOSS, whether --quick runs it,
    and the FACE that measures it ("runtime": registered in wasmlab.runtime.bench; "tui": the terminal UI)."""

    name: str
    gloss: str
    quick: bool = True
    face: str = "runtime"


BENCH_SCENARIOS: tuple[ScenarioEntry, ...] = (
    ScenarioEntry("startup", "hello start-up"),
    ScenarioEntry("cpu", "the cpu sample"),
    ScenarioEntry("footprint", "memgrow's memory"),
    ScenarioEntry("scaling", "N containers at once"),
    ScenarioEntry("pods", "pod start-up"),
    ScenarioEntry("bloated", "a Debian image carrying wasmtime"),
    ScenarioEntry("pod-figures", "pods in depth", quick=False),
    ScenarioEntry("recording", "the cost of recording, the stream's rate", quick=False),
    ScenarioEntry("cli", "`wasmlab run --rm` against podman", quick=False),
    ScenarioEntry("runtime", "the runtime's own figures", quick=False),
    ScenarioEntry("tui", "the terminal UI's answer to a key press", quick=False, face="tui"),
)
BENCH_SCENARIO_NAMES: tuple[str, ...] = tuple(s.name for s in BENCH_SCENARIOS)


def bench_scenario_help() -> str:
    """The scenarios as --help lists them: each with its gloss, those --quick leaves out marked."""
    def one(s: ScenarioEntry) -> str:
        return f"{s.name} ({s.gloss})"

    quick = ", ".join(one(s) for s in BENCH_SCENARIOS if s.quick)
    rest = ", ".join(one(s) for s in BENCH_SCENARIOS if not s.quick)
    return f"{quick}; not in --quick: {rest}"


def choose_bench_scenarios(asked: tuple[str, ...] | list[str], quick: bool) -> list[str]:
    """The scenarios to run, in run order: those ASKED (each must be known), or every one (--quick: the quick
    ones). An unknown name is a UsageError naming every scenario."""
    from wasmlab.runtime.errors import UsageError

    if asked:
        unknown = [s for s in asked if s not in BENCH_SCENARIO_NAMES]
        if unknown:
            raise UsageError(f"unknown scenario {unknown[0]!r}", f"choose from {', '.join(BENCH_SCENARIO_NAMES)}")
        return [s for s in BENCH_SCENARIO_NAMES if s in asked]
    return [s.name for s in BENCH_SCENARIOS if s.quick or not quick]


__all__ = ["BENCH_SCENARIOS", "BENCH_SCENARIO_NAMES", "ScenarioEntry", "bench_scenario_help", "choose_bench_scenarios"]
