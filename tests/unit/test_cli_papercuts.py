"""The wasmlab command's paper cuts, as a learner meets them: push/pull progress, registry hints, variant typos,
docker-archive's lost annotations, the ids `samples` prints, and one error prefix per command."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from images_support import seed_context
from test_images_registry import FakeRegistry, fake  # noqa: F401  (the in-process registry and its fixture)
from wasmlab.runtime import Lab
from wasmlab.runtime.errors import UsageError

from tests.conftest import OCI, ROOT

WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")
VARIANT = "module.wasm.image/variant"


def wl(home: Path, *args: str, stderr_tty: bool = False) -> subprocess.CompletedProcess[str]:
    """Run wasmlab with HOME as its lab home; with stderr_tty, its stderr is a terminal (a pty) and what it
    drew there comes back as .stderr."""
    env = dict(os.environ, WASMLAB_HOME=str(home), REGISTRY_AUTH_FILE=str(home.parent / "no-auth.json"))
    if not stderr_tty:
        return subprocess.run([WASMLAB, *args], env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    main, other = os.openpty()
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc = subprocess.run([WASMLAB, *args], env=env, stdout=subprocess.PIPE, stderr=other, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
    finally:
        os.close(other)
        reader.join(10)
        os.close(main)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, drawn.decode())


def build_seed(home: Path, tmp: Path, *extra: str, tag: str = "mywasm-image") -> subprocess.CompletedProcess[str]:
    return wl(home, "build", *extra, "-t", tag, str(seed_context(tmp / f"ctx-{tag}")))


def test_push_and_pull_draw_a_bar_on_a_terminal_and_nothing_in_a_pipe(fake: FakeRegistry,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    fake.auth = None
    home = tmp_path / "home"
    assert build_seed(home, tmp_path, "--annotation", f"{VARIANT}=compat").returncode == 0
    dest = f"{fake.host}/lab/hello:v1"
    piped = wl(home, "push", "--tls-verify=false", "mywasm-image", dest)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == "", piped
    drawn = wl(home, "push", "--tls-verify=false", "mywasm-image", f"{fake.host}/lab/hello:v2", stderr_tty=True)
    assert drawn.returncode == 0, drawn.stderr
    assert "TransferEvent" not in drawn.stderr
    assert "push: [" in drawn.stderr and "#" in drawn.stderr and "blob sha256:" in drawn.stderr, drawn.stderr
    pulled = wl(tmp_path / "other", "pull", "--tls-verify=false", dest, stderr_tty=True)
    assert pulled.returncode == 0 and pulled.stdout.startswith("sha256:"), pulled
    assert "pull: [" in pulled.stderr and "copying blob sha256:" in pulled.stderr, pulled.stderr
    assert "TransferEvent" not in pulled.stderr


def test_a_registry_hint_names_the_cli_flag(fake: FakeRegistry, tmp_path: Path) -> None:  # noqa: F811
    r = wl(tmp_path / "home", "pull", f"{fake.host}/lab/x:v1")  # TLS by default against a plain HTTP registry
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "--tls-verify=false" in lines[0] and "tls_verify" not in lines[0] and "Python" not in lines[0]


def test_a_variant_typo_is_refused_at_build_and_at_run_with_the_near_value(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = build_seed(home, tmp_path, "--annotation", f"{VARIANT}=compatt", tag="typo")
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [
        f"Error: unknown variant 'compatt' in annotation {VARIANT}: it takes compat or compat-smart "
        f"(hint: did you mean {VARIANT}=compat?)"], r.stderr
    assert json.loads(wl(home, "images", "--json").stdout) == []  # nothing was stored
    assert build_seed(home, tmp_path, "--annotation", f"{VARIANT}=compat").returncode == 0
    r = wl(home, "run", "--rm", "--annotation", f"{VARIANT}=compat-smrt", "mywasm-image")
    assert r.returncode == 125 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "it takes compat or compat-smart" in r.stderr and f"did you mean {VARIANT}=compat-smart?" in r.stderr
    assert not (home / "containers").exists() or not any((home / "containers").iterdir())
    with Lab(home) as lab, pytest.raises(UsageError) as err:
        lab.run("mywasm-image", annotations={VARIANT: "wasm"})  # far from both: an example instead
    assert err.value.hint == f"for example --annotation {VARIANT}=compat"


def test_docker_archive_warns_that_it_drops_the_wasm_annotation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert build_seed(home, tmp_path, "--annotation", f"{VARIANT}=compat").returncode == 0
    assert build_seed(home, tmp_path, "--platform", "wasi/wasm", tag="by-platform").returncode == 0
    r = wl(home, "save", "--format", "docker-archive", "-o", str(tmp_path / "d.tar"), "mywasm-image")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 1 and lines[0].startswith("Warning: docker-archive "), r.stderr
    assert f"{VARIANT}=compat" in lines[0] and "oci-archive" in lines[0] and "--platform wasi/wasm" in lines[0]
    # What the warning says is so: loaded back, the image is no longer Wasm.
    other = tmp_path / "other"
    assert wl(other, "load", "-i", str(tmp_path / "d.tar")).returncode == 0
    assert [i["variant"] for i in json.loads(wl(other, "images", "--json").stdout)] == [""]
    # Nothing to warn about: oci-archive keeps annotations, and a wasi/wasm config says Wasm by itself.
    for fmt, image in (("oci-archive", "mywasm-image"), ("docker-archive", "by-platform")):
        r = wl(home, "save", "--format", fmt, "-o", str(tmp_path / f"{fmt}-{image}.tar"), image)
        assert r.returncode == 0 and r.stderr == "", r.stderr


def test_samples_prints_the_ids_images_shows(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = wl(home, "samples", "--no-busybox")
    assert r.returncode == 0, r.stderr
    printed = dict(line.split() for line in r.stdout.splitlines())
    listed = {f"{n.removeprefix('localhost/')}": i["id"].removeprefix("sha256:")[:12]
              for i in json.loads(wl(home, "images", "--json").stdout) for n in i["names"]}
    assert len(printed) > 10 and printed == {name: listed[name] for name in printed}
    table = wl(home, "images").stdout
    assert all(short in table for short in printed.values())


def test_wasmlab_oci_has_one_error_prefix(tmp_path: Path) -> None:
    """wasmlab-oci speaks as runc's own command line: "wasmlab-oci: error: ..." for its errors, as for its
    usage errors (argparse's), and "wasmlab-oci: warning: ..." for warnings."""
    env = dict(os.environ, WASMLAB_HOME=str(tmp_path / "home"))
    for argv in (["--root", str(tmp_path / "state"), "state", "nosuch"], ["state", "--bogus", "x"]):
        r = subprocess.run([OCI, *argv], capture_output=True, text=True, timeout=60, env=env)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode != 0 and last.startswith("wasmlab-oci: error: "), r.stderr


def test_the_readme_says_how_wasmlab_gets_on_path() -> None:
    """Both ways the README gives, run as written in a shell whose PATH lacks .venv/bin, find both commands."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in readme.split("```sh\n")[1:] if ".venv/bin/activate" in b).split("```")[0]
    activate = block.splitlines()[0]
    alternative = activate.split("# or: ", 1)[1]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "WASMLAB_HOME": "/tmp/unused"}
    assert subprocess.run(["sh", "-c", "command -v wasmlab"], env=env, cwd=ROOT).returncode != 0
    for setup in (block, alternative + "\nwasmlab --version"):
        r = subprocess.run(["sh", "-ec", setup + "\ncommand -v wasmlab-oci"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith("wasmlab version "), (setup, r.stderr)
        assert r.stdout.strip().endswith("/.venv/bin/wasmlab-oci")
