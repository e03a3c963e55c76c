"""The spec model and the handler rules as pure functions: no root, no containers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime.errors import HandlerError, SpecError
from wasmlab.runtime.handlers import registry
from wasmlab.runtime.handlers.detect import classify, decide, engines_wanted
from wasmlab.runtime.spec import runtime as spec

MODULE = b"\0asm\x01\0\0\0"
COMPONENT = b"\0asm\x0d\0\x01\0"
ELF = b"\x7fELF\x02\x01\x01"


def test_default_config_is_valid_and_loads(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(spec.default_config(["/hello.wasm"])))
    s = spec.load(str(tmp_path))
    assert s.args == ["/hello.wasm"] and s.rootfs == str(tmp_path / "rootfs")
    assert {ns.type for ns in s.namespaces} == {"pid", "network", "ipc", "uts", "mount", "cgroup"}


@pytest.mark.parametrize(("path", "value", "field"), [
    (("ociVersion",), 1, "$.ociVersion"),
    (("process", "args"), "sh", "$.process.args"),
    (("process", "env"), ["NOEQUALS"], "$.process.env[0]"),
    (("process", "cwd"), "rel", "$.process.cwd"),
    (("process", "user", "uid"), -1, "$.process.user.uid"),
    (("process", "rlimits"), [{"type": "RLIMIT_NOFILE", "soft": "x", "hard": 1}], "$.process.rlimits[0].soft"),
    (("process", "noNewPrivileges"), "yes", "$.process.noNewPrivileges"),
    (("root", "readonly"), 1, "$.root.readonly"),
    (("hostname",), 7, "$.hostname"),
    (("linux", "namespaces"), [{"type": "nope"}], "$.linux.namespaces[0].type"),
    (("linux", "resources", "memory", "limit"), "1G", "$.linux.resources.memory.limit"),
    (("linux", "resources", "pids"), {}, "$.linux.resources.pids.limit"),
    (("linux", "devices"), [{"path": "/dev/x", "type": "q"}], "$.linux.devices[0].type"),
    (("linux", "seccomp"), {"syscalls": []}, "$.linux.seccomp.defaultAction"),
    (("linux", "sysctl"), {"net.ipv4.ip_forward": 1}, "$.linux.sysctl.net.ipv4.ip_forward"),
    (("hooks", "prestart"), [{"args": ["x"]}], "$.hooks.prestart[0].path"),
    (("annotations",), {"a": 1}, "$.annotations.a"),
    (("mounts",), [{"destination": "/a/../b"}], "$.mounts[0].destination"),
])
def test_invalid_field_is_named(path: tuple[str, ...], value: Any, field: str) -> None:
    cfg = copy.deepcopy(spec.default_config(["/x"]))
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(SpecError) as info:
        spec.validate(cfg)
    assert info.value.field == field, info.value.message
    assert info.value.message.startswith(f"config.json: {field}:")
    assert info.value.hint


def test_root_escaping_the_bundle_is_refused(tmp_path: Path) -> None:
    cfg = spec.default_config(["/x"])
    cfg["root"]["path"] = "../outside"
    (tmp_path / "b").mkdir()
    (tmp_path / "outside").mkdir()
    with pytest.raises(SpecError, match="escapes the bundle"):
        spec.from_dict(cfg, str(tmp_path / "b"))


@pytest.mark.parametrize(("head", "kind"), [
    (MODULE, "module"), (COMPONENT, "component"), (ELF, "elf"), (b"#!/bin/sh", "script"),
    (b"  ;; a comment\n(module)", "wat"), (b"(component)", "wat"), (None, "missing"), (b"MZ", "other"),
])
def test_classify_by_content(head: bytes | None, kind: str) -> None:
    assert classify(head) == kind


SMART = {"module.wasm.image/variant": "compat-smart"}
COMPAT = {"module.wasm.image/variant": "compat"}


@pytest.mark.parametrize(("annotations", "head", "handler"), [
    ({}, MODULE, "native"),                                          # no annotation: a Linux container
    (COMPAT, MODULE, "wasmtime"),
    (COMPAT | {"wasmlab.io/engine": "wasmer"}, MODULE, "wasmer"),
    (SMART, MODULE, "wasmtime"),
    (SMART, ELF, "native"),                                          # the sidecar case
    ({"run.oci.handler": "wasm-smart"}, ELF, "native"),
    ({"run.oci.handler": "wasmer"}, MODULE, "wasmer"),
    ({"run.oci.handler": "wasm"}, b"(module)", "wasmtime"),
    (COMPAT | {"run.oci.handler": "wasmer"}, MODULE, "wasmer"),      # the handler annotation wins
    (COMPAT | {"io.kubernetes.cri.container-type": "sandbox"}, MODULE, "native"),
    (COMPAT | {"io.kubernetes.cri-o.ContainerType": "sandbox"}, MODULE, "native"),
])
def test_selection_rules(annotations: dict[str, str], head: bytes, handler: str) -> None:
    d = decide(annotations, "/entry", head)
    assert d.handler == handler
    assert d.wasm == (handler != "native")
    assert d.steps and d.steps[-1] == f"=> {handler}"


def test_default_engine_is_configurable() -> None:
    assert decide(COMPAT, "/m.wasm", MODULE, default_engine="wasmer").handler == "wasmer"
    assert engines_wanted(COMPAT, "wasmer") == ("wasmer",)
    assert engines_wanted({}, "wasmtime") == ()


@pytest.mark.parametrize(("annotations", "head", "words"), [
    (COMPAT, ELF, "compat-smart"),
    ({"run.oci.handler": "wasm"}, ELF, "wasm-smart"),
    ({"run.oci.handler": "krun"}, MODULE, "unknown handler"),
    ({"module.wasm.image/variant": "compat-plus"}, MODULE, "unknown variant"),
    (COMPAT | {"wasmlab.io/engine": "wasmedge"}, MODULE, "unknown Wasm engine"),
])
def test_impossible_requests_are_refused_with_a_hint(annotations: dict[str, str], head: bytes, words: str) -> None:
    with pytest.raises(HandlerError) as info:
        decide(annotations, "/entry", head)
    assert words in info.value.message + info.value.hint


def test_third_party_handlers_come_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real distribution on sys.path declares a handler in the wasmlab.handlers group."""
    pkg = tmp_path / "echo_handler.py"
    pkg.write_text(
        "class EchoHandler:\n"
        "    name = 'echo'\n    aliases = ('say',)\n    wasm = False\n"
        "    def available(self): return None\n    def version(self): return '1.0'\n"
        "    def prepare(self): pass\n    def can_handle(self, workload): return True\n"
        "    def run(self, workload): return 0\n")
    dist = tmp_path / "echo_handler-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-handler\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wasmlab.handlers]\necho = echo_handler:EchoHandler\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    table = registry.load(cache=str(tmp_path / "cache"), prepare=())
    assert table["echo"].name == "echo" and table["say"] is table["echo"]
    assert {"native", "wasmtime", "wasmer", "echo"} <= {h["name"] for h in registry.describe(str(tmp_path / "c"))}


def test_installed_scan_agrees_with_importlib_metadata() -> None:
    """The zygote's light scanner must find what importlib.metadata finds: entry points and versions."""
    from importlib.metadata import distributions, entry_points

    from wasmlab.runtime.handlers import installed

    for group in ("console_scripts", "pytest11", "wasmlab.handlers"):
        expected = {(ep.name, ep.value.split("[", 1)[0].strip()) for ep in entry_points(group=group)}
        assert set(installed.entry_points(group)) == expected, group
    assert installed.entry_points("console_scripts"), "this venv has console scripts, so the scan must see some"
    versions = {installed.normalize(d.metadata["Name"]): d.version for d in distributions()}
    for name in ("wasmtime", "wasmer-sdk", "pytest", "wasmlab"):
        assert installed.version(name) == versions[installed.normalize(name)], name
    assert installed.version("no-such-distribution") is None


def test_binary_facts_without_an_engine() -> None:
    import wasmtime
    from wasmlab.runtime.handlers.binary import has_start_section, initial_memory

    plain = bytes(wasmtime.wat2wasm('(module (memory 3) (func (export "_start")))'))
    started = bytes(wasmtime.wat2wasm('(module (func $f) (start $f))'))
    huge = bytes(wasmtime.wat2wasm("(module (memory 65536))"))
    assert not has_start_section(plain) and has_start_section(started)
    assert has_start_section(plain[:10])  # truncated: never trusted
    assert initial_memory(plain) == 3 * 65536
    assert initial_memory(huge) == 4 << 30
    assert initial_memory(started) == 0


@pytest.mark.parametrize(("rule", "text"), [
    ({"allow": False, "access": "rwm"}, "a"),
    ({"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}, "c 10:229 rwm"),
    ({"allow": True, "type": "b", "major": 8, "access": "r"}, "b 8:* r"),
    ({"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"}, "c *:* m"),
])
def test_device_rules_in_the_controller_syntax(rule: dict[str, Any], text: str) -> None:
    from wasmlab.runtime.linux.cgroups import device_rule

    assert device_rule(rule) == text
