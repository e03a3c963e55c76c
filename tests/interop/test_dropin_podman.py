"""Drop-in proof: podman 4.3 (through conmon) runs Linux and Wasm images with `--runtime wasmlab-oci`.

Every run uses isolated storage and the flags this machine needs (see FACTS.md):
    podman --root R --runroot RR --storage-driver vfs --tmpdir T --cgroup-manager cgroupfs \
        --events-backend file --runtime <wasmlab-oci> run --rm \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 IMAGE [CMD...]

Annotations: podman 4.3 copies the image manifest's annotations into the container's config.json, so an
image built with `buildah build --annotation module.wasm.image/variant=compat` reaches wasmlab-oci with
that annotation and no flag on `podman run` (test_wasm_image_annotation_reaches_the_runtime checks this
in the config.json podman wrote). With an image that lacks it, pass
`podman run --annotation module.wasm.image/variant=compat`, which works too
(test_wasm_with_annotation_on_podman_run).

conmon calls the runtime as (no --root, so state lives in wasmlab's default root):
    wasmlab-oci create --bundle B --pid-file P [--console-socket S] ID
    wasmlab-oci start ID
    wasmlab-oci kill ID 15            (podman stop; then 9 after the timeout)
    wasmlab-oci delete --force ID
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.conftest import (
    BUSYBOX_GREETING,
    BUSYBOX_IMAGE,
    VARIANT_ANNOTATION,
    WASM_GREETING,
    WASM_IMAGE,
    WASMLAB_OCI,
    Recorder,
    Store,
    explain,
    median,
    mounts_under,
    need_tools,
    sh,
    wait_until_gone,
)

pytestmark = [pytest.mark.interop, pytest.mark.root, pytest.mark.slow]

ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
TIMEOUT = 120


@pytest.fixture(autouse=True)
def _tools_and_leaks(store: Store) -> Iterator[None]:
    """Every test leaves no mount under the store and no conmon or container process behind."""
    need_tools("podman", "conmon", "runc")
    before = mounts_under(store.base)
    yield
    left = wait_until_gone(str(store.base))
    assert not left, f"processes left behind: {left}"
    assert mounts_under(store.base) == before, (
        f"mounts left behind: {set(mounts_under(store.base)) - set(before)}"
    )


def run(store: Store, runtime: str, *args: str, input: str | None = None, timeout: float = TIMEOUT):
    return sh(store.podman(runtime, "run", "--rm", *ULIMITS, *args), timeout=timeout, input=input)


def state_root() -> str:
    from wasmlab.runtime.store.state import default_root

    return os.path.abspath(default_root())


def assert_runtime_state_gone(rec: Recorder) -> None:
    """conmon passes no --root: every container it created must be gone from wasmlab's default root."""
    for call in rec.calls():
        if call.verb == "create":
            cid = call.argv[-1]
            left = [
                p
                for p in (os.path.join(state_root(), cid), os.path.join(state_root(), f".{cid}.lock"))
                if os.path.lexists(p)
            ]
            assert not left, f"wasmlab-oci left state behind: {left}\n{rec.describe()}"


def test_busybox_image_prints_like_runc(store: Store) -> None:
    """The sanity anchor: same image and flags, same output and exit code under runc and wasmlab-oci."""
    results = {
        name: run(store, runtime, BUSYBOX_IMAGE)
        for name, runtime in (("runc", "runc"), ("wasmlab-oci", WASMLAB_OCI))
    }
    runc, ours = results["runc"], results["wasmlab-oci"]
    assert runc.returncode == 0 and runc.stdout == f"{BUSYBOX_GREETING}\n", "runc itself failed" + explain(
        runc
    )
    assert (ours.returncode, ours.stdout) == (runc.returncode, runc.stdout), (
        "podman + wasmlab-oci differs from podman + runc" + explain(ours) + "\nrunc gave:" + explain(runc)
    )


def test_exit_code_and_streams_propagate(store: Store, recorder: Recorder) -> None:
    proc = run(
        store, recorder.path, BUSYBOX_IMAGE, "/bin/busybox", "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    context = recorder.describe()
    assert proc.returncode == 3, "the container's exit code 3 did not come back through podman" + explain(
        proc, context
    )
    assert proc.stdout == "out\n", "stdout" + explain(proc, context)
    assert "err" in proc.stderr, "the container's stderr did not reach podman" + explain(proc, context)
    verbs = [c.verb for c in recorder.calls()]
    assert verbs == ["create", "start", "delete"], f"unexpected calls: {verbs}\n{context}"
    create = recorder.calls()[0]
    assert "--bundle" in create.argv and "--pid-file" in create.argv, context
    assert all(c.exit_code == 0 for c in recorder.calls()), context
    assert_runtime_state_gone(recorder)


@pytest.mark.parametrize("code", [1, 42, 255])
def test_nonzero_exit_codes(store: Store, code: int) -> None:
    proc = run(store, WASMLAB_OCI, BUSYBOX_IMAGE, "/bin/busybox", "sh", "-c", f"exit {code}")
    assert proc.returncode == code, f"expected exit code {code}" + explain(proc)


def test_wasm_image_annotation_reaches_the_runtime(store: Store, recorder: Recorder) -> None:
    """podman 4.3 copies the manifest annotation into config.json; wasmlab-oci then runs the module."""
    proc = run(store, recorder.path, WASM_IMAGE)
    context = recorder.describe()
    assert proc.returncode == 0, "podman + wasmlab-oci could not run the Wasm image" + explain(proc, context)
    assert proc.stdout == f"{WASM_GREETING}\n", "the Wasm module's output" + explain(proc, context)
    creates = [c for c in recorder.calls() if c.verb == "create"]
    assert creates, context
    annotations = recorder.config(creates[0].argv[-1]).get("annotations") or {}
    key, value = VARIANT_ANNOTATION.split("=")
    assert isinstance(annotations, dict) and annotations.get(key) == value, (
        f"podman did not copy the image annotation into config.json: {json.dumps(annotations, indent=1)}"
    )
    assert_runtime_state_gone(recorder)
    # The anchor: runc cannot run the same image (the entrypoint is a Wasm module, not an ELF).
    with_runc = run(store, "runc", WASM_IMAGE)
    assert with_runc.returncode != 0 and WASM_GREETING not in with_runc.stdout, (
        "runc ran a Wasm module?" + explain(with_runc)
    )


def test_wasm_with_annotation_on_podman_run(store: Store) -> None:
    """The explicit form, for images built without the annotation: podman run --annotation ..."""
    proc = run(store, WASMLAB_OCI, "--annotation", VARIANT_ANNOTATION, WASM_IMAGE)
    assert (proc.returncode, proc.stdout) == (0, f"{WASM_GREETING}\n"), (
        "Wasm via podman run --annotation" + explain(proc)
    )


def test_stdin_is_attached(store: Store) -> None:
    proc = run(store, WASMLAB_OCI, "-i", BUSYBOX_IMAGE, "/bin/busybox", "cat", input="piped through\n")
    assert (proc.returncode, proc.stdout) == (0, "piped through\n"), "podman run -i" + explain(proc)


def test_terminal_through_console_socket(store: Store, recorder: Recorder) -> None:
    proc = run(store, recorder.path, "-t", BUSYBOX_IMAGE, "/bin/busybox", "sh", "-c", "tty; echo term-ok")
    context = recorder.describe()
    assert proc.returncode == 0, "podman run -t" + explain(proc, context)
    assert "/dev/pts/" in proc.stdout and "term-ok" in proc.stdout, "no pty in the container" + explain(
        proc, context
    )
    create = next(c for c in recorder.calls() if c.verb == "create")
    assert "--console-socket" in create.argv, context


def test_detached_container_stops_with_sigterm(store: Store, recorder: Recorder) -> None:
    """podman run -d, ps, stop: conmon keeps the container; `stop` goes through `wasmlab-oci kill ID 15`."""
    script = 'trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done'
    started = sh(
        store.podman(recorder.path, "run", "-d", *ULIMITS, BUSYBOX_IMAGE, "/bin/busybox", "sh", "-c", script),
        timeout=TIMEOUT,
    )
    assert started.returncode == 0, "podman run -d" + explain(started, recorder.describe())
    cid = started.stdout.strip().splitlines()[-1]
    try:
        deadline = time.monotonic() + 30
        while True:
            logs = sh(store.podman(recorder.path, "logs", cid), timeout=TIMEOUT)
            if "ready" in logs.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "ready" in logs.stdout, "the detached container never printed" + explain(
            logs, recorder.describe()
        )
        ps = sh(store.podman(recorder.path, "ps", "--format", "{{.ID}} {{.Status}}"), timeout=TIMEOUT)
        assert cid[:12] in ps.stdout and "Up" in ps.stdout, "podman ps" + explain(ps)
        stop = sh(store.podman(recorder.path, "stop", "-t", "20", cid), timeout=TIMEOUT)
        assert stop.returncode == 0, "podman stop" + explain(stop, recorder.describe())
        inspect = sh(
            store.podman(recorder.path, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cid),
            timeout=TIMEOUT,
        )
        assert inspect.stdout.split() == ["exited", "7"], "the TERM trap's exit code" + explain(
            inspect, recorder.describe()
        )
        kills = [c.argv for c in recorder.calls() if c.verb == "kill"]
        assert kills and kills[0][-1] in ("15", "TERM", "SIGTERM"), recorder.describe()
    finally:
        rm = sh(store.podman(recorder.path, "rm", "--force", cid), timeout=TIMEOUT)
    assert rm.returncode == 0, "podman rm" + explain(rm, recorder.describe())
    assert_runtime_state_gone(recorder)


def test_podman_exec_runs_inside_the_container(store: Store, recorder: Recorder) -> None:
    """podman exec goes through `wasmlab-oci exec --process ... --detach`: same namespaces, same root."""
    started = sh(store.podman(recorder.path, "run", "-d", *ULIMITS, "--hostname", "boxed", BUSYBOX_IMAGE,
                              "/bin/busybox", "sleep", "60"), timeout=TIMEOUT)
    assert started.returncode == 0, "podman run -d" + explain(started, recorder.describe())
    cid = started.stdout.strip().splitlines()[-1]
    try:
        out = sh(store.podman(recorder.path, "exec", cid, "/bin/busybox", "sh", "-c",
                              "hostname; cat /proc/1/cmdline | tr '\\0' ' '; exit 3"), timeout=TIMEOUT)
        assert out.returncode == 3, "podman exec" + explain(out, recorder.describe())
        assert out.stdout.split()[:3] == ["boxed", "/bin/busybox", "sleep"], explain(out)
        assert any(c.verb == "exec" for c in recorder.calls()), recorder.describe()
    finally:
        sh(store.podman(recorder.path, "rm", "-f", "-t", "0", cid), timeout=TIMEOUT)


def test_podman_pause_and_unpause(store: Store, recorder: Recorder) -> None:
    """podman pause/unpause go through `wasmlab-oci pause|resume ID` (the cgroup freezer)."""
    started = sh(store.podman(recorder.path, "run", "-d", *ULIMITS, BUSYBOX_IMAGE, "/bin/busybox", "sleep", "60"),
                 timeout=TIMEOUT)
    assert started.returncode == 0, "podman run -d" + explain(started, recorder.describe())
    cid = started.stdout.strip().splitlines()[-1]
    try:
        for verb, status in (("pause", "paused"), ("unpause", "running")):
            r = sh(store.podman(recorder.path, verb, cid), timeout=TIMEOUT)
            assert r.returncode == 0, f"podman {verb}" + explain(r, recorder.describe())
            st = sh(store.podman(recorder.path, "inspect", "--format", "{{.State.Status}}", cid), timeout=TIMEOUT)
            assert st.stdout.strip() == status, explain(st, recorder.describe())
        assert {"pause", "resume"} <= {c.verb for c in recorder.calls()}, recorder.describe()
    finally:
        sh(store.podman(recorder.path, "rm", "-f", "-t", "0", cid), timeout=TIMEOUT)


def test_timing_wasmlab_oci_against_runc(
    store: Store, record_property: pytest.RecordProperty, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wall time of a whole `podman run --rm` of the busybox image, runc and wasmlab-oci alternating."""
    rounds = int(os.environ.get("DROPIN_TIMING_ROUNDS", "5"))
    times: dict[str, list[float]] = {"runc": [], "wasmlab-oci": []}
    for _ in range(rounds + 1):  # the first round warms podman's caches and is dropped
        for name, runtime in (("runc", "runc"), ("wasmlab-oci", WASMLAB_OCI)):
            t0 = time.perf_counter()
            proc = run(store, runtime, BUSYBOX_IMAGE)
            times[name].append((time.perf_counter() - t0) * 1000)
            assert (proc.returncode, proc.stdout) == (0, f"{BUSYBOX_GREETING}\n"), name + explain(proc)
    summary = {name: round(median(values[1:]), 1) for name, values in times.items()}
    for name, value in summary.items():
        record_property(f"podman_run_median_ms[{name}]", value)
    with capsys.disabled():
        print(f"\npodman run --rm busybox echo, median of {rounds} (ms): {summary}")
    if os.environ.get("DROPIN_TIMING_OUT"):
        Path(os.environ["DROPIN_TIMING_OUT"]).write_text(json.dumps({"ms": times, "median_ms": summary}))
