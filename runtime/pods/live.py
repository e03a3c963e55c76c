"""A pod's live views, as podman's pod stats, pod top and pod logs -f: its samples per tick, its containers'
logs followed together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from wasmlab.runtime.metrics.stream import MetricSample, MetricsTick
from wasmlab.runtime.store.ctrlog import LogEntry


@dataclass(frozen=True)
class PodRef:
    """A pod as `pod stats` lists it: its id and NAMESPACE/NAME."""

    id: str
    identity: str


def idle_sample(pod: PodRef, at: float = 0.0) -> MetricSample:
    """A pod with nothing running (`pod stats -a`): its figures are zero, as podman shows a stopped one's."""
    return MetricSample(at, "pod", pod.id, pod.identity, pod.identity, None, 0.0, 0, 0, None, 0, 0, 0, 0, 0)


def pod_batches(ticks: Iterable[MetricsTick], wanted: set[str] | None,
                every: Callable[[], list[PodRef]] | None, *,
                namespace: str | None = None) -> Iterator[list[MetricSample]]:
    """Per tick, the pod samples (from each pod's cgroup parent) of the pods WANTED (identities; None: every pod
    sampled, or NAMESPACE's when given), by name; with EVERY (-a), the pods it lists that nothing runs in too,
    their figures zero."""
    for tick in ticks:
        samples = {s.name: s for s in tick.samples if s.kind == "pod" and (wanted is None or s.name in wanted)
                   and (namespace is None or s.name.startswith(f"{namespace}/"))}
        if every is not None:
            for pod in every():
                if pod.identity not in samples and (wanted is None or pod.identity in wanted):
                    samples[pod.identity] = idle_sample(pod, tick.at)
        yield [samples[name] for name in sorted(samples)]


@dataclass(frozen=True)
class Followed:
    """One container of a pod whose log is followed: its Kubernetes name and its id."""

    name: str
    id: str


class _Lines:
    """A container's records joined into whole lines as they come: a partial record waits for the rest."""

    def __init__(self) -> None:
        self.pending: dict[str, LogEntry] = {}

    def feed(self, entries: Iterable[LogEntry]) -> list[LogEntry]:
        out = []
        for e in entries:
            head = self.pending.pop(e.stream, None)
            merged = LogEntry(head.time, e.stream, head.data + e.data) if head else e
            if merged.full:
                out.append(merged)
            else:
                self.pending[e.stream] = merged
        return out

    def rest(self) -> list[LogEntry]:
        out = list(self.pending.values())
        self.pending.clear()
        return out


def follow(containers: Sequence[Followed], *, read: Callable[[str, int], tuple[list[LogEntry], int]],
           alive: Callable[[str], bool], kept: Callable[[], bool], tail: int | None = None,
           stop: threading.Event | None = None, poll: float = 0.1) -> Iterator[tuple[str, LogEntry]]:
    """`pod logs -f`: the lines of CONTAINERS so far (the last TAIL of them all, by time), then new ones as they
    come, each with its container's name, every POLL s (as `logs -f` follows one container), until none of them
    has a process left and nothing will restart one (KEPT: the pod's keeper is alive), or STOP is set. Each round
    reads the containers' states before their logs, so no last words are lost; within a round, lines come by time.
    A partial line waits for its end (or for the end of the follow)."""
    cursors = {c.id: 0 for c in containers}
    joins = {c.id: _Lines() for c in containers}
    live = [c for c in containers if alive(c.id)]
    first = True
    while True:
        batch: list[tuple[str, LogEntry]] = []
        for c in containers:
            entries, cursors[c.id] = read(c.id, cursors[c.id])
            batch.extend((c.name, e) for e in joins[c.id].feed(entries))
        ended = not live and not kept()
        if ended:
            batch.extend((c.name, e) for c in containers for e in joins[c.id].rest())
        batch.sort(key=lambda item: item[1].ns)
        if first and tail is not None:
            batch = batch[len(batch) - tail:] if tail else []
        first = False
        yield from batch
        if ended:
            return
        if stop is not None:
            if stop.wait(poll):
                return
        else:
            time.sleep(poll)
        live = [c for c in containers if alive(c.id)]

