"""HandlerFaceOff: the same program on wasmtime, wasmer and natively (and in the bloated image, imported from the
machine's cache when it is there), run in turns, then charted side by side: start-up (create to exit, as the bench
measures it) and memory."""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from wasmlab.lab.jupyter import figures
from wasmlab.lab.jupyter.panel import Panel, guarded, table
from wasmlab.lab.jupyter.run import program_of, run_image, split_args
from wasmlab.runtime.errors import WasmlabError

if TYPE_CHECKING:
    from wasmlab.lab.series import Series
    from wasmlab.runtime import Lab, LabEvent

MiB = 1024 * 1024


@dataclass(frozen=True)
class Contender:
    label: str            # "wasmtime", "wasmer", "native", "bloated"
    image: str
    engine: str           # for run_image: "wasmtime", "wasmer" or "auto"
    lead: tuple[str, ...] = ()  # the command before the program's arguments (they replace the image's CMD)


@dataclass(frozen=True)
class Round:
    """One run of one contender."""

    label: str
    handler: str
    exit_code: int | None
    create_ms: float      # create to ready (the runtime's part alone: an engine or python3 starts after it)
    total_ms: float       # create to exit: the start-up, as `wasmlab bench` measures it
    peak_mib: float       # the container's cgroup peak (0 when the history had no row for it in time)
    init_rss_mib: float   # the init process's own max RSS (for Wasm: the engine inside the init)
    output: str

    @property
    def startup_ms(self) -> float:
        """Start-up as the bench means it: create to exit (hello's work is one line, so this is all start)."""
        return self.total_ms


def programs(lab: Lab) -> list[str]:
    """Sample programs that exist both as a compat image and as a Linux image (wasmlab/P:compat, wasmlab/P:linux)."""
    names = {n.removeprefix("localhost/") for img in lab.images() for n in img.names}
    found = []
    for n in names:
        if n.startswith("wasmlab/") and n.endswith(":compat"):
            program = n.removeprefix("wasmlab/").removesuffix(":compat")
            if f"wasmlab/{program}:linux" in names:
                found.append(program)
    return sorted(found)


def bloated_image(lab: Lab, *, build: bool = False) -> tuple[str | None, str]:
    """The bloated image (a Linux image carrying python3 and wasmtime, every sample module in /wasm), brought into
    this lab from the machine's cache by the service: (its name, a note), or (None, one line saying why not)."""
    try:
        image = lab.bloated_image(build=build)
    except WasmlabError as exc:
        return None, exc.one_line()
    name = (image.name or image.id).removeprefix("localhost/")
    return name, f"{name}, {image.size / MiB:.0f} MiB, from the machine's cache"


def contenders(lab: Lab, program: str, *, bloated: bool = True) -> list[Contender]:
    """The images that run PROGRAM, each with the command that runs it: arguments replace an image's CMD (as
    with podman), so the program comes first (the compat image's module, the Linux image's binary, and, in the
    bloated image, whose ENTRYPOINT is its python3 launcher, the module under /wasm)."""
    compat, linux = f"wasmlab/{program}:compat", f"wasmlab/{program}:linux"
    out = [Contender("wasmtime", compat, "wasmtime", tuple(program_of(lab, compat))),
           Contender("wasmer", compat, "wasmer", tuple(program_of(lab, compat))),
           Contender("native", linux, "auto", tuple(program_of(lab, linux)))]
    fat = bloated_image(lab)[0] if bloated else None
    if fat is not None:
        out.append(Contender("bloated", fat, "auto", lead=(f"/wasm/{program}.wasm",)))
    return out


class _Recorded:
    """The history rows of given runs, as their RunRecorded events arrive (a handshake, not a wait)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.seqs: dict[str, int] = {}
        self.cond = threading.Condition()
        self.unsubscribe = lab.subscribe(self._on_event)

    def _on_event(self, event: LabEvent) -> None:
        if type(event).__name__ == "RunRecorded":
            with self.cond:
                self.seqs[event.id] = event.seq  # type: ignore[attr-defined]
                self.cond.notify_all()

    def rows(self, ids: Sequence[str], timeout: float = 10.0) -> dict[str, Any]:
        with self.cond:
            self.cond.wait_for(lambda: all(i in self.seqs for i in ids), timeout)
            seqs = [self.seqs[i] for i in ids if i in self.seqs]
        if not seqs:
            return {}
        records = self.lab.history(len(seqs) + 1000, since_seq=min(seqs) - 1)
        return {r.id: r for r in records if r.id in ids}

    def close(self) -> None:
        self.unsubscribe()


def face_off(lab: Lab, program: str = "cpu", args: Sequence[str] | str = (), *, rounds: int = 3,
             bloated: bool = True) -> list[Round]:
    """ROUNDS turns of every contender, interleaved (each round runs each contender once), so a slower moment
    of the machine weighs on all of them alike."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    chosen = contenders(lab, program, bloated=bloated)
    recorded = _Recorded(lab)
    try:
        own = split_args(args)
        ran = []
        for _ in range(rounds):
            for c in chosen:
                ran.append((c, run_image(lab, c.image, [*c.lead, *own], engine=c.engine)))
        rows = recorded.rows([r.id for _, r in ran])
    finally:
        recorded.close()
    out = []
    for c, r in ran:
        record = rows.get(r.id)
        # The cgroup's peak (history v2 names it; v1 kept it in memory["peak"]), never the init's RSS.
        peak = 0 if record is None else int(getattr(record, "cgroup_peak_bytes", None)
                                             or (record.memory or {}).get("peak") or 0)
        out.append(Round(label=c.label, handler=r.handler, exit_code=r.exit_code,
                         create_ms=float(r.timings.get("create_ms") or 0.0),
                         total_ms=float(r.timings.get("total_ms") or 0.0), peak_mib=peak / MiB,
                         init_rss_mib=r.max_rss_kb / 1024, output=r.stdout.strip()))
    return out


def face_off_series(rounds: Sequence[Round]) -> tuple[list[Series], list[Series]]:
    """Start-up (ms, create to exit) and footprint (MiB, cgroup peak) per contender, laid out as the bench's
    series (lab/series.py: xs the run order, ys the samples)."""
    from wasmlab.lab.series import run_samples

    labels = list(dict.fromkeys(r.label for r in rounds))
    return (run_samples({label: [r.startup_ms for r in rounds if r.label == label] for label in labels}, "ms"),
            run_samples({label: [r.peak_mib for r in rounds if r.label == label] for label in labels}, "MiB"))


def medians(rounds: Sequence[Round], measure: str = "startup_ms") -> dict[str, float]:
    """Each contender's median of MEASURE (a Round attribute: startup_ms, create_ms, peak_mib), in run order."""
    labels = dict.fromkeys(r.label for r in rounds)
    return {label: median([float(getattr(r, measure)) for r in rounds if r.label == label]) for label in labels}


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


class HandlerFaceOff(Panel):
    """Pick a sample program and the rounds; Run runs it on every contender in turns, then a table of medians
    and two bar charts (start-up, memory)."""

    def __init__(self, lab: Lab | None = None, *, program: str = "cpu", args: str = "", rounds: int = 3) -> None:
        super().__init__(lab)
        found = programs(self.lab)
        self.program = w.Dropdown(options=found or [program], value=program if program in found or not found
                                  else found[0], description="program")
        self.args = w.Text(value=args, description="arguments")
        self.rounds = w.IntSlider(value=rounds, min=1, max=20, description="rounds")
        fat, note = bloated_image(self.lab)
        self.bloated = w.Checkbox(value=fat is not None, disabled=fat is None, description="bloated image",
                                  indent=False)
        self.bloated_note = w.HTML(value=html.escape(note))
        self.button = w.Button(description="Run the face-off", button_style="warning", icon="flag-checkered")
        self.table = w.HTML(value="")
        self.chart = w.Output()
        self.results: list[Round] = []
        self.button.on_click(self.on_run)
        self.children = [w.HBox([self.program, self.args]), w.HBox([self.rounds, self.bloated, self.bloated_note]),
                         self.button,
                         self.status, self.table, self.chart]

    @guarded
    def on_run(self, _button: Any = None) -> list[Round]:
        self.button.disabled = True
        self.say(f"running {self.program.value} {self.rounds.value} times on each contender...")
        try:
            self.results = face_off(self.lab, self.program.value, self.args.value, rounds=self.rounds.value,
                                    bloated=self.bloated.value)
        finally:
            self.button.disabled = False
        labels = list(dict.fromkeys(r.label for r in self.results))
        rows = []
        for label in labels:
            mine = [r for r in self.results if r.label == label]
            rows.append([label, mine[0].handler, ", ".join(str(r.exit_code) for r in mine),
                         f"{median([r.startup_ms for r in mine]):.1f}", f"{median([r.create_ms for r in mine]):.1f}",
                         f"{median([r.peak_mib for r in mine]):.1f}", f"{median([r.init_rss_mib for r in mine]):.1f}"])
        self.table.value = table(["contender", "handler", "exit codes", "start-up ms: create to exit (median)",
                                  "of which create to ready ms", "cgroup peak MiB", "init's max RSS MiB"], rows)
        startup, footprint = face_off_series(self.results)
        fig, (left, right) = figures.figure(9.0, 3.0, cols=2)
        figures.draw_series(left, startup, "start-up: create to exit (as wasmlab bench)", kind="bar")
        figures.draw_series(right, footprint, "memory: the container's cgroup peak", kind="bar")
        fig.tight_layout()
        figures.show_png(self.chart, fig)
        self.say(f"{len(self.results)} runs; start-up (create to exit, median): "
                 + "; ".join(f"{r[0]} {r[3]} ms" for r in rows))
        return self.results
