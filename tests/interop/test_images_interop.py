"""Images against the real tools: podman, buildah, skopeo, umoci and docker-registry.

What wasmlab writes must be read by them, and what they write must load into wasmlab, with
the ``module.wasm.image/variant=compat`` annotation intact. Missing tools skip the tests
locally; with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from images_support import (
    COMPAT,
    hello_wasm,
    seed_context,
    snapshot,
    tar_file,
    validate,
    validate_layout,
)
from wasmlab.runtime.errors import ImageError
from wasmlab.runtime.images import Images

from tests.conftest import need

pytestmark = pytest.mark.interop

COMPAT_FLAG = "module.wasm.image/variant=compat"


def need_tool(name: str) -> str:
    """The tool's path; skip locally when it is missing, fail in CI."""
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class Podman:
    """podman and buildah with their own storage under a temp directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = ["--root", str(root / "storage"), "--runroot", str(root / "run"),
                        "--storage-driver", "vfs"]

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(need_tool("podman"), *self.storage, "--cgroup-manager", "cgroupfs",
                   "--events-backend", "file", *args, check=check)

    def buildah(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(need_tool("buildah"), *self.storage, *args)

    def annotations(self, name: str) -> dict[str, str]:
        out = self.podman("image", "inspect", name, "--format", "{{json .Annotations}}").stdout
        return json.loads(out) or {}


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    need_tool("podman")
    need_tool("buildah")
    need(os.geteuid() == 0, "podman with an isolated --root needs root here")
    root = tmp_path_factory.mktemp("podman")
    env = Podman(root)
    yield env
    subprocess.run([shutil.which("podman") or "podman", *env.storage, "system", "reset", "--force"],
                   capture_output=True, check=False, timeout=120)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Images:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    return Images()


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return seed_context(tmp_path / "ctx")


def buildah_compat_image(podman_env: Podman, ctx: Path, name: str) -> None:
    podman_env.buildah("build", "--annotation", COMPAT_FLAG, "--platform", "wasi/wasm", "-t", name, str(ctx))


# -- what wasmlab writes, the tools read ----------------------------------------------------------


def test_saved_archive_is_read_by_skopeo(lab: Images, ctx: Path, tmp_path: Path) -> None:
    need_tool("skopeo")
    built = lab.build(ctx, tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
    path = lab.save("mywasm-image", tmp_path / "hello.tar").path
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{path}").stdout)
    assert info["Digest"] == built.digest
    assert (info["Os"], info["Architecture"]) == ("wasip1", "wasm")
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci-archive:{path}").stdout)
    assert raw["annotations"] == COMPAT
    validate("manifest", raw)
    config = json.loads(run("skopeo", "inspect", "--config", "--raw", f"oci-archive:{path}").stdout)
    validate("config", config)


def test_saved_archive_is_read_by_umoci(lab: Images, ctx: Path, tmp_path: Path) -> None:
    need_tool("umoci")
    lab.build(ctx, tag="linux-hello")  # umoci unpack only makes Linux bundles
    lab.build(ctx, tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
    path = lab.save(["linux-hello", "mywasm-image"], tmp_path / "two.tar").path
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(path) as tar:
        tar.extractall(layout, filter="data")
    validate_layout(layout)
    listed = set(run("umoci", "ls", "--layout", str(layout)).stdout.split())
    assert listed == {"localhost/linux-hello:latest", "localhost/mywasm-image:latest"}
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{layout}:localhost/linux-hello:latest", str(bundle))
    assert (bundle / "rootfs" / "hello.wasm").read_bytes() == hello_wasm()
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["/hello.wasm"]


def test_saved_archive_loads_into_podman_with_the_annotation(lab: Images, podman_env: Podman, ctx: Path,
                                                             tmp_path: Path) -> None:
    built = lab.build(ctx, tag="wasmlab-made", annotations=COMPAT, platform="wasi/wasm")
    path = lab.save("wasmlab-made", tmp_path / "made.tar").path
    out = podman_env.podman("load", "-i", path).stdout
    assert "localhost/wasmlab-made:latest" in out
    assert podman_env.annotations("localhost/wasmlab-made:latest") == COMPAT
    fmt = "{{.Digest}} {{.Os}} {{.Architecture}}"
    inspected = podman_env.podman("image", "inspect", "localhost/wasmlab-made:latest", "--format", fmt).stdout
    assert inspected.split() == [built.digest, "wasip1", "wasm"]


# -- what the tools write, wasmlab loads ----------------------------------------------------------


def test_loads_podman_oci_and_docker_archives(lab: Images, podman_env: Podman, ctx: Path,
                                              tmp_path: Path) -> None:
    buildah_compat_image(podman_env, ctx, "localhost/from-buildah:latest")
    oci = tmp_path / "podman-oci.tar"
    docker = tmp_path / "podman-docker.tar"
    podman_env.podman("save", "--format", "oci-archive", "-o", str(oci), "localhost/from-buildah:latest")
    podman_env.podman("save", "--format", "docker-archive", "-o", str(docker), "localhost/from-buildah:latest")

    loaded = lab.load(oci)
    assert loaded.format == "oci-archive" and loaded.names == ["localhost/from-buildah:latest"]
    details = lab.inspect("from-buildah")
    assert details.summary.annotations[COMPAT_FLAG.split("=")[0]] == "compat"
    assert details.command == ["/hello.wasm"]
    with tarfile.open(oci) as tar:
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
    assert details.summary.digest == index["manifests"][0]["digest"]

    other = Images(tmp_path / "other")
    loaded = other.load(docker)
    assert loaded.format == "docker-archive" and loaded.names == ["localhost/from-buildah:latest"]
    assert other.inspect("from-buildah").config["rootfs"] == details.config["rootfs"]
    unpacked = other.unpack("from-buildah", tmp_path / "bundle")
    assert (Path(unpacked.rootfs) / "hello.wasm").read_bytes() == hello_wasm()


def test_buildah_compat_image_keeps_its_annotation_through_wasmlab(lab: Images, podman_env: Podman,
                                                                   ctx: Path, tmp_path: Path, runtime) -> None:
    buildah_compat_image(podman_env, ctx, "localhost/mywasm-image:latest")
    archive = tmp_path / "buildah.tar"
    podman_env.buildah("push", "localhost/mywasm-image:latest", f"oci-archive:{archive}:localhost/mywasm-image:latest")
    lab.load(archive)
    summary = lab.list()[0]
    assert summary.name == "localhost/mywasm-image:latest"
    assert summary.annotations == {**summary.annotations, **COMPAT} and summary.wasm
    result = lab.unpack("mywasm-image", tmp_path / "bundle")
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["annotations"]["module.wasm.image/variant"] == "compat"
    assert result.args == ["/hello.wasm"]
    ran = runtime.run("from-buildah", str(tmp_path / "bundle"))  # and it runs, as Wasm
    assert (ran.exit_code, ran.stdout, ran.decision["handler"]) == (0, b"hello from wasm\n", "wasmtime")


def test_loads_skopeo_archives(lab: Images, ctx: Path, tmp_path: Path) -> None:
    need_tool("skopeo")
    lab.build(ctx, tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
    source = lab.save("mywasm-image", tmp_path / "source.tar").path
    oci = tmp_path / "skopeo-oci.tar"
    docker = tmp_path / "skopeo-docker.tar"
    layout = tmp_path / "skopeo-layout"
    run("skopeo", "copy", "-q", f"oci-archive:{source}", f"oci-archive:{oci}:localhost/via-skopeo:oci")
    run("skopeo", "copy", "-q", f"oci-archive:{source}", f"docker-archive:{docker}:localhost/via-skopeo:docker")
    run("skopeo", "copy", "-q", f"oci-archive:{source}", f"oci:{layout}:dir-tag")
    assert lab.load(oci).names == ["localhost/via-skopeo:oci"]
    assert lab.inspect("via-skopeo:oci").summary.annotations == COMPAT
    assert lab.load(docker).names == ["localhost/via-skopeo:docker"]
    assert lab.load(layout).names == ["localhost/dir-tag:latest"]
    for name in ("via-skopeo:oci", "via-skopeo:docker", "dir-tag"):
        layer = lab.store.get_blob(lab.inspect(name).layers[0].digest)
        assert tar_file(layer, "hello.wasm") == hello_wasm()


def test_tar_slip_archive_is_refused_and_the_store_is_untouched(lab: Images, ctx: Path, tmp_path: Path) -> None:
    lab.build(ctx, tag="existing")
    good = lab.save("existing", tmp_path / "good.tar").path
    evil = tmp_path / "evil.tar"
    with tarfile.open(good) as src, tarfile.open(evil, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        slip = tarfile.TarInfo("../../../tmp/wasmlab-slip")
        dst.addfile(slip)
    before = snapshot(lab.store.root)
    with pytest.raises(ImageError) as err:
        lab.load(evil)
    assert "escapes the archive" in err.value.message and err.value.hint
    assert snapshot(lab.store.root) == before
    assert not Path("/tmp/wasmlab-slip").exists()


# -- registries ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry") or ("/usr/bin/docker-registry"
                                                  if Path("/usr/bin/docker-registry").exists() else None)
    if binary is None:
        need_tool("docker-registry")
        raise AssertionError("unreachable")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"""\
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {tmp_path / "registry-data"}
http:
  addr: 127.0.0.1:{port}
""")
    log = open(tmp_path / "registry.log", "wb")  # noqa: SIM115 - closed below
    # The registry reads REGISTRY_* variables as config overrides (REGISTRY_AUTH_FILE would break it).
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()}")
                time.sleep(0.05)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_push_and_pull_against_docker_registry(lab: Images, ctx: Path, tmp_path: Path, registry: str) -> None:
    need_tool("skopeo")
    built = lab.build(ctx, tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
    pushed = lab.push("mywasm-image", f"{registry}/lab/mywasm:v1", tls_verify=False)
    assert pushed.digest == built.digest and pushed.blobs_pushed == 2
    info = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/lab/mywasm:v1").stdout)
    assert info["Digest"] == built.digest
    raw = json.loads(run("skopeo", "inspect", "--raw", "--tls-verify=false",
                         f"docker://{registry}/lab/mywasm:v1").stdout)
    assert raw["annotations"] == COMPAT
    again = lab.push("mywasm-image", f"{registry}/lab/mywasm:v2", tls_verify=False)
    assert (again.blobs_pushed, again.blobs_skipped) == (0, 2)

    fresh = Images(tmp_path / "fresh")
    pulled = fresh.pull(f"{registry}/lab/mywasm:v1", tls_verify=False)
    assert pulled.digest == built.digest
    assert fresh.inspect(f"{registry}/lab/mywasm:v1").summary.annotations == COMPAT
    validate_layout(fresh.store.root)


def test_podman_and_wasmlab_exchange_images_through_the_registry(lab: Images, podman_env: Podman, ctx: Path,
                                                                  registry: str) -> None:
    buildah_compat_image(podman_env, ctx, "localhost/pushed-by-podman:latest")
    podman_env.podman("push", "--tls-verify=false", "localhost/pushed-by-podman:latest",
                      f"{registry}/lab/by-podman:1")
    pulled = lab.pull(f"{registry}/lab/by-podman:1", tls_verify=False)
    assert lab.inspect(pulled.name or pulled.digest).summary.annotations.get("module.wasm.image/variant") == "compat"

    lab.build(ctx, tag="mine", annotations=COMPAT)
    lab.push("mine", f"{registry}/lab/mine:1", tls_verify=False)
    podman_env.podman("pull", "--tls-verify=false", f"{registry}/lab/mine:1")
    assert podman_env.annotations(f"{registry}/lab/mine:1") == COMPAT
