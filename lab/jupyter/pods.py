"""PodLauncher: a pod's YAML (a preset or your own), how annotations propagate (CRI-O or containerd with its
allowlist), Plan, Play, Stop, Start and Down, and each container's status and logs."""

from __future__ import annotations

import html
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from wasmlab.lab.jupyter.panel import ASSETS, Panel, guarded, pre, table

if TYPE_CHECKING:
    from wasmlab.runtime import Lab, PlayResult, PodInfo

PROPAGATIONS = ("crio", "containerd")
DEFAULT_ALLOWLIST = "module.wasm.image/*"
SEED_ALLOWLIST = "module.wasm.image/variant.*"   # the seed article's, which matches nothing
VARIANT_KEY = "module.wasm.image/variant"
# Presets that show a pitfall open on the allowlist that shows it (the seed's), not on the fix.
PRESET_ALLOWLISTS = {"containerd-allowlist": SEED_ALLOWLIST}


def allowlist_for(preset: str) -> str:
    """The allowlist a preset opens on: the seed's for the containerd pitfall, else the one that works."""
    return PRESET_ALLOWLISTS.get(preset, DEFAULT_ALLOWLIST)


def allowlist_note(allowlist: str) -> str:
    """One line under the allowlist: what this one does with the variant key."""
    patterns = allowlist_of(allowlist)
    if SEED_ALLOWLIST in patterns and not ({DEFAULT_ALLOWLIST, VARIANT_KEY} & set(patterns)):
        return (f"{SEED_ALLOWLIST} is the seed article's allowlist: path.Match needs a '.' after 'variant', so "
                f"it matches nothing and containerd drops {VARIANT_KEY} (try {DEFAULT_ALLOWLIST})")
    return "containerd passes on only the pod annotations these patterns match (Go's path.Match)"


def presets(folder: Path = ASSETS / "pods") -> dict[str, Path]:
    """The pod files shipped in assets/pods, by name (mixed-compat, mixed-compat-smart, ...)."""
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def allowlist_of(text: str) -> list[str]:
    """containerd's pod_annotations from a comma- or space-separated line."""
    return [part for part in text.replace(",", " ").split() if part]


def plan_rows(lab: Lab, path: str | Path, propagation: str,
              allowlist: Sequence[str]) -> tuple[list[list[str]], list[str]]:
    """For each container of each pod: what the variant annotation does on its way to config.json (and why),
    and the warnings. Runs nothing."""
    plan = lab.pod_plan(path, propagation=propagation,
                        pod_annotations=list(allowlist) if propagation == "containerd" else None)
    rows = []
    for planned in plan.pods:
        for c in (planned.annotations.sandbox, *planned.annotations.containers):
            try:
                trace = c.trace(VARIANT_KEY)
                what = f"{'passed' if trace.passed else 'dropped'}: {trace.reason}"
            except KeyError:
                what = "no variant annotation"
            rows.append([planned.pod.identity, c.name, c.role, c.image or "(pause)", what])
    return rows, list(plan.warnings)


def containerd_rows(lab: Lab, allowlists: Sequence[Sequence[str]]) -> list[list[str]]:
    """The seed's pod through the real containerd's CRI, once per allowlist (Lab.containerd_demo): the allowlist,
    whether the variant reached the container's config.json, its CRI state and how it ended. Where containerd
    cannot run here, the row says why instead of raising."""
    from wasmlab.runtime import WasmlabError

    rows = []
    for allowlist in allowlists:
        try:
            rows.append(list(lab.containerd_demo(list(allowlist)).row()))
        except WasmlabError as err:
            rows.append([repr(list(allowlist)), "-", "-", err.one_line()])
    return rows


def pod_rows(pods: Sequence[PodInfo]) -> list[list[Any]]:
    """One row per container of each pod: pod, status, container, role, handler, its status and exit code."""
    rows = []
    for pod in pods:
        for c in pod.containers:
            rows.append([pod.identity, pod.status, c.name, c.role, c.handler or "-", c.status,
                         "-" if c.exit_code is None else c.exit_code])
    return rows


def pod_log_text(lab: Lab, pods: Sequence[PodInfo]) -> str:
    """The pods' log lines, each with the Kubernetes name of its container."""
    lines = []
    for pod in pods:
        for container, entry in lab.pod_logs(pod.identity):
            lines.append(f"{pod.identity}/{container}: {entry.data.decode('utf-8', 'replace').rstrip()}")
    return "\n".join(lines)


class PodLauncher(Panel):
    """Pick a preset or write a pod, choose CRI-O's or containerd's propagation (and the allowlist), then Plan
    (runs nothing), Play, Stop (`pod stop`: the pods stay, Exited), Start (`pod start`) and Down; the table shows
    each container's handler and status, and the logs below."""

    def __init__(self, lab: Lab | None = None, *, preset: str = "mixed-compat-smart", propagation: str = "crio",
                 allowlist: str | None = None) -> None:
        super().__init__(lab)
        self._files = presets()
        self._folder = Path(tempfile.mkdtemp(prefix="wasmlab-pods-"))
        # The editor's files go with the widget (or with the kernel), whether or not close() is called.
        self._remove_folder = weakref.finalize(self, shutil.rmtree, self._folder, True)
        self.preset = w.Dropdown(options=[*self._files, "(your own)"], value=preset, description="preset")
        self.editor = w.Textarea(value=self._files[preset].read_text() if preset in self._files else "",
                                 description="pod YAML", layout=w.Layout(width="95%", height="14em"))
        self.propagation = w.ToggleButtons(options=PROPAGATIONS, value=propagation, description="propagation")
        self.allowlist = w.Text(value=allowlist_for(preset) if allowlist is None else allowlist,
                                description="allowlist",
                                placeholder="containerd's pod_annotations, e.g. module.wasm.image/*")
        self.allowlist_note = w.HTML(value="")
        self.plan_button = w.Button(description="Plan", icon="list")
        self.play_button = w.Button(description="Play", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", icon="stop")
        self.start_button = w.Button(description="Start", icon="play-circle")
        self.down_button = w.Button(description="Down", button_style="danger", icon="trash")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.plan = w.HTML(value="")
        self.pods_table = w.HTML(value="")
        self.logs = w.HTML(value="")
        self.played: PlayResult | None = None
        self.preset.observe(self.on_preset, names="value")
        self.propagation.observe(self._allowlist_state, names="value")
        self.allowlist.observe(self._allowlist_state, names="value")
        self.plan_button.on_click(self.on_plan)
        self.play_button.on_click(self.on_play)
        self.stop_button.on_click(self.on_stop)
        self.start_button.on_click(self.on_start)
        self.down_button.on_click(self.on_down)
        self.refresh_button.on_click(self.on_refresh)
        self._allowlist_state()
        self.children = [self.preset, self.editor, w.HBox([self.propagation, self.allowlist]), self.allowlist_note,
                         w.HBox([self.plan_button, self.play_button, self.stop_button, self.start_button,
                                 self.down_button, self.refresh_button]),
                         self.status, self.plan, self.pods_table, self.logs]

    def close(self) -> None:
        self._remove_folder()
        super().close()

    def _allowlist_state(self, _change: Any = None) -> None:
        # CRI-O passes every pod annotation on: no allowlist to edit.
        self.allowlist.disabled = self.propagation.value != "containerd"
        self.allowlist_note.value = "" if self.allowlist.disabled else html.escape(allowlist_note(self.allowlist.value))

    def on_preset(self, change: Any = None) -> None:
        name = self.preset.value
        if name in self._files:
            self.editor.value = self._files[name].read_text()
            self.allowlist.value = allowlist_for(name)

    def file(self) -> Path:
        """The editor's YAML as a file (kube play and down read files)."""
        name = self.preset.value if self.preset.value in self._files else "pod"
        path = self._folder / f"{name}.yaml"
        path.write_text(self.editor.value)
        return path

    @guarded
    def on_plan(self, _button: Any = None) -> list[list[str]]:
        rows, warnings = plan_rows(self.lab, self.file(), self.propagation.value, allowlist_of(self.allowlist.value))
        self.plan.value = table(["pod", "container", "role", "image", VARIANT_KEY], rows) + (
            pre("\n".join(f"warning: {x}" for x in warnings)) if warnings else "")
        self.say(f"plan under {self.propagation.value}: nothing runs yet")
        return rows

    @guarded
    def on_play(self, _button: Any = None) -> PlayResult:
        self.say("playing...")
        self.pods_table.value = ""
        self.logs.value = ""
        allow = allowlist_of(self.allowlist.value) if self.propagation.value == "containerd" else None
        self.played = self.lab.kube_play(self.file(), propagation=self.propagation.value, pod_annotations=allow)
        warnings = "; ".join(self.played.warnings)
        self.say(f"played {', '.join(p.identity for p in self.played.pods)}" + (f" ({warnings})" if warnings else ""))
        self._show([self.lab.pod_inspect(p.identity) for p in self.played.pods])
        return self.played

    @guarded
    def on_down(self, _button: Any = None) -> list[PodInfo]:
        gone = self.lab.kube_down(self.file())
        self.say(f"removed {', '.join(p.identity for p in gone)}")
        self.pods_table.value = ""
        self.logs.value = ""
        return gone

    @guarded
    def on_stop(self, _button: Any = None) -> list[PodInfo]:
        """`wasmlab pod stop` on each played pod of the editor's file: they stay, Exited, until Start."""
        return self._each("stop", lambda name: self.lab.pod_stop(name))

    @guarded
    def on_start(self, _button: Any = None) -> list[PodInfo]:
        """`wasmlab pod start` on each played pod of the editor's file."""
        return self._each("start", lambda name: self.lab.pod_start(name))

    def _each(self, verb: str, call: Callable[[str], PodInfo]) -> list[PodInfo]:
        _, played = self._played()
        if not played:
            self.say(f"no pod of this file is played: nothing to {verb} (Play first)")
            return []
        self.say(f"pod {verb} {' '.join(p.identity for p in played)} ...")
        done = [call(p.identity) for p in played]
        self._show([self.lab.pod_inspect(p.identity) for p in done])
        self.say(", ".join(f"pod {p.identity} is {p.status}" for p in done))
        return done

    def _played(self) -> tuple[set[str], list[PodInfo]]:
        """The pods the editor's file names, and those of them that are played."""
        wanted = {planned.pod.identity for planned in self.lab.pod_plan(self.file()).pods}
        return wanted, [p for p in self.lab.pods() if p.identity in wanted]

    @guarded
    def on_refresh(self, _button: Any = None) -> list[PodInfo]:
        """The pods of the editor's file as they are now (those that are played)."""
        wanted, pods = self._played()
        self._show(pods)
        self.say(f"{len(pods)} of {len(wanted)} pods played")
        return pods

    def _show(self, pods: Sequence[PodInfo]) -> None:
        self.pods_table.value = table(["pod", "pod status", "container", "role", "handler", "status", "exit"],
                                      pod_rows(pods))
        self.logs.value = pre(pod_log_text(self.lab, pods))
