"""`wasmlab bench` and `make bench`: registered scenarios on every engine and anchor, in one interleaved run."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmlab.runtime.bench import bloated
from wasmlab.runtime.bench.engines import ANCHORS, ENGINES, Engine, probe_anchor, remove_cgroup_tree
from wasmlab.runtime.bench.scenarios import SCENARIOS, BenchContext, Phase, Rounds, register, run_rounds
from wasmlab.runtime.bench.scenarios import pods as _pods
from wasmlab.runtime.bench.scenarios import scaling as _scaling
from wasmlab.runtime.bench_catalog import choose_bench_scenarios
from wasmlab.runtime.errors import UsageError
from wasmlab.runtime.progress import Progress, ProgressCallback

ROOT = Path(__file__).resolve().parents[2]  # runtime/bench/: the repository is two up
SCHEMA = 1
QUICK_N = 2
QUICK_SCALING = (1, 3)
FULL_SCALING = (1, 10, 50, 100, 200)


def _runtime_figures(ctx: BenchContext) -> dict[str, Any]:
    from wasmlab.runtime.bench import micro

    return micro.run(ctx.n, 1000, None, progress=ctx.tick)


register(Rounds("startup", "hello start-up (create to exit)", "hello", (), ()))
register(Rounds("cpu", "CPU-bound: the cpu sample counts primes", "cpu", ("200000",), ("20000",)))
register(Rounds("footprint", "memory: the memgrow sample grows its heap (MiB)", "memgrow", ("64",), ("16",)))
register(Phase("scaling", "N containers alive at once (the loop sample)", _scaling,
               count=lambda ctx: len(ctx.scaling) * len(ctx.engines)))
register(Phase("pods", "pod start-up (kube play, kube down)", _pods, count=lambda ctx: ctx.n + 1))
register(Phase("bloated", "the bloated image against the compat image", bloated.measure,
               count=lambda ctx: ctx.n + 3))
def _pod_figures(ctx: BenchContext) -> dict[str, Any]:
    from wasmlab.runtime.bench_pods import pod_figures

    return pod_figures(ctx.n, progress=ctx.tick, cgroup_parent=f"{ctx.cgroup_base}/pods")


def _recording(ctx: BenchContext) -> dict[str, Any]:
    from wasmlab.runtime.metrics.overhead import recording_overhead, stream_rate

    ctx.tick("recording on and off: 200 interleaved runs of hello")
    out = recording_overhead(max(200, ctx.n))
    ctx.tick("the live stream's real rate")
    return {"overhead": out, "stream": stream_rate()}


register(Phase("pod-figures", "pods in depth: a mixed pod against one container, joining, 50 pods (helper pods)",
               _pod_figures, count=lambda ctx: 5))
register(Phase("recording", "what recording every run costs (>= 200 runs, on and off interleaved), the stream's rate",
               _recording, count=lambda ctx: 2))
def _cli(ctx: BenchContext) -> dict[str, Any]:
    from wasmlab.runtime.bench import cli

    ctx.tick("wasmlab run --rm, cold and warm, against podman run --rm")
    return cli.cli_figures(max(ctx.n, 8))


register(Phase("cli", "the command line: `wasmlab run --rm` against `podman run --rm` (issue 16)", _cli,
               count=lambda ctx: 1))
register(Phase("runtime", "the runtime's own figures: floor, runc, kill, idle footprint, Lab.run (issue 11)",
               _runtime_figures, count=lambda ctx: 8 + 2 * -(-ctx.n // max(1, ctx.n // 5))))  # micro.run's steps


@dataclass(frozen=True)
class BenchOptions:
    """What to measure: rounds, scenarios (empty: every one; with quick, every one marked quick), engines."""

    n: int | None = None
    quick: bool = False
    scenarios: Sequence[str] = ()
    engines: Sequence[str] = ENGINES
    scaling: Sequence[int] | None = None
    out: Path | None = None
    command: str = "wasmlab bench"
    extra: dict[str, Any] = field(default_factory=dict)

    def rounds(self) -> int:
        return self.n if self.n is not None else (QUICK_N if self.quick else 20)

    def chosen(self) -> list[str]:
        """Every scenario to run, in run order, those a face measures (tui) included."""
        return choose_bench_scenarios(tuple(self.scenarios), self.quick)


def run_bench(options: BenchOptions, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Run the chosen scenarios; the results as a JSON-ready dict (written to options.out/latest.json too)."""
    n = options.rounds()
    if n < 1:
        raise UsageError(f"-n must be at least 1 (got {n})", "try -n 5, or --quick")
    unknown = [e for e in options.engines if e not in ENGINES]
    if unknown:
        raise UsageError(f"unknown engine {unknown[0]!r}", f"choose from {', '.join(ENGINES)}")
    scaling = tuple(options.scaling or (QUICK_SCALING if options.quick else FULL_SCALING))
    if any(k < 1 for k in scaling):
        raise UsageError("--scaling takes positive counts", "for example --scaling 1,10,50")
    chosen = options.chosen()
    made = writable_folder(options.out, "--out") if options.out is not None else []
    try:
        results = _measure(options, n, scaling, chosen, progress)
    except BaseException:
        for folder in reversed(made):  # nothing measured: the folders this run made go again
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if options.out is not None:
        tmp_json = options.out / ".latest.json.tmp"
        try:
            tmp_json.write_text(json.dumps(results, indent=2))
            os.replace(tmp_json, options.out / "latest.json")
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp_json.unlink()
            raise UsageError(f"cannot write {options.out / 'latest.json'} ({exc.strerror or exc})",
                             "free some space or give another folder with --out") from None
    return results


def writable_folder(folder: Path, flag: str) -> list[Path]:
    """Make FOLDER (and its missing parents) and check a file can be written in it, before an hour of work: a
    UsageError naming FLAG if not, with nothing left behind. The folders made, outermost first."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {folder} is a file", f"give {flag} a folder for latest.json and the charts")
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wasmlab-bench-probe-"):
            pass
    except OSError as exc:
        for made in reversed(missing):
            with contextlib.suppress(OSError):
                made.rmdir()
        raise UsageError(f"cannot write into {flag} {folder} ({exc.strerror or exc.__class__.__name__})",
                         f"give {flag} a folder you can write to, for example {flag} ./wasmlab-bench") from None
    return missing


def _measure(options: BenchOptions, n: int, scaling: tuple[int, ...], chosen: list[str],
             progress: ProgressCallback | None) -> dict[str, Any]:
    os.environ.setdefault("WASMLAB_HISTORY", "0")
    from wasmlab.runtime.lifecycle import Runtime
    from wasmlab.runtime.linux import cgroups

    cgroup_base = f"{cgroups.default_parent()}/bench-{os.getpid()}-{secrets.token_hex(3)}"
    results: dict[str, Any] = {
        "schema": SCHEMA, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": options.command,
        "machine": {"kernel": os.uname().release, "cpus": os.cpu_count(), "machine": platform.machine(),
                    "python": platform.python_version(),
                    "load_at_start": [round(x, 2) for x in os.getloadavg()]},
        "n": n, "quick": options.quick, "engines": {}, "scenarios": {}}
    done = [0]
    total = [1]

    def tick(what: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(Progress("bench", what, min(done[0], total[0]), total[0], "steps"))

    with tempfile.TemporaryDirectory(prefix="wasmlab-bench-") as tmp:
        work = Path(tmp)
        rt = Runtime(root=str(work / "state"))
        lab_holder: list[Any] = []

        def lab_factory() -> Any:
            from wasmlab.runtime.service import Lab

            lab_holder.append(Lab(work / "lab-home"))
            return lab_holder[-1]

        engines: dict[str, Engine] = {}
        anchors: dict[str, dict[str, Any]] = {}
        try:
            for name in options.engines:
                if name in ANCHORS:
                    anchor = probe_anchor(name, work, cgroup_base)
                    anchors[name] = anchor.as_dict()
                    if anchor.available:
                        engines[name] = Engine(name, binary=anchor.path, state_root=work / f"{name}-state")
                else:
                    engines[name] = Engine(name, runtime=rt)
                    anchors[name] = {"name": name, "available": True, "error": ""}
            results["engines"] = anchors
            ctx = BenchContext(n=n, quick=options.quick, work=work, cgroup_base=cgroup_base, engines=engines,
                               anchors=anchors, scaling=scaling, tick=tick, lab_factory=lab_factory,
                               build_bloated=not options.quick or "bloated" in options.scenarios)
            ours = [SCENARIOS[s] for s in chosen if s in SCENARIOS]  # tui: the lab's face measures it
            rounds = [sc for sc in ours if isinstance(sc, Rounds)]
            phases = [sc for sc in ours if isinstance(sc, Phase)]
            total[0] = (n + 1 if rounds else 0) + sum(p.steps(ctx) for p in phases) + 1
            if rounds:
                results["scenarios"].update(run_rounds(ctx, [r for r in rounds if isinstance(r, Rounds)]))
            for phase in phases:
                assert isinstance(phase, Phase)
                results["scenarios"][phase.name] = {"title": phase.title, **phase.run(ctx)}
        finally:
            for lab in lab_holder:
                lab.close()
            rt.close()
            remove_cgroup_tree(cgroup_base)
    tick("done")
    return results


# -- reading results --------------------------------------------------------------------------------------------
def _fmt(stat: dict[str, Any], unit: str, digits: int = 2) -> str:
    if not stat or not stat.get("n"):
        return "n/a"
    return f"{stat['median']:.{digits}f} {unit} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _ms_row(label: str, stat: dict[str, Any] | None) -> str:
    """A `{median_ms, min_ms, max_ms}` figure as a table row ("n/a" when it was not measured)."""
    if not stat or "median_ms" not in stat:
        return f"  {label:<44}{'n/a':>30}"
    return f"  {label:<44}{stat['median_ms']:>10.2f} ms ({stat['min_ms']:.2f}-{stat['max_ms']:.2f})"


RUNTIME_ROWS = (("floor", "floor: lean fork, unshare, exit"),
                ("wasm_wasmtime", "hello.wasm on wasmtime, Runtime.run"),
                ("wasm_wasmer", "hello.wasm on wasmer, Runtime.run"),
                ("linux_embedded", "busybox echo, Runtime.run"), ("runc", "busybox echo, runc run"),
                ("kill_latency", "kill of a spinning module to its exit"),
                ("cli_version", "wasmlab-oci --version"))


def _runtime_lines(sc: dict[str, Any]) -> list[str]:
    lines = [_ms_row(label, sc.get(key)) for key, label in RUNTIME_ROWS if key in sc]
    lab = sc.get("lab") or {}
    lines += [_ms_row(f"Lab.run: {key}", stat) for key, stat in lab.items() if isinstance(stat, dict)
              and "median_ms" in stat]
    rat = {**(sc.get("ratios") or {}), **(lab.get("ratios") or {})}
    if rat:
        lines.append("  ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in rat.items()))
    return lines


def _cli_lines(sc: dict[str, Any]) -> list[str]:
    """The cli scenario's commands, whatever rows it has: median ms (min-max), then its ratios."""
    lo, hi = sc.get("min_ms") or {}, sc.get("max_ms") or {}
    lines = [f"  {key:<28}{ms:>10.1f} ms" + (f" ({lo[key]:.1f}-{hi[key]:.1f})" if key in lo and key in hi else "")
             for key, ms in (sc.get("median_ms") or {}).items()]
    if sc.get("ratio"):
        lines.append("  ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in sc["ratio"].items())
                     + (f" (target: at most {sc['target']}x)" if sc.get("target") else ""))
    return lines


def _other_lines(sc: dict[str, Any]) -> list[str]:
    """A scenario without a printer of its own: every figure it has, so no section is a bare title."""
    return [f"  {name}: {_num(value)}" for name, value in flat_figures(sc).items()]


def table(res: dict[str, Any], faces: dict[str, Callable[[dict[str, Any]], list[str]]] | None = None) -> str:
    """The text table `wasmlab bench` prints: medians (min-max) per scenario and engine, ratios against runc.
    FACES prints the scenarios a face measured (the lab's tui): name -> lines."""
    faces = faces or {}
    lines = [f"wasmlab bench, {res['date']}, kernel {res['machine']['kernel']}, {res['machine']['cpus']} CPUs, "
             f"{res['n']} rounds: median (min-max); x runc: ratio of medians, same run"]
    for name, row in res.get("engines", {}).items():
        if not row.get("available"):
            lines.append(f"  {name}: not measured: {row.get('error')}")
    for key, sc in res.get("scenarios", {}).items():
        lines.append("")
        lines.append(f"{key}: {sc.get('title', '')}" + (f" [{' '.join(sc['args'])}]" if sc.get("args") else ""))
        if "results" in sc and key != "scaling":
            ratios = sc.get("ratios_vs_runc") or {}
            lines.append(f"  {'ENGINE':<10}{'TIME':>28}{'x runc':>8}{'PEAK MEMORY':>32}{'x runc':>8}")
            for engine, r in sc["results"].items():
                rat = ratios.get(engine) or {}
                lines.append(f"  {engine:<10}{_fmt(r['ms'], 'ms'):>28}"
                             f"{(format(rat['ms'], '.2f') if 'ms' in rat else '-'):>8}"
                             f"{_fmt(r['peak_mib'], 'MiB'):>32}"
                             f"{(format(rat['peak'], '.2f') if 'peak' in rat else '-'):>8}")
        elif key == "scaling":
            lines.append(f"  {'ENGINE':<10}{'N':>5}{'START ALL':>14}{'EACH START':>30}{'MEMORY':>14}"
                         f"{'PER CONTAINER':>16}")
            for engine, rows in sc["results"].items():
                for row in rows:
                    lines.append(f"  {engine:<10}{row['n']:>5}{row['start_all_ms']:>11.1f} ms"
                                 f"{_fmt(row['start_ms'], 'ms'):>30}{row['memory_mib']:>10.1f} MiB"
                                 f"{row['per_container_mib']:>12.2f} MiB")
        elif key == "bloated" and "images" in sc:
            lines.append(f"  {'IMAGE':<10}{'DISK':>12}{'COMPRESSED':>13}{'START':>28}{'PEAK MEMORY':>32}")
            for kind, im in sc["images"].items():
                lines.append(f"  {kind:<10}{_size(im['disk_bytes']):>12}{_size(im['compressed_bytes']):>13}"
                             f"{_fmt(im['ms'], 'ms', 1):>28}{_fmt(im['peak_mib'], 'MiB'):>32}")
            rat = sc["ratios_bloated_vs_compat"]
            lines.append("  bloated / compat: " + ", ".join(f"{k} {v:,.1f}x" for k, v in rat.items() if v))
        elif key == "pods" and "play_ms" in sc:
            lines.append(f"  kube play: {_fmt(sc['play_ms'], 'ms', 1)}; kube down: {_fmt(sc['down_ms'], 'ms', 1)}")
        elif sc.get("skipped"):
            lines.append(f"  skipped: {sc['skipped']}")
        elif key == "recording" and "overhead" in sc:
            lines.append(f"  recording on/off, {sc['overhead']['runs']} runs each: "
                         f"{sc['overhead']['overhead'] * 100:+.1f}%; stream {sc['stream']['rate_per_s']:.2f} ticks/s")
        elif key == "pod-figures" and "mixed_ratio" in sc:
            lines.append(f"  mixed pod / one container: {sc['mixed_ratio']:.2f}x; joining / standalone: "
                         f"{sc.get('join_ratio', float('nan')):.2f}x")
        elif key == "runtime":
            lines += _runtime_lines(sc)
        elif key == "cli" and "median_ms" in sc:
            lines += _cli_lines(sc)
        elif key in faces:
            lines += faces[key](sc)
        else:
            lines += _other_lines(sc)
    return "\n".join(lines)


def figures(res: dict[str, Any]) -> dict[str, float]:
    """Every comparable figure of a run, flattened: scenario/engine/measure -> median."""
    out: dict[str, float] = {}
    for key, sc in res.get("scenarios", {}).items():
        if key == "scaling":
            for engine, rows in sc.get("results", {}).items():
                for row in rows:
                    out[f"scaling/{engine}/N={row['n']}/per_container_ms"] = row["per_container_ms"]
                    out[f"scaling/{engine}/N={row['n']}/per_container_mib"] = row["per_container_mib"]
        elif "results" in sc:
            for engine, r in sc["results"].items():
                for measure in ("ms", "peak_mib"):
                    if r[measure].get("n"):
                        out[f"{key}/{engine}/{measure}"] = r[measure]["median"]
        elif key == "bloated" and "images" in sc:
            for kind, im in sc["images"].items():
                for measure in ("ms", "peak_mib"):
                    if im[measure].get("n"):
                        out[f"bloated/{kind}/{measure}"] = im[measure]["median"]
                out[f"bloated/{kind}/disk_mb"] = im["disk_bytes"] / 1e6
        elif key == "pods" and "play_ms" in sc:
            for measure in ("play_ms", "down_ms"):
                if (sc.get(measure) or {}).get("n"):
                    out[f"pods/{measure}"] = sc[measure]["median"]
        else:
            out.update({f"{key}/{name}": v for name, v in flat_figures(sc).items()})
    return out


# Not figures to compare: what a run was (date, machine, inputs), and the spread around a median.
_NOT_FIGURES = {"title", "date", "kernel", "machine", "command", "commands", "args", "program", "n", "rounds",
                "target", "target_ms", "samples", "min", "max", "min_ms", "max_ms", "p10_ms", "p90_ms", "times_ms",
                "count", "runs", "recorded", "containers", "presses", "idle_presses", "batches", "interval_s",
                "root_mode"}


def flat_figures(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number of a scenario's results, by its path ("lab/lab_hello/median_ms"): medians and ratios, not
    the spread (min, max, samples) nor what the run was (date, inputs, counts)."""
    out: dict[str, float] = {}
    for name, value in data.items():
        if name in _NOT_FIGURES or name.startswith("target"):
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[f"{prefix}{name}"] = float(value)
        elif isinstance(value, dict):
            out.update(flat_figures(value, f"{prefix}{name}/"))
    return out


@dataclass(frozen=True)
class Change:
    """One figure in an earlier run and now."""

    figure: str
    before: float
    now: float

    @property
    def ratio(self) -> float:
        return self.now / self.before if self.before else float("inf")


def compare(now: dict[str, Any], before: dict[str, Any]) -> list[Change]:
    """The figures both runs have, earlier against now (machines differ: compare ratios, not absolutes)."""
    a, b = figures(before), figures(now)
    return [Change(k, a[k], b[k]) for k in b if k in a]


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An earlier run's JSON, checked to be one (one line and a hint if not)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"no such file: {p}", "give the latest.json of an earlier `wasmlab bench --out DIR`") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{p} is not a bench result ({exc.__class__.__name__})",
                         "give the latest.json an earlier `wasmlab bench` wrote") from None
    if not isinstance(data, dict) or "scenarios" not in data:
        raise UsageError(f"{p} is not a `wasmlab bench` result (no scenarios)",
                         "an older `make bench` JSON cannot be compared: run `wasmlab bench` for both")
    return data


def _num(value: float) -> str:
    """A figure with four significant digits whatever its size (0.01134, 12.34, 1507): none shows as 0.01."""
    if value == 0 or abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-4 else f"{value:.2e}"


def compare_table(changes: list[Change], before: dict[str, Any]) -> str:
    if not changes:
        return f"compare: no figure in common with the run of {before.get('date', '?')}"
    width = max(44, *(len(c.figure) + 2 for c in changes))
    lines = [f"against the run of {before.get('date', '?')} (kernel {before.get('machine', {}).get('kernel', '?')}):",
             f"  {'FIGURE':<{width}}{'BEFORE':>12}{'NOW':>12}{'CHANGE':>10}"]
    for c in changes:
        change = f"{(c.ratio - 1) * 100:>+9.1f}%" if c.before else f"{'-':>10}"
        lines.append(f"  {c.figure:<{width}}{_num(c.before):>12}{_num(c.now):>12}{change}")
    return "\n".join(lines)


def markdown(res: dict[str, Any], charts: str = "bench") -> str:
    """docs/bench.md: every figure of one run with its date, command and kernel; medians with min and max, and
    ratios of the same run. CHARTS is the folder of the charts, relative to the markdown file."""
    m = res["machine"]
    lines = ["# Benchmark results", "",
             f"Measured {res['date']} on {m['cpus']} CPUs ({m['machine']}), kernel {m['kernel']}, with "
             f"`{res['command']}`, everything in one run (load average at the start "
             f"{', '.join(str(x) for x in m.get('load_at_start') or ['?'])}: the machine is shared). Each "
             f"figure is the median of {res['n']} rounds with its "
             "min and max in brackets; the samples of one round are taken one per engine in a shuffled order, so "
             "that a noisy spell on this shared machine hits them all alike: compare the ratios (of medians, same "
             "run), not the absolute times, across machines.", ""]
    absent = [(name, row) for name, row in res.get("engines", {}).items() if not row.get("available")]
    if absent:
        lines += ["Anchors that did not run here (reported, never faked):", ""]
        lines += [f"- **{name}**: `{row.get('error')}`" for name, row in absent]
        lines.append("")
    lines += ["Every engine runs the same C program (assets/src), built for wasm32-wasi or as a static Linux binary, "
              "from a bundle with runc's default config (namespaces, mounts, a read-only root): only the engine "
              "differs. *Peak memory* is the peak of the container's cgroup (v1 `memory.max_usage_in_bytes`), "
              "runc's own init included for runc; not an RSS.", ""]
    for key, sc in res.get("scenarios", {}).items():
        if "results" in sc and key != "scaling":
            ratios = sc.get("ratios_vs_runc") or {}
            lines += [f"## {key}: {sc['title']}" + (f" (`{' '.join(sc['args'])}`)" if sc.get("args") else ""), "",
                      "| engine | create to exit | x runc | peak memory | x runc |", "|---|---|---|---|---|"]
            for engine, r in sc["results"].items():
                rat = ratios.get(engine) or {}
                lines.append(f"| {engine} | {_fmt(r['ms'], 'ms')} | {rat.get('ms', float('nan')):.2f} | "
                             f"{_fmt(r['peak_mib'], 'MiB')} | {rat.get('peak', float('nan')):.2f} |")
            lines.append("")
            if key in ("startup", "footprint"):
                lines += [f"![{key}]({charts}/{key}.svg)", ""]
        elif key == "scaling":
            lines += [f"## scaling: {sc['title']}", "",
                      "N containers of the `loop` sample (asleep between ticks) started one after the other, all "
                      "alive together: the time to start them all, each start (median, min-max of the N), and "
                      "their cgroups' memory with all N running, in all and over N.", "",
                      "| engine | N | start all | each start | memory | per container |",
                      "|---|---|---|---|---|---|"]
            for engine, rows in sc["results"].items():
                for row in rows:
                    lines.append(f"| {engine} | {row['n']} | {row['start_all_ms']:.1f} ms | "
                                 f"{_fmt(row['start_ms'], 'ms')} | {row['memory_mib']:.1f} MiB | "
                                 f"{row['per_container_mib']:.2f} MiB |")
            lines += ["", "One round per N (a round is itself N starts); the chart shows each start's median and "
                      "the memory over N.", "", f"![scaling]({charts}/scaling.svg)", ""]
        elif key == "bloated":
            lines += [f"## bloated: {sc['title']}", ""]
            if "images" not in sc:
                lines += [f"Skipped: {sc.get('skipped')}", ""]
                continue
            b = sc.get("build") or {}
            lines += ["The image the seed argues against: `debootstrap --variant=minbase --include=python3 bookworm`, "
                      "the wasmtime package of this lab copied in, and a 20-line runner as its entrypoint, "
                      f"built once ({b.get('build_s') or 0:.0f} s here) and cached outside the lab home. Both run "
                      "through `Lab.run` (the image unpacked as snapshots, a cgroup, the log).", "",
                      "| image | on disk | compressed (gzip) | `Lab.run` start-up | peak memory |",
                      "|---|---|---|---|---|"]
            for kind, im in sc["images"].items():
                lines.append(f"| {kind} | {_size(im['disk_bytes'])} | {_size(im['compressed_bytes'])} | "
                             f"{_fmt(im['ms'], 'ms', 1)} | {_fmt(im['peak_mib'], 'MiB')} |")
            rat = sc["ratios_bloated_vs_compat"]
            lines += ["", "Bloated over compat: " + ", ".join(f"{k} {v:,.1f}x" for k, v in rat.items() if v) + ".",
                      "", f"![bloated]({charts}/bloated.svg)", ""]
        elif key == "pods" and "play_ms" in sc:
            lines += [f"## pods: {sc['title']}", "",
                      f"- `kube play` to running: {_fmt(sc['play_ms'], 'ms', 1)}",
                      f"- `kube down`: {_fmt(sc['down_ms'], 'ms', 1)}", ""]
        elif key == "pod-figures" and "mixed_pod" in sc:
            from wasmlab.runtime.bench_pods import pod_markdown

            lines += [pod_markdown(sc).replace("## Pods", f"## pod-figures: {sc['title']}", 1), ""]
        elif key == "recording" and "overhead" in sc:
            o, st = sc["overhead"], sc["stream"]
            lines += [f"## recording: {sc['title']}", "",
                      f"- `Runtime.run` of hello, {o['runs']} runs each, interleaved: recording on "
                      f"{o['on_median_ms']:.2f} ms ({o['on_min_ms']:.2f}-{o['on_max_ms']:.2f}), off "
                      f"{o['off_median_ms']:.2f} ms ({o['off_min_ms']:.2f}-{o['off_max_ms']:.2f}); totals on/off - 1 "
                      f"(the recorder's drain counted): **{o['overhead'] * 100:+.1f}%** (target < 5%).",
                      f"- The live stream at {st['interval_s']} s with {st['containers']} containers: "
                      f"{st['rate_per_s']:.2f} ticks/s (gap median {st['gap_median_ms']:.0f} ms, max "
                      f"{st['gap_max_ms']:.0f} ms).", ""]
        elif key == "cli" and "ratio" in sc:
            from wasmlab.runtime.bench import cli

            lines += [f"## cli: {sc['title']}", "", cli.markdown(sc), ""]
        elif key == "runtime":
            from wasmlab.runtime.bench import micro

            text = micro.markdown(sc).replace("](bench/latest.png)", f"]({charts}/runtime.svg)")
            body = text.split("\n", 3)[3] if text.startswith("# ") else text
            lines += ["## runtime: the embedded runtime's own figures (issue 11)", "",
                      body.replace("\n## ", "\n### "), ""]
    return "\n".join(lines)


# Under the names wasmlab.runtime re-exports them (the faces import only the package).
bench_table = table
bench_markdown = markdown
compare_bench = compare
compare_bench_table = compare_table
load_bench = load_results


def main(argv: list[str] | None = None) -> int:
    """`python -m wasmlab.runtime.bench`: the same as `wasmlab bench` (the lab's CLI draws the charts)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m wasmlab.runtime.bench", description=__doc__)
    parser.add_argument("-n", type=int, default=None, help="rounds per measurement (default 20; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="a few rounds and small N, for tests")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench", help="folder for latest.json")
    args = parser.parse_args(argv)
    res = run_bench(BenchOptions(n=args.n, quick=args.quick, out=args.out,
                                 command=" ".join(["python -m wasmlab.runtime.bench", *sys.argv[1:]])),
                    progress=lambda p: print(f"bench: {p.what}", file=sys.stderr))
    print(table(res))
    return 0


__all__ = ["ROOT", "SCENARIOS", "BenchOptions", "Change", "bench_markdown", "bench_table", "compare", "compare_bench",
           "compare_bench_table", "compare_table", "figures", "load_bench", "load_results", "markdown", "register",
           "run_bench", "table"]
