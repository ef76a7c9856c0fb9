"""Stand-ins for ``torch.cuda`` and ``torch.backends.cudnn``, so that the CUDA code paths run (and
are checked) on any machine."""

from __future__ import annotations

import time


class FakeEvent:
    def __init__(self, clock, log):
        self.clock, self.log, self.t = clock, log, None

    def record(self, stream=None):
        self.t = self.clock()
        self.log.append("record")

    def elapsed_time(self, end):
        assert self.t is not None and end.t is not None
        return (end.t - self.t) * 1e3  # ms, like torch.cuda.Event


class FakeCuda:
    """Stands in for ``torch.cuda``: events on a host clock, counted synchronizes, memory stats."""

    def __init__(self, clock=time.perf_counter):
        self.clock, self.log = clock, []
        self.peak = 0

    def Event(self, enable_timing=False):  # noqa: N802 - mirrors torch.cuda.Event
        assert enable_timing
        return FakeEvent(self.clock, self.log)

    def synchronize(self, device=None):
        self.log.append("sync")

    def current_device(self):
        return 0

    def device(self, index):
        import contextlib

        self.log.append(f"device {index}")
        return contextlib.nullcontext()

    def empty_cache(self):
        self.log.append("empty_cache")

    def reset_peak_memory_stats(self, device=None):
        self.log.append("reset_peak")
        self.peak = 0

    def max_memory_allocated(self, device=None):
        return 123_000

    def max_memory_reserved(self, device=None):
        return 456_000


class FakeCudnn:
    benchmark = False
