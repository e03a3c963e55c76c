"""The Pod model (runtime/spec/pod.py): the Kubernetes subset, ignored fields, quantities, and every refusal."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wasmlab.runtime.errors import PodSpecError, WasmlabError
from wasmlab.runtime.spec.pod import (
    KINDS,
    EmptyDir,
    HostPath,
    QuantityError,
    load_pods,
    parse_pods,
    parse_quantity,
)

ROOT = Path(__file__).resolve().parents[2]
PODS = ROOT / "assets" / "pods"
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")

FULL = """\
apiVersion: v1
kind: Pod
metadata:
  name: full
  namespace: lab
  labels: {app: full}
  annotations:
    module.wasm.image/variant: compat-smart
spec:
  restartPolicy: OnFailure
  shareProcessNamespace: true
  runtimeClassName: crun
  nodeSelector: {disk: ssd}
  volumes:
  - name: scratch
    emptyDir: {sizeLimit: 64Mi, medium: Memory}
  - name: host
    hostPath: {path: /srv/data, type: Directory}
  - name: defaulted
  initContainers:
  - name: prepare
    image: wasmlab/busybox:latest
    command: ["/bin/sh", "-c", "echo ready > /scratch/flag"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  containers:
  - name: app
    image: wasmlab/argsenv:compat
    args: ["one", "two"]
    workingDir: /scratch
    imagePullPolicy: IfNotPresent
    env:
    - {name: GREETING, value: hi}
    - {name: EMPTY}
    - name: FROM_SECRET
      valueFrom: {secretKeyRef: {name: s, key: k}}
    volumeMounts:
    - {name: scratch, mountPath: /scratch, readOnly: true, subPath: x}
    - {name: host, mountPath: /host}
    ports:
    - {containerPort: 8080, hostPort: 18080, hostIP: 127.0.0.1, protocol: TCP, name: http}
    - {containerPort: 53, protocol: UDP}
    resources:
      limits: {memory: 512Mi, cpu: 250m, ephemeral-storage: 1Gi}
      requests: {memory: 64Mi}
    livenessProbe: {exec: {command: ["true"]}}
"""


def pod_yaml(containers: str = "  - name: app\n    image: wasmlab/hello:compat\n", *, extra_spec: str = "",
             kind: str = "Pod", metadata: str = "  name: p\n") -> str:
    return f"apiVersion: {KINDS.get(kind, 'v1')}\nkind: {kind}\nmetadata:\n{metadata}spec:\n{extra_spec}" \
           f"  containers:\n{containers}"


def refused(text: str, **kw: bool) -> PodSpecError:
    with pytest.raises(PodSpecError) as info:
        parse_pods(text, source="pod.yaml", **kw)
    err = info.value
    line = err.one_line()
    assert "\n" not in line and err.hint and line.startswith("pod.yaml"), line
    assert err.exit_code != 0
    return err


def test_seed_pod_is_the_repaired_article_pod() -> None:
    pods = load_pods(PODS / "seed-pod.yaml")
    (pod,) = pods.pods
    assert (pod.kind, pod.name, pod.namespace, pod.identity) == (
        "Pod", "pod-with-wasm-workload", "mynamespace", "mynamespace/pod-with-wasm-workload")
    assert dict(pod.annotations) == {"module.wasm.image/variant": "compat"}
    assert [(c.name, c.image) for c in pod.containers] == [("wasm-container", "myrepo/mywasmimage:latest")]
    assert pod.restart_policy == "Always" and not pods.ignored and not pods.warnings


def test_every_supported_field_and_the_ignored_ones() -> None:
    pods = parse_pods(FULL, source="full.yaml", allow_host_path=True)
    (pod,) = pods.pods
    assert pod.identity == "lab/full" and pod.restart_policy == "OnFailure"
    assert pod.share_process_namespace and pod.runtime_class_name == "crun"
    assert [v.name for v in pod.volumes] == ["scratch", "host", "defaulted"]
    assert pod.volumes[0].empty_dir == EmptyDir(64 << 20, "Memory")
    assert pod.volumes[1].host_path == HostPath("/srv/data", "Directory")
    assert pod.volumes[2].empty_dir == EmptyDir()  # no source: an emptyDir, as the API server defaults it
    (init,) = pod.init_containers
    assert init.init and init.command == ("/bin/sh", "-c", "echo ready > /scratch/flag")
    (app,) = pod.containers
    assert app.args == ("one", "two") and app.working_dir == "/scratch" and not app.init
    assert [(e.name, e.value) for e in app.env] == [("GREETING", "hi"), ("EMPTY", "")]
    assert [(m.name, m.mount_path, m.read_only) for m in app.volume_mounts] == [
        ("scratch", "/scratch", True), ("host", "/host", False)]
    assert [(p.container_port, p.host_port, p.host_ip, p.protocol) for p in app.ports] == [
        (8080, 18080, "127.0.0.1", "TCP"), (53, None, None, "UDP")]
    assert (app.resources.memory_bytes, app.resources.cpu_millis) == (512 << 20, 250)
    assert [c.name for c in pod.all_containers] == ["prepare", "app"]
    assert set(pods.ignored) == {
        "spec.nodeSelector", "spec.containers[0].imagePullPolicy", "spec.containers[0].env[2].valueFrom",
        "spec.containers[0].volumeMounts[0].subPath", "spec.containers[0].ports[0].name",
        "spec.containers[0].resources.limits.ephemeral-storage", "spec.containers[0].resources.requests",
        "spec.containers[0].livenessProbe"}
    (warning,) = pods.warnings
    assert "\n" not in warning and "ignored 8 field(s)" in warning and "spec.containers[0].livenessProbe" in warning


def test_deployment_replicas_become_pods_named_as_podman_does() -> None:
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {module.wasm.image/variant: compat}
spec:
  replicas: 3
  strategy: {type: Recreate}
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {module.wasm.image/variant: compat-smart}
    spec:
      containers:
      - {name: app, image: wasmlab/hello:compat}
"""
    pods = parse_pods(text, source="web.yaml")
    assert [p.identity for p in pods.pods] == ["shop/web-pod-0", "shop/web-pod-1", "shop/web-pod-2"]
    assert all(p.kind == "Deployment" and p.owner == "web" for p in pods.pods)
    # The pods get the template's annotations, as in Kubernetes; the Deployment's own stay with it (a note says so).
    assert all(dict(p.annotations) == {"module.wasm.image/variant": "compat-smart"} for p in pods.pods)
    assert pods.ignored == ("spec.strategy",)
    assert any("metadata.annotations" in w and "spec.template.metadata.annotations" in w for w in pods.warnings)
    no_replicas = text.replace("  replicas: 3\n", "")
    assert [p.name for p in parse_pods(no_replicas).pods] == ["web-pod-0"]
    assert parse_pods(text.replace("replicas: 3", "replicas: 0")).pods == ()


def test_namespace_is_part_of_the_identity() -> None:
    two = (pod_yaml(metadata="  name: same\n  namespace: a\n") + "---\n"
           + pod_yaml(metadata="  name: same\n  namespace: b\n"))
    assert [p.identity for p in parse_pods(two).pods] == ["a/same", "b/same"]
    assert parse_pods(pod_yaml(metadata="  name: same\n")).pods[0].identity == "default/same"
    err = refused(pod_yaml(metadata="  name: same\n") + "---\n"
                  + pod_yaml(metadata="  name: same\n  namespace: default\n"))
    assert "default/same is defined twice" in err.message


def test_multi_document_ignored_fields_name_their_object() -> None:
    text = (pod_yaml(metadata="  name: one\n  uid: x\n") + "---\n"
            + pod_yaml(metadata="  name: two\n", extra_spec="  hostname: h\n"))
    assert parse_pods(text).ignored == ("Pod one: metadata.uid", "Pod two: spec.hostname")


@pytest.mark.parametrize(("text", "path", "words"), [
    ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   bad: indent\n", "", "invalid YAML at line 5, column"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n\tcontainers: []\n", "", "invalid YAML at line 5"),
    ("apiVersion: v1\nkind: Pod\nkind: Pod\nmetadata: {name: x}\n", "", "found the key 'kind' twice"),
    ("just a string\n", "(document)", "must be a Kubernetes object"),
    ("", "", "holds no Kubernetes object"),
    (pod_yaml(containers="    []\n"), "spec.containers", "at least one container"),
    (pod_yaml().replace("kind: Pod", "kind: Service"), "kind", "'Service' is not supported"),
    (pod_yaml().replace("kind: Pod", "kind: DaemonSet"), "kind", "Pod, Deployment"),
    (pod_yaml().replace("apiVersion: v1", "apiVersion: apps/v1"), "apiVersion", "served as apiVersion v1"),
    (pod_yaml(containers="  - {name: app, image: a}\n  - {name: app, image: b}\n"), "spec.containers[1].name",
     "'app' is used twice (also at spec.containers[0].name)"),
    (pod_yaml(containers="  - {name: app, image: a}\n", extra_spec="  initContainers:\n  - {name: app, image: b}\n"),
     "spec.containers[0].name", "also at spec.initContainers[0].name"),
    (pod_yaml(containers="  - name: app\n    image: a\n    volumeMounts: [{name: data, mountPath: /d}]\n"),
     "spec.containers[0].volumeMounts[0].name", "volume 'data' is not declared in spec.volumes"),
    (pod_yaml(containers="  - name: app\n    image: a\n    resources: {limits: {memory: 1GG}}\n"),
     "spec.containers[0].resources.limits.memory", "'1GG' is not a Kubernetes quantity"),
    (pod_yaml(containers="  - name: app\n    image: a\n    resources: {limits: {cpu: -1}}\n"),
     "spec.containers[0].resources.limits.cpu", "negative"),
    (pod_yaml(extra_spec="  volumes: [{name: h, hostPath: {path: /etc}}]\n"), "spec.volumes[0].hostPath",
     "refused"),
    (pod_yaml(extra_spec="  volumes: [{name: c, configMap: {name: x}}]\n"), "spec.volumes[0].configMap",
     "not supported"),
    (pod_yaml(extra_spec="  volumes: [{name: v, emptyDir: {sizeLimit: 1GG}}]\n"), "spec.volumes[0].emptyDir.sizeLimit",
     "quantity"),
    (pod_yaml(containers="  - name: app\n"), "spec.containers[0].image", "is missing"),
    (pod_yaml(containers="  - image: a\n"), "spec.containers[0].name", "is missing"),
    (pod_yaml(containers="  - {name: App_1, image: a}\n"), "spec.containers[0].name", "DNS-1123 label"),
    (pod_yaml(metadata="  name: Not_Valid\n"), "metadata.name", "DNS-1123 subdomain"),
    (pod_yaml(metadata="  namespace: x\n"), "metadata.name", "is missing"),
    (pod_yaml(metadata="  name: p\n  namespace: my.ns\n"), "metadata.namespace", "DNS-1123 label"),
    (pod_yaml(metadata="  name: p\n  annotations: {flag: true}\n"), "metadata.annotations['flag']",
     "must be a string"),
    (pod_yaml(containers="  - name: app\n    image: a\n    command: [/bin/sleep, 5]\n"),
     "spec.containers[0].command[1]", "must be a string"),
    (pod_yaml(containers="  - name: app\n    image: a\n    ports: [{containerPort: 70000}]\n"),
     "spec.containers[0].ports[0].containerPort", "1 to 65535"),
    (pod_yaml(extra_spec="  restartPolicy: Sometimes\n"), "spec.restartPolicy", "not a restart policy"),
    (pod_yaml(extra_spec="  shareProcessNamespace: yes please\n"), "spec.shareProcessNamespace", "true or false"),
])
def test_bad_input_is_one_line_with_the_yaml_path(text: str, path: str, words: str) -> None:
    err = refused(text)
    assert err.field == path, err.one_line()
    assert words in err.message, err.one_line()


def test_host_path_is_accepted_only_with_the_flag() -> None:
    text = pod_yaml(extra_spec="  volumes: [{name: h, hostPath: {path: /etc}}]\n")
    assert "--allow-host-path" in refused(text).hint
    (pod,) = parse_pods(text, allow_host_path=True).pods
    assert pod.volumes[0].host_path == HostPath("/etc")


def test_unreadable_file_is_a_pod_spec_error(tmp_path: Path) -> None:
    with pytest.raises(PodSpecError, match="cannot be read"):
        load_pods(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PodSpecError, match="not UTF-8"):
        load_pods(tmp_path / "bin.yaml")


# Quantities, as Kubernetes writes them.
@pytest.mark.parametrize(("text", "value"), [
    ("1Gi", 1 << 30), ("512Mi", 512 << 20), ("100m", Fraction(1, 10)), ("0.5", Fraction(1, 2)),
    (0.5, Fraction(1, 2)), (2, 2), ("1k", 1000), ("1M", 10**6), ("1E", 10**18), ("1e3", 1000),
    ("1E-3", Fraction(1, 1000)), (".5", Fraction(1, 2)),
    ("5.", 5), ("+3", 3), ("-2Ki", -2048), ("1.5Gi", 3 << 29),
])
def test_quantities(text: object, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["1GG", "", "Gi", "1 Gi", "1K", "1gi", "1e", "1.2.3", "0x10", "1Gib", True, None,
                                  "1e999"])
def test_malformed_quantities(text: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
DECIMAL = {"m": Fraction(1, 1000), "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


@given(whole=st.integers(min_value=0, max_value=10**12), frac=st.one_of(st.none(), st.integers(0, 999)),
       suffix=st.sampled_from([*BINARY, *DECIMAL]), negative=st.booleans())
def test_quantity_parser_agrees_with_its_grammar(whole: int, frac: int | None, suffix: str, negative: bool) -> None:
    number = f"{whole}" if frac is None else f"{whole}.{frac:03d}"
    amount = Fraction(number) * (BINARY.get(suffix) or DECIMAL[suffix])
    assert parse_quantity(("-" if negative else "") + number + suffix) == (-amount if negative else amount)


@given(whole=st.integers(0, 10**6), exponent=st.integers(-20, 20), upper=st.booleans())
def test_quantity_exponents(whole: int, exponent: int, upper: bool) -> None:
    assert parse_quantity(f"{whole}{'E' if upper else 'e'}{exponent}") == whole * Fraction(10) ** exponent


@given(st.text(max_size=12))
def test_quantity_parser_never_fails_otherwise(text: str) -> None:
    """Any string: a number, or QuantityError (never another exception, never a hang)."""
    try:
        parse_quantity(text)
    except QuantityError:
        pass


@given(st.text(alphabet="0123456789.eEkKmMGgiIT+- ", max_size=8))
def test_pod_with_any_memory_limit_parses_or_refuses_in_one_line(limit: str) -> None:
    text = pod_yaml(containers=f"  - name: app\n    image: a\n    resources: {{limits: {{memory: '{limit}'}}}}\n")
    try:
        parse_pods(text)
    except WasmlabError as err:
        assert isinstance(err, PodSpecError) and "\n" not in err.one_line()


def test_every_pod_asset_passes_kubernetes_validate_strict() -> None:
    files = sorted(PODS.glob("*.yaml"))
    assert {f.name for f in files} >= {"seed-pod.yaml", "hello-wasm.yaml", "mixed-compat.yaml",
                                       "mixed-compat-smart.yaml", "emptydir-share.yaml", "containerd-allowlist.yaml",
                                       "handler-faceoff.yaml"}
    proc = subprocess.run([str(VALIDATE), "--strict", *map(str, files)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed") == sum(len(load_pods(f).pods) for f in files), proc.stdout  # one per pod
    for f in files:
        assert load_pods(f).pods and not load_pods(f).warnings, f


def test_kubernetes_validate_refuses_what_it_should(tmp_path: Path) -> None:
    """The validator is a real check: an unknown container field fails --strict."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(pod_yaml(containers="  - {name: a, image: b, bogus: 1}\n"))
    proc = subprocess.run([str(VALIDATE), "--strict", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "bogus" in proc.stdout + proc.stderr


def test_scenario_files_use_the_sample_images() -> None:
    """The ready scenarios name images `wasmlab samples` builds (programs of assets/containerfiles)."""
    programs = {p.name for p in (ROOT / "assets" / "containerfiles").iterdir()}
    for f in sorted(PODS.glob("*.yaml")):
        if f.name == "seed-pod.yaml":
            continue
        for pod in load_pods(f).pods:
            for c in pod.all_containers:
                repo, _, tag = c.image.partition(":")
                assert repo.startswith("wasmlab/") and repo.removeprefix("wasmlab/") in programs, c.image
                assert tag in ("compat", "compat-smart", "linux") or c.image == "wasmlab/busybox:latest", c.image
