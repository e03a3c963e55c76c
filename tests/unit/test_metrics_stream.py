"""The live metrics stream without root: its rate on an injected clock, and that it stops (a thread that ends)."""

from __future__ import annotations

import gc
import os
import threading

import pytest
from wasmlab.runtime import MetricsStream, MetricsTick
from wasmlab.runtime.errors import UsageError
from wasmlab.runtime.metrics.stream import Watched, read_process


class FakeTime:
    """A clock that moves only when the stream waits (by what it waits) or when the test moves it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def _self_target() -> list[Watched]:
    return [Watched("container", "me", "pytest", None, "native", None, os.getpid())]


def test_four_ticks_a_second_on_an_injected_clock_with_no_drift_when_sampling_takes_time() -> None:
    t = FakeTime()

    def discover() -> list[Watched]:
        t.now += 0.1  # sampling costs 0.1 s of the clock: the wait makes up for it
        return _self_target()

    stream = MetricsStream(discover, interval=0.25, clock=t.clock, wait=t.wait)
    ticks = [tick for _, tick in zip(range(41), stream, strict=False)]
    stream.close()
    ats = [round(tick.at - ticks[0].at, 6) for tick in ticks]
    assert ats == [round(i * 0.25, 6) for i in range(41)]  # 41 ticks in 10 s of the clock: 4 a second
    assert len(ticks) / (ticks[-1].at - ticks[0].at) >= 4.0
    assert all(abs(w - 0.15) < 1e-9 for w in t.waits)  # waited only what was left of each interval
    assert all(len(tick.samples) == 1 and tick.samples[0].at == tick.at for tick in ticks)
    assert list(stream) == []  # closed: the iterator is over


def test_a_late_tick_is_followed_one_interval_later_not_by_a_burst() -> None:
    t = FakeTime()
    slow = [0.0, 0.6, 0.0, 0.0]

    def discover() -> list[Watched]:
        t.now += slow.pop(0) if slow else 0.0
        return []

    with MetricsStream(discover, interval=0.25, clock=t.clock, wait=t.wait) as stream:
        ats = [round(tick.at - 100.0, 6) for _, tick in zip(range(4), stream, strict=False)]
    # The second tick took 0.6 s: the third comes at once (it is late), the fourth one interval after it (no catch-up).
    assert ats == [0.0, 0.25, 0.85, 1.1]


def test_cpu_percent_is_cpu_time_over_the_clock_and_memory_is_the_process_rss() -> None:
    t = FakeTime()
    stream = MetricsStream(_self_target, interval=0.5, clock=t.clock, wait=t.wait)
    it = iter(stream)
    # Read around the samples (before the first, after the second): the counter moves in ticks (10 ms), and
    # one may land between the first sample's reading and a reading taken after it.
    before = read_process(os.getpid()).cpu_ns
    first = next(it).samples[0]
    mark = read_process(os.getpid()).cpu_ns
    x = 0
    while read_process(os.getpid()).cpu_ns == mark:  # burn CPU until the kernel has counted some (a tick)
        x += 1
    second = next(it).samples[0]
    after = read_process(os.getpid()).cpu_ns
    stream.close()
    assert first.cpu_percent == 0.0  # nothing to compare with the first time
    assert before is not None and after is not None
    # 0.5 s of clock between the two: the CPU used in between, as a share of that.
    assert 0 < second.cpu_percent <= (after - before) / 0.5e9 * 100 + 0.01
    assert second.memory_bytes > 1 << 20 and second.memory_peak_bytes >= second.memory_bytes
    assert (second.kind, second.name, second.engine, second.pod) == ("container", "pytest", "native", None)


def test_a_callback_stream_calls_back_until_closed_and_its_thread_ends() -> None:
    seen: list[MetricsTick] = []
    three = threading.Event()

    def on_tick(tick: MetricsTick) -> None:
        seen.append(tick)
        if len(seen) >= 3:
            three.set()

    stream = MetricsStream(_self_target, interval=0.01, callback=on_tick)
    assert three.wait(10)
    threads = [th for th in threading.enumerate() if th.name == "wasmlab-metrics"]
    assert threads and stream.running
    stream.close()
    stream.close()  # idempotent
    assert not stream.running and not any(th.is_alive() for th in threads)
    count = len(seen)
    with pytest.raises(UsageError):
        iter(stream)  # a callback stream is not iterated too
    assert len(seen) == count  # nothing after close


def test_a_stream_nobody_holds_or_listens_to_stops_its_thread() -> None:
    ticked = threading.Event()
    stream = MetricsStream(_self_target, interval=0.01, callback=lambda _t: ticked.set())
    assert ticked.wait(10)
    thread = stream._thread
    assert thread is not None
    del stream
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()  # dropped without close(): its finalizer stopped it

    def gone(_tick: MetricsTick) -> None:
        raise RuntimeError("the UI has closed")

    broken = MetricsStream(_self_target, interval=0.01, callback=gone)
    assert broken._thread is not None
    broken._thread.join(10)
    assert not broken.running  # a listener that fails is no listener: the stream ends


def test_an_interval_that_is_not_positive_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError) as err:
        MetricsStream(_self_target, interval=0)
    assert "interval" in err.value.message and err.value.hint


def test_wake_ups_that_come_a_little_late_do_not_slow_the_rate() -> None:
    t = FakeTime()

    def late_wait(seconds: float) -> bool:
        t.now += seconds + 0.002  # every wake-up 2 ms late, as a loaded machine gives them
        return False

    with MetricsStream(_self_target, interval=0.25, clock=t.clock, wait=late_wait) as stream:
        ats = [tick.at - 100.0 for _, tick in zip(range(41), stream, strict=False)]
    assert max(abs(at - i * 0.25) for i, at in enumerate(ats)) <= 0.0021  # each on its due time, no drift
    assert (len(ats) - 1) / (ats[-1] - ats[0]) >= 3.999
