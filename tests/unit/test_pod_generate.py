"""kube generate (runtime/pods/generate.py) and the pod parts of the Lab and the CLI that run nothing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from wasmlab.lab.cli import main
from wasmlab.runtime import Lab
from wasmlab.runtime.errors import BadPattern, PodSpecError, UsageError
from wasmlab.runtime.spec.pod import load_pods

ROOT = Path(__file__).resolve().parents[2]
PODS = ROOT / "assets" / "pods"
SEED = PODS / "seed-pod.yaml"
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
VARIANT = "module.wasm.image/variant"
CRI = 'plugins."io.containerd.grpc.v1.cri"'

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {module.wasm.image/variant: compat-smart}
    spec:
      runtimeClassName: runc
      containers:
      - {name: app, image: wasmlab/hello:compat, livenessProbe: {exec: {command: ["true"]}}}
"""


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VALIDATE), "--strict", *map(str, files)], capture_output=True, text=True, timeout=120)


def test_generate_writes_the_four_files_for_the_seed(tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    done = Lab.kube_generate(SEED, out)
    assert [p.name for p in done.files] == ["pod.yaml", "runtimeclass.yaml", "crio.conf", "containerd.toml"]
    assert (done.runtime, done.runtime_path, done.pods) == ("crun", "/usr/bin/crun",
                                                            ("mynamespace/pod-with-wasm-workload",))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in done.files)  # no temporary left
    proc = validate(out / "pod.yaml", out / "runtimeclass.yaml")
    assert proc.returncode == 0 and proc.stdout.count("passed") == 2, proc.stdout + proc.stderr
    pod = yaml.safe_load((out / "pod.yaml").read_text())
    rc = yaml.safe_load((out / "runtimeclass.yaml").read_text())
    assert rc == {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "crun"},
                  "handler": "crun"}
    assert pod["spec"]["runtimeClassName"] == rc["metadata"]["name"]  # the pod names the RuntimeClass
    assert pod["metadata"]["annotations"] == {VARIANT: "compat"}

    crio = tomllib.loads((out / "crio.conf").read_text())
    assert crio == {"crio": {"runtime": {"runtimes": {"crun": {
        "runtime_path": "/usr/bin/crun", "runtime_type": "oci", "runtime_root": "/run/crun"}}}}}
    containerd_text = (out / "containerd.toml").read_text()
    containerd = tomllib.loads(containerd_text)
    assert containerd["version"] == 2
    cri = containerd["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["runtimes"]["crun"] == {"runtime_type": "io.containerd.runc.v2",
                                       "pod_annotations": ["module.wasm.image/*"],
                                       "options": {"BinaryName": "/usr/bin/crun"}}
    assert cri["default_runtime_name"] in cri["runtimes"]
    # The comment on the seed's glob, in the file a user merges.
    assert "module.wasm.image/variant.*" in containerd_text and "matches nothing" in containerd_text


def test_runtime_path_names_the_runtime_class_and_binary(tmp_path: Path) -> None:
    done = Lab.kube_generate(SEED, tmp_path, runtime_path="/usr/local/bin/wasmlab-oci")
    assert (done.runtime, done.runtime_path) == ("wasmlab-oci", "/usr/local/bin/wasmlab-oci")
    assert yaml.safe_load((tmp_path / "pod.yaml").read_text())["spec"]["runtimeClassName"] == "wasmlab-oci"
    assert yaml.safe_load((tmp_path / "runtimeclass.yaml").read_text())["handler"] == "wasmlab-oci"
    crio = tomllib.loads((tmp_path / "crio.conf").read_text())
    assert crio["crio"]["runtime"]["runtimes"]["wasmlab-oci"]["runtime_path"] == "/usr/local/bin/wasmlab-oci"
    runtimes = tomllib.loads((tmp_path / "containerd.toml").read_text())["plugins"]["io.containerd.grpc.v1.cri"][
        "containerd"]["runtimes"]
    assert runtimes["wasmlab-oci"]["options"]["BinaryName"] == "/usr/local/bin/wasmlab-oci"


def test_deployment_template_gets_the_runtime_class_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "web.yaml"
    src.write_text(DEPLOYMENT)
    done = Lab.kube_generate(src, tmp_path / "out")
    assert done.notes == ("pod default/web-pod-0: runtimeClassName runc replaced by crun",
                          "pod default/web-pod-1: runtimeClassName runc replaced by crun")
    assert validate(tmp_path / "out" / "pod.yaml").returncode == 0
    before, after = load_pods(src), load_pods(tmp_path / "out" / "pod.yaml")
    assert after.ignored == before.ignored  # nothing dropped: the document is the user's, plus runtimeClassName
    assert [p.runtime_class_name for p in after.pods] == ["crun", "crun"]
    assert [p.__class__(**{**p.__dict__, "runtime_class_name": "runc"}) for p in after.pods] == list(before.pods)


def test_every_scenario_round_trips_through_generate(tmp_path: Path) -> None:
    for i, src in enumerate(sorted(PODS.glob("*.yaml"))):
        out = tmp_path / str(i)
        Lab.kube_generate(src, out)
        before, after = load_pods(src).pods, load_pods(out / "pod.yaml").pods
        assert [p.identity for p in after] == [p.identity for p in before], src
        assert all(p.runtime_class_name == "crun" for p in after)
        assert [p.containers for p in after] == [p.containers for p in before]
        assert [dict(p.annotations) for p in after] == [dict(p.annotations) for p in before]


@pytest.mark.parametrize("path", ["crun", "relative/crun", "/usr/bin/My_Runtime", '/opt/"quoted"/crun'])
def test_bad_runtime_path_is_refused_before_anything_is_written(tmp_path: Path, path: str) -> None:
    with pytest.raises(UsageError) as info:
        Lab.kube_generate(SEED, tmp_path / "out", runtime_path=path)
    assert "\n" not in info.value.one_line() and info.value.hint
    assert not (tmp_path / "out").exists()


def test_refused_pod_file_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n")
    with pytest.raises(PodSpecError, match="at least one container"):
        Lab.kube_generate(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pod_plan_lists_image_annotations_from_the_lab(lab_home: Path) -> None:
    with Lab(lab_home) as lab:
        lab.build(ROOT / "assets" / "containerfiles" / "seed", tag="myrepo/mywasmimage:latest",
                  annotations={VARIANT: "compat"})
        plan = lab.pod_plan(SEED, propagation="containerd", pod_annotations=["module.wasm.image/variant.*"])
    (planned,) = plan.pods
    app = planned.annotations.container("wasm-container")
    image = next(t for t in app.traces if t.origin == "image" and t.key == VARIANT)
    assert image.value == "compat" and not image.passed
    assert VARIANT not in app.annotations  # neither the pod's (allowlist) nor the image's (never) got through
    (warning,) = plan.warnings
    assert 'fix: pod_annotations = ["module.wasm.image/*"]' in warning
    assert plan.as_dict()["pods"][0]["pod"]["name"] == "pod-with-wasm-workload"


def test_pod_plan_refuses_a_bad_allowlist_before_reading(lab_home: Path, tmp_path: Path) -> None:
    with Lab(lab_home) as lab, pytest.raises(BadPattern):
        lab.pod_plan(tmp_path / "missing.yaml", propagation="containerd", pod_annotations=["[x-]"])


def test_cli_kube_play_dry_run_shows_the_seed_pitfall(lab_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["kube", "play", "--dry-run", "--propagation", "containerd",
                 "--pod-annotations", "module.wasm.image/variant.*", str(SEED)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "pod mynamespace/pod-with-wasm-workload" in out and "held back module.wasm.image/variant=compat" in out
    assert err.count("WARNING:") == 1 and 'pod_annotations = ["module.wasm.image/*"]' in err
    assert main(["kube", "play", "--dry-run", str(SEED)]) == 0
    assert "passed    module.wasm.image/variant=compat" in capsys.readouterr().out


def test_cli_kube_generate_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kube", "generate", str(SEED), "-o", str(tmp_path / "out")]) == 0
    out, _ = capsys.readouterr()
    assert out.split() == [str(tmp_path / "out" / n) for n in ("pod.yaml", "runtimeclass.yaml", "crio.conf",
                                                                "containerd.toml")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: b, "
                   "resources: {limits: {memory: 1GG}}}\n")
    assert main(["kube", "generate", str(bad), "-o", str(tmp_path / "bad-out")]) == 125
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spec.containers[0].resources.limits.memory" in err and "1GG" in err
    assert "Traceback" not in err and not (tmp_path / "bad-out").exists()
    assert main(["kube", "play", str(SEED)]) != 0 and "--dry-run" in capsys.readouterr().err
