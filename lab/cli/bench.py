"""wasmlab bench: start-up, CPU, footprint, scaling, pods and the bloated image, measured here, to JSON and charts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmlab.lab.cli.common import ProgressLine, print_json
from wasmlab.runtime.errors import UsageError

if TYPE_CHECKING:
    from wasmlab.runtime import Progress


class StepLines:
    """The bench's progress when stderr is no terminal (a log, `make bench | tee`): one plain line per step, as
    podman and pip print then, so a run of minutes is never silent; on a terminal, the bar redrawn in place."""

    def __init__(self, label: str, *, quiet: bool = False) -> None:
        self.bar = ProgressLine(label, show_progress=not quiet)
        self.label = label
        self.plain = not quiet and not self.bar.tty

    def __call__(self, p: Progress) -> None:
        if self.plain and not p.output:
            count = f"[{p.done}/{p.total}] " if p.total > 0 else ""
            sys.stderr.write(f"{self.label}: {count}{p.what}\n")
            sys.stderr.flush()
            return
        self.bar(p)

    def close(self) -> None:
        self.bar.close()


def _counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of counts such as 1,10,50") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive counts such as 1,10,50")
    return counts


def cmd_bench(args: argparse.Namespace) -> int:
    from wasmlab.runtime import (
        BenchOptions,
        bench_markdown,
        bench_table,
        compare_bench,
        compare_bench_table,
        load_bench,
        run_bench,
    )

    before = load_bench(args.compare) if args.compare else None  # a wrong file is said before an hour of work
    out = Path(args.out)
    if args.markdown:
        _check_markdown(Path(args.markdown))
    command = " ".join(["wasmlab bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "wasmlab bench"
    options = BenchOptions(n=args.n, quick=args.quick, scenarios=tuple(args.scenario or ()),
                           engines=tuple(args.engine) if args.engine else BenchOptions().engines,
                           scaling=tuple(args.scaling) if args.scaling else None, out=out,
                           command=command)
    line = StepLines("bench", quiet=args.json)
    try:
        res = run_bench(options, progress=line)
        if "tui" in options.chosen():
            res = _with_tui_figures(res, out, line)
    finally:
        line.close()
    written: list[Path] = []
    if not args.no_charts:
        from wasmlab.lab.charts import write_bench_charts

        written = write_bench_charts(res, out)
    if args.markdown:
        md = Path(args.markdown)
        try:
            md.write_text(bench_markdown(res, charts=_relative(out, md.parent)) + _tui_markdown(res))
        except OSError as exc:
            raise UsageError(f"cannot write --markdown {md} ({exc.strerror or exc})",
                             f"the figures are in {out / 'latest.json'}; give a file you can write to") from None
        written.append(md)
    changes = compare_bench(res, before) if before is not None else None
    if args.json:
        data: dict[str, Any] = {"results": res, "json": str(out / "latest.json"), "charts": [str(p) for p in written]}
        if changes is not None:
            data["compare"] = [{"figure": c.figure, "before": c.before, "now": c.now, "ratio": c.ratio}
                               for c in changes]
        print_json(data)
        return 0
    print(bench_table(res, faces={"tui": _tui_lines}))
    if changes is not None and before is not None:
        print()
        print(compare_bench_table(changes, before))
    print()
    print(f"wrote {out / 'latest.json'}" + (f" and {len(written)} charts/files: "
                                            f"{', '.join(p.name for p in written)}" if written else ""))
    return 0


def _check_markdown(md: Path) -> None:
    """--markdown must name a file that can be written, said before the run (it is written after it)."""
    import os

    folder = md.parent if str(md.parent) else Path(".")
    if md.is_dir():
        raise UsageError(f"--markdown {md} is a folder", "give a file name, for example --markdown bench.md")
    if not folder.is_dir() or not os.access(folder, os.W_OK) or (md.exists() and not os.access(md, os.W_OK)):
        raise UsageError(f"cannot write --markdown {md} (no folder {folder} to write in)" if not folder.is_dir()
                         else f"cannot write --markdown {md} (not writable)",
                         "give a file in a folder you can write to, for example --markdown bench.md")


def _tui_lines(tui: dict[str, Any]) -> list[str]:
    """The tui scenario's figures as the terminal table shows them."""
    lines = [f"  key press to screen, {tui['presses']} presses while {tui['containers']} containers start: "
             f"median {tui['median_ms']:.0f} ms, p95 {tui['p95_ms']:.0f} ms, max {tui['max_ms']:.0f} ms "
             f"(target: within {tui['target_ms']} ms)"]
    if "idle_p95_ms" in tui:
        lines.append(f"  idle ({tui['idle_presses']} presses): median {tui['idle_median_ms']:.0f} ms, p95 "
                     f"{tui['idle_p95_ms']:.0f} ms; under load / idle at p95: {tui['p95_over_idle']:.2f}x; "
                     f"{tui['containers']} starts took {tui['start_all_s']:.2f} s (median)")
    return lines


def _with_tui_figures(res: dict[str, Any], out: Path, line: StepLines) -> dict[str, Any]:
    """The terminal UI's answer to a key press while 20 containers start (issue 14): measured by the face that
    owns it, after the runtime's scenarios, into the same results."""
    import json
    import os

    from wasmlab.lab.tui.responsiveness import CONTAINERS, measure
    from wasmlab.runtime import Progress

    line(Progress("bench", f"the terminal UI: key presses while {CONTAINERS} containers start"))
    res = {**res, "scenarios": {**res.get("scenarios", {}), "tui": {
        "title": f"the terminal UI: a key press to the screen showing it, while {CONTAINERS} containers start",
        **measure()}}}
    tmp = out / ".latest.json.tmp"
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out / "latest.json")
    return res


def _tui_markdown(res: dict[str, Any]) -> str:
    tui = res.get("scenarios", {}).get("tui")
    if not tui:
        return ""
    return (f"\n## tui: {tui['title']}\n\n"
            f"{tui['presses']} presses of `1`/`2` (screen switches) at a typist's pace while {tui['containers']} "
            f"hello containers start from the Run dialog's path: median {tui['median_ms']:.0f} ms, p95 "
            f"{tui['p95_ms']:.0f} ms, max {tui['max_ms']:.0f} ms (target: within {tui['target_ms']} ms)."
            + (f" The same presses with nothing starting ({tui['idle_presses']}, interleaved with the "
               f"{tui['batches']} batches of starts): median {tui['idle_median_ms']:.0f} ms, p95 "
               f"{tui['idle_p95_ms']:.0f} ms; under load / idle: {tui['p95_over_idle']:.2f}x at p95. Each batch "
               f"of {tui['containers']} starts took {tui['start_all_s']:.2f} s (median)."
               if "idle_p95_ms" in tui else "") + "\n")


def _relative(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), start.resolve())


def register(sub: Any) -> None:
    from wasmlab.runtime import bench_scenario_help

    be = sub.add_parser("bench", help="measure start-up, footprint and scaling of every engine against runc",
                        description="Run every scenario on wasmtime, wasmer, native Linux builds of the same "
                                    "programs, and the outside anchors runc and crun (an anchor that is absent or "
                                    "refuses this machine is reported as such), interleaved in one run. Prints "
                                    "medians with min and max and ratios against runc; writes latest.json and "
                                    "PNG and SVG charts.")
    be.add_argument("-n", type=int, default=None, metavar="ROUNDS",
                    help="rounds per measurement, one sample of each engine per round (default 20; --quick: 2)")
    be.add_argument("--quick", action="store_true",
                    help="a run of seconds: 2 rounds, small inputs, N of 1 and 3, no runtime figures; the bloated "
                         "image only if it is cached already")
    be.add_argument("--scenario", action="append", metavar="NAME",
                    help=f"only this scenario (repeat for more): {bench_scenario_help()}")
    be.add_argument("--engine", action="append", metavar="NAME",
                    help="only this engine (repeat for more): wasmtime, wasmer, native, runc, crun")
    be.add_argument("--scaling", type=_counts, metavar="N,N,...",
                    help="the counts of containers alive at once (default 1,10,50,100,200; --quick 1,3)")
    be.add_argument("--out", default="wasmlab-bench", metavar="DIR",
                    help="folder for latest.json and the charts (default ./wasmlab-bench)")
    be.add_argument("--compare", metavar="EARLIER.json",
                    help="show each figure's change against an earlier run's latest.json")
    be.add_argument("--markdown", metavar="FILE", help="also write the figures as markdown (make bench: docs/bench.md)")
    be.add_argument("--no-charts", action="store_true", help="write the JSON only, no PNG and SVG charts")
    be.add_argument("--json", action="store_true", help="print the results as JSON (no table, no progress bar)")
    be.set_defaults(func=cmd_bench)


__all__ = ["cmd_bench", "register"]
