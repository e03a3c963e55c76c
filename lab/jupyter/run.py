"""Runner: an image, an engine and arguments; then the output, exit code, the handler's decision and timings."""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from wasmlab.lab import present
from wasmlab.lab.jupyter.panel import Panel, guarded, pre, table
from wasmlab.runtime.errors import UsageError

if TYPE_CHECKING:
    from wasmlab.runtime import Lab, RunRecord

# "auto": no engine named, so the runtime decides (the annotation, the entrypoint, the default engine).
ENGINES = ("auto", "wasmtime", "wasmer")


@dataclass(frozen=True)
class Ran:
    """One foreground run, as the Runner shows it."""

    id: str
    image: str
    engine: str
    exit_code: int | None
    stdout: str
    stderr: str
    handler: str
    decision: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    max_rss_kb: int = 0

    @property
    def steps(self) -> list[str]:
        """How the runtime decided which handler runs the container (explain's steps)."""
        return [str(s) for s in self.decision.get("steps") or []]


def program_of(lab: Lab, image: str) -> list[str]:
    """The program an image runs, without its default arguments: its Entrypoint, else the first word of its Cmd
    (what to write before your arguments, since they replace the Cmd)."""
    section = lab.image_inspect(image).config.get("config") or {}
    entrypoint = [str(a) for a in section.get("Entrypoint") or []]
    return entrypoint or [str(a) for a in (section.get("Cmd") or [])[:1]]


def split_args(args: Sequence[str] | str) -> list[str]:
    """ARGS as words: a list as it is, a line split as a shell would; a malformed line is one line with a hint."""
    if not isinstance(args, str):
        return list(args)
    try:
        return shlex.split(args)
    except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
        raise UsageError(f"the arguments {args!r} cannot be split into words: {exc}",
                         "close every quote (\"two words\"), or leave quotes out") from None


def run_image(lab: Lab, image: str, args: Sequence[str] | str = (), *, engine: str = "auto") -> Ran:
    """Run IMAGE in the foreground (removed afterwards), its output captured: what `wasmlab run --rm IMAGE ARGS`
    shows. As with podman, ARGS replace the image's Cmd (program included; an Entrypoint stays): give the program
    first, e.g. ["/exitcode.wasm", "3"] (program_of says which it is)."""
    command = split_args(args)
    image = image.strip()
    if not image:
        raise ValueError("no image given: pick one (wasmlab images lists them)")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull, "rb") as null:
        res = lab.run(image, command or None, rm=True,
                      engine=None if engine == "auto" else engine, stdio=(null.fileno(), out.fileno(), err.fileno()))
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    return Ran(id=res.id, image=image, engine=engine, exit_code=res.exit_code, stdout=stdout, stderr=stderr,
               handler=str(res.decision.get("handler") or ""), decision=dict(res.decision),
               timings=dict(res.timings), max_rss_kb=int(res.memory.get("max_rss_kb") or 0))


def image_names(lab: Lab) -> list[str]:
    """The lab's named images, sorted."""
    return sorted({n.removeprefix("localhost/") for img in lab.images() for n in img.names})


class Runner(Panel):
    """Pick an image, an engine (wasmtime, wasmer or auto) and arguments; Run shows the output, the exit code,
    which handler ran it and why, and the timings."""

    def __init__(self, lab: Lab | None = None, *, image: str = "", args: str = "", engine: str = "auto") -> None:
        super().__init__(lab)
        names = image_names(self.lab)
        self.image = w.Combobox(value=image or (names[0] if names else ""), options=names, description="image",
                                ensure_option=False, layout=w.Layout(width="60%"))
        self.engine = w.ToggleButtons(options=ENGINES, value=engine, description="engine")
        self.args = w.Text(value=args, description="arguments")
        self.button = w.Button(description="Run", button_style="success", icon="play")
        self.output = w.HTML(value="")
        self.exit_code = w.HTML(value="")
        self.decision = w.HTML(value="")
        self.timings = w.HTML(value="")
        self.ran: Ran | None = None
        self.button.on_click(self.on_run)
        self.image.observe(self._args_hint, names="value")
        self._args_hint()
        self.children = [self.image, self.engine, w.HBox([self.args, self.button]), self.status, self.exit_code,
                         self.output, self.decision, self.timings]

    def _args_hint(self, _change: Any = None) -> None:
        """The arguments field says what they replace (the image's CMD, as with podman) and how to keep it."""
        try:
            section = self.lab.image_inspect(self.image.value.strip()).config.get("config") or {}
        except Exception:  # an image still being typed, or none: the generic hint
            section = {}
        cmd = " ".join(str(a) for a in section.get("Cmd") or [])
        if section.get("Entrypoint"):
            self.args.placeholder = f"replace its CMD ({cmd or 'none'}); its ENTRYPOINT stays"
        elif cmd:
            self.args.placeholder = f"replace its CMD ({cmd}): e.g. {cmd.split()[0]} ARGS"
        else:
            self.args.placeholder = "replace the image's CMD: the program first, e.g. /cpu.wasm 100000"

    def refresh_images(self) -> None:
        self.image.options = image_names(self.lab)

    @guarded
    def on_run(self, _button: Any = None) -> Ran:
        self.button.disabled = True
        for out in (self.output, self.exit_code, self.decision, self.timings):
            out.value = ""
        self.say(f"running {self.image.value}...")
        try:
            ran = run_image(self.lab, self.image.value, self.args.value, engine=self.engine.value)
        finally:
            self.button.disabled = False
        self.ran = ran
        self.say(f"{ran.image} ran on {ran.handler or 'an unknown handler'}")
        self.exit_code.value = f"<b>exit code {ran.exit_code}</b>"
        self.output.value = pre(ran.stdout + (f"\n[stderr]\n{ran.stderr}" if ran.stderr else ""))
        self.decision.value = (f"<b>handler: {ran.handler}</b> ({ran.decision.get('rule', '')})"
                               + pre("\n".join(f"  {s}" for s in ran.steps)))
        shown = {k: v for k, v in ran.timings.items() if k.endswith("_ms") or k in ("decided", "ready")}
        self.timings.value = table(["timing", "ms"], [[k, f"{v:.2f}"] for k, v in shown.items()]) + memory_table(
            self.lab.run_record(ran.id, wait=10.0), ran.max_rss_kb)
        return ran


def memory_table(record: RunRecord | None, init_max_rss_kb: int) -> str:
    """The run's three memory figures, named as every face names them (present.CGROUP_PEAK, GUEST, INIT_RSS)."""
    peak = None if record is None else record.cgroup_peak_bytes
    guest = None if record is None else record.guest_bytes
    return table(["memory", ""], [[present.CGROUP_PEAK, present.memory(peak)], [present.GUEST, present.memory(guest)],
                                     [present.INIT_RSS, present.memory(init_max_rss_kb * 1024)]])
