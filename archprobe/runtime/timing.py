"""Timers and the warm-up-then-time loop.

One timestamp per iteration boundary: on CPU the host clock; on CUDA an event recorded on the
stream, with a single synchronize after the loop before the events are read (no host timing of
asynchronous work, no synchronize between iterations). The clock is injectable, so the loop and
its statistics can be tested on a fake clock.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol, Sequence

from archprobe.results import TimingStats

Clock = Callable[[], float]
# The most iterations of either phase: bounds the time a very fast model (or an absurd
# --warmup/--min-iters) can take, and the number of CUDA events of one timed phase.
MAX_ITERS = 100_000


class Timer(Protocol):
    """Marks iteration boundaries and turns consecutive marks into seconds."""

    def mark(self) -> Any: ...

    def synchronize(self) -> None: ...

    def intervals(self, marks: Sequence[Any]) -> list[float]: ...


class HostTimer:
    """Timestamps from a host clock: exact for synchronous work (CPU)."""

    def __init__(self, clock: Clock = time.perf_counter):
        self.clock = clock

    def mark(self) -> float:
        return self.clock()

    def synchronize(self) -> None:
        pass

    def intervals(self, marks: Sequence[float]) -> list[float]:
        return [b - a for a, b in zip(marks, marks[1:])]


class CudaEventTimer:
    """Timestamps as CUDA events recorded on the current stream.

    ``mark`` only enqueues an event; ``intervals`` synchronizes once and reads the elapsed
    times between consecutive events (``elapsed_time`` is in ms).
    """

    def __init__(self, event_factory: Callable[[], Any], synchronize: Callable[[], None]):
        self._event = event_factory
        self._synchronize = synchronize

    def mark(self):
        event = self._event()
        event.record()
        return event

    def synchronize(self) -> None:
        self._synchronize()

    def intervals(self, marks: Sequence[Any]) -> list[float]:
        self._synchronize()
        return [a.elapsed_time(b) / 1e3 for a, b in zip(marks, marks[1:])]


def run_timed(
    step: Callable[[], Any],
    timer: Timer,
    *,
    warmup: int,
    warmup_time: float,
    min_iters: int,
    min_time: float,
    max_iters: int = MAX_ITERS,
    clock: Clock = time.perf_counter,
) -> tuple[list[float], int]:
    """Warm up, then time ``step`` per iteration. Returns (per-iteration seconds, warm-up count).

    Warm-up: at least ``warmup`` calls and ``warmup_time`` seconds of host time (at most
    ``max_iters`` calls), then one synchronize. Timed phase: one ``timer.mark()`` per iteration
    boundary, so the intervals cover the loop without gaps; it stops after ``min_iters`` calls
    once ``min_time`` seconds of host time have passed (or at ``max_iters``). The host clock only
    decides when to stop; the times come from the timer.
    """
    start = clock()
    warm = 0
    while warm < max_iters and (warm < warmup or clock() - start < warmup_time):
        step()
        warm += 1
    timer.synchronize()

    start = clock()
    times = _timed_loop(step, timer, lambda count: count >= max_iters
                        or (count >= min_iters and clock() - start >= min_time))
    return times, warm


def run_counted(step: Callable[[], Any], timer: Timer, iterations: int) -> list[float]:
    """Time exactly ``iterations`` calls of an already warmed-up ``step``; per-iteration seconds.

    For ranks of a process group, which must all run the same number of steps (a rank that
    stopped by its own clock would leave the others waiting in a collective): the count is
    agreed beforehand (:func:`archprobe.runtime.distributed.agreed_warmup`).
    """
    if iterations < 1:
        raise ValueError("at least one iteration")
    return _timed_loop(step, timer, lambda count: count >= iterations)


def _timed_loop(step: Callable[[], Any], timer: Timer, done: Callable[[int], bool]) -> list[float]:
    """One ``timer.mark()`` per iteration boundary, so the intervals cover the loop without gaps."""
    marks = [timer.mark()]
    count = 0
    while True:
        step()
        marks.append(timer.mark())
        count += 1
        if done(count):
            break
    return timer.intervals(marks)


def summarize(times: Sequence[float]) -> TimingStats:
    """Median, IQR (p75 - p25, linear interpolation), p10/p90 of per-iteration times."""
    import numpy as np

    if len(times) == 0:
        raise ValueError("no timings to summarize")
    arr = np.asarray(times, dtype=float)
    p10, p25, p50, p75, p90 = np.percentile(arr, [10, 25, 50, 75, 90])
    return TimingStats(
        samples=int(arr.size),
        median_s=float(p50),
        iqr_s=float(p75 - p25),
        p10_s=float(p10),
        p90_s=float(p90),
        mean_s=float(arr.mean()),
        min_s=float(arr.min()),
        max_s=float(arr.max()),
    )
