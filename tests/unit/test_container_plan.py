"""Planning a container (no root, no fork): what a config becomes in the Plan the container's init acts on."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime import init
from wasmlab.runtime.errors import SetupError, SpecError
from wasmlab.runtime.handlers.detect import CPU_TIME_ANNOTATION
from wasmlab.runtime.linux import cgroups
from wasmlab.runtime.linux import syscalls as sc
from wasmlab.runtime.linux.mounts import DEFAULT_DEVICES
from wasmlab.runtime.spec.runtime import default_config, from_dict


def _plan(tmp_path: Path, cfg: dict[str, Any], *, rootless: bool = False, cid: str = "c1") -> init.Plan:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    return init.plan(from_dict(cfg, str(tmp_path)), cid, rootless=rootless)


def _cfg(**linux: Any) -> dict[str, Any]:
    cfg = default_config(["/hello.wasm"])
    cfg["linux"].update(linux)
    if "uts" not in {ns["type"] for ns in cfg["linux"]["namespaces"]}:
        del cfg["hostname"]
    return cfg


def test_new_namespaces_become_unshare_flags_and_pid_stays_apart(tmp_path: Path) -> None:
    p = _plan(tmp_path, _cfg())
    assert p.unshare_flags == sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS | sc.CLONE_NEWNS | sc.CLONE_NEWCGROUP
    assert p.new_pid and p.join == [] and p.join_pid == ""
    assert not p.user and not p.new_user and not p.rootless
    assert p.own_mounts


def test_namespaces_with_a_path_are_joined_not_created(tmp_path: Path) -> None:
    p = _plan(tmp_path, _cfg(namespaces=[{"type": "pid", "path": "/proc/1/ns/pid"},
                                         {"type": "network", "path": "/proc/1/ns/net"},
                                         {"type": "mount"}, {"type": "uts", "path": "/proc/1/ns/uts"}]))
    assert p.unshare_flags == sc.CLONE_NEWNS
    assert not p.new_pid and p.join_pid == "/proc/1/ns/pid"
    assert p.join == [("network", "/proc/1/ns/net"), ("uts", "/proc/1/ns/uts")]  # in the config's order


def test_no_mount_namespace_means_no_mounts_of_its_own(tmp_path: Path) -> None:
    p = _plan(tmp_path, _cfg(namespaces=[{"type": "pid"}]))
    assert p.unshare_flags == 0 and not p.own_mounts
    joined = _plan(tmp_path, _cfg(namespaces=[{"type": "mount", "path": "/proc/1/ns/mnt"}]))
    assert joined.own_mounts and joined.unshare_flags == 0


def test_rootless_needs_a_user_namespace_and_maps_ids(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        _plan(tmp_path, _cfg(), rootless=True)
    assert "user namespace" in exc.value.message and exc.value.hint
    cfg = default_config(["/hello.wasm"], rootless=True)
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1},
                                   {"containerID": 1, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    p = _plan(tmp_path, cfg, rootless=True)
    assert p.rootless and p.user and p.new_user
    assert p.unshare_flags & sc.CLONE_NEWUSER == 0  # the user namespace is made apart, first
    assert p.uid_map == "0 1000 1\n1 100000 65536\n"
    assert p.gid_map == "0 1000 1\n"


def test_a_joined_user_namespace_is_not_a_new_one(tmp_path: Path) -> None:
    p = _plan(tmp_path, _cfg(namespaces=[{"type": "user", "path": "/proc/1/ns/user"}, {"type": "mount"}]),
              rootless=True)
    assert p.user and not p.new_user and ("user", "/proc/1/ns/user") in p.join


def test_mounts_keep_the_config_order_and_binds_are_decided(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "one-file").write_text("x")
    cfg = _cfg()
    cfg["mounts"] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
        {"destination": "/etc/one", "type": "none", "source": str(tmp_path / "one-file"), "options": ["bind"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m", "rshared"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
    ]
    p = _plan(tmp_path, cfg)
    assert [m.target for m in p.mounts] == ["/proc", "/data", "/etc/one", "/tmp", "/sys/fs/cgroup"]
    proc, data, one, tmp, cg = p.mounts
    assert proc.fstype == "proc" and not proc.bind
    assert data.bind and data.readonly and data.fstype is None
    assert data.source == str(tmp_path / "data")  # a relative source is the bundle's
    assert one.bind and one.is_file and not one.readonly
    assert tmp.data == "size=1m" and tmp.flags & sc.MS_NOSUID and tmp.propagation == sc.MS_SHARED | sc.MS_REC
    assert cg.fstype == "cgroup" and not cg.bind
    assert not p.has_dev_mount
    # WASI sees the root and each directory bind mount, read-only as mounted.
    # A Wasm guest sees bind-mounted folders and tmpfs scratch space; single files are not preopens.
    assert [(o.guest, o.readonly) for o in p.preopens] == [("/", True), ("/data", True), ("/tmp", False)]


def test_rootless_binds_the_hosts_cgroups_instead_of_mounting_them(tmp_path: Path) -> None:
    cfg = default_config(["/hello.wasm"], rootless=True)
    cfg["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"})
    cg = _plan(tmp_path, cfg, rootless=True).mounts[-1]
    assert cg.bind and cg.fstype is None and cg.source == "/sys/fs/cgroup" and cg.readonly


def test_working_directory_preopen_is_as_writable_as_its_mount(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    cfg = _cfg()
    cfg["root"]["readonly"] = True
    cfg["process"]["cwd"] = "/work/sub"
    cfg["mounts"].append({"destination": "/work", "type": "bind", "source": "work", "options": ["rbind", "rw"]})
    p = _plan(tmp_path, cfg)
    assert (p.preopens[-1].path, p.preopens[-1].guest, p.preopens[-1].readonly) == ("/work/sub", ".", False)


def test_cgroup_path_only_when_asked_for(tmp_path: Path) -> None:
    assert _plan(tmp_path, _cfg()).cgroup_path is None  # device rules alone need no cgroup of its own
    limited = _plan(tmp_path, _cfg(resources={"memory": {"limit": 64 << 20}}))
    assert limited.cgroup_path == "" and limited.memory_limit == 64 << 20
    named = _plan(tmp_path, _cfg(cgroupsPath="/pods/c1"))
    assert named.cgroup_path == "/pods/c1" and named.memory_limit is None


def test_default_cgroup_parent_and_its_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cgroups.PARENT_ENV, raising=False)
    assert cgroups.normalize_path("", "c1") == "wasmlab/c1"
    assert cgroups.normalize_path("/pods/c1", "c1") == "pods/c1"
    assert cgroups.normalize_path("machine.slice:wasmlab:c1", "c1") == "machine.slice/wasmlab-c1.scope"
    monkeypatch.setenv(cgroups.PARENT_ENV, "/workshop/day2/")
    assert cgroups.normalize_path("", "c1") == "workshop/day2/c1"
    assert cgroups.normalize_path("/pods/c1", "c1") == "pods/c1"  # an explicit path is the config's choice
    monkeypatch.setenv(cgroups.PARENT_ENV, "wasmlab/../../escape")
    with pytest.raises(SetupError) as exc:
        cgroups.normalize_path("", "c1")
    assert "'..'" in exc.value.message and cgroups.PARENT_ENV in exc.value.hint


def test_device_paths_are_cleaned_and_follow_the_defaults(tmp_path: Path) -> None:
    p = _plan(tmp_path, _cfg(devices=[{"path": "/dev/../../etc/fuse", "type": "c", "major": 10, "minor": 229,
                                       "fileMode": 0o600, "uid": 7, "gid": 8},
                                      {"path": "/dev//./net/tun", "type": "c", "major": 10, "minor": 200}]))
    assert [d.path for d in p.devices[:len(DEFAULT_DEVICES)]] == [path for path, _, _ in DEFAULT_DEVICES]
    fuse, tun = p.devices[len(DEFAULT_DEVICES):]
    assert (fuse.path, fuse.kind, fuse.major, fuse.minor, fuse.mode, fuse.uid, fuse.gid) == \
        ("/etc/fuse", "c", 10, 229, 0o600, 7, 8)
    assert (tun.path, tun.mode, tun.uid) == ("/dev/net/tun", 0o666, 0)


def test_user_ids_rlimits_and_capabilities(tmp_path: Path) -> None:
    cfg = _cfg()
    cfg["process"]["user"] = {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o1022}
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                                 {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1}]
    cfg["process"]["capabilities"] = {"bounding": ["CAP_KILL"], "effective": [], "permitted": ["CAP_KILL"]}
    c = _plan(tmp_path, cfg).creds
    assert (c.uid, c.gid, c.groups, c.umask) == (1000, 100, (5, 6), 0o022)
    # RLIM_INFINITY travels as the signed number Python's resource module hands the kernel.
    assert c.rlimits == ((resource.RLIMIT_NOFILE, 512, 1024), (resource.RLIMIT_CORE, -1, -1))
    assert c.bounding == 1 << 5 and c.effective == 0 and c.caps_given and c.no_new_privs
    assert 5 not in c.bounding_drops and 0 in c.bounding_drops


def test_an_unknown_rlimit_or_capability_names_the_field(tmp_path: Path) -> None:
    cfg = _cfg()
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                                 {"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    with pytest.raises(SpecError) as exc:
        _plan(tmp_path, cfg)
    assert exc.value.field == "$.process.rlimits[1].type" and exc.value.hint
    cfg = _cfg()
    cfg["process"]["capabilities"] = {"bounding": ["CAP_KILL", "CAP_FLY"]}
    with pytest.raises(SpecError) as exc:
        _plan(tmp_path, cfg)
    assert exc.value.field == "$.process.capabilities.bounding[1]"


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1.5"])
def test_cpu_time_annotation_must_be_positive_milliseconds(tmp_path: Path, value: str) -> None:
    cfg = _cfg()
    cfg["annotations"] = {CPU_TIME_ANNOTATION: value}
    with pytest.raises(SpecError) as exc:
        _plan(tmp_path, cfg)
    assert "positive" in exc.value.message and exc.value.hint


def test_for_container_changes_only_the_id(tmp_path: Path) -> None:
    p = _plan(tmp_path, _cfg(), cid="template")
    clone = p.for_container("c2")
    assert clone.id == "c2" and p.id == "template"
    assert {k: v for k, v in clone.__dict__.items() if k != "id"} == {k: v for k, v in p.__dict__.items() if k != "id"}
