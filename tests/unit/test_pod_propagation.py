"""Annotation propagation (runtime/pods/propagation.py): Go's path.Match, CRI-O and containerd, and the seed's glob."""

from __future__ import annotations

from pathlib import Path

import pytest
from wasmlab.runtime.errors import BadPattern, UsageError
from wasmlab.runtime.pods.propagation import check_propagation, path_match, propagate
from wasmlab.runtime.spec.pod import Pod, load_pods, parse_pods

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "assets" / "pods" / "seed-pod.yaml"
VARIANT = "module.wasm.image/variant"
BAD = "ErrBadPattern"

# Go's own table: golang/go src/path/match_test.go (matchTests), as data: (pattern, name, match, error).
GO_MATCH_TESTS = [
    ("abc", "abc", True, None),
    ("*", "abc", True, None),
    ("*c", "abc", True, None),
    ("a*", "a", True, None),
    ("a*", "abc", True, None),
    ("a*", "ab/c", False, None),
    ("a*/b", "abc/b", True, None),
    ("a*/b", "a/c/b", False, None),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True, None),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True, None),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False, None),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False, None),
    ("a*b?c*x", "abxbbxdbxebxczzx", True, None),
    ("a*b?c*x", "abxbbxdbxebxczzy", False, None),
    ("ab[c]", "abc", True, None),
    ("ab[b-d]", "abc", True, None),
    ("ab[e-g]", "abc", False, None),
    ("ab[^c]", "abc", False, None),
    ("ab[^b-d]", "abc", False, None),
    ("ab[^e-g]", "abc", True, None),
    ("a\\*b", "a*b", True, None),
    ("a\\*b", "ab", False, None),
    ("a?b", "a☺b", True, None),
    ("a[^a]b", "a☺b", True, None),
    ("a???b", "a☺b", False, None),
    ("a[^a][^a][^a]b", "a☺b", False, None),
    ("[a-ζ]*", "α", True, None),  # noqa: RUF001 (Go's own case: a Greek alpha)
    ("*[a-ζ]", "A", False, None),
    ("a?b", "a/b", False, None),
    ("a*b", "a/b", False, None),
    ("[\\]a]", "]", True, None),
    ("[\\-]", "-", True, None),
    ("[x\\-]", "x", True, None),
    ("[x\\-]", "-", True, None),
    ("[x\\-]", "z", False, None),
    ("[\\-x]", "x", True, None),
    ("[\\-x]", "-", True, None),
    ("[\\-x]", "a", False, None),
    ("[]a]", "]", False, BAD),
    ("[-]", "-", False, BAD),
    ("[x-]", "x", False, BAD),
    ("[x-]", "-", False, BAD),
    ("[x-]", "z", False, BAD),
    ("[-x]", "x", False, BAD),
    ("[-x]", "-", False, BAD),
    ("[-x]", "a", False, BAD),
    ("\\", "a", False, BAD),
    ("[a-b-c]", "a", False, BAD),
    ("[", "a", False, BAD),
    ("[^", "a", False, BAD),
    ("[^bc", "a", False, BAD),
    ("a[", "a", False, BAD),
    ("a[", "ab", False, BAD),
    ("a[", "x", False, BAD),
    ("a/b[", "x", False, BAD),
    ("*x", "xxx", True, None),
]


@pytest.mark.parametrize(("pattern", "name", "match", "error"), GO_MATCH_TESTS)
def test_path_match_agrees_with_go(pattern: str, name: str, match: bool, error: str | None) -> None:
    if error:
        with pytest.raises(BadPattern) as info:
            path_match(pattern, name)
        assert "\n" not in info.value.one_line() and "syntax error in pattern" in info.value.message
    else:
        assert path_match(pattern, name) is match


def test_the_seed_glob_against_the_real_key() -> None:
    """Measured with containerd 1.6.20: the seed's entry matches nothing; module.wasm.image/* works."""
    assert not path_match("module.wasm.image/variant.*", VARIANT)
    assert path_match("module.wasm.image/*", VARIANT)
    assert not path_match("module.wasm.*", VARIANT)  # '*' never crosses '/'
    assert path_match("module.wasm.image/variant", VARIANT)


def seed_pod() -> Pod:
    (pod,) = load_pods(SEED).pods
    return pod


def test_crio_passes_pod_annotations_to_every_container_and_the_sandbox() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: mixed, annotations: {module.wasm.image/variant: compat-smart, team: lab}}
spec:
  initContainers: [{name: prep, image: wasmlab/busybox:latest}]
  containers: [{name: app, image: wasmlab/hello:compat}, {name: sidecar, image: wasmlab/busybox:latest}]
"""
    (pod,) = parse_pods(text).pods
    result = propagate(pod, propagation="crio")
    assert result.pod == "default/mixed" and result.propagation == "crio" and result.warnings == ()
    assert [(c.name, c.role) for c in result.containers] == [("prep", "init"), ("app", "container"),
                                                           ("sidecar", "container")]
    for c in (*result.containers, result.sandbox):
        assert c.annotations[VARIANT] == "compat-smart" and c.annotations["team"] == "lab"
        assert c.trace(VARIANT).origin == "pod" and c.trace(VARIANT).passed and c.trace(VARIANT).allowed_by is None
    assert result.sandbox.role == "sandbox" and result.sandbox.image is None
    assert result.sandbox.annotations["io.kubernetes.cri-o.ContainerType"] == "sandbox"
    assert result.container("app").annotations["io.kubernetes.cri-o.ContainerType"] == "container"
    assert result.container("app").trace("io.kubernetes.cri-o.ContainerType").origin == "lab"
    assert result.container("sidecar").annotations["io.kubernetes.container.name"] == "sidecar"


def test_containerd_default_allowlist_passes_the_variant_and_names_the_entry() -> None:
    result = propagate(seed_pod(), propagation="containerd")
    assert result.pod_annotations == ("module.wasm.image/*",) and result.warnings == ()
    app = result.container("wasm-container")
    trace = app.trace(VARIANT)
    assert (trace.passed, trace.allowed_by, trace.origin) == (True, "module.wasm.image/*", "pod")
    assert app.annotations["io.kubernetes.cri.container-type"] == "container"
    assert app.annotations["io.kubernetes.cri.sandbox-namespace"] == "mynamespace"
    assert result.sandbox.annotations["io.kubernetes.cri.container-type"] == "sandbox"
    assert result.sandbox.annotations[VARIANT] == "compat"  # the sandbox gets what the allowlist lets through


def test_the_seed_allowlist_blocks_the_variant_with_exactly_one_warning_and_its_fix() -> None:
    result = propagate(seed_pod(), propagation="containerd", pod_annotations=["module.wasm.image/variant.*"])
    app = result.container("wasm-container")
    trace = app.trace(VARIANT)
    assert not trace.passed and trace.allowed_by is None and "no pod_annotations entry matches" in trace.reason
    assert VARIANT not in app.annotations and VARIANT not in result.sandbox.annotations
    (warning,) = result.warnings
    assert "\n" not in warning
    assert "'module.wasm.image/variant.*' matches no annotation" in warning
    assert warning.endswith('fix: pod_annotations = ["module.wasm.image/*"]'), warning


def test_an_entry_that_matches_nothing_warns_only_when_something_is_held_back() -> None:
    (plain,) = parse_pods("apiVersion: v1\nkind: Pod\nmetadata: {name: plain}\n"
                          "spec: {containers: [{name: a, image: wasmlab/busybox:latest}]}\n").pods
    assert propagate(plain, propagation="containerd").warnings == ()
    both = propagate(seed_pod(), propagation="containerd",
                     pod_annotations=["module.wasm.image/*", "example.com/*"])
    assert both.warnings == ()  # nothing is held back, so the unused entry costs nothing


def test_image_annotations_are_listed_and_never_passed() -> None:
    images = {"myrepo/mywasmimage:latest": {VARIANT: "compat", "org.opencontainers.image.title": "hello"}}
    for mode in ("crio", "containerd"):
        pod = parse_pods("apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\n"
                         "spec: {containers: [{name: c, image: 'myrepo/mywasmimage:latest'}]}\n").pods[0]
        c = propagate(pod, propagation=mode, image_annotations=images).container("c")
        image_traces = [t for t in c.traces if t.origin == "image"]
        assert {t.key for t in image_traces} == {VARIANT, "org.opencontainers.image.title"}
        assert not any(t.passed for t in image_traces) and "6906" in image_traces[0].reason
        assert VARIANT not in c.annotations  # on a cluster, a compat image runs as Wasm only by the pod's annotation


def test_bad_allowlist_entry_and_unknown_mode_are_one_line_errors() -> None:
    with pytest.raises(BadPattern) as info:
        check_propagation("containerd", ["module.wasm.image/[variant"])
    assert "pod_annotations entry" in info.value.message and "\n" not in info.value.one_line()
    assert "containerd would ignore" in info.value.hint
    assert check_propagation("crio", ["["]) == ("crio", ())  # CRI-O has no allowlist
    with pytest.raises(UsageError, match="unknown propagation"):
        check_propagation("docker", None)
