"""Rootless mode: as an unprivileged user, a Linux container runs with uid 0 inside mapped to that user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, busybox, need, need_root, package_links

pytestmark = pytest.mark.root
SITE = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"
# The venv's interpreter lives under /root, which other users cannot enter; Debian's python3 (the same 3.11)
# runs wasmlab from the checkout instead, through the build/mypy package links `make lint` creates.
LAUNCHER = ("import sys; sys.path[:0] = [{pkg!r}, {site!r}]; "
            "from wasmlab.runtime.cli.oci import main; sys.exit(main())")


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    need_root()
    need(Path("/usr/bin/python3").exists(), "Debian's python3 is needed to run wasmlab as another user")
    package_links()
    d = Path(tempfile.mkdtemp(prefix="wasmlab-rootless-"))
    d.chmod(0o755)
    rootfs = d / "b" / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(busybox(), rootfs / "bin" / "busybox")
    for cmd in ("sh", "id", "cat", "hostname", "echo"):
        (rootfs / "bin" / cmd).symlink_to("busybox")
    for sub in ("proc", "sys", "dev", "tmp"):
        (rootfs / sub).mkdir()
    nobody = pwd.getpwnam("nobody")
    for path in [d, *d.rglob("*")]:
        os.lchown(path, nobody.pw_uid, nobody.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(d: Path, *args: str, seccomp: dict | None = None) -> subprocess.CompletedProcess[str]:
    code = LAUNCHER.format(pkg=str(package_links()), site=str(SITE))
    if seccomp is not None:
        code = code.replace("from wasmlab.runtime.cli.oci", f"from wasmlab.runtime.linux import seccomp; "
                            f"seccomp.apply({seccomp!r}); from wasmlab.runtime.cli.oci")
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env",
           "/usr/bin/python3", "-c", code, *args]
    return subprocess.run(cmd, cwd=d / "b", capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(d)})


def test_rootless_linux_container_maps_uid0_to_the_user(nobody_dir: Path) -> None:
    r = as_nobody(nobody_dir, "spec", "--rootless")
    assert r.returncode == 0, r.stderr
    cfg_path = nobody_dir / "b" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": pwd.getpwnam("nobody").pw_uid, "size": 1}]
    cfg["process"]["args"] = ["/bin/sh", "-c", "id -u; cat /proc/self/uid_map; hostname"]
    cfg["process"]["terminal"] = False
    cfg_path.write_text(json.dumps(cfg))
    r = as_nobody(nobody_dir, "--root", str(nobody_dir / "state"), "run", "rl1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(pwd.getpwnam("nobody").pw_uid), "1"]
    assert lines[2] == "wasmlab"
    assert os.listdir(nobody_dir / "state") == []
    # Limits it cannot apply (no delegated cgroup here) are said, not silently dropped.
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    cfg["process"]["args"] = ["/bin/echo", "limited"]
    cfg_path.write_text(json.dumps(cfg))
    r = as_nobody(nobody_dir, "--root", str(nobody_dir / "state"), "run", "rl2")
    assert r.returncode == 0 and r.stdout == "limited\n", r.stderr
    assert "warning: the memory, pids and cpu limits are not applied" in r.stderr


def test_rootless_without_user_namespace_is_a_clear_error(nobody_dir: Path) -> None:
    as_nobody(nobody_dir, "spec", "--rootless")
    cfg_path = nobody_dir / "b" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "user"]
    cfg["linux"].pop("uidMappings")
    cfg["linux"].pop("gidMappings")
    cfg_path.write_text(json.dumps(cfg))
    r = as_nobody(nobody_dir, "--root", str(nobody_dir / "state"), "run", "rl2")
    assert r.returncode != 0
    assert "rootless container needs a user namespace" in r.stderr and "hint:" in r.stderr


def test_forbidden_user_namespaces_say_why_and_how(nobody_dir: Path) -> None:
    """A machine that forbids user namespaces, stood in for by a seccomp filter on unshare(CLONE_NEWUSER).

    (This machine allows them and its sysctl is read-only here, so the refusal is made with seccomp,
    which makes the kernel answer EPERM exactly as a disabled user.max_user_namespaces does.)
    """
    as_nobody(nobody_dir, "spec", "--rootless")
    cfg_path = nobody_dir / "b" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["terminal"] = False
    cfg_path.write_text(json.dumps(cfg))
    deny = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
        "args": [{"index": 0, "value": 0x10000000, "valueTwo": 0x10000000, "op": "SCMP_CMP_MASKED_EQ"}]}]}
    r = as_nobody(nobody_dir, "--root", str(nobody_dir / "state"), "run", "rl3", seccomp=deny)
    assert r.returncode == 7, r.stderr
    assert "does not allow user namespaces" in r.stderr
    assert "sysctl -w user.max_user_namespaces" in r.stderr
    assert os.listdir(nobody_dir / "state") == []


def wasmlab_as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `wasmlab` command line as nobody, from this checkout (its zygote too: PYTHONPATH, not sys.path)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home.parent), "WASMLAB_HOME": str(home), "WASMLAB_WARM": "0",
           "PYTHONPATH": f"{package_links()}:{SITE}"}
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env",
           "env", *(f"{k}={v}" for k, v in env.items()),  # after setpriv's reset
           "/usr/bin/python3", "-c", "import sys; from wasmlab.lab.cli import main; sys.exit(main())", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/", stdin=subprocess.DEVNULL)


@contextmanager
def nobodys_folder(prefix: str) -> Iterator[Path]:
    """A fresh folder that nobody owns (pytest's own tmp is root's only), for `wasmlab_as_nobody`; removed after."""
    need_root()
    need(Path("/usr/bin/python3").exists(), "Debian's python3 is needed to run wasmlab as another user")
    package_links()
    top = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        top.chmod(0o755)
        os.chown(top, pwd.getpwnam("nobody").pw_uid, -1)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def pods_refused(verb: str) -> list[str]:
    """What a pod verb says rootless: one line (runtime/pods/control.py: refuse_rootless)."""
    return [f"Error: {verb} needs root: wasmlab's pods are refused rootless (bringing a pod's loopback up joins its "
            "network namespace, which needs root here) (hint: run it as root; rootless, `wasmlab run` runs single "
            "containers (`wasmlab doctor` lists what works rootless))"]


def test_another_users_lab_home_is_refused_in_one_line_and_left_as_it_was() -> None:
    need_root()
    need(Path("/usr/bin/python3").exists(), "Debian's python3 is needed to run wasmlab as another user")
    home = Path(tempfile.mkdtemp(prefix="wasmlab-roots-home-"))  # root's, as at a workshop
    try:
        home.chmod(0o755)
        (home / "marker").write_text("root's lab\n")
        for argv in (("run", "--rm", "wasmlab/busybox:latest", "true"), ("build", "-t", "x", str(home)),
                     ("images",), ("samples",)):
            r = wasmlab_as_nobody(home, *argv)
            assert r.returncode == 125 and "Traceback" not in r.stderr, r.stderr
            last = r.stderr.strip().splitlines()[-1]
            assert last.startswith(f"Error: WASMLAB_HOME {home} is not writable by you"), r.stderr
        assert sorted(p.name for p in home.iterdir()) == ["marker"]
        r = wasmlab_as_nobody(home / "sub", "ps")
        assert r.returncode == 125 and f"{home} is not writable by you" in r.stderr and not (home / "sub").exists()
    finally:
        shutil.rmtree(home)


def test_a_rootless_build_runs_its_run_steps_in_a_user_namespace(nobody_dir: Path) -> None:
    home = nobody_dir / "home"
    ctx = nobody_dir / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text('FROM wasmlab/busybox:latest\nRUN ["/bin/busybox", "sh", "-c", '
                                       '"id -u > /made-by; cat /proc/self/uid_map >> /made-by"]\n')
    os.chown(ctx, pwd.getpwnam("nobody").pw_uid, -1)
    os.chown(ctx / "Containerfile", pwd.getpwnam("nobody").pw_uid, -1)
    assert wasmlab_as_nobody(home, "samples", "--quiet").returncode == 0
    r = wasmlab_as_nobody(home, "build", "-q", "-t", "rootless-built", str(ctx))
    assert r.returncode == 0, r.stderr
    r = wasmlab_as_nobody(home, "run", "--rm", "rootless-built", "cat", "/made-by")
    assert r.returncode == 0, r.stderr
    uid, mapping = r.stdout.split("\n", 1)
    assert uid == "0" and mapping.split() == ["0", str(pwd.getpwnam("nobody").pw_uid), "1"]
