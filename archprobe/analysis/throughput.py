"""Throughput: examples/sec of inference or training on a real device, with its setup recorded.

Methodology (design.md, "Throughput methodology"):

* Each row builds the model with real weights on the target device, with synthetic inputs
  (and labels) created on that device from a fixed seed.
* ``inference``: eval mode under ``torch.inference_mode``. ``train``: ``zero_grad(set_to_none)``,
  forward, cross-entropy on synthetic labels, backward, SGD step (``float16`` adds a GradScaler).
* Warm-up runs for at least ``warmup`` iterations *and* ``warmup_time`` seconds (lazy init,
  cuDNN autotuning, compilation); with ``compile`` the first call is timed on its own as
  ``compile_s`` and kept out of the throughput.
* Timed phase: at least ``min_iters`` iterations and ``min_time`` seconds. One timestamp per
  iteration boundary: on CPU the host clock; on CUDA an event recorded on the stream, with a
  single synchronize after the loop before the events are read (no host timing of async work,
  no synchronize between iterations).
* Statistics over per-iteration times: median, IQR (p75 - p25), p10/p90; examples/sec is
  ``batch_size / median``. A spread IQR/median above 10% is flagged.
* Utilisation: FLOPs of one step (``archprobe.analysis.counting``, or a dispatch-level count)
  over the median time, against a square-matmul ceiling measured once per device, dtype and
  thread count by the same runner.
* Memory: peak CUDA allocated/reserved on CUDA; on CPU the peak RSS increase over the row.

The clock, the device backend and the FLOP counter are injectable, so the statistics and the
CUDA code paths can be exercised with fakes on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TextIO

from archprobe.analysis.environment import Environment, collect_environment, physical_cores
from archprobe.errors import UsageError
from archprobe.report.columns import column

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from archprobe.zoo.spec import ModelSpec

MODES = ("inference", "train")
DTYPES = ("float32", "bfloat16", "float16")
SPREAD_WARNING = 0.10  # IQR / median above this is flagged
OPTIMIZER = "SGD(lr=0.001, momentum=0.9)"

Clock = Callable[[], float]


# --------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThroughputConfig:
    """How one row is measured (the batch size and mode are part of it)."""

    mode: str = "inference"
    batch_size: int = 1
    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None  # CPU threads; None: the number of physical cores
    warmup: int = 5  # at least this many warm-up iterations ...
    warmup_time: float = 1.0  # ... and at least this many seconds
    min_iters: int = 10  # timed phase: at least this many iterations ...
    min_time: float = 2.0  # ... and at least this many seconds
    max_iters: int = 100_000  # bounds the number of CUDA events of a very fast model
    cudnn_benchmark: bool = True
    utilisation: bool = True  # count FLOPs and measure the matmul ceiling

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}: use {' or '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}: use {', '.join(DTYPES)}")
        if self.batch_size <= 0:
            raise UsageError(f"batch size must be positive, not {self.batch_size}")
        if self.threads is not None and self.threads <= 0:
            raise UsageError(f"--threads must be positive, not {self.threads}")
        for name in ("warmup", "warmup_time", "min_time"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name.replace('_', '-')} must not be negative")
        if self.min_iters < 1 or self.max_iters < self.min_iters:
            raise UsageError("min-iters must be at least 1 (and at most max-iters)")


@dataclass(frozen=True)
class TimingStats:
    """Summary of per-iteration times, in seconds."""

    samples: int
    median_s: float
    iqr_s: float
    p10_s: float
    p90_s: float
    mean_s: float
    min_s: float
    max_s: float

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        return self.iqr_s / self.median_s if self.median_s > 0 else math.inf


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


@dataclass(frozen=True)
class ThroughputResult:
    """One model x device x mode x batch row, in base units (times in ms, rates per second).

    ``peak_memory_bytes`` is the displayed memory figure: peak CUDA memory allocated on CUDA,
    the peak RSS increase over the row on CPU (the device-specific fields follow).
    ``speedup`` is CUDA over CPU examples/sec for the same model, mode, batch and settings
    (set on the CUDA row when both were measured).
    """

    model: str = column("Model")
    device: str = column("Device")
    mode: str = column("Mode")
    batch_size: int = column("Batch", "int")
    dtype: str = column("Dtype")
    status: str = column("Status")  # "ok" | "oom" | "error"
    examples_per_sec: float | None = column("Examples/s", "rate", default=None)
    median_ms: float | None = column("Median ms", "ms", default=None)
    iqr_ms: float | None = column("IQR ms", "ms", default=None)
    achieved_flops_per_sec: float | None = column("FLOP/s", "flops", default=None)
    utilisation: float | None = column("Util.", "percent", default=None)
    peak_memory_bytes: int | None = column("Peak mem", "bytes", default=None)
    speedup: float | None = column("Speedup", "ratio", default=None)
    # --- statistics
    samples: int | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    spread: float | None = None  # iqr / median
    warmup_iters: int | None = None
    compile_s: float | None = None
    # --- utilisation
    flops_per_iter: int | None = None  # FLOPs of one step at this batch size
    ceiling_flops_per_sec: float | None = None
    ceiling_matmul_n: int | None = None
    ceiling_precision: str | None = None  # the matmul's dtype, "tf32" for float32 on CUDA
    # --- memory
    peak_cuda_allocated_bytes: int | None = None
    peak_cuda_reserved_bytes: int | None = None
    peak_rss_delta_bytes: int | None = None
    # --- setup
    input_shape: str = ""  # CxHxW of one example
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    cudnn_benchmark: bool | None = None  # None on CPU
    optimizer: str | None = None
    torch_version: str = ""
    cuda_version: str | None = None
    cudnn_version: int | None = None
    device_name: str = ""
    cpu_model: str = ""
    python_version: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return f"{self.model} {self.device} {self.mode} b={self.batch_size}"


RESULT_FIELDS = tuple(f.name for f in fields(ThroughputResult))


# --------------------------------------------------------------------------------------------
# Timing: the loop, and the two ways of reading time
# --------------------------------------------------------------------------------------------
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
    timer,
    *,
    warmup: int,
    warmup_time: float,
    min_iters: int,
    min_time: float,
    max_iters: int = 100_000,
    clock: Clock = time.perf_counter,
) -> tuple[list[float], int]:
    """Warm up, then time ``step`` per iteration. Returns (per-iteration seconds, warm-up count).

    Warm-up: at least ``warmup`` calls and ``warmup_time`` seconds of host time, then one
    synchronize. Timed phase: one ``timer.mark()`` per iteration boundary, so the intervals
    cover the loop without gaps; it stops after ``min_iters`` calls once ``min_time`` seconds
    of host time have passed (or at ``max_iters``). The host clock only decides when to stop;
    the times come from the timer.
    """
    start = clock()
    warm = 0
    while warm < warmup or clock() - start < warmup_time:
        step()
        warm += 1
    timer.synchronize()

    start = clock()
    marks = [timer.mark()]
    count = 0
    while True:
        step()
        marks.append(timer.mark())
        count += 1
        if count >= max_iters or (count >= min_iters and clock() - start >= min_time):
            break
    return timer.intervals(marks), warm


# --------------------------------------------------------------------------------------------
# Device backends: thread/cuDNN settings, timers, memory, environment
# --------------------------------------------------------------------------------------------
def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _maxrss_bytes() -> int | None:
    try:
        import resource
        import sys

        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return value if sys.platform == "darwin" else value * 1024
    except Exception:  # noqa: BLE001 - not available on every platform
        return None


class CpuBackend:
    """The CPU: host timing, a set (and restored) thread count, peak RSS increase."""

    kind = "cpu"

    def __init__(self, device: str = "cpu", clock: Clock = time.perf_counter):
        import torch

        self.label = device
        self.device = torch.device(device)
        self.clock = clock
        self._rss0: int | None = None
        self._hwm_reset = False
        self._maxrss0: int | None = None

    @contextlib.contextmanager
    def settings(self, config: ThroughputConfig) -> Iterator[dict]:
        import torch

        previous = torch.get_num_threads()
        threads = config.threads or physical_cores()
        torch.set_num_threads(threads)
        try:
            yield {"threads": torch.get_num_threads(), "cudnn_benchmark": None}
        finally:
            torch.set_num_threads(previous)

    def timer(self) -> HostTimer:
        return HostTimer(self.clock)

    def synchronize(self) -> None:
        pass

    def memory_begin(self) -> None:
        gc.collect()
        rss_kb = _status_kb("VmRSS")
        self._rss0 = rss_kb * 1024 if rss_kb is not None else None
        self._maxrss0 = _maxrss_bytes()
        try:  # Linux: writing 5 resets the peak RSS (VmHWM) of this process
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False

    def memory_end(self) -> dict:
        if self._rss0 is None:
            return {}
        if self._hwm_reset:
            hwm_kb = _status_kb("VmHWM")
            peak = hwm_kb * 1024 if hwm_kb is not None else None
        else:  # the lifetime peak says something only if this row raised it
            peak = _maxrss_bytes()
            if peak is None or self._maxrss0 is None or peak <= self._maxrss0:
                peak = None
        if peak is None:
            return {}
        delta = max(0, peak - self._rss0)
        return {"peak_rss_delta_bytes": delta, "peak_memory_bytes": delta}

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
    def settings(self, config: ThroughputConfig) -> Iterator[dict]:
        import torch

        previous = self.cudnn.benchmark
        self.cudnn.benchmark = config.cudnn_benchmark
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
            raise UsageError(f"--device {device}: no usable CUDA device")
        return CudaBackend(device, clock=clock)
    raise UsageError(f"unsupported device {device!r}: use cpu or cuda")


def resolve_devices(requested: Iterable[str], cuda_available: bool | None = None) -> tuple[list[str], list[str]]:
    """``cpu``/``cuda``/``all`` (repeatable) -> devices to measure (CPU first) and notes.

    An explicit ``cuda`` without a usable GPU is a usage error; with ``all`` the CUDA rows are
    skipped with a note.
    """
    names = [r.strip().lower() for r in requested] or ["cpu"]
    available = cuda_usable() if cuda_available is None else cuda_available
    wanted: list[str] = []
    notes: list[str] = []
    for name in names:
        if name == "all":
            wanted += ["cpu", "cuda"]
            if not available:
                notes.append("CUDA rows skipped: no usable CUDA device (torch.cuda.is_available() is False)")
        elif name == "cpu" or name.startswith("cuda"):
            if name.startswith("cuda") and not available:
                import torch

                built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
                raise UsageError(f"--device {name}: no usable CUDA device (torch {torch.__version__}, {built})")
            wanted.append(name)
        else:
            raise UsageError(f"unknown device {name!r}: use cpu, cuda or all")
    if not available:
        wanted = [w for w in wanted if not w.startswith("cuda")]
    unique = list(dict.fromkeys(wanted))
    unique.sort(key=lambda d: 0 if d == "cpu" else 1)  # CPU first: speedups fill in as CUDA rows arrive
    return unique, notes


# --------------------------------------------------------------------------------------------
# Workloads: one inference or training step of a model on synthetic data
# --------------------------------------------------------------------------------------------
@dataclass
class Workload:
    step: Callable[[], Any]
    context: Callable[[], contextlib.AbstractContextManager]  # entered around all steps


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _autocast(device, dtype: str):
    import torch

    if dtype == "float32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=_torch_dtype(dtype))


def _tensor_outputs(out, batch: int) -> list:
    """The tensors a model returned that have one row per example (logits, aux logits)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        found = [o for o in out if isinstance(o, torch.Tensor) and o.dim() >= 1 and o.shape[0] == batch]
        if found:
            return found
    raise TypeError(f"the model returned {type(out).__name__}, not a tensor of logits")


def _seeded(device):
    import torch

    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def build_workload(spec: "ModelSpec", device, config: ThroughputConfig) -> Workload:
    """Model with real weights on ``device``, synthetic on-device data, and the step to time."""
    import torch
    import torch.nn.functional as F

    with _seeded(device):
        torch.manual_seed(0)
        model = spec.build(str(device))
        generator = torch.Generator(device=device)
        generator.manual_seed(0)
        x = torch.randn(config.batch_size, *spec.input_shape, device=device, generator=generator)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = _autocast(device, config.dtype)
    train = config.mode == "train"
    model.train(train)
    if config.compile:
        model = torch.compile(model)

    if not train:
        def infer():
            return model(x)

        @contextlib.contextmanager
        def inference_context():
            with torch.inference_mode(), autocast():
                yield

        return Workload(infer, inference_context)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type) if config.dtype == "float16" else None
    targets: list = []

    def loss_of(out):
        outputs = _tensor_outputs(out, config.batch_size)
        if not targets:  # synthetic labels, made once from the first output's shape
            for o in outputs:
                if o.dim() >= 2:
                    targets.append(torch.randint(0, o.shape[1], (o.shape[0], *o.shape[2:]),
                                                 device=device, generator=generator))
                else:
                    targets.append(None)
        losses = [F.cross_entropy(o.float(), t) if t is not None else o.float().square().mean()
                  for o, t in zip(outputs, targets)]
        return sum(losses[1:], losses[0])

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_of(model(x))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss

    return Workload(train_step, contextlib.nullcontext)


# --------------------------------------------------------------------------------------------
# FLOPs and the matmul ceiling
# --------------------------------------------------------------------------------------------
def _model_flops(spec: "ModelSpec", batch_size: int, train: bool) -> int | None:
    """FLOPs of one forward pass (or training step), counted on meta; None where they cannot be."""
    from archprobe.analysis.counting import count_flops

    try:
        return count_flops(spec, batch_size=batch_size, train=train)
    except Exception:  # noqa: BLE001 - utilisation is optional; the row is still measured
        return None


@dataclass(frozen=True)
class Ceiling:
    flops_per_sec: float
    n: int  # square matmul size
    precision: str  # the dtype, or "tf32" for float32 on CUDA when cuDNN convolutions use TF32


def measure_matmul_ceiling(backend, dtype: str, *, clock: Clock = time.perf_counter,
                           max_n: int | None = None, probe_limit_s: float = 0.1,
                           min_time: float = 0.3, min_iters: int = 3) -> Ceiling:
    """Achieved FLOP/s of an ``n x n`` matmul in ``dtype`` on the backend's device (2n^3 FLOPs).

    ``n`` doubles from 256 (1024 on CUDA) while one product takes under ``probe_limit_s``, up
    to 2048 on CPU / 8192 on CUDA, so a dtype without fast kernels does not take minutes.
    float32 on CUDA: convolutions run in TF32 by default (``cudnn.allow_tf32``), so the matmul
    ceiling is measured with the same setting; otherwise Util. could exceed 100%.
    """
    import torch

    is_cuda = backend.kind == "cuda"
    precision = dtype
    if is_cuda and dtype == "float32" and torch.backends.cudnn.allow_tf32:
        precision = "tf32"
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = previous or precision == "tf32"
    try:
        flops, n = _matmul_ceiling(backend, dtype, clock, max_n, probe_limit_s, min_time, min_iters)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return Ceiling(flops, n, precision)


def _matmul_ceiling(backend, dtype, clock, max_n, probe_limit_s, min_time, min_iters) -> tuple[float, int]:
    import torch

    device = backend.device
    is_cuda = backend.kind == "cuda"
    n = 1024 if is_cuda else 256
    max_n = max_n or (8192 if is_cuda else 2048)
    n = min(n, max_n)
    torch_dtype = _torch_dtype(dtype)
    while True:
        a = torch.randn(n, n, device=device).to(torch_dtype)
        b = torch.randn(n, n, device=device).to(torch_dtype)
        c = torch.mm(a, b)  # first call: library initialisation
        backend.synchronize()
        t0 = clock()
        torch.mm(a, b, out=c)
        backend.synchronize()
        elapsed = clock() - t0
        if n * 2 > max_n or elapsed >= probe_limit_s:
            break
        n *= 2
        del a, b, c
    times, _ = run_timed(lambda: torch.mm(a, b, out=c), backend.timer(), warmup=1, warmup_time=0.0,
                         min_iters=min_iters, min_time=min_time, clock=clock)
    stats = summarize(times)
    del a, b, c
    return 2.0 * n**3 / stats.median_s, n


# --------------------------------------------------------------------------------------------
# The runner: one row at a time, faults recorded in the row
# --------------------------------------------------------------------------------------------
def _optimizer_text(config: ThroughputConfig) -> str | None:
    if config.mode != "train":
        return None
    return OPTIMIZER + (" + GradScaler" if config.dtype == "float16" else "")


def is_oom(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if isinstance(exc, MemoryError) or (oom_type is not None and isinstance(exc, oom_type)):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory"))


def _one_line(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ThroughputRunner:
    """Measures rows; caches environments, FLOP counts and matmul ceilings for one run.

    ``measure`` never raises for a failing model: an out-of-memory error becomes an ``oom``
    row, anything else an ``error`` row. ``KeyboardInterrupt`` propagates (settings restored).
    """

    def __init__(self, *, clock: Clock = time.perf_counter,
                 backend_factory: Callable[[str], Any] | None = None,
                 flops_fn: Callable[["ModelSpec", int, bool], int | None] = _model_flops,
                 ceiling_fn: Callable[..., Ceiling] = measure_matmul_ceiling):
        self.clock = clock
        self._backend_factory = backend_factory or (lambda device: make_backend(device, clock))
        self._flops_fn = flops_fn
        self._ceiling_fn = ceiling_fn
        self._backends: dict[str, Any] = {}
        self._environments: dict[str, Environment] = {}
        self._flops: dict[tuple, int | None] = {}
        self.ceilings: dict[tuple, Ceiling | None] = {}

    def backend(self, device: str):
        if device not in self._backends:
            self._backends[device] = self._backend_factory(device)
        return self._backends[device]

    def environment(self, device: str) -> Environment:
        if device not in self._environments:
            self._environments[device] = self.backend(device).environment()
        return self._environments[device]

    def flops(self, spec: "ModelSpec", batch_size: int, train: bool) -> int | None:
        key = (spec.name, spec.input_shape, spec.num_classes, batch_size, train)
        if key not in self._flops:
            self._flops[key] = self._flops_fn(spec, batch_size, train)
        return self._flops[key]

    def ceiling(self, device: str, dtype: str, threads: int | None) -> Ceiling | None:
        """The matmul ceiling for (device, dtype, threads), measured on first use."""
        key = (device, dtype, threads)
        if key not in self.ceilings:
            try:
                self.ceilings[key] = self._ceiling_fn(self.backend(device), dtype, clock=self.clock)
            except Exception:  # noqa: BLE001 - utilisation is optional
                self.ceilings[key] = None
        return self.ceilings[key]

    def measure(self, spec: "ModelSpec", device: str, config: ThroughputConfig) -> ThroughputResult:
        backend = self.backend(device)
        env = self.environment(device)
        row: dict[str, Any] = dict(
            model=spec.name, device=device, mode=config.mode, batch_size=config.batch_size,
            dtype=config.dtype, input_shape="x".join(map(str, spec.input_shape)),
            channels_last=config.channels_last, compile=config.compile,
            optimizer=_optimizer_text(config), **asdict(env),
        )
        with backend.settings(config) as applied:
            row.update(applied)
            ceiling = self.ceiling(device, config.dtype, applied["threads"]) if config.utilisation else None
            status, error = "ok", None
            backend.memory_begin()
            try:
                row.update(self._time(spec, backend, config))
            except Exception as exc:  # noqa: BLE001 - the row records the failure
                status = "oom" if is_oom(exc) else "error"
                error = _one_line(exc)
            try:
                row.update(backend.memory_end())
            finally:
                backend.cleanup()
        row.update(status=status, error=error)
        if status == "ok" and config.utilisation:
            flops = self.flops(spec, config.batch_size, config.mode == "train")
            if flops:
                achieved = flops / (row["median_ms"] / 1e3)
                row.update(flops_per_iter=flops, achieved_flops_per_sec=achieved)
                if ceiling is not None:
                    row.update(ceiling_flops_per_sec=ceiling.flops_per_sec, ceiling_matmul_n=ceiling.n,
                               ceiling_precision=ceiling.precision,
                               utilisation=achieved / ceiling.flops_per_sec)
        return ThroughputResult(**row)

    def _time(self, spec: "ModelSpec", backend, config: ThroughputConfig) -> dict:
        work = build_workload(spec, backend.device, config)
        timer = backend.timer()
        compile_s = None
        with work.context():
            if config.compile:  # the first call compiles: timed on its own, kept out of the stats
                t0 = self.clock()
                work.step()
                backend.synchronize()
                compile_s = self.clock() - t0
            times, warm = run_timed(
                work.step, timer, warmup=config.warmup, warmup_time=config.warmup_time,
                min_iters=config.min_iters, min_time=config.min_time, max_iters=config.max_iters,
                clock=self.clock,
            )
        del work
        stats = summarize(times)
        return dict(
            examples_per_sec=config.batch_size / stats.median_s if stats.median_s > 0 else None,
            median_ms=stats.median_s * 1e3, iqr_ms=stats.iqr_s * 1e3, p10_ms=stats.p10_s * 1e3,
            p90_ms=stats.p90_s * 1e3, mean_ms=stats.mean_s * 1e3, samples=stats.samples,
            spread=stats.spread, warmup_iters=warm + (1 if config.compile else 0), compile_s=compile_s,
        )


# --------------------------------------------------------------------------------------------
# Sweeps and speedups
# --------------------------------------------------------------------------------------------
def _pair_key(r: ThroughputResult) -> tuple:
    return (r.model, r.mode, r.batch_size, r.dtype, r.channels_last, r.compile, r.input_shape)


def with_speedup(result: ThroughputResult, previous: Iterable[ThroughputResult]) -> ThroughputResult:
    """Set ``speedup`` on a CUDA row from the matching CPU row among ``previous``."""
    if not result.ok or not result.device.startswith("cuda") or not result.examples_per_sec:
        return result
    for other in previous:
        if other.device == "cpu" and other.ok and other.examples_per_sec and _pair_key(other) == _pair_key(result):
            return replace(result, speedup=result.examples_per_sec / other.examples_per_sec)
    return result


def add_speedups(results: Sequence[ThroughputResult]) -> list[ThroughputResult]:
    return [with_speedup(r, results) for r in results]


def sweep(
    specs: Sequence["ModelSpec"],
    devices: Sequence[str],
    modes: Sequence[str],
    batch_sizes: Sequence[int],
    config: ThroughputConfig,
    *,
    runner: ThroughputRunner | None = None,
    on_start: Callable[[str], None] | None = None,
) -> Iterator[ThroughputResult]:
    """Yield one result per model x device x mode x batch, as soon as it is measured.

    The batch size is never changed: an OOM is yielded as an ``oom`` row and the sweep goes on.
    """
    runner = runner or ThroughputRunner()
    done: list[ThroughputResult] = []
    for spec in specs:
        for device in devices:
            for mode in modes:
                for batch in batch_sizes:
                    if on_start is not None:
                        on_start(f"{spec.name} {device} {mode} b={batch}")
                    row_config = replace(config, mode=mode, batch_size=batch)
                    result = with_speedup(runner.measure(spec, device, row_config), done)
                    done.append(result)
                    yield result


# --------------------------------------------------------------------------------------------
# Incremental CSV output
# --------------------------------------------------------------------------------------------
def flat_record(result: ThroughputResult) -> dict[str, Any]:
    from archprobe.report.frames import records

    return records([result])[0]


class CsvSink:
    """Appends one CSV row per result as it arrives (flush + fsync), so an interrupt or a crash
    keeps every row measured so far.

    A file that exists with the same header is appended to; one with another header is refused
    before anything is measured. ``target`` may also be an open text stream (stdout).
    """

    def __init__(self, target: "str | os.PathLike | TextIO", fieldnames: Sequence[str] = RESULT_FIELDS):
        import csv

        self.fieldnames = list(fieldnames)
        self.rows = 0
        if hasattr(target, "write"):
            self._fh, self._owned = target, False
            write_header = True
        else:
            path = os.fspath(target)
            write_header = True
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, newline="", encoding="utf-8") as fh:
                    existing = next(csv.reader(fh), [])
                if existing != self.fieldnames:
                    raise UsageError(
                        f"{path} exists with different CSV columns; remove it or write to another file"
                    )
                write_header = False
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            self._fh, self._owned = open(path, "a", newline="", encoding="utf-8"), True
        self._writer = csv.DictWriter(self._fh, fieldnames=self.fieldnames, extrasaction="ignore",
                                      lineterminator="\n")
        if write_header:
            self._writer.writeheader()
            self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        if self._owned:
            os.fsync(self._fh.fileno())

    def write(self, result: ThroughputResult) -> None:
        self._writer.writerow(flat_record(result))
        self._sync()
        self.rows += 1

    def close(self) -> None:
        if self._owned and not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "CsvSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Notes under the table
# --------------------------------------------------------------------------------------------
def result_notes(results: Sequence[ThroughputResult]) -> list[str]:
    """Warnings (spread, faults), the setup and the conventions, one line each."""
    notes: list[str] = []
    for r in results:
        if r.ok and r.spread is not None and r.spread > SPREAD_WARNING:
            notes.append(f"warning: {r.label}: large spread, IQR is {100 * r.spread:.0f}% of the median "
                         f"({r.samples} samples); the machine may be busy")
        elif r.status == "oom":
            notes.append(f"oom: {r.label}: out of memory at this batch size ({r.error})")
        elif r.status == "error":
            notes.append(f"error: {r.label}: {r.error}")
        if r.compile_s is not None:
            notes.append(f"{r.label}: compile + first call {r.compile_s:.1f} s (not in the throughput)")
    seen: dict[str, ThroughputResult] = {}
    for r in results:
        seen.setdefault(r.device, r)
    for device, r in seen.items():
        setup = [f"{r.device_name}"]
        if r.device == "cpu" or r.threads:
            setup.append(f"{r.threads} threads")
        if r.cudnn_benchmark is not None:
            setup.append(f"cudnn.benchmark {'on' if r.cudnn_benchmark else 'off'}")
        setup.append(f"{r.dtype}{' autocast' if r.dtype != 'float32' else ''}")
        setup.append("channels_last" if r.channels_last else "contiguous")
        setup.append("torch.compile" if r.compile else "eager")
        versions = f"torch {r.torch_version}"
        if device != "cpu":
            versions += f", CUDA {r.cuda_version}, cuDNN {r.cudnn_version}"
        notes.append(f"{device}: {', '.join(setup)}; {versions}")
    ceilings = {(r.device, r.ceiling_precision): r for r in results if r.ceiling_flops_per_sec}
    for (device, precision), r in ceilings.items():
        notes.append(f"Util. = achieved FLOP/s over the {device} {precision} matmul ceiling "
                     f"{r.ceiling_flops_per_sec / 1e9:,.1f} GFLOP/s ({r.ceiling_matmul_n}^2, measured in this run)")
    if results:
        notes.append("Examples/s = batch / median time per iteration; IQR = p75 - p25; "
                     "train = zero_grad, forward, cross-entropy, backward, SGD step")
    return notes
