"""Hostile configs: device entries stay inside the rootfs, and values the kernel cannot take are one-line errors.

Each device test plants a sentinel folder and file on the host, outside the bundle, points a container at it
(through `..`, a symlinked rootfs/dev, or a device path that names the host file) and checks that nothing in
the sentinel changed: no new entry, same content, same mtimes, same inodes.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_rootfs_busybox, minimal_config, need_root, oci, write_bundle

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


# -- the sentinel ----------------------------------------------------------------------------------------------

class Sentinel:
    """A folder and a file on the host that no container may touch."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "host-sentinel" / "V"
        self.dir.mkdir(parents=True)
        self.file = self.dir / "secret.txt"
        self.file.write_text("host secret\n")
        os.utime(self.file, ns=(1_000_000_000, 1_000_000_000))   # an mtime no write can keep
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        top = self.dir.parent
        seen: dict[str, Any] = {}
        for path in [top, *sorted(top.rglob("*"))]:
            st = os.lstat(path)
            seen[str(path.relative_to(top))] = (
                stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns, st.st_rdev,
                path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
        return seen

    def assert_unchanged(self) -> None:
        assert self.snapshot() == self.before, "the container changed the host's sentinel"


@pytest.fixture
def sentinel(tmp_path: Path) -> Sentinel:
    return Sentinel(tmp_path)


def _bundle(tmp_path: Path, args: list[str], *, dev_mount: bool, userns: bool = False) -> tuple[Path, dict[str, Any]]:
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    namespaces = ("pid", "mount", "uts", "ipc") + (("user",) if userns else ())
    cfg = minimal_config(args, namespaces=namespaces)
    if dev_mount:
        cfg["mounts"].append({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "mode=755"]})
    if userns:
        # As root, a user namespace whose root is the host's: devices are then bound from the host.
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    return bundle, cfg


def _run(bundle: Path, cfg: dict[str, Any], state_root: Path) -> Any:
    write_bundle(bundle, cfg)
    return oci("run", "--bundle", str(bundle), "dev1", root=state_root)


def _device(path: str, major: int = 1, minor: int = 3) -> dict[str, Any]:
    return {"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666}


# -- case 1: `..` ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dev_mount", [True, False], ids=["dev-mount", "no-dev-mount"])
def test_dotdot_device_path_is_made_inside_the_rootfs(dev_mount: bool, tmp_path: Path, state_root: Path,
                                                      sentinel: Sentinel, leaks: Any) -> None:
    ups = "/..".join([""] * (len(tmp_path.parts) + 6))     # more `..` than the rootfs is deep
    path = f"/dev{ups}{sentinel.dir}/node"
    inside = f"{sentinel.dir}/node"                          # where runc makes it: `..` stops at the root
    bundle, cfg = _bundle(tmp_path, ["/bin/stat", "-c", "%F %t:%T", inside], dev_mount=dev_mount)
    cfg["linux"]["devices"] = [_device(path)]
    r = _run(bundle, cfg, state_root)
    assert r.returncode == 0, r.stderr
    sentinel.assert_unchanged()
    assert r.stdout.strip() == "character special file 1:3"
    node = bundle / "rootfs" / inside.lstrip("/")
    assert stat.S_ISCHR(os.lstat(node).st_mode) and os.lstat(node).st_rdev == os.makedev(1, 3)
    leaks.assert_clean()


def test_device_path_that_is_the_root_itself_is_refused(tmp_path: Path, state_root: Path, leaks: Any) -> None:
    bundle, cfg = _bundle(tmp_path, ["/bin/true"], dev_mount=True)
    cfg["linux"]["devices"] = [_device("/dev/../..")]
    r = _run(bundle, cfg, state_root)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "linux.devices[0].path" in lines[0] and "hint:" in lines[0], r.stderr
    assert os.listdir(state_root) == []
    leaks.assert_clean()


# -- case 1: a symlinked rootfs/dev ------------------------------------------------------------------------------

@pytest.mark.parametrize("link", ["absolute", "relative"])
@pytest.mark.parametrize("userns", [False, True], ids=["mknod", "bind"])
def test_symlinked_dev_stays_inside_the_rootfs(link: str, userns: bool, tmp_path: Path, state_root: Path,
                                               sentinel: Sentinel, leaks: Any) -> None:
    bundle, cfg = _bundle(tmp_path, ["/bin/sh", "-c", "echo pwned > /dev/secret.txt; stat -c %F /dev/null"],
                          dev_mount=True, userns=userns)
    dev = bundle / "rootfs" / "dev"
    dev.rmdir()
    rootfs_depth = len((bundle / "rootfs").parts)
    dev.symlink_to(str(sentinel.dir) if link == "absolute" else "../" * (rootfs_depth + 3) + str(sentinel.dir)[1:])
    ups = "/..".join([""] * (rootfs_depth + 6))
    cfg["linux"]["devices"] = [_device("/dev/fuse", 10, 229), _device("/dev/../dev/secret.txt"),
                               _device(f"/dev{ups}{sentinel.dir}/node")]   # through the link, then up
    r = _run(bundle, cfg, state_root)
    sentinel.assert_unchanged()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "character special file"
    # The link was followed inside the rootfs: the tmpfs and the nodes are at rootfs/<sentinel path>.
    assert not (bundle / "rootfs" / str(sentinel.dir)[1:] / "secret.txt").exists()   # the tmpfs is gone
    leaks.assert_clean()


# -- case 1: a device path that names a host file ------------------------------------------------------------------

def test_host_file_named_by_a_device_is_never_bound(tmp_path: Path, state_root: Path, sentinel: Sentinel,
                                                    leaks: Any) -> None:
    """The issue's reproduction: the same path in the image, a populated rootfs/dev, no /dev mount."""
    inside = str(sentinel.file)
    bundle, cfg = _bundle(tmp_path, ["/bin/sh", "-c", f"cat {inside}; echo pwned > {inside}"], dev_mount=False)
    image_copy = bundle / "rootfs" / inside.lstrip("/")
    image_copy.parent.mkdir(parents=True)
    image_copy.write_text("the image's own file\n")
    (bundle / "rootfs" / "dev" / "null").write_text("")       # a populated /dev, as images ship it
    cfg["linux"]["devices"] = [_device(inside)]
    r = _run(bundle, cfg, state_root)
    assert r.returncode == 0, r.stderr
    sentinel.assert_unchanged()
    assert r.stdout == "the image's own file\n"          # as runc: an existing entry is left as it is
    assert image_copy.read_text() == "pwned\n"


@pytest.mark.parametrize("major,minor,seen", [(1, 5, "1:5"), (1, 3, "absent")], ids=["same", "other"])
def test_bind_mode_binds_only_the_same_host_device(major: int, minor: int, seen: str, tmp_path: Path,
                                                   state_root: Path, sentinel: Sentinel, leaks: Any) -> None:
    """In a user namespace nodes cannot be made, so they are bound from the host: only the host's node of
    the same type and numbers. The host file is never bound; a host path leading to /dev/zero (char 1:5) is
    bound when asked for as 1:5, and not when asked for as 1:3."""
    zero = tmp_path / "host-zero"
    zero.symlink_to("/dev/zero")
    script = f"cat {sentinel.file}; echo pwned > {sentinel.file}; stat -c %t:%T {zero} 2>/dev/null || echo absent"
    bundle, cfg = _bundle(tmp_path, ["/bin/sh", "-c", script], dev_mount=True, userns=True)
    image_copy = bundle / "rootfs" / str(sentinel.file).lstrip("/")
    image_copy.parent.mkdir(parents=True)
    image_copy.write_text("the image's own file\n")
    cfg["linux"]["devices"] = [_device(str(sentinel.file)), _device(str(zero), major, minor)]
    r = _run(bundle, cfg, state_root)
    assert r.returncode == 0, r.stderr
    sentinel.assert_unchanged()
    assert r.stdout.splitlines() == ["the image's own file", seen]
    assert image_copy.read_text() == "pwned\n"
    leaks.assert_clean()


# -- case 6: errors that were bugs -------------------------------------------------------------------------------

def _etc_loop(bundle: Path, cfg: dict[str, Any]) -> None:
    etc = bundle / "rootfs" / "etc"
    etc.rmdir()
    etc.symlink_to("/etc")
    cfg["mounts"].append({"destination": "/etc/x", "type": "tmpfs", "source": "tmpfs"})


def _nofile_infinity(bundle: Path, cfg: dict[str, Any]) -> None:
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2**64 - 1}]


def _uid(value: int) -> Any:
    def apply(bundle: Path, cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": value, "gid": 0}
    return apply


def _rlimit_above_64_bits(bundle: Path, cfg: dict[str, Any]) -> None:
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2**64}]


def _device_major(bundle: Path, cfg: dict[str, Any]) -> None:
    cfg["linux"]["devices"] = [_device("/dev/big", 2**32, 0)]


# name -> (how to break the bundle, the words the line must hold, the typed error of the Runtime API)
FAULTS: dict[str, tuple[Any, str, str]] = {
    "etc-symlink-loop": (_etc_loop, "too many levels of symbolic links", "SetupError"),
    "nofile-hard-2^64-1": (_nofile_infinity, "RLIMIT_NOFILE", "SetupError"),
    "uid-2^32": (_uid(2**32), "process.user.uid", "SpecError"),
    "uid-2^32-1-would-stay-root": (_uid(2**32 - 1), "process.user.uid", "SpecError"),
    "rlimit-above-64-bits": (_rlimit_above_64_bits, "rlimits[0].hard", "SpecError"),
    "device-major-too-big": (_device_major, "linux.devices[0].major", "SpecError"),
}


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_fault_is_one_line(case: str, tmp_path: Path, state_root: Path, leaks: Any) -> None:
    breaker, words, _typed = FAULTS[case]
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    cfg = minimal_config(["/bin/true"])
    breaker(bundle, cfg)
    write_bundle(bundle, cfg)
    before = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*"))
    r = oci("run", "--bundle", str(bundle), "fault", root=state_root)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert words in lines[0] and "hint:" in lines[0], lines[0]
    assert "Traceback" not in r.stderr and "Error:" not in lines[0] and "wasmlab bug" not in lines[0]
    assert os.listdir(state_root) == [], "state was left behind"
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*")) == before
    leaks.assert_clean()


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_fault_is_a_typed_error_of_the_runtime_api(case: str, runtime: Any, tmp_path: Path, leaks: Any) -> None:
    from wasmlab.runtime import errors

    breaker, words, typed = FAULTS[case]
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    cfg = minimal_config(["/bin/true"])
    breaker(bundle, cfg)
    write_bundle(bundle, cfg)
    with pytest.raises(getattr(errors, typed)) as info:
        runtime.run("fault", str(bundle))
    assert words in info.value.message and info.value.hint
    assert runtime.list() == []
    leaks.assert_clean()


def test_rlimit_infinity_is_set_where_the_kernel_allows_it(tmp_path: Path, state_root: Path) -> None:
    """2**64-1 is RLIM_INFINITY, a valid value: RLIMIT_CORE takes it (NOFILE cannot, as with runc)."""
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    cfg = minimal_config(["/bin/sh", "-c", "ulimit -c; ulimit -Hc"])
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1}]
    write_bundle(bundle, cfg)
    r = oci("run", "--bundle", str(bundle), "inf", root=state_root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["unlimited", "unlimited"]
    assert json.dumps(cfg)  # the config stays what it was


# -- case 7b: the wasmer handler's write-back never follows a symbolic link --------------------------------------

def test_wasmer_writeback_does_not_follow_a_link_a_guest_left(tmp_path: Path, state_root: Path, leaks: Any) -> None:
    """A first guest (on wasmtime, which works on the real files) leaves a dangling link /out -> etc/made; a
    second, on wasmer, writes /workspace/out. The write-back must not create etc/made through the link."""
    import wasmtime

    from tests.unit.test_handler_wasmer import PRELUDE, WRITE

    symlink = "(module" + (' (import "wasi_snapshot_preview1" "path_symlink"'
                           ' (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))') + PRELUDE + r'''
     (func (export "_start") (local $err i32) (local $p i32) (local $q i32)
      (drop (call $argc))
      (local.set $p (call $arg (i32.const 1)))
      (local.set $q (i32.add (call $arg (i32.const 2)) (i32.const 1)))
      (local.set $err (call $path_symlink (local.get $p) (call $strlen (local.get $p)) (call $root)
                         (local.get $q) (call $strlen (local.get $q))))
      (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err))))))''' + ")"
    bundle = tmp_path / "w"
    rootfs = bundle / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "proc").mkdir()
    (rootfs / "ln.wasm").write_bytes(wasmtime.wat2wasm(symlink))
    (rootfs / "write.wasm").write_bytes(wasmtime.wat2wasm(WRITE))

    def run(engine: str, args: list[str]) -> Any:
        write_bundle(bundle, minimal_config(args, annotations={"run.oci.handler": engine}))
        return oci("run", "--bundle", str(bundle), f"wb-{engine}", root=state_root)

    r = run("wasmtime", ["/ln.wasm", "etc/made", "/out"])
    assert r.returncode == 0, r.stderr
    assert os.readlink(rootfs / "out") == "etc/made" and not (rootfs / "etc" / "made").exists()
    r = run("wasmer", ["/write.wasm", "/workspace/out", "through the link"])
    assert r.returncode == 0, r.stderr
    assert not (rootfs / "etc" / "made").exists(), "the write-back followed the guest's link"
    assert os.readlink(rootfs / "out") == "etc/made"
    assert "/out: is or passes through a symbolic link" in r.stderr, r.stderr
    assert os.listdir(state_root) == []
    leaks.assert_clean()
