"""Throughput: examples/sec of inference or training on a real device, with its setup recorded.

Methodology (design.md, "Throughput methodology"):

* Each row builds the model with real weights on the target device (a :class:`Probe` on that
  device), with synthetic inputs (and labels) created there from a fixed seed.
* eval: eval mode under ``torch.inference_mode``. train: the runtime's :class:`TrainStep`
  (``zero_grad(set_to_none)``, forward, cross-entropy on synthetic labels, backward, SGD step;
  ``float16`` adds a GradScaler).
* Warm-up runs for at least ``warmup`` iterations *and* ``warmup_time`` seconds (lazy init,
  cuDNN autotuning, compilation); with ``compile`` the first call is timed on its own as
  ``compile_s`` and kept out of the throughput.
* Timed phase: at least ``min_iters`` iterations and ``min_time`` seconds
  (:func:`archprobe.runtime.timing.run_timed`).
* Statistics over per-iteration times: median, IQR (p75 - p25), p10/p90; examples/sec is
  ``batch_size / median``.
* Utilisation: the step's matmul-class FLOPs (2 x MACs of convolutions, linear layers and
  matmuls, forward and, in training, backward; counted on the meta device) over the median
  time, against the device's matmul-class ceiling (the best of several GEMMs and a large
  convolution, measured once per device, dtype and thread count in a child process so it cannot
  disturb the rows). A row above the ceiling shows no utilisation and a ``ceiling_low`` warning;
  a ceiling whose own calls spread widely, or that was measured on a busy machine, puts
  ``ceiling_spread`` / ``ceiling_busy`` / ``ceiling_steal`` in every row that uses it.
* The machine: other processes' CPU use and CPU steal are sampled around each row; a busy
  machine, steal or a wide spread put a warning code in the row
  (:func:`archprobe.runtime.load.machine_warnings`, shared with training epochs and ceilings).
* Memory: peak CUDA allocated/reserved on CUDA; on CPU the peak of live tensor bytes of one
  more step after the timed ones (the process's RSS would depend on what ran before).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from archprobe.bench.ceiling import measure_ceiling
from archprobe.errors import ModelCodeError, UsageError, first_line
from archprobe.probe import Mode, Probe
from archprobe.results import Ceiling, ThroughputResult
from archprobe.runtime.backends import Devices, is_oom
from archprobe.runtime.load import load_between, machine_warnings, sample
from archprobe.runtime.memory import live_peak
from archprobe.runtime.precision import check_dtype, compute_dtype
from archprobe.runtime.step import seeded
from archprobe.runtime.timing import MAX_ITERS, Clock, run_timed, summarize
from archprobe.runtime.workload import Workload, step_workload
from archprobe.user_code import running_user_code

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.zoo.spec import ModelSpec

MODES = (Mode.EVAL, Mode.TRAIN)
OPTIMIZER = "sgd"  # a key of runtime.step.OPTIMIZERS: the training step's optimizer
RESULT_FIELDS = tuple(f.name for f in fields(ThroughputResult))
ERROR_LIMIT = 300  # characters of a failed row's error kept in the row


@dataclass(frozen=True)
class ThroughputConfig:
    """How one row is measured (the batch size and mode are part of it)."""

    mode: Mode = Mode.EVAL
    batch_size: int = 1
    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None  # CPU threads; None: the number of physical cores
    warmup: int = 5  # at least this many warm-up iterations ...
    warmup_time: float = 1.0  # ... and at least this many seconds
    min_iters: int = 10  # timed phase: at least this many iterations ...
    min_time: float = 2.0  # ... and at least this many seconds
    max_iters: int = MAX_ITERS  # bounds each phase (and the CUDA events of a very fast model)
    cudnn_benchmark: bool = True
    utilisation: bool = True  # count FLOPs and measure the matmul ceiling

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.of(self.mode))
        check_dtype(self.dtype)
        if self.batch_size <= 0:
            raise UsageError(f"must be positive, not {self.batch_size}", param="batch_size")
        if self.threads is not None and self.threads <= 0:
            raise UsageError(f"must be positive, not {self.threads}", param="threads")
        for name in ("warmup", "warmup_time", "min_time"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:  # NaN passes every comparison
                raise UsageError(f"must be a finite number, not negative: {value!r}", param=name)
        if not 1 <= self.min_iters <= self.max_iters:
            raise UsageError(f"must be between 1 and {self.max_iters}, not {self.min_iters}", param="min_iters")


def build_workload(spec: "ModelSpec", device, config: ThroughputConfig,
                   wrap: Callable[[Any], Any] | None = None) -> Workload:
    """The model with real weights (seeded) on ``device``, and the step of ``config`` to time
    (:func:`archprobe.runtime.workload.step_workload`)."""
    import torch

    with seeded(device):
        torch.manual_seed(0)
        probe = Probe.build(spec, batch_size=config.batch_size, mode=config.mode, device=str(device))
    return step_workload(probe, dtype=config.dtype, channels_last=config.channels_last, compile=config.compile,
                         wrap=wrap)


# --------------------------------------------------------------------------------------------
# The runner: one row at a time, faults recorded in the row
# --------------------------------------------------------------------------------------------
def _model_macs(probe: Probe) -> int | None:
    """MACs of one forward pass (or training step), counted on meta; None where they cannot be."""
    from archprobe.analysis.counting import count_pass

    try:
        return count_pass(probe).macs
    except Exception:  # noqa: BLE001 - utilisation is optional; the row is still measured
        return None


def row_warnings(row: dict, baseline: ThroughputResult | None = None) -> tuple[str, ...]:
    """The warning codes of a measured row (see :class:`ThroughputResult`): the machine's while
    it ran, ``ceiling_low``, those of the ceiling's own measurement when the row uses one, and
    (a data-parallel row) those of its single-process ``baseline``."""
    codes = list(machine_warnings(spread=row.get("spread"), other_cores=row.get("other_cpu_cores"),
                                  steal=row.get("cpu_steal")))
    if row.get("ceiling_flops_per_sec") and row.get("achieved_flops_per_sec", 0) > row["ceiling_flops_per_sec"]:
        codes.append("ceiling_low")
    if row.get("ceiling_flops_per_sec"):
        codes.extend("ceiling_" + code for code in machine_warnings(
            spread=row.get("ceiling_spread"), other_cores=row.get("ceiling_other_cpu_cores"),
            steal=row.get("ceiling_cpu_steal")))
    if baseline is not None and baseline.ok:
        codes.extend("baseline_" + code for code in baseline.warnings if code in ("spread", "busy", "steal"))
    return tuple(codes)


def ceiling_fields(ceiling: Ceiling) -> dict[str, Any]:
    """The row fields of the ceiling behind its utilisation (the figure and how steady it was)."""
    return dict(ceiling_flops_per_sec=ceiling.flops_per_sec, ceiling_shape=ceiling.shape,
                ceiling_precision=ceiling.precision, ceiling_spread=ceiling.spread,
                ceiling_samples=ceiling.samples, ceiling_other_cpu_cores=ceiling.other_cpu_cores,
                ceiling_cpu_steal=ceiling.cpu_steal)


def _optimizer(config: ThroughputConfig) -> str | None:
    if config.mode is not Mode.TRAIN:
        return None
    return OPTIMIZER


class ThroughputRunner(Devices):
    """Measures rows; caches backends, environments, meta models, MAC counts and ceilings for one run.

    ``measure`` never raises for a failing model: an out-of-memory error becomes an ``oom``
    row, anything else an ``error`` row. ``KeyboardInterrupt`` propagates (settings restored).
    """

    def __init__(self, *, clock: Clock = time.perf_counter,
                 backend_factory: Callable[[str], Any] | None = None,
                 macs_fn: Callable[[Probe], int | None] = _model_macs,
                 ceiling_fn: Callable[[str, str, int | None], Ceiling] = measure_ceiling):
        super().__init__(backend_factory, clock)
        self.clock = clock
        self._macs_fn = macs_fn
        self._ceiling_fn = ceiling_fn
        self._meta: dict[int, Probe] = {}
        self._macs: dict[tuple, int | None] = {}
        self.ceilings: dict[tuple, Ceiling | None] = {}

    def meta_probe(self, spec: "ModelSpec") -> Probe:
        """The spec built once on the meta device (size checks and FLOP counts share it)."""
        if id(spec) not in self._meta:
            probe = Probe.build(spec)
            self._meta[id(spec)] = self._meta[id(probe.spec)] = probe
        return self._meta[id(spec)]

    def macs(self, spec: "ModelSpec", batch_size: int, mode: Mode) -> int | None:
        key = (id(spec), batch_size, mode)
        if key not in self._macs:
            self._macs[key] = self._macs_fn(self.meta_probe(spec).with_setting(batch_size=batch_size, mode=mode))
        return self._macs[key]

    def ceiling(self, device: str, dtype: str, threads: int | None) -> Ceiling | None:
        """The matmul-class ceiling for (device, dtype, threads), measured on first use."""
        key = (device, dtype, threads)
        if key not in self.ceilings:
            try:
                self.ceilings[key] = self._ceiling_fn(device, dtype, threads)
            except Exception:  # noqa: BLE001 - utilisation is optional
                self.ceilings[key] = None
        return self.ceilings[key]

    def measure(self, spec: "ModelSpec", device: str, config: ThroughputConfig) -> ThroughputResult:
        meta = self.meta_probe(spec)
        spec = meta.spec  # the input shape settled (channels read off the model)
        dtype = compute_dtype(config.dtype, meta.dtype)
        backend = self.backend(device)
        env = self.environment(device)
        row: dict[str, Any] = dict(
            model=spec.name, device=device, mode=config.mode.value, batch_size=config.batch_size,
            dtype=dtype, input_shape=tuple(spec.input_shape), notes=meta.notes,
            channels_last=config.channels_last, compile=config.compile,
            optimizer=_optimizer(config), **asdict(env),
        )
        with backend.settings(threads=config.threads, cudnn_benchmark=config.cudnn_benchmark) as applied:
            row.update(applied)
            ceiling = self.ceiling(device, dtype, applied["threads"]) if config.utilisation else None
            status, error = "ok", None
            backend.memory_begin()
            before = sample()
            try:
                with running_user_code(f"measuring {spec.name}"):  # builds and runs the model's code
                    row.update(self._time(spec, backend, config))
            except ModelCodeError:  # sys.exit in the model's code ends the run, not just the row
                raise
            except Exception as exc:  # noqa: BLE001 - the row records the failure
                status = "oom" if is_oom(exc) else "error"
                error = first_line(exc, limit=ERROR_LIMIT)
            load = load_between(before, sample())
            row.update(other_cpu_cores=load.other_cores, process_cpu_cores=load.process_cores,
                       cpu_steal=load.steal_share, load_average=load.load_average)
            try:
                row.update(backend.memory_end())
            finally:
                backend.cleanup()
        row.update(status=status, error=error)
        if status == "ok" and config.utilisation:
            macs = self.macs(spec, config.batch_size, config.mode)
            if macs:
                achieved = 2 * macs / (row["median_ms"] / 1e3)
                row.update(matmul_flops_per_iter=2 * macs, achieved_flops_per_sec=achieved)
                if ceiling is not None:
                    row.update(ceiling_fields(ceiling))
                    if achieved <= ceiling.flops_per_sec:  # above it the ceiling is wrong, not the row
                        row.update(utilisation=achieved / ceiling.flops_per_sec)
        row.update(warnings=row_warnings(row))
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
            memory = {}
            if backend.kind == "cpu":  # one more, untimed step, its live tensor bytes counted
                peak = live_peak(work.step, work.alive())
                memory = {"peak_live_tensor_bytes": peak, "peak_memory_bytes": peak}
        del work
        stats = summarize(times)
        return dict(
            examples_per_sec=config.batch_size / stats.median_s if stats.median_s > 0 else None,
            median_ms=stats.median_s * 1e3, iqr_ms=stats.iqr_s * 1e3, p10_ms=stats.p10_s * 1e3,
            p90_ms=stats.p90_s * 1e3, mean_ms=stats.mean_s * 1e3, samples=stats.samples,
            spread=stats.spread, warmup_iters=warm + (1 if config.compile else 0), compile_s=compile_s,
            **memory,
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


def sweep(
    specs: Sequence["ModelSpec"],
    devices: Sequence[str],
    modes: Sequence[Mode],
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
                        on_start(f"{spec.name} {device} {Mode.of(mode).value} b={batch}")
                    row_config = replace(config, mode=Mode.of(mode), batch_size=batch)
                    result = with_speedup(runner.measure(spec, device, row_config), done)
                    done.append(result)
                    yield result
