"""Data-parallel throughput through torch.distributed: one model replica per rank.

Methodology (design.md, "Past one device"):

* Ranks: ``N`` local processes started by torch.distributed's elastic launcher (the API torchrun
  uses, :func:`archprobe.runtime.launch.launch_local`), or the processes ``torchrun`` started on one or many nodes
  (:func:`group_sweep`). gloo between CPU ranks, whose node's physical cores are split between
  them (``threads`` per rank, recorded); NCCL between GPUs, one per rank (``cuda:LOCAL_RANK``).
* train: each rank wraps its model in ``DistributedDataParallel`` and runs the runtime's
  training step on its own synthetic batch of ``batch_size`` examples (the global batch is
  ``batch_size x world_size``); eval: independent ranks (no DDP), each running inference.
* Timing: a warm-up whose end all ranks agree on, then the same number of timed steps on every
  rank, each rank timing its own steps with its backend's timer (CUDA events on a GPU) and no
  barrier inside the timed loop. A step's time is the slowest rank's: the per-step maximum over
  ranks (all-reduce MAX). ``examples_per_sec`` = ``batch_size x world_size`` / median of those
  maxima; the IQR and percentiles are over the same maxima; each rank's own median is kept.
* ``scaling_efficiency`` = that rate / (``world_size`` x one process's rate at the same
  per-rank batch, threads and device), the single process measured in the same run by the
  plain runner (:class:`archprobe.bench.throughput.ThroughputRunner`).
* The machine: every rank samples its CPU time and ``/proc/stat`` from a barrier before it
  builds its model to the reduction after its timed steps; rank 0 gathers the windows and
  counts as "other processes" only what none of the ranks did (per host, the busiest host's;
  :func:`archprobe.runtime.load.group_load`), so a busy machine, CPU steal and a wide spread
  put the single-process rows' warning codes in the row, with the baseline's and the ceiling's.
* Faults: a rank that raises or dies turns its row into an ``error`` row naming the rank and
  its message; collectives time out after ``timeout_s`` (the process-group timeout), and the
  launcher stops the other ranks as soon as one has failed. Ctrl-C stops every rank.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from archprobe.bench.throughput import (
    ERROR_LIMIT,
    ThroughputConfig,
    ThroughputRunner,
    _optimizer,
    build_workload,
    row_warnings,
)
from archprobe.errors import first_line
from archprobe.probe import Mode, Probe
from archprobe.results import ThroughputResult
from archprobe.runtime.backends import make_backend
from archprobe.runtime.distributed import (
    DEFAULT_TIMEOUT_S,
    PEER_GRACE_S,
    Collectives,
    RankInfo,
    agreed_warmup,
    backend_for,
    follows_a_peer,
    join_group,
    leave_group,
    process_group,
    publish_failure,
    published_failure,
    rank_device,
    rank_failed,
    rank_threads,
    tidy_message,
    timed_iterations,
)
from archprobe.runtime.launch import RankFailure, launch_local
from archprobe.runtime.load import group_load, sample, window
from archprobe.runtime.precision import compute_dtype
from archprobe.runtime.timing import Clock, run_counted, summarize

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.zoo.spec import ModelSpec


@dataclass(frozen=True)
class RankJob:
    """What every rank of a local launch runs: picklable, so the model travels as its spec text
    and options and is resolved in each rank (a live module cannot be sent)."""

    model: str
    model_options: Mapping[str, Any]  # input_size / in_channels / num_classes as given
    device: str  # "cpu" or "cuda"
    config: ThroughputConfig  # threads: per rank
    timeout_s: float = DEFAULT_TIMEOUT_S
    cwd: str | None = None  # the caller's directory (relative model paths); a forked rank starts elsewhere


@dataclass(frozen=True)
class GroupTiming:
    """The measurements of every rank, reduced on the group and returned by rank 0."""

    step_max_s: tuple[float, ...]  # per timed step, the slowest rank's time
    rank_median_s: tuple[float, ...]
    rank_hosts: tuple[str, ...]
    rank_device_names: tuple[str, ...]  # "cuda:0 NVIDIA H200", "cpu AMD EPYC"
    world_size: int
    local_world_size: int
    nnodes: int
    warmup_iters: int
    threads: int | None
    cudnn_benchmark: bool | None
    memory: Mapping[str, int]  # each memory field's maximum over ranks
    compile_s: float | None = None
    nccl_version: str | None = None
    # the machine while the ranks ran (runtime.load.group_load over every rank's window)
    other_cpu_cores: float | None = None
    process_cpu_cores: float | None = None
    cpu_steal: float | None = None
    load_average: float | None = None


# --------------------------------------------------------------------------------------------
# Every rank
# --------------------------------------------------------------------------------------------
def time_in_group(spec: "ModelSpec", config: ThroughputConfig, device_kind: str, info: RankInfo, *,
                  clock: Clock = time.perf_counter, backend=None,
                  collectives: Collectives | None = None) -> GroupTiming | None:
    """Measure ``spec`` on this rank of the joined group; every rank calls it with the same
    arguments. Rank 0 returns the group's :class:`GroupTiming`, the others ``None``.

    ``backend`` and ``collectives`` default to the rank's device (``cuda:LOCAL_RANK`` or the
    CPU); tests pass fakes to run the CUDA path without a GPU.
    """
    import torch

    device = rank_device(device_kind, info.local_rank)
    backend = backend or make_backend(device, clock)
    collectives = collectives or Collectives(device)
    threads = rank_threads(device_kind, config.threads, info.local_world_size)
    collectives.barrier()  # the ranks' load windows start together
    start = sample()
    with backend.settings(threads=threads, cudnn_benchmark=config.cudnn_benchmark) as applied:
        backend.memory_begin()
        try:
            times, warm, compile_s = _time_rank(spec, backend, config, collectives, clock)
        finally:
            memory = backend.memory_end()
            backend.cleanup()
    step_max = collectives.max(times)
    end = sample()  # the ranks leave the reduction together
    name = backend.environment().device_name
    mine = (summarize(times).median_s, (socket.gethostname(), f"{backend.label} {name}"), memory, compile_s,
            window(start, end))
    ranks = collectives.gather(mine)
    if info.rank != 0:
        return None
    compiles = [r[3] for r in ranks if r[3] is not None]
    load = group_load([r[4] for r in ranks])
    return GroupTiming(
        step_max_s=tuple(step_max),
        rank_median_s=tuple(r[0] for r in ranks),
        rank_hosts=tuple(r[1][0] for r in ranks),
        rank_device_names=tuple(r[1][1] for r in ranks),
        world_size=info.world_size,
        local_world_size=info.local_world_size,
        nnodes=info.nnodes,
        warmup_iters=warm,
        threads=applied["threads"],
        cudnn_benchmark=applied["cudnn_benchmark"],
        memory={key: max(r[2][key] for r in ranks if key in r[2]) for key in ranks[0][2]},
        compile_s=max(compiles) if compiles else None,
        nccl_version=".".join(map(str, torch.cuda.nccl.version())) if device_kind == "cuda" else None,
        other_cpu_cores=load.other_cores, process_cpu_cores=load.process_cores, cpu_steal=load.steal_share,
        load_average=load.load_average,
    )


def _time_rank(spec: "ModelSpec", backend, config: ThroughputConfig, collectives: Collectives,
               clock: Clock) -> tuple[list[float], int, float | None]:
    """(per-step seconds of this rank, warm-up steps, compile seconds) for the agreed counts."""
    wrap = None
    if config.mode is Mode.TRAIN:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [backend.device.index] if backend.device.type == "cuda" else None
        wrap = lambda model: DistributedDataParallel(model, device_ids=device_ids)  # noqa: E731
    work = build_workload(spec, backend.device, config, wrap=wrap)
    compile_s = None
    with work.context():
        if config.compile:  # the first call compiles: timed on its own, kept out of the stats
            began = clock()
            work.step()
            backend.synchronize()
            compile_s = clock() - began
        warm, seconds_per_step = agreed_warmup(work.step, backend.synchronize, collectives.max,
                                               warmup=config.warmup, warmup_time=config.warmup_time, clock=clock)
        iterations = timed_iterations(seconds_per_step, min_iters=config.min_iters, min_time=config.min_time,
                                      max_iters=config.max_iters)
        times = run_counted(work.step, backend.timer(), iterations)
    del work
    return times, warm + (1 if config.compile else 0), compile_s


def rank_entry(job: RankJob) -> GroupTiming | None:
    """The launcher's entrypoint, run by every rank of a local launch (module level: the rank
    processes look it up by name)."""
    from archprobe.zoo.resolution import as_spec

    info = RankInfo.from_env()
    if job.cwd:
        os.chdir(job.cwd)
    try:
        with process_group(backend_for(job.device), rank_device(job.device, info.local_rank), job.timeout_s):
            spec = as_spec(job.model, **job.model_options)
            return time_in_group(spec, job.config, job.device, info)
    except Exception as exc:
        rank_failed(exc, info)
        raise


def launch_ranks(job: RankJob, nproc: int) -> GroupTiming:
    """Time ``job`` on ``nproc`` local ranks (:func:`archprobe.runtime.launch.launch_local`);
    rank 0's :class:`GroupTiming`. Raises :class:`RankFailure` and ``KeyboardInterrupt`` as it does."""
    return launch_local(rank_entry, job, nproc)[0]


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------
def distributed_row(meta: Probe, device_kind: str, config: ThroughputConfig, environment,
                    timing: GroupTiming | None, baseline: ThroughputResult | None, *, world_size: int,
                    nproc_per_node: int, nnodes: int, error: str | None = None) -> ThroughputResult:
    """One data-parallel row of the model ``meta`` holds (built on meta, its input settled): the
    group's timing (or the failure), the baseline and the setup."""
    spec = meta.spec
    row: dict[str, Any] = dict(
        model=spec.name, device=device_kind, mode=config.mode.value, batch_size=config.batch_size,
        dtype=compute_dtype(config.dtype, meta.dtype), input_shape=tuple(spec.input_shape), notes=meta.notes,
        channels_last=config.channels_last,
        compile=config.compile, optimizer=_optimizer(config), threads=config.threads,
        **asdict(environment),
        world_size=world_size, nproc_per_node=nproc_per_node, nnodes=nnodes, backend=backend_for(device_kind),
        global_batch_size=config.batch_size * world_size,
    )
    if baseline is not None and baseline.ok:
        row["single_process_examples_per_sec"] = baseline.examples_per_sec
    if timing is None:
        return ThroughputResult(**row, status="error", error=error)
    stats = summarize(timing.step_max_s)
    examples = config.batch_size * timing.world_size / stats.median_s if stats.median_s > 0 else None
    row.update(
        status="ok", examples_per_sec=examples, median_ms=stats.median_s * 1e3, iqr_ms=stats.iqr_s * 1e3,
        p10_ms=stats.p10_s * 1e3, p90_ms=stats.p90_s * 1e3, mean_ms=stats.mean_s * 1e3, samples=stats.samples,
        spread=stats.spread, warmup_iters=timing.warmup_iters, compile_s=timing.compile_s,
        threads=timing.threads, cudnn_benchmark=timing.cudnn_benchmark, **timing.memory,
        rank_median_ms=tuple(m * 1e3 for m in timing.rank_median_s), rank_hosts=timing.rank_hosts,
        rank_device_names=timing.rank_device_names,
        nccl_version=timing.nccl_version,
        other_cpu_cores=timing.other_cpu_cores, process_cpu_cores=timing.process_cpu_cores,
        cpu_steal=timing.cpu_steal, load_average=timing.load_average,
    )
    single = row.get("single_process_examples_per_sec")
    if examples and single:
        row["scaling_efficiency"] = examples / (timing.world_size * single)
    if examples and baseline is not None and baseline.matmul_flops_per_iter:
        flops = baseline.matmul_flops_per_iter * timing.world_size  # every rank's step
        achieved = flops / stats.median_s
        row.update(matmul_flops_per_iter=flops, achieved_flops_per_sec=achieved)
        if baseline.ceiling_flops_per_sec:
            ceiling = timing.world_size * baseline.ceiling_flops_per_sec  # one ceiling per rank
            row.update(ceiling_flops_per_sec=ceiling, ceiling_shape=baseline.ceiling_shape,
                       ceiling_precision=baseline.ceiling_precision, ceiling_spread=baseline.ceiling_spread,
                       ceiling_samples=baseline.ceiling_samples,
                       ceiling_other_cpu_cores=baseline.ceiling_other_cpu_cores,
                       ceiling_cpu_steal=baseline.ceiling_cpu_steal)
            if achieved <= ceiling:
                row.update(utilisation=achieved / ceiling)
    row.update(warnings=row_warnings(row, baseline))
    return ThroughputResult(**row)


def _label(spec: "ModelSpec", device: str, config: ThroughputConfig, world_size: int) -> str:
    return f"{spec.name} {device} {config.mode.value} b={config.batch_size} x{world_size}"


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------
def local_sweep(
    models: Sequence[tuple[str, "ModelSpec"]],
    model_options: Mapping[str, Any],
    device_kind: str,
    modes: Sequence[Mode],
    batch_sizes: Sequence[int],
    nprocs: Sequence[int],
    config: ThroughputConfig,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    runner: ThroughputRunner | None = None,
    launch: Callable[[RankJob, int], GroupTiming] = launch_ranks,
    on_start: Callable[[str], None] | None = None,
) -> Iterator[ThroughputResult]:
    """One row per model x mode x batch x world size, each from its own local launch, yielded
    as it is measured; the single-process baseline is measured first (once per per-rank thread
    count). ``models`` pairs each spec text (what the ranks resolve) with its resolved spec."""
    runner = runner or ThroughputRunner()
    baselines: dict[tuple, ThroughputResult] = {}
    for text, spec in models:
        meta = runner.meta_probe(spec)
        spec = meta.spec
        for mode in modes:
            for batch in batch_sizes:
                for nproc in nprocs:
                    row_config = replace(config, mode=Mode.of(mode), batch_size=batch,
                                         threads=rank_threads(device_kind, config.threads, nproc))
                    if on_start is not None:
                        on_start(_label(spec, device_kind, row_config, nproc))
                    key = (text, row_config)
                    if key not in baselines:
                        baselines[key] = runner.measure(spec, device_kind, row_config)
                    timing, error = None, None
                    try:
                        job = RankJob(text, dict(model_options), device_kind, row_config, timeout_s, os.getcwd())
                        timing = launch(job, nproc)
                    except RankFailure as failure:
                        error = str(failure)
                    yield distributed_row(meta, device_kind, row_config, runner.environment(device_kind), timing,
                                          baselines[key], world_size=nproc, nproc_per_node=nproc, nnodes=1,
                                          error=error)


def group_sweep(
    models: Sequence[tuple[str, "ModelSpec"]],
    device_kind: str,
    modes: Sequence[Mode],
    batch_sizes: Sequence[int],
    config: ThroughputConfig,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    runner: ThroughputRunner | None = None,
    on_start: Callable[[str], None] | None = None,
) -> Iterator[ThroughputResult]:
    """The rows of a group another launcher started (torchrun, one or many nodes): this process
    is one rank. Every rank runs the same sweep; rank 0 yields the rows, the others nothing.

    Rank 0 measures each single-process baseline while the other ranks wait at a barrier. A
    failure breaks the group: rank 0 yields an ``error`` row naming the rank that failed first
    (from the launcher's store) and the sweep ends; the other ranks raise (torchrun's summary
    names them). When the launcher stops the group (SIGTERM, after another rank failed), rank 0
    finishes the row in progress and ends the sweep, so its output is still written.
    """
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    info = RankInfo.from_env()
    runner = runner or ThroughputRunner()
    device = rank_device(device_kind, info.local_rank)
    join_group(backend_for(device_kind), device, timeout_s)
    collectives = Collectives(device)
    with _finish_on_sigterm() if info.rank == 0 else contextlib.nullcontext() as stop:
        for _text, spec in models:
            meta = runner.meta_probe(spec)
            spec = meta.spec
            for mode in modes:
                for batch in batch_sizes:
                    row_config = replace(config, mode=Mode.of(mode), batch_size=batch,
                                         threads=rank_threads(device_kind, config.threads, info.local_world_size))
                    if on_start is not None:
                        on_start(_label(spec, device_kind, row_config, info.world_size))
                    baseline, timing, error = None, None, None
                    try:
                        if info.rank == 0:
                            baseline = runner.measure(spec, device, row_config)
                        collectives.barrier()
                        timing = time_in_group(spec, row_config, device_kind, info)
                    except Exception as exc:
                        if info.rank != 0:
                            rank_failed(exc, info)
                            ErrorHandler().record_exception(exc)  # for torchrun's summary
                            raise
                        error = _first_failure(exc, info)
                    if info.rank == 0:
                        yield distributed_row(meta, device_kind, row_config, runner.environment(device), timing,
                                              baseline, world_size=info.world_size,
                                              nproc_per_node=info.local_world_size, nnodes=info.nnodes, error=error)
                    if error is not None or (stop is not None and stop.is_set()):
                        return  # the group is broken, or being stopped
    leave_group()


def _first_failure(exc: BaseException, info: RankInfo) -> str:
    """Rank 0's error message for a failed row of torchrun's group: its own failure, or the
    failure a peer published before it ended."""
    message = tidy_message(first_line(exc, limit=ERROR_LIMIT))
    if not follows_a_peer(exc, info):
        publish_failure(info.rank, message)
        return f"rank {info.rank}: {message}"
    failed = published_failure(info.world_size, PEER_GRACE_S)
    return f"rank {failed[0]}: {failed[1]}" if failed else f"a peer rank failed: {message}"


@contextlib.contextmanager
def _finish_on_sigterm() -> Iterator[threading.Event]:
    """SIGTERM sets the yielded event instead of ending the process (main thread only)."""
    requested = threading.Event()
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
    except ValueError:  # not the main thread: the signal keeps its handler
        yield requested
        return
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)
