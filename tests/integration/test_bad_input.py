"""The bad-input catalogue: each malformed bundle or command gets one clear line, a non-zero exit, no leftovers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_rootfs_busybox, minimal_config, need_root, oci, write_bundle

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def _cfg(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def apply(cfg: dict[str, Any]) -> None:
        for path, value in changes.items():
            node = cfg
            keys = path.split("__")
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value

    return apply


def _edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return fn


# name -> (how to break the config, words the error must contain)
BUNDLES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "ociVersion-wrong-type": (_cfg(ociVersion=1), "ociVersion"),
    "ociVersion-not-1x": (_cfg(ociVersion="2.0.0"), "ociVersion"),
    "root-escapes-bundle": (_cfg(root__path="../../.."), "escapes the bundle"),
    "root-missing": (_cfg(root__path="nope"), "not a directory"),
    "empty-args": (_cfg(process__args=[]), "process.args"),
    "unknown-namespace": (_edit(lambda c: c["linux"]["namespaces"].append({"type": "bogus"})), "unknown namespace"),
    "duplicate-namespace": (_edit(lambda c: c["linux"]["namespaces"].append({"type": "pid"})), "listed twice"),
    "mount-dotdot": (_edit(lambda c: c["mounts"].append({"destination": "/a/../../etc", "type": "tmpfs"})), ".."),
    "mount-relative": (_edit(lambda c: c["mounts"].append({"destination": "data", "type": "tmpfs"})),
                       "absolute path"),
    "unknown-rlimit": (_cfg(process__rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]), "RLIMIT_BOGUS"),
    "rlimit-soft-above-hard": (_cfg(process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 1}]),
                               "soft limit"),
    "unknown-capability": (_cfg(process__capabilities={"bounding": ["CAP_FLY"]}), "CAP_FLY"),
    "env-without-equals": (_cfg(process__env=["JUSTAKEY"]), "KEY=VALUE"),
    "cwd-relative": (_cfg(process__cwd="tmp"), "absolute path"),
    "uidmap-without-userns": (_cfg(linux__uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
                              "user namespace"),
    "hostname-without-uts": (_edit(lambda c: c["linux"].__setitem__(
        "namespaces", [{"type": "pid"}, {"type": "mount"}])), "uts namespace"),
    "args-wrong-type": (_cfg(process__args="/bin/echo"), "must be a list"),
    "unknown-seccomp-action": (_cfg(linux__seccomp={"defaultAction": "SCMP_ACT_BOGUS"}), "SCMP_ACT_BOGUS"),
    "missing-namespace-path": (_edit(lambda c: c["linux"]["namespaces"].append(
        {"type": "network", "path": "/proc/999999999/ns/net"})), "/proc/999999999/ns/net"),
    "bind-source-missing": (_edit(lambda c: c["mounts"].append(
        {"destination": "/data", "type": "bind", "source": "/nonexistent-wasmlab", "options": ["rbind"]})),
        "does not exist"),
    "cwd-missing-in-rootfs": (_cfg(process__cwd="/no/such/dir"), "working directory"),
    "entrypoint-missing": (_cfg(process__args=["/bin/nope"]), "/bin/nope"),
    "failing-hook": (_cfg(hooks={"createRuntime": [{"path": "/bin/false"}]}), "hook"),
    "bad-cpu-time-annotation": (_cfg(annotations={"wasmlab.io/cpu-time-ms": "fast"}), "cpu-time-ms"),
    "unknown-handler": (_cfg(annotations={"run.oci.handler": "krun"}), "unknown handler"),
    "empty-args0": (_cfg(process__args=[""]), "process.args[0]"),
    "host-wide-sysctl": (_cfg(linux__sysctl={"vm.swappiness": "61"}), "would change the host"),
    "net-sysctl-without-netns": (_cfg(linux__sysctl={"net.ipv4.ip_forward": "1"}), "network namespace"),
    "hostname-sysctl": (_cfg(linux__sysctl={"kernel.hostname": "x"}), "hostname field"),
    "cgroups-path-dotdot": (_cfg(linux__cgroupsPath="/../wasmlab-escape"), "'..'"),
    "rlimit-hard-above-max": (_cfg(process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024,
                                                      "hard": 1 << 40}]), "RLIMIT_NOFILE"),
    "entrypoint-is-a-directory": (_cfg(process__args=["/bin"]), "is a directory"),
}


@pytest.mark.parametrize("case", sorted(BUNDLES))
def test_malformed_bundle(case: str, tmp_path: Path, state_root: Path, leaks) -> None:
    breaker, words = BUNDLES[case]
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    cfg = minimal_config(["/bin/echo", "hi"], hostname="h", namespaces=("pid", "mount", "uts", "ipc"))
    breaker(cfg)
    write_bundle(bundle, cfg)
    rootfs_before = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*"))
    r = oci("run", "--bundle", str(bundle), "bad", root=state_root)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert words in lines[0], lines[0]
    assert "hint:" in lines[0]
    assert r.stdout == ""
    assert os.listdir(state_root) == [], "state was left behind"
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*")) == rootfs_before
    leaks.assert_clean()


def test_no_config_json(tmp_path: Path, state_root: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    r = oci("create", "--bundle", str(tmp_path), "x", root=state_root)
    assert r.returncode != 0 and "no config.json" in r.stderr and "wasmlab-oci spec" in r.stderr
    assert os.listdir(state_root) == []


def test_config_not_json(tmp_path: Path, state_root: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text("{ not json")
    r = oci("create", "--bundle", str(tmp_path), "x", root=state_root)
    assert r.returncode != 0 and "not valid JSON (line 1" in r.stderr


@pytest.fixture
def created(tmp_path: Path, state_root: Path):
    bundle = tmp_path / "ok"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, minimal_config(["/bin/sleep", "30"]))
    assert oci("create", "-b", str(bundle), "c1", root=state_root).returncode == 0
    yield bundle
    oci("delete", "--force", "c1", root=state_root)


COMMANDS: dict[str, tuple[list[str], str]] = {
    "state-unknown-id": (["state", "nope"], "does not exist"),
    "start-unknown-id": (["start", "nope"], "does not exist"),
    "kill-unknown-id": (["kill", "nope"], "does not exist"),
    "delete-unknown-id": (["delete", "nope"], "does not exist"),
    "invalid-id": (["state", "../etc"], "invalid container id"),
    "unknown-signal": (["kill", "c1", "SIGFOO"], "unknown signal"),
    "duplicate-id": (["create", "-b", "{bundle}", "c1"], "already exists"),
    "delete-running-without-force": (["delete", "c1"], "--force"),
}


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_bad_command(case: str, created: Path, state_root: Path) -> None:
    argv, words = COMMANDS[case]
    if case == "delete-running-without-force":
        assert oci("start", "c1", root=state_root).returncode == 0
    argv = [a.replace("{bundle}", str(created)) for a in argv]
    before = json.loads(oci("state", "c1", root=state_root).stdout)
    r = oci(*argv, root=state_root)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr
    after = json.loads(oci("state", "c1", root=state_root).stdout)
    assert after["pid"] == before["pid"], "the existing container was disturbed"
    assert sorted(os.listdir(state_root)) == [".c1.lock", "c1"] or sorted(os.listdir(state_root)) == ["c1"]


def test_kill_and_start_of_stopped_container(tmp_path: Path, state_root: Path) -> None:
    bundle = tmp_path / "quick"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, minimal_config(["/bin/true"]))
    assert oci("run", "--keep", "-b", str(bundle), "q1", root=state_root).returncode == 0
    for argv, words in ((["kill", "q1", "TERM"], "nothing to signal"), (["start", "q1"], "not created")):
        r = oci(*argv, root=state_root)
        assert r.returncode != 0 and words in r.stderr, r.stderr
    assert oci("delete", "q1", root=state_root).returncode == 0


def test_runtime_api_errors_are_typed(runtime, tmp_path: Path) -> None:
    from wasmlab.runtime.errors import ContainerNotFound, SpecError

    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    cfg = minimal_config(["/bin/echo"])
    cfg["ociVersion"] = 7
    write_bundle(bundle, cfg)
    with pytest.raises(SpecError) as info:
        runtime.run("x", str(bundle))
    assert info.value.hint and "ociVersion" in info.value.message
    with pytest.raises(ContainerNotFound):
        runtime.state("missing")
    assert runtime.list() == []


@pytest.mark.parametrize("entry,words", [("/bin/nope", "does not exist"), ("/notes.txt", "not executable")])
def test_create_fails_for_an_entrypoint_start_could_not_run(entry: str, words: str, tmp_path: Path,
                                                           state_root: Path, leaks) -> None:
    """As runc does: `create` checks the program, so podman reports it at once (not `start`, not in the
    container's stderr)."""
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    (bundle / "rootfs" / "notes.txt").write_text("just text\n")
    write_bundle(bundle, minimal_config([entry]))
    r = oci("create", "--bundle", str(bundle), "noexe", root=state_root)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "hint:" in lines[0], r.stderr
    assert os.listdir(state_root) == []
    leaks.assert_clean()


def test_bad_paths_on_the_command_line_get_a_hint(tmp_path: Path, state_root: Path, leaks) -> None:
    bundle = tmp_path / "b"
    make_rootfs_busybox(bundle / "rootfs")
    write_bundle(bundle, minimal_config(["/bin/true"]))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["run", "--bundle", str(bundle), "--pid-file", str(tmp_path / "no" / "dir" / "pid"), "p1"], "--pid-file",
         state_root),
        (["list"], "--root", a_file),
        (["spec", "--bundle", str(tmp_path / "nowhere")], "--bundle", state_root),
    ]
    for argv, words, root in cases:
        r = oci(*argv, root=root)
        assert r.returncode != 0, argv
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "hint:" in lines[0] and words in lines[0], (argv, r.stderr)
    assert os.listdir(state_root) == []
    leaks.assert_clean()
