"""Creates that reach the zygote together are forked side by side: the second init is forked before the first is
answered (a pod's containers set up at once); each is answered, and a failing one fails alone. And a pod's pinned
namespaces (runtime/linux/nspin.py, made by the zygote) leave the zygote in its own namespaces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime.errors import WasmlabError, error_from_dict
from wasmlab.runtime.linux import nspin
from wasmlab.runtime.zygote import protocol as p

from tests.conftest import need_root

pytestmark = pytest.mark.root


def send_creates(zyg: Any, creates: list[tuple[str, str]]) -> list[p.Reply]:
    """Every create sent at once (back to back, before any answer), then each answer, in order."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        rids = []
        for cid, bundle in creates:
            rid = zyg._rid()
            zyg._send(p.Create(rid, cid, bundle, {}, events=False), [null, null, null])
            rids.append(rid)
    finally:
        os.close(null)
    replies = []
    for rid in rids:
        with zyg._cond:
            assert zyg._cond.wait_for(lambda rid=rid: rid in zyg._replies, 60)
            replies.append(zyg._replies.pop(rid))
    return replies


def test_creates_sent_together_are_forked_before_the_first_is_answered(runtime: Any, busybox_bundle: Path) -> None:
    need_root()
    zyg = runtime.zygote()
    try:
        replies = send_creates(zyg, [(f"together-{i}", str(busybox_bundle)) for i in range(3)])
        assert all(r.ok for r in replies), [r.error for r in replies]
        # request_s: when the zygote began the create (its fork), on the clock every process shares; create_ms:
        # how long until the zygote had the init ready and answered. A zygote handling creates one after the
        # other would begin the second only once the first was answered.
        first_done = replies[0].timings["request_s"] + replies[0].timings["create_ms"] / 1e3
        assert replies[1].timings["request_s"] < first_done
        assert replies[2].timings["request_s"] < first_done
        for i in range(3):
            assert runtime.state(f"together-{i}")["status"] == "created"
    finally:  # a failed check must not leave three created inits behind (they have no cgroup to end them)
        for i in range(3):
            try:
                runtime.delete(f"together-{i}", force=True)
            except WasmlabError:
                pass


def test_a_failing_create_in_a_batch_fails_alone(runtime: Any, busybox_bundle: Path, tmp_path: Path) -> None:
    need_root()
    missing = tmp_path / "nothing-here"
    missing.mkdir()
    replies = send_creates(runtime.zygote(), [("good-1", str(busybox_bundle)), ("bad", str(missing)),
                                              ("good-2", str(busybox_bundle))])
    try:
        assert [r.ok for r in replies] == [True, False, True]
        err = error_from_dict(replies[1].error or {})
        assert isinstance(err, WasmlabError) and err.message
        for cid in ("good-1", "good-2"):
            assert runtime.state(cid)["status"] == "created"
    finally:
        for cid in ("good-1", "good-2"):
            try:
                runtime.delete(cid, force=True)
            except WasmlabError:
                pass


def test_pinned_namespaces_are_new_and_the_zygote_keeps_its_own(runtime: Any, tmp_path: Path) -> None:
    need_root()
    pid = runtime.zygote().proc.pid
    folder = tmp_path / "ns"
    paths = runtime.pin_namespaces(str(folder), "pinned-host")
    try:
        assert paths == {"network": str(folder / "net"), "ipc": str(folder / "ipc"), "uts": str(folder / "uts")}
        for oci, kind in (("network", "net"), ("ipc", "ipc"), ("uts", "uts")):
            pinned = os.stat(paths[oci]).st_ino
            assert pinned != os.stat(f"/proc/self/ns/{kind}").st_ino  # a new namespace
            # The zygote went back to its own (those every container it forks next starts from).
            assert os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino
        assert str(folder / "net") in Path("/proc/self/mountinfo").read_text()
    finally:
        nspin.unpin(str(folder))
    assert not folder.exists() and str(folder / "net") not in Path("/proc/self/mountinfo").read_text()
