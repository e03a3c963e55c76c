"""The CRI client's messages, built at import time from a descriptor made in Python: api.proto's field numbers on
the wire, and typed errors for what a learner could pass wrong."""

from __future__ import annotations

import os

import pytest
from wasmlab.runtime.pods import cri


def test_messages_keep_the_cri_field_numbers() -> None:
    """The descriptor made in Python encodes as api.proto's numbers say (checked on the wire bytes)."""
    encoded = cri.message("RunPodSandboxRequest", runtime_handler="h",
                          config={"annotations": {"k": "v"}}).SerializeToString()
    # field 1 (config, length-delimited) holding field 7 (annotations map entry {1: "k", 2: "v"}); field 2 "h".
    assert encoded == bytes([0x0A, 0x08, 0x3A, 0x06, 0x0A, 0x01, ord("k"), 0x12, 0x01, ord("v"), 0x12, 0x01,
                             ord("h")])
    status = cri.message("ContainerStatusRequest", container_id="c", verbose=True).SerializeToString()
    assert status == bytes([0x0A, 0x01, ord("c"), 0x10, 0x01])
    assert os.path.basename(cri.file_descriptor().name).endswith(".proto")


def test_an_unknown_field_is_refused_before_anything_is_sent() -> None:
    from google.protobuf.json_format import ParseError

    with pytest.raises(ParseError):
        cri.message("StartContainerRequest", container="c")


@pytest.mark.parametrize("allowlist", [[], [""], "module.wasm.image/*", ["module.wasm.image/[v"]])
def test_the_demo_refuses_a_bad_allowlist_before_starting_anything(allowlist: object, lab_home: object) -> None:
    from wasmlab.runtime import Lab
    from wasmlab.runtime.errors import BadPattern, UsageError

    with Lab() as lab, pytest.raises((UsageError, BadPattern)) as refused:
        lab.containerd_demo(allowlist)  # type: ignore[arg-type]
    assert refused.value.hint


def test_the_demo_without_root_is_refused_in_one_line_before_anything(lab_home: object,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from wasmlab.runtime import Lab
    from wasmlab.runtime.errors import PrivilegeError

    with Lab() as lab:
        monkeypatch.setattr("os.geteuid", lambda: 1000)  # as a learner's own user: containerd's CRI needs root
        with pytest.raises(PrivilegeError) as refused:
            lab.containerd_demo(["module.wasm.image/*"])
    assert "needs root" in refused.value.message and "--dry-run" in refused.value.hint
