"""Fixtures for the drop-in proofs: images built by buildah, a recording wasmlab-oci wrapper, leak checks."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, need  # noqa: F401 - re-exported to the interop tests

ROOT = Path(__file__).resolve().parents[2]
# WASMLAB_OCI_BINARY points the proofs at another build of the runtime (a wrapper script is fine).
WASMLAB_OCI = os.environ.get("WASMLAB_OCI_BINARY") or str(ROOT / ".venv" / "bin" / "wasmlab-oci")

BUSYBOX_IMAGE = "localhost/dropin-busybox:latest"
WASM_IMAGE = "localhost/dropin-hello-wasm:latest"
BUSYBOX_GREETING = "hello from busybox"
WASM_GREETING = "hello"
VARIANT_ANNOTATION = "module.wasm.image/variant=compat"

# A WASI preview1 command that writes "hello\n" to fd 1 with fd_write.
HELLO_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def need_tools(*names: str) -> None:
    need(os.geteuid() == 0, "the drop-in proofs need root")
    for name in names:
        need(shutil.which(name) is not None, f"{name} is not installed (apt-get install {name})")
    need(os.access(WASMLAB_OCI, os.X_OK), f"{WASMLAB_OCI} is missing (run `make setup`)")


def sh(
    cmd: list[str], *, timeout: float = 120, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout, capturing text; a timeout fails the test and names the command."""
    try:
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"timed out after {timeout}s: {shlex.join(cmd)}\nstdout: {out}\nstderr: {err}")


def explain(proc: subprocess.CompletedProcess[str], extra: str = "") -> str:
    """The text an assertion prints: the command, its exit code and both streams (and any extra context)."""
    args = proc.args if isinstance(proc.args, list) else [str(proc.args)]
    text = (
        f"\n$ {shlex.join(str(a) for a in args)}\nexit code: {proc.returncode}\n"
        f"stdout: {proc.stdout!r}\nstderr: {proc.stderr}"
    )
    return text + (f"\n{extra}" if extra else "")


def ok(proc: subprocess.CompletedProcess[str], extra: str = "") -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, "command failed" + explain(proc, extra)
    return proc


# -- images ------------------------------------------------------------------------------------------


@dataclass
class Store:
    """An isolated containers/storage (vfs) shared by buildah and podman, plus OCI archives of the images."""

    base: Path

    @property
    def storage(self) -> list[str]:
        return [
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.base / "runroot"),
            "--storage-driver",
            "vfs",
        ]

    def buildah(self, *args: str) -> list[str]:
        return ["buildah", *self.storage, *args]

    def podman(self, runtime: str, *args: str) -> list[str]:
        return [
            "podman",
            *self.storage,
            "--tmpdir",
            str(self.base / "tmp"),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            runtime,
            *args,
        ]

    def archive(self, image: str) -> Path:
        return self.base / ("busybox.oci.tar" if image == BUSYBOX_IMAGE else "hello-wasm.oci.tar")


def hello_wasm() -> bytes:
    import wasmtime

    return bytes(wasmtime.wat2wasm(HELLO_WAT))


@pytest.fixture(scope="session")
def store() -> Iterator[Store]:
    """Build the two test images once: busybox-static FROM scratch, and a Wasm compat image FROM scratch."""
    need_tools("buildah", "podman", "busybox")
    busybox = Path("/bin/busybox")
    need(
        busybox.is_file()
        and b"statically linked" in subprocess.run(["file", "-b", str(busybox)], capture_output=True).stdout
        if shutil.which("file")
        else busybox.is_file(),
        "/bin/busybox from busybox-static is missing",
    )
    # Not under tmp_path: podman refuses a --runroot longer than 50 characters (conmon's socket paths).
    s = Store(Path(tempfile.mkdtemp(prefix="dropin-", dir="/tmp")))
    bb_ctx = s.base / "ctx-busybox"
    bb_ctx.mkdir()
    shutil.copy2(busybox, bb_ctx / "busybox")
    (bb_ctx / "Containerfile").write_text(
        f'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "echo", "{BUSYBOX_GREETING}"]\n'
    )
    ok(sh(s.buildah("build", "--layers=false", "-t", BUSYBOX_IMAGE, str(bb_ctx)), timeout=300))
    wasm_ctx = s.base / "ctx-wasm"
    wasm_ctx.mkdir()
    (wasm_ctx / "hello.wasm").write_bytes(hello_wasm())
    (wasm_ctx / "Containerfile").write_text(
        'FROM scratch\nCOPY hello.wasm /hello.wasm\nCMD ["/hello.wasm"]\n'
    )
    ok(
        sh(
            s.buildah(
                "build", "--layers=false", "--annotation", VARIANT_ANNOTATION, "-t", WASM_IMAGE, str(wasm_ctx)
            ),
            timeout=300,
        )
    )
    for image in (BUSYBOX_IMAGE, WASM_IMAGE):
        ok(
            sh(
                [
                    "podman",
                    *s.storage,
                    "--tmpdir",
                    str(s.base / "tmp"),
                    "save",
                    "--format",
                    "oci-archive",
                    "-o",
                    str(s.archive(image)),
                    image,
                ],
                timeout=300,
            )
        )
    yield s
    # Containers are all --rm or removed by their tests; drop the images so vfs leaves no layers.
    sh(["podman", *s.storage, "--tmpdir", str(s.base / "tmp"), "rm", "--all", "--force"], timeout=120)
    sh(["podman", *s.storage, "--tmpdir", str(s.base / "tmp"), "rmi", "--all", "--force"], timeout=120)
    left = mounts_under(s.base)
    shutil.rmtree(s.base, ignore_errors=True)
    assert not left, f"mounts left under the image store: {left}"


# -- a wasmlab-oci that records how it is called -----------------------------------------------------


@dataclass
class Call:
    argv: list[str]
    exit_code: int
    stderr: str

    @property
    def verb(self) -> str:
        """The first word that is neither a global flag nor its value (--root X, --log X, --log-format X)."""
        it = iter(self.argv)
        for word in it:
            if word in ("--root", "--log", "--log-format", "--criu", "--rootless"):
                next(it, None)
            elif not word.startswith("-"):
                return word
        return ""


@dataclass
class Recorder:
    """A wrapper named wasmlab-oci that logs argv, exit code and (except for create/run) stderr of every call.

    The wrapper never redirects the streams of `create`/`run`: the container inherits them from the runtime,
    and conmon or the shim must see the container's own pipes. For `create` it also keeps config.json.
    """

    dir: Path

    @property
    def path(self) -> str:
        return str(self.dir / "wasmlab-oci")

    @property
    def log(self) -> Path:
        return self.dir / "calls.log"

    def calls(self) -> list[Call]:
        out: list[Call] = []
        if not self.log.exists():
            return out
        current: Call | None = None
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith(">>> "):
                current = Call(shlex.split(line[4:]), -1, "")
                out.append(current)
            elif line.startswith("<<< rc=") and current is not None:
                current.exit_code = int(line[7:])
            elif current is not None:
                current.stderr += line + "\n"
        return out

    def config(self, container_id: str) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.dir / f"{container_id}.config.json").read_text())
        return data

    def describe(self) -> str:
        return "wasmlab-oci calls:\n" + "\n".join(
            f"  {shlex.join(c.argv)} -> {c.exit_code}"
            + (f"\n    {c.stderr.strip()}" if c.stderr.strip() else "")
            for c in self.calls()
        )


WRAPPER = r"""#!/bin/bash
# Records each call of the runtime, then runs the real wasmlab-oci.
log=@LOG@
dir=@DIR@
echo ">>> $(printf '%q ' "$@")" >> "$log"
verb=""; bundle=""; prev=""
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle="$a";; esac
  if [ -z "$verb" ]; then
    case "$prev" in
      --root|--log|--log-format|--criu|--rootless) ;;
      *) case "$a" in -*) ;; *) verb="$a";; esac;;
    esac
  fi
  prev="$a"
done
if [ "$verb" = create ] || [ "$verb" = run ]; then
  id="${@: -1}"
  [ -n "$bundle" ] && cp "$bundle/config.json" "$dir/$id.config.json" 2>/dev/null
  @REAL@ "$@"
  rc=$?
  echo "<<< rc=$rc" >> "$log"
  exit $rc
fi
err=$(mktemp)
@REAL@ "$@" 2>"$err"
rc=$?
cat "$err" >&2
cat "$err" >> "$log"
rm -f "$err"
echo "<<< rc=$rc" >> "$log"
exit $rc
"""


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    d = tmp_path / "recorder"
    d.mkdir()
    rec = Recorder(d)
    script = (
        WRAPPER.replace("@LOG@", shlex.quote(str(rec.log)))
        .replace("@DIR@", shlex.quote(str(d)))
        .replace("@REAL@", shlex.quote(WASMLAB_OCI))
    )
    Path(rec.path).write_text(script)
    os.chmod(rec.path, 0o755)
    return rec


# -- leaks -------------------------------------------------------------------------------------------


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(prefix)]


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes (not zombies) whose command line contains text."""
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        if text in cmd and stat[stat.rfind(b")") + 2 :][:1] != b"Z":
            found[int(name)] = cmd
    return found


def wait_until_gone(text: str, timeout: float = 10) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        left = processes_mentioning(text)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
