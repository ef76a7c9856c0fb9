"""Devices behind one small protocol: settings, timers, memory, cleanup and the environment.

``CpuBackend`` sets (and restores) the thread count and times with the host clock;
``CudaBackend`` sets (and restores) ``cudnn.benchmark``, times with CUDA events and reads the
allocator's peak. ``torch.cuda``/``torch.backends.cudnn`` are injectable, so the CUDA path is
tested with fakes on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import gc
import time
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, Protocol

from archprobe.errors import UsageError
from archprobe.results import Environment, Note
from archprobe.runtime.environment import collect_environment, physical_cores
from archprobe.runtime.timing import Clock, CudaEventTimer, HostTimer, Timer

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Backend(Protocol):
    """What the runners need from a device."""

    kind: str  # "cpu" or "cuda"
    label: str  # the device as the user named it ("cpu", "cuda:1")
    device: "torch.device"

    def settings(self, *, threads: int | None = None, cudnn_benchmark: bool = True) -> ContextManager[dict]:
        """Apply the settings for the block; yields what was applied (``threads``, ``cudnn_benchmark``)."""
        ...

    def timer(self) -> Timer: ...

    def synchronize(self) -> None: ...

    def memory_begin(self) -> None: ...

    def memory_end(self) -> dict: ...

    def cleanup(self) -> None: ...

    def environment(self) -> Environment: ...


class HostAllocator:
    """glibc malloc, held in one state for every row.

    By default glibc raises its mmap and trim thresholds whenever a large block is freed, so a
    row's speed depends on what ran before it in the process (two 16 MiB tensors freed first made
    googlenet-d2l eval 12% faster at one thread; under this policy the two agree within 1%:
    ``benchmarks/bench_throughput_overhead.py --checks allocator``). While rows run, the
    thresholds are fixed (mmap above 32 MiB, the largest glibc allows; no trimming of the heap
    top), and each row starts from a trimmed heap: its warm-up then grows the heap to the step's
    own steady state, whatever ran before. After the row, trimming returns to glibc's default
    threshold so the process can give memory back. Elsewhere than glibc this does nothing.
    """

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    MMAP_THRESHOLD = 32 << 20
    NO_TRIM = (1 << 31) - 1
    DEFAULT_TRIM = 128 << 10

    def __init__(self):
        self.libc = None
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                self.libc = libc
        except OSError:
            pass

    @contextlib.contextmanager
    def steady(self) -> Iterator[None]:
        if self.libc is None:
            yield
            return
        gc.collect()
        self.libc.mallopt(self.M_MMAP_THRESHOLD, self.MMAP_THRESHOLD)
        self.libc.mallopt(self.M_TRIM_THRESHOLD, self.NO_TRIM)
        self.libc.malloc_trim(0)
        try:
            yield
        finally:
            self.libc.mallopt(self.M_TRIM_THRESHOLD, self.DEFAULT_TRIM)
            gc.collect()
            self.libc.malloc_trim(0)


class CpuBackend:
    """The CPU: host timing, a set (and restored) thread count, the host allocator held steady."""

    kind = "cpu"

    def __init__(self, device: str = "cpu", clock: Clock = time.perf_counter):
        import torch

        self.label = device
        self.device = torch.device(device)
        self.clock = clock
        self._allocator = HostAllocator()

    @contextlib.contextmanager
    def settings(self, *, threads: int | None = None, cudnn_benchmark: bool = True) -> Iterator[dict]:
        import torch

        previous = torch.get_num_threads()
        threads = threads or physical_cores()
        torch.set_num_threads(threads)
        try:
            with self._allocator.steady():
                yield {"threads": torch.get_num_threads(), "cudnn_benchmark": None}
        finally:
            torch.set_num_threads(previous)

    def timer(self) -> HostTimer:
        return HostTimer(self.clock)

    def synchronize(self) -> None:
        pass

    def memory_begin(self) -> None:
        pass

    def memory_end(self) -> dict:
        # The CPU has no allocator peak worth reporting (the process RSS depends on what ran
        # before); the runner counts the step's live tensor bytes instead (runtime.memory).
        return {}

    def cleanup(self) -> None:
        gc.collect()

    def environment(self) -> Environment:
        return collect_environment(self.label)


class CudaBackend:
    """A CUDA device: event timing, ``cudnn.benchmark`` set (and restored), peak memory.

    ``cuda`` and ``cudnn`` default to ``torch.cuda`` and ``torch.backends.cudnn``; tests pass
    fakes to exercise this path without a GPU.
    """

    kind = "cuda"

    def __init__(self, device: str = "cuda", *, cuda=None, cudnn=None, tensor_device: str | None = None,
                 clock: Clock = time.perf_counter):
        import torch

        self.cuda = cuda if cuda is not None else torch.cuda
        self.cudnn = cudnn if cudnn is not None else torch.backends.cudnn
        self.label = device
        self.device = torch.device(tensor_device or device)
        index = torch.device(device).index
        self.index = index if index is not None else self.cuda.current_device()
        self.clock = clock

    @contextlib.contextmanager
    def settings(self, *, threads: int | None = None, cudnn_benchmark: bool = True) -> Iterator[dict]:
        import torch

        previous = self.cudnn.benchmark
        self.cudnn.benchmark = cudnn_benchmark
        try:
            with self.cuda.device(self.index):
                yield {"threads": torch.get_num_threads(), "cudnn_benchmark": bool(self.cudnn.benchmark)}
        finally:
            self.cudnn.benchmark = previous

    def timer(self) -> CudaEventTimer:
        return CudaEventTimer(lambda: self.cuda.Event(enable_timing=True), self.synchronize)

    def synchronize(self) -> None:
        self.cuda.synchronize(self.index)

    def memory_begin(self) -> None:
        gc.collect()
        self.cuda.empty_cache()
        self.cuda.reset_peak_memory_stats(self.index)

    def memory_end(self) -> dict:
        allocated = int(self.cuda.max_memory_allocated(self.index))
        reserved = int(self.cuda.max_memory_reserved(self.index))
        return {
            "peak_cuda_allocated_bytes": allocated,
            "peak_cuda_reserved_bytes": reserved,
            "peak_memory_bytes": allocated,
        }

    def cleanup(self) -> None:
        gc.collect()
        self.cuda.empty_cache()

    def environment(self) -> Environment:
        return collect_environment(self.label)


def cuda_usable() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available() and torch.cuda.device_count() > 0)
    except Exception:  # noqa: BLE001 - a broken driver means "not usable"
        return False


def make_backend(device: str, clock: Clock = time.perf_counter):
    import torch

    dev = torch.device(device)
    if dev.type == "cpu":
        return CpuBackend(device, clock)
    if dev.type == "cuda":
        if not cuda_usable():
            raise UsageError(f"no usable CUDA device for {device!r}", param="device")
        return CudaBackend(device, clock=clock)
    raise UsageError(f"unsupported device {device!r}: use cpu or cuda", param="device")


def resolve_devices(requested: Iterable[str], cuda_available: bool | None = None) -> tuple[list[str], list[Note]]:
    """``cpu``/``cuda``/``all`` (repeatable) -> devices to measure (CPU first) and notes.

    An explicit ``cuda`` without a usable GPU is a usage error; with ``all`` the CUDA rows are
    skipped with a note.
    """
    names = [r.strip().lower() for r in requested] or ["cpu"]
    available = cuda_usable() if cuda_available is None else cuda_available
    wanted: list[str] = []
    notes: list[Note] = []
    for name in names:
        if name == "all":
            wanted += ["cpu", "cuda"]
            if not available:
                notes.append(Note.of("cuda_skipped"))
        elif name == "cpu" or name.startswith("cuda"):
            if name.startswith("cuda") and not available:
                import torch

                built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
                raise UsageError(f"no usable CUDA device for {name!r} (torch {torch.__version__}, {built})",
                                 param="device")
            wanted.append(name)
        else:
            raise UsageError(f"unknown device {name!r}: use cpu, cuda or all", param="device")
    if not available:
        wanted = [w for w in wanted if not w.startswith("cuda")]
    unique = list(dict.fromkeys(wanted))
    unique.sort(key=lambda d: 0 if d == "cpu" else 1)  # CPU first: speedups fill in as CUDA rows arrive
    return unique, notes


class Devices:
    """The backends a run uses and their environments, each made once per device.

    The runners (throughput, training) inherit it; ``backend_factory`` is injectable so tests
    can hand in fake devices.
    """

    def __init__(self, backend_factory: "Callable[[str], Any] | None" = None, clock: Clock = time.perf_counter):
        self._backend_factory = backend_factory or (lambda device: make_backend(device, clock))
        self._backends: dict[str, Any] = {}
        self._environments: dict[str, Environment] = {}

    def backend(self, device: str):
        if device not in self._backends:
            self._backends[device] = self._backend_factory(device)
        return self._backends[device]

    def environment(self, device: str) -> Environment:
        if device not in self._environments:
            self._environments[device] = self.backend(device).environment()
        return self._environments[device]


def is_oom(exc: BaseException) -> bool:
    """An out-of-memory error on any device (CUDA's, or the host allocator's)."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if isinstance(exc, MemoryError) or (oom_type is not None and isinstance(exc, oom_type)):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory"))
