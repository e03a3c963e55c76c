"""The Lab as the faces see it, on a temporary home and without any face: builds with RUN, typed results and
events, the logs cursor, follow, exec through the runtime, and the rmi in-use rule."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wasmlab.runtime import (
    ContainerCreated,
    ContainerDetails,
    ContainerExited,
    ContainerStarted,
    ContainerStatus,
    ImageBuilt,
    ImageRemoved,
    Lab,
    LabEvent,
    Progress,
    RunRecorded,
)
from wasmlab.runtime.errors import InvalidState, SetupError

from tests.conftest import CGROUP_BASES, CGROUP_PARENT, ROOT, busybox, hello_wasm, need_root

WASM = "localhost/hello:latest"
TICKER = "localhost/ticker:latest"
SIDECAR = "localhost/sidecar:latest"
COMPAT = {"module.wasm.image/variant": "compat"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Progress], list[LabEvent]]]:
    """One lab home with a Wasm hello, a Wasm ticker and a busybox image made by two RUN steps, all built
    through the Lab (no CLI), with the progress and events they produced."""
    need_root()
    tmp = tmp_path_factory.mktemp("seam")
    home = tmp / "home"
    progress: list[Progress] = []
    events: list[LabEvent] = []
    with Lab(home) as lab:
        unsubscribe = lab.subscribe(events.append)
        ctx = tmp / "hello"
        ctx.mkdir()
        (ctx / "hello.wasm").write_bytes(hello_wasm())
        (ctx / "Containerfile").write_text('FROM scratch\nCOPY hello.wasm /\nCMD ["/hello.wasm"]\n')
        lab.build(ctx, tag=WASM, annotations=COMPAT)
        ctx = tmp / "ticker"
        ctx.mkdir()
        shutil.copy2(ROOT / "assets" / "built" / "wasm" / "loop.wasm", ctx / "loop.wasm")
        (ctx / "Containerfile").write_text('FROM scratch\nCOPY loop.wasm /\nCMD ["/loop.wasm", "0", "20"]\n')
        lab.build(ctx, tag=TICKER, annotations=COMPAT)
        ctx = tmp / "bb"
        (ctx / "bin").mkdir(parents=True)
        shutil.copy2(busybox(), ctx / "bin" / "busybox")
        (ctx / "Containerfile").write_text(
            'FROM scratch\nCOPY bin/ /bin/\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'RUN echo built-by-run > /marker && echo said-by-run\nCMD ["/bin/sh", "-c", "cat /marker"]\n')
        lab.build(ctx, tag=SIDECAR, progress=progress.append)
        unsubscribe()
    yield home, progress, events


@pytest.fixture
def lab(built: tuple[Path, list[Progress], list[LabEvent]]) -> Iterator[Lab]:
    with Lab(built[0]) as lab:
        yield lab
        for c in lab.ps(all=True):
            lab.rm(c.id, force=True)


def run_quietly(lab: Lab, image: str, *args: str, **kw: Any) -> tuple[int | None, bytes]:
    """A foreground run with its output in a pipe; returns the exit code and the output."""
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        res = lab.run(image, list(args) or None, stdio=(null, w, w), **kw)
    finally:
        os.close(w)
        os.close(null)
    with os.fdopen(r, "rb") as fh:
        return res.exit_code, fh.read()


def until(condition: Any, what: str, event: threading.Event | None = None, timeout: float = 20) -> Any:
    """Wait for a condition on a live container, checking it each time EVENT fires (or every 20 ms)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        (event or threading.Event()).wait(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_build_with_run_through_the_lab(built: tuple[Path, list[Progress], list[LabEvent]], lab: Lab) -> None:
    """RUN needs no CLI any more: the Lab runs it in its own runtime; its output comes back as progress."""
    _home, progress, events = built
    assert all(isinstance(p, Progress) and p.phase == "build" for p in progress)
    steps = [p for p in progress if p.unit == "steps"]
    assert steps and steps[-1].total >= 4 and all(p.done <= p.total for p in steps)
    assert any("said-by-run" in p.output for p in progress), progress
    code, out = run_quietly(lab, SIDECAR, rm=True)
    assert (code, out) == (0, b"built-by-run\n")
    assert [e.name for e in events if isinstance(e, ImageBuilt)] == [WASM, TICKER, SIDECAR]


def test_typed_results_keep_the_json_shape(lab: Lab) -> None:
    code, out = run_quietly(lab, WASM, name="typed")
    assert code == 0 and b"hello" in out
    (info,) = lab.ps(all=True)
    assert info.status is ContainerStatus.STOPPED and not info.status.alive and info.status.can_delete()
    details = lab.inspect("typed")
    assert isinstance(details, ContainerDetails) and details.exit_code == 0
    doc = details.as_dict()
    assert doc["status"] == "stopped" and type(doc["status"]) is str and doc["name"] == "typed"
    assert {"id", "image", "command", "created", "handler", "exit_code", "state", "bundle"} <= set(doc)


def test_events_created_started_exited_in_order(lab: Lab) -> None:
    """Per container: created, started, exited, even when a short workload ends before `start` returns."""
    seen: list[LabEvent] = []
    exits = threading.Event()
    lock = threading.Lock()

    def on_event(event: LabEvent) -> None:
        with lock:
            seen.append(event)
        if isinstance(event, ContainerExited):
            exits.set()

    unsubscribe = lab.subscribe(on_event)
    try:
        code, _ = run_quietly(lab, WASM, name="fg", rm=True)
        assert code == 0
        ids = [lab.run(WASM, detach=True).id for _ in range(16)]
        fg = next(e.id for e in seen if isinstance(e, ContainerCreated) and e.name == "fg")

        def all_exited() -> bool:
            with lock:
                return {e.id for e in seen if isinstance(e, ContainerExited)} >= {fg, *ids}

        until(all_exited, "every exit event", exits)
    finally:
        unsubscribe()
    for cid in (fg, *ids):
        kinds = [type(e) for e in seen if getattr(e, "id", None) == cid]
        # The history row may be written (RunRecorded) before the unsubscribe, or after.
        assert kinds[:3] == [ContainerCreated, ContainerStarted, ContainerExited], (cid, kinds)
        assert kinds[3:] in ([], [RunRecorded]), (cid, kinds)
    recorded = [e for e in seen if isinstance(e, RunRecorded)]
    assert all(e.seq > 0 and e.exit_code == 0 and e.signal is None for e in recorded)
    exited = [e for e in seen if isinstance(e, ContainerExited)]
    assert all(e.exit_code == 0 and e.signal is None and e.memory.get("max_rss_kb", 0) > 0 for e in exited)
    assert all("create_ms" in e.timings for e in exited)
    assert all(e.name for e in exited)


def test_a_removed_run_still_announces_its_history_row(lab: Lab) -> None:
    """`run --rm`: the container's folder goes right after the answer, and its history row is written later on the
    recorder's thread. Its RunRecorded went out only if the row won that race (the charts missed the others); the
    test holds the history's write lock until the removal is done, so the row always comes last."""
    import sqlite3

    recorded: dict[str, RunRecorded] = {}
    arrived = threading.Event()

    def on_event(event: LabEvent) -> None:
        if isinstance(event, RunRecorded):
            recorded[event.id] = event
            arrived.set()

    unsubscribe = lab.subscribe(on_event)
    lab.history(1)  # the database exists before the lock is taken
    blocker = sqlite3.connect(lab.home / "history.db", timeout=30)
    blocker.isolation_level = None
    blocker.execute("BEGIN IMMEDIATE")  # the recorder waits for this write lock
    try:
        r, w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            run = lab.run(WASM, name="removed-early", rm=True, stdio=(null, w, w))
        finally:
            os.close(w)
            os.close(null)
            os.close(r)
        lab.settle()  # the folder is gone now
        assert not (lab.home / "containers" / run.id).exists()
        blocker.execute("ROLLBACK")
        assert arrived.wait(20), "no RunRecorded for a --rm container whose folder went first"
    finally:
        blocker.close()
        unsubscribe()
    event = recorded[run.id]
    assert event.name == "removed-early" and event.seq > 0 and event.exit_code == 0


def test_a_subscriber_reads_the_history_when_a_run_is_recorded_without_waiting(lab: Lab) -> None:
    """A chart that reads the history when RunRecorded arrives runs on the recorder's thread: the history's
    flush waited there for the row being announced, i.e. for its own thread, until its 10 s timeout."""
    import time

    found: list[tuple[float, list[str]]] = []
    done = threading.Event()

    def on_event(event: LabEvent) -> None:
        if isinstance(event, RunRecorded) and not done.is_set():
            started = time.monotonic()
            ids = [r.id for r in lab.history(5)]
            found.append((time.monotonic() - started, ids))
            done.set()

    unsubscribe = lab.subscribe(on_event)
    try:
        code, _ = run_quietly(lab, WASM, name="charted", rm=True)
        assert code == 0
        assert done.wait(30), "no RunRecorded"
    finally:
        unsubscribe()
    took, ids = found[0]
    assert took < 5, f"history() in a RunRecorded subscriber took {took:.1f} s"
    assert ids and ids[0] == next(iter(lab.history(1))).id


def test_logs_cursor_reads_each_byte_once(lab: Lab) -> None:
    run = lab.run(TICKER, detach=True, name="ticker")
    first, cursor = until(lambda: (lambda r: r if r[0] else None)(lab.logs("ticker")), "a first tick")
    read, cursors = b"".join(first), [cursor]

    def more() -> bool | None:
        """Read on from the last cursor; True once two whole ticks are in (a read may end inside a line: the
        log keeps a partial line as it came, as CRI-O's P records do)."""
        nonlocal read
        chunk, after = lab.logs("ticker", after=cursors[-1])
        if chunk:
            read += b"".join(chunk)
            cursors.append(after)
        return read.count(b"\n") >= 2 or None

    until(more, "more ticks")
    # The cursor is opaque (a k8s-file log survives rotation with it): what counts is that nothing is read twice.
    assert cursors == sorted(set(cursors)) and len(cursors) >= 2 and cursors[0] > 0
    text = read.decode()
    ticks = [int(n) for n in re.findall(r"tick (\d+)\n", text)]
    assert ticks == list(range(1, len(ticks) + 1)) and len(ticks) >= 2, text  # no tick twice, none skipped
    assert lab.logs(run.id, after=10**9) == ([], 10**9)


def test_follow_waits_through_a_pause(lab: Lab) -> None:
    """One follow for every face: a paused container is still followed (the TUI used to stop there)."""
    lab.run(TICKER, detach=True, name="pausing")
    until(lambda: lab.logs("pausing")[0], "a first tick")
    lab.pause("pausing")
    _, cursor = lab.logs("pausing")  # everything written before the freeze
    stop = threading.Event()
    got: list[bytes] = []

    def follow() -> None:
        """Read on until a tick comes: the freeze may have landed between a line's text and its
        newline (the guest's printf may reach the log as two writes), and then the newline comes first."""
        for chunk in lab.follow("pausing", after=cursor, stop=stop, poll=0.01):
            got.append(chunk)
            if b"tick " in b"".join(got):
                return

    follower = threading.Thread(target=follow)
    follower.start()
    follower.join(0.5)
    assert follower.is_alive() and got == [], "follow ended (or read) while the container was paused"
    lab.unpause("pausing")
    follower.join(20)
    stop.set()
    assert not follower.is_alive(), got
    assert b"tick " in b"".join(got), got


def test_exec_goes_through_the_runtime(lab: Lab) -> None:
    lab.run(SIDECAR, ["/bin/sleep", "30"], detach=True, name="side")
    until(lambda: lab.inspect("side").status is ContainerStatus.RUNNING, "the sidecar to run")
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        code = lab.exec("side", ["/bin/sh", "-c", "cat /marker; echo $WHO; exit 3"], env=["WHO=learner"],
                        stdio=(null, w, w))
    finally:
        os.close(w)
        os.close(null)
    with os.fdopen(r, "rb") as fh:
        assert (code, fh.read()) == (3, b"built-by-run\nlearner\n")
    with pytest.raises(SetupError, match="/no/such/program"):
        lab.exec("side", ["/no/such/program"], stdio=(0, 1, 2))
    lab.stop("side", timeout=0.1)
    with pytest.raises(InvalidState, match="exec needs a running container"):
        lab.exec("side", ["/bin/true"])


def test_rmi_refuses_an_image_in_use_and_announces_removals(lab: Lab) -> None:
    seen: list[LabEvent] = []
    unsubscribe = lab.subscribe(seen.append)
    try:
        lab.tag(WASM, "localhost/spare:latest")
        run_quietly(lab, "localhost/spare:latest", name="user")
        res = lab.rmi("localhost/spare:latest")  # another name remains: only untagged, in use or not
        assert res.untagged == ["localhost/spare:latest"] and res.deleted is None
        with pytest.raises(InvalidState, match="in use by container user"):
            lab.rmi(WASM)  # its last name: the image would go from under the container
        assert [i.name for i in lab.images()].count(WASM) == 1
    finally:
        unsubscribe()
    assert [(e.ref, e.untagged) for e in seen if isinstance(e, ImageRemoved)] == [
        ("localhost/spare:latest", ["localhost/spare:latest"])]


def test_lab_containers_live_under_the_cgroup_parent(lab: Lab) -> None:
    """$WASMLAB_CGROUP_PARENT (here the test session's own) is where the lab puts its containers' cgroups."""
    lab.run(SIDECAR, ["/bin/sleep", "30"], detach=True, name="parented")
    cid = lab.inspect("parented").info.id
    pids = next(base for base in CGROUP_BASES if base.endswith("/pids"))
    assert os.path.isdir(os.path.join(pids, CGROUP_PARENT, cid))
    lab.rm("parented", force=True)
    assert not os.path.exists(os.path.join(pids, CGROUP_PARENT, cid))
