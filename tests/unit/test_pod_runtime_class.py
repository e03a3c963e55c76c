"""runtimeClassName in the plan: what a cluster does with it, and one warning line for the pods naming another
RuntimeClass than the one `kube generate` writes (no root needed: nothing runs)."""

from __future__ import annotations

from pathlib import Path

from wasmlab.runtime.pods.generate import DEFAULT_RUNTIME
from wasmlab.runtime.pods.plan import GENERATED_RUNTIME_CLASS, plan_pods

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  {runtime_class}
  containers: [{{name: app, image: wasmlab/hello:compat}}]
"""


def plan_of(tmp_path: Path, *classes: str | None) -> list[str]:
    docs = [POD.format(name=f"p{i}", runtime_class=f"runtimeClassName: {c}" if c else "")
            for i, c in enumerate(classes)]
    path = tmp_path / "pods.yaml"
    path.write_text("---\n".join(docs))
    plan = plan_pods(path)
    assert [p.pod.runtime_class_name for p in plan.pods] == list(classes)
    for planned, c in zip(plan.pods, classes, strict=True):
        assert (f"RuntimeClass {c!r}" in planned.runtime_class_effect) if c else \
            "default runtime handler" in planned.runtime_class_effect
    return [w for w in plan.warnings if "runtimeClassName" in w]


def test_the_generated_runtime_class_is_the_one_kube_generate_writes() -> None:
    assert GENERATED_RUNTIME_CLASS == DEFAULT_RUNTIME == "crun"


def test_no_warning_for_crun_or_no_runtime_class(tmp_path: Path) -> None:
    assert plan_of(tmp_path, "crun", None) == []


def test_one_line_for_every_pod_naming_another_runtime_class(tmp_path: Path) -> None:
    [line] = plan_of(tmp_path, "runc", "crun", "wasmlab-oci")
    assert "default/p0 (runc)" in line and "default/p2 (wasmlab-oci)" in line and "p1" not in line
    assert "node handler" in line and "\n" not in line
