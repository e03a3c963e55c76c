"""The seed's third point against the real containerd (Debian's 1.6) through its CRI, as the kubelet drives it: the
lab's own CRI client (runtime/pods/cri.py) runs a pod annotated module.wasm.image/variant=compat under the runtime
handler wasmlab-oci, in a private containerd whose CRI plugin has the pod_annotations allowlist under test.

- the seed's ["module.wasm.image/variant.*"]: the annotation is not in the config.json wasmlab-oci is given, and
  the Wasm container fails as the seed says (its entrypoint "is not executable");
- ["module.wasm.image/*"]: the annotation is passed on (to the pod's sandbox container too) and the module prints
  hello through the Wasm handler.

The runtime is the recording wrapper of tests/interop/conftest.py, so config.json is read as wasmlab-oci received
it. Each test leaves no containerd, shim, mount or cgroup behind (the suite's leak checks and the shim search).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmlab.runtime import Lab
from wasmlab.runtime.errors import CriError
from wasmlab.runtime.pods import cri
from wasmlab.runtime.pods.containerd import (
    CRI_NAMESPACE,
    HELLO_REF,
    PAUSE_REF,
    SEED_ALLOWLIST,
    VARIANT_KEY,
    WORKING_ALLOWLIST,
    PrivateContainerd,
    node_config,
    run_pod,
)
from wasmlab.runtime.pods.sandbox import ensure_pause_image

from tests.conftest import LeakCheck
from tests.interop.conftest import Recorder, need_tools, wait_until_gone

pytestmark = [pytest.mark.interop, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def images(lab_home: Path, tmp_path: Path) -> Iterator[Path]:
    """The lab's pause and compat hello images, saved as one OCI archive (what the private containerd imports)."""
    need_tools("containerd", "ctr", "containerd-shim-runc-v2")
    lab = Lab()
    try:
        lab.samples(busybox=False)
        ensure_pause_image(lab.pod_images())
        archive = tmp_path / "images.tar"
        lab.save([PAUSE_REF, HELLO_REF], archive)
        yield archive
    finally:
        lab.close()


def _node(recorder: Recorder, allowlist: tuple[str, ...]) -> PrivateContainerd:
    return PrivateContainerd.start(lambda base, snap: node_config(base, snap, runtime_path=recorder.path,
                                                                  pod_annotations=allowlist))


def _stopped(node: PrivateContainerd) -> None:
    problems = node.stop()
    assert not problems, problems
    assert not node.base.exists()
    assert not wait_until_gone(str(node.base)), "a containerd or shim process outlived the private containerd"


@pytest.mark.parametrize("allowlist", [SEED_ALLOWLIST, WORKING_ALLOWLIST], ids=["seed-allowlist", "working"])
def test_pod_annotation_reaches_wasmlab_oci_only_through_a_matching_allowlist(
        images: Path, recorder: Recorder, leaks: LeakCheck, allowlist: tuple[str, ...]) -> None:
    node = _node(recorder, allowlist)
    try:
        node.import_archive(images)
        with node.cri() as client:
            assert client.version()["runtime_name"] == "containerd"
            assert client.image_status(HELLO_REF) is not None, node.tail()
        run = run_pod(node, allowlist)
        context = f"{run}\n{recorder.describe()}\ncontainerd log:\n{node.tail()}"
        # containerd's shim called wasmlab-oci for the sandbox (pause) and the Wasm container: read the config.json
        # each was given, as the runtime saw it.
        created = [c.argv[-1] for c in recorder.calls() if c.verb == "create"]
        assert len(created) == 2, context
        configs = [recorder.config(cid) for cid in created]
        kinds = {str(c["annotations"]["io.kubernetes.cri.container-type"]): c for c in configs}  # type: ignore[index]
        assert set(kinds) == {"sandbox", "container"}, context
        container_notes = kinds["container"]["annotations"]
        sandbox_notes = kinds["sandbox"]["annotations"]
        assert isinstance(container_notes, dict) and isinstance(sandbox_notes, dict)
        if allowlist == SEED_ALLOWLIST:
            assert VARIANT_KEY not in container_notes and VARIANT_KEY not in sandbox_notes, context
            assert not run.passed and not run.sandbox_passed, context
            # As the seed says: the module is handed to the kernel, which cannot run it.
            assert "the entrypoint /hello.wasm is not executable" in run.error, context
            assert "OCI runtime create failed" in run.error, context
            assert run.state == "CONTAINER_EXITED" and run.exit_code == 128 and run.output == "", context
        else:
            assert container_notes.get(VARIANT_KEY) == "compat", context
            assert sandbox_notes.get(VARIANT_KEY) == "compat", context  # pause still runs natively (sandbox rule)
            assert run.passed and run.sandbox_passed and run.error == "", context
            assert run.state == "CONTAINER_EXITED" and run.exit_code == 0, context
            assert run.output == "hello world from wasmlab !!!!\n", context
        # The pod is gone from containerd: no container or task left in its CRI namespace.
        assert node.ctr("containers", "ls", "-q", namespace=CRI_NAMESPACE).stdout.split() == [], context
        assert node.ctr("tasks", "ls", "-q", namespace=CRI_NAMESPACE).stdout.split() == [], context
    finally:
        _stopped(node)
    leaks.assert_clean()


def test_lab_containerd_demo_shows_both_allowlists(images: Path, leaks: LeakCheck) -> None:
    """The notebook's one call (Lab.containerd_demo) with the real wasmlab-oci: one row per allowlist."""
    lab = Lab()
    try:
        seed, working = (lab.containerd_demo(list(a)) for a in (SEED_ALLOWLIST, WORKING_ALLOWLIST))
    finally:
        lab.close()
    assert seed.row()[1:] == ("dropped", "CONTAINER_EXITED",
                              "the entrypoint /hello.wasm is not executable (hint: is it a Wasm module? add the "
                              "annotation module.wasm.image/variant=compat)"), seed
    assert working.row()[1:] == ("passed", "CONTAINER_EXITED", "exit 0: hello world from wasmlab !!!!"), working
    assert json.loads(working.row()[0]) == list(WORKING_ALLOWLIST)
    leaks.assert_clean()


def test_cri_errors_are_typed_with_containerd_s_words(images: Path, recorder: Recorder, leaks: LeakCheck) -> None:
    """A call containerd refuses comes back as CriError (method, gRPC code, containerd's message), not a gRPC
    traceback: here an unknown runtime handler, and a container that does not exist."""
    node = _node(recorder, WORKING_ALLOWLIST)
    try:
        node.import_archive(images)
        with node.cri() as client:
            config = cri.pod_sandbox_config("nohandler", "default", "u1", annotations={},
                                            log_directory=str(node.base / "logs"), cgroup_parent="")
            with pytest.raises(CriError) as refused:
                client.run_pod_sandbox(config, "no-such-handler")
            assert refused.value.method == "RunPodSandbox"
            assert "no runtime for \"no-such-handler\" is configured" in refused.value.detail, refused.value.detail
            assert refused.value.one_line().startswith("CRI RunPodSandbox failed (")
            with pytest.raises(CriError) as missing:
                client.container_status("nothere")
            assert missing.value.code == "NOT_FOUND", missing.value.detail
    finally:
        _stopped(node)
    assert recorder.calls() == []  # nothing reached the runtime
    leaks.assert_clean()

