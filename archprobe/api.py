"""The Python API's doors: each one resolves its models and hands them to the wing that owns the
work (:mod:`archprobe.analysis`, :mod:`archprobe.bench`, :mod:`archprobe.training`); the command
line calls the same wing functions.

A model is a spec string (``"googlenet"``, ``"tv:resnet50"``, ``"timm:convnext_tiny"``,
``"path/file.py:factory"``), a resolved :class:`ModelSpec`, or a live ``nn.Module`` on any
device. A live module is never moved, changed or copied with its weights: the analyses run on a
meta twin, timing on a freshly initialised twin (:mod:`archprobe.zoo.twin`).

``input_size`` is an ``int`` (square side), ``(H, W)``, ``(C, H, W)`` or the command line's
``"CxHxW"`` text; ``{MODEL: SIZE}`` (or ``"MODEL=SIZE"`` texts) gives models their own sizes,
as ``--input-size MODEL=SIZE`` does (:mod:`archprobe.zoo.sizes`). Without it a zoo or library model takes its default size; a user factory or
module takes 224x224 and the channel count of its first input-consuming layer, and the result's
``notes`` say so. ``mode`` is ``"eval"`` (inference) or ``"train"`` (a :class:`Mode`) in every
door.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from archprobe.probe import Mode, Probe
from archprobe.results import (
    CostBreakdown,
    EpochRow,
    LayerTable,
    MemoryResult,
    MinInputResult,
    ModelCounts,
    Report,
    SweepCell,
    SweepRun,
    ThroughputResult,
    TrainRun,
    ZooEntry,
)
from archprobe.runtime.distributed import DEFAULT_TIMEOUT_S
from archprobe.zoo.resolution import ModelLike, as_spec

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import pandas as pd

    from archprobe.results import ProfileResult
    from archprobe.training.outputs import RunDirectory
    from archprobe.zoo.spec import ModelSpec


def probe(model: ModelLike, input_size=None, *, batch_size: int = 1, mode: str | Mode = Mode.EVAL,
          device: str = "meta", in_channels: int | None = None, num_classes: int | None = None) -> Probe:
    """The run context of ``model``: built once (meta device by default), with its input shape,
    batch size and mode."""
    spec = as_spec(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    return Probe.build(spec, batch_size=batch_size, mode=Mode.of(mode), device=device)


# --- static analysis (archprobe.analysis) -------------------------------------------------------


def count(model: ModelLike, input_size=None, *, batch_size: int = 1, mode: str | Mode = Mode.EVAL,
          counter: str = "archprobe", in_channels: int | None = None,
          num_classes: int | None = None) -> ModelCounts:
    """Parameters, MACs and FLOPs of ``model`` on the meta device (no weights allocated).

    Conventions: ``macs`` are multiply-accumulates of convolution, linear and matmul only
    (torchvision's ``_ops``; fvcore/ptflops/thop count the same); ``flops`` are 2 per MAC plus
    normalisation, pooling, activation and elementwise work. ``params_forward`` counts the
    parameters an eval forward reads (aux heads excluded).

    Args:
        model: a spec string, a :class:`ModelSpec` or an ``nn.Module`` (never touched).
        input_size: ``int``, ``(H, W)`` or ``(C, H, W)``; default: the model's.
        batch_size: examples per batch; counts scale with it.
        mode: ``"train"`` also counts one training step (forward in training mode,
            cross-entropy, backward) as ``train_macs``/``train_flops``.
        counter: ``"fvcore"`` adds fvcore's count on real CPU tensors: ``fvcore_macs`` (its
            conv/linear/matmul part, comparable with ``macs``) and ``fvcore_total`` (its total).

    Returns:
        A :class:`ModelCounts`.
    """
    from archprobe.analysis.counting import count as count_probe

    p = probe(model, input_size, batch_size=batch_size, mode=mode, in_channels=in_channels,
              num_classes=num_classes)
    return count_probe(p, counter=counter)


def layers(model: ModelLike, input_size=None, *, batch_size: int = 1, depth: int | None = None,
           rf: bool = False, in_channels: int | None = None, num_classes: int | None = None) -> LayerTable:
    """The per-layer rows of ``archprobe shapes``: every module call's output shape and its own
    parameters, MACs and FLOPs (eval mode). Rows deeper than ``depth`` fold into their parent, so
    the rows always sum to the totals. ``rf`` adds each row's receptive field, effective stride
    and the centre of its first unit's field, in input pixels (``rf_global``: every unit sees the
    whole input).

    Returns:
        A :class:`LayerTable` (``.rows``, ``.params``, ``.macs``, ``.flops``).
    """
    from archprobe.analysis.shapes import layer_table

    p = probe(model, input_size, batch_size=batch_size, in_channels=in_channels, num_classes=num_classes)
    return layer_table(p, depth=depth, rf=rf)


def breakdown(model: ModelLike, input_size=None, *, by: str = "operator", depth: int | None = None,
              batch_size: int = 1, mode: str | Mode = Mode.EVAL, in_channels: int | None = None,
              num_classes: int | None = None) -> CostBreakdown:
    """The MACs and FLOPs of :func:`count`, broken down by aten operator or by module (fvcore's
    ``by_operator`` and ``by_module``; ``archprobe params --by``). The same count gives both, so
    the rows add up to ``count(...).macs`` and ``.flops`` exactly.

    Args:
        model: a spec string, a :class:`ModelSpec` or an ``nn.Module`` (never touched).
        by: ``"operator"``: a row per aten operator that costs something, with its calls;
            ``"module"``: a row per module down to ``depth`` (the model is 0; None: all), with
            all it runs (the modules inside it included, as ``FlopCounterMode`` counts per
            module) and ``own_macs``/``own_flops``, what no row below it holds.
        mode: ``"train"`` (by operator): one training step, forward, loss and backward.

    Returns:
        A :class:`CostBreakdown` (``.rows`` of :class:`CostRow`, ``.macs``, ``.flops``).
    """
    from archprobe.analysis.breakdown import breakdown as breakdown_probe

    p = probe(model, input_size, batch_size=batch_size, mode=mode, in_channels=in_channels,
              num_classes=num_classes)
    return breakdown_probe(p, by=by, depth=depth)


def min_input(model: ModelLike, input_size=None, *, batch_size: int = 1, mode: str | Mode = Mode.EVAL,
              max_size: int = 4096, explain: bool = False,
              progress: Callable[[int, int], None] | None = None,
              in_channels: int | None = None, num_classes: int | None = None) -> MinInputResult:
    """The exact set of input sizes ``model`` accepts ("valid" = the forward pass runs).

    ``input_size`` gives the channel count and the anchor size (the default (H, W), at which the
    per-dimension minima are taken). ``mode="train"`` solves for training mode (BatchNorm needs more
    than one value per channel; aux heads run), where ``batch_size`` matters.

    Returns:
        A :class:`MinInputResult`: ``.min_size`` (the smallest valid input), ``.valid`` (square
        sides as intervals), ``.valid_h``/``.valid_w``, ``.limiting_layer``, ``.method``.
    """
    from archprobe.analysis.min_input import solve_min_input

    p = probe(model, input_size, batch_size=batch_size, mode=mode, in_channels=in_channels,
              num_classes=num_classes)
    return solve_min_input(p, max_size=max_size, explain=explain, progress=progress)


def memory(model: ModelLike, input_size=None, *, batch_size: int = 32, mode: str | Mode = Mode.EVAL,
           optimizer: str = "sgd", dtype: str = "float32", device: str | None = None,
           fit: int | str | None = None, in_channels: int | None = None,
           num_classes: int | None = None) -> MemoryResult:
    """The predicted peak memory of one step of ``model``, allocating no weights.

    The peak of live tensor bytes during one eval forward under ``inference_mode``, or in
    ``mode="train"`` one steady-state training step (zero_grad, forward, cross-entropy, backward,
    optimizer step, the optimizer state already present), with its breakdown at the peak
    (parameters, buffers, gradients, optimizer state, activations, temporaries, the input) and
    the module running when it is reached. Allocator rounding and caching, cuDNN/cuBLAS
    workspaces and the CUDA context are not included.

    Args:
        model: a spec string, a :class:`ModelSpec` or an ``nn.Module`` (never touched).
        batch_size: examples per batch (ignored with ``fit``).
        optimizer: ``"sgd"`` (lr 0.001, momentum 0.9, as the throughput engine) or ``"adam"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (autocast on the forward).
        device: the device whose step is modelled, ``"cuda"`` (multi-tensor optimizer kernels)
            or ``"cpu"``; by default cuda where one is visible, else cpu.
        fit: a memory budget (bytes, or text such as ``"24GiB"``): find the largest batch whose
            peak fits; the row is that batch's, with ``max_batch_size`` and ``budget_bytes``.

    Returns:
        A :class:`MemoryResult` (bytes: ``peak_bytes``, ``param_bytes`` ...).
    """
    from archprobe.analysis.memory import memory_rows
    from archprobe.units import parse_bytes

    spec = as_spec(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    budget = parse_bytes(fit, param="fit") if fit is not None else None
    (row,) = memory_rows([spec], [Mode.of(mode)], [batch_size], optimizer=optimizer, dtype=dtype,
                         device=device, budget=budget)
    return row


# --- measurements (archprobe.bench, archprobe.training) ------------------------------------------


def throughput(model: ModelLike, input_size=None, *, device: str = "cpu", batch_size: int = 32,
               mode: str | Mode = "eval", dtype: str = "float32", channels_last: bool = False,
               compile: bool = False, threads: int | None = None, min_time: float = 2.0,
               warmup_time: float = 1.0, utilisation: bool = True, in_channels: int | None = None,
               num_classes: int | None = None, nproc: int | None = None,
               timeout: float = DEFAULT_TIMEOUT_S) -> ThroughputResult:
    """Examples/sec of ``model`` on a real device, in eval (inference) or train mode.

    The model is built with fresh weights on ``device`` (a live module through a twin) and fed
    synthetic data; a training step is zero_grad, forward, cross-entropy, backward, SGD step.
    ``examples_per_sec`` = batch / median time per iteration after warm-up.

    ``nproc``: measure ``nproc`` data-parallel ranks instead (see
    :func:`archprobe.bench.sweeps.distributed_sweep`;
    ``model`` must then be a spec string, and a script calling this needs the usual
    ``if __name__ == "__main__":`` guard, as the ranks are spawned processes).

    Returns:
        A :class:`ThroughputResult` (``status`` is ``"oom"`` or ``"error"`` when it failed).
    """
    from archprobe.bench.sweeps import distributed_sweep, throughput_sweep
    from archprobe.bench.throughput import ThroughputConfig
    from archprobe.runtime.backends import resolve_devices

    config = ThroughputConfig(dtype=dtype, channels_last=channels_last, compile=compile, threads=threads,
                              min_time=min_time, warmup_time=warmup_time, utilisation=utilisation)
    if nproc is not None:
        (row,) = distributed_sweep([model], [device], [Mode.of(mode)], [batch_size], config, nprocs=[nproc],
                                   input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                                   timeout=timeout)
        return row
    spec = as_spec(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    devices, _ = resolve_devices([device])
    (row,) = throughput_sweep([spec], devices[:1], [Mode.of(mode)], [batch_size], config)
    return row


def profile(model: ModelLike, input_size=None, *, device: str = "cpu", batch_size: int = 32,
            mode: str | Mode = "eval", depth: int | None = 2, dtype: str = "float32", threads: int | None = None,
            warmup: int = 5, warmup_time: float = 1.0, min_iters: int = 10, min_time: float = 2.0,
            in_channels: int | None = None, num_classes: int | None = None) -> "ProfileResult":
    """Where one step of ``model`` spends its time, layer by layer (``archprobe profile``).

    Each module at ``depth`` (deeper ones fold into it; ``None``: every module) gets its forward
    time and, in ``mode="train"``, its backward time; the loss, the optimizer step (zero_grad
    and SGD's step) and what no layer owns (``"(unattributed)"``) are rows too, so the rows add
    up to the step. Times are ``torch.profiler``'s (op self-times on CPU, kernel times on CUDA),
    medians over the profiled repeats, in seconds; beside them each row's MACs and FLOPs (FLOPs =
    2 x MACs for conv/linear/matmul, plus the other arithmetic), bytes read and written,
    achieved FLOP/s, intensity and roofline bound. Warm-up and repeats as in :func:`throughput`.

    Returns:
        A :class:`ProfileResult` (``.rows``, ``.step_s``, ``.throughput_step_s``,
        ``.profiler_overhead``, ``.coverage``; ``status`` ``"oom"``/``"error"`` when it failed).
    """
    from archprobe.bench.profile import check_depth, profile_sweep
    from archprobe.bench.throughput import ThroughputConfig
    from archprobe.runtime.backends import resolve_devices

    config = ThroughputConfig(mode=Mode.of(mode), batch_size=batch_size, dtype=dtype, threads=threads,
                              warmup=warmup, warmup_time=warmup_time, min_iters=min_iters, min_time=min_time)
    spec = as_spec(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    devices, _ = resolve_devices([device])
    (result,) = profile_sweep([spec], devices[0], config, depth=check_depth(depth))
    return result


def run_directory(output: str | Path, *, runs: Iterable[tuple[str, str]] = (), resume: bool = False,
                  force: bool = False) -> "RunDirectory":
    """The training directory ``output`` (locked) with the report's plot and machine records;
    ``runs``: the (model, device) pairs about to train (``force`` replaces their checkpoints)."""
    from archprobe.report.frames import machine
    from archprobe.report.plots import training_curves
    from archprobe.training.outputs import RunDirectory

    return RunDirectory(output, runs=runs, resume=resume, force=force, draw_curves=training_curves,
                        record=machine)


def train(models: ModelLike | Iterable[ModelLike], *, dataset: str = "fashion-mnist", data_root=None,
          download: bool = False, device: str | Sequence[str] | None = None, output=None, resume: bool = False,
          force: bool = False, workers: int = 0, threads: int | None = None, limit_train: int | None = None,
          limit_test: int | None = None, on_epoch: Callable[[EpochRow, TrainRun], None] | None = None,
          nproc: int | None = None, timeout: float = DEFAULT_TIMEOUT_S, exclude: str | Iterable[str] | None = None,
          **overrides: Any) -> list[TrainRun]:
    """Train models on a real data set the book's way and return one run per model and device.

    Each Dive-into-DL zoo model trains with the book's recipe
    (:func:`archprobe.training.plan.training_recipes`);
    keyword overrides (``epochs=``, ``lr=``, ``optimizer=``, ``batch_size=``, ``resize=``,
    ``label_smoothing=``, ...) change it, and every run records the recipe it used. Images are
    scaled to [0, 1] and resized on the device. Per epoch: train loss (mean per example),
    train and test accuracy, examples/sec (training examples / training time, evaluation
    excluded: the book's definition) and the epoch's seconds.

    Args:
        models: zoo names, spec strings, specs or modules (a live module trains as a fresh twin;
            its own weights are never touched); globs (``'*-d2l'``) expand.
        exclude: globs of models to leave out of ``models``.
        dataset: ``fashion-mnist``, ``mnist``, ``cifar10`` or ``fake`` (generated in memory).
        data_root: where the data sets are (default ``~/.cache/archprobe/data``); nothing is
            downloaded unless ``download`` is true.
        device: ``cpu``, ``cuda``, ``all`` (each available device), or a list of them; default:
            CUDA if usable, else the CPU.
        output: a directory for ``train.csv``, ``train.json``, ``train.png`` and checkpoints,
            written as each epoch ends; ``resume`` continues its runs from their last finished
            epoch up to ``epochs`` in all, ``force`` replaces them.
        limit_train, limit_test: use only the first N examples of each split.
        workers: ``DataLoader`` workers, used only for a data set too large for the device.
        threads: CPU threads (default: the number of physical cores; per rank with ``nproc``,
            default: the cores split between the ranks).
        on_epoch: called with each finished epoch's :class:`EpochRow` and the run so far.
        nproc: train each model on this many data-parallel ranks on this machine
            (torch.distributed's launcher, DistributedDataParallel, each rank a
            DistributedSampler share of every epoch; gloo on ``cpu``, NCCL on ``cuda`` with one
            GPU per rank). ``batch_size`` is then per rank; every epoch's figures are global.
            Models must be spec strings, ``device`` one kind; a script calling this needs the
            usual ``if __name__ == "__main__":`` guard.
        timeout: with ``nproc``, the seconds a rank waits for its peers before the run fails.

    Returns:
        A :class:`TrainRun` per model and device (``status`` ``ok``, ``diverged``, ``oom`` or
        ``error``; a failing run never stops the others).

    Raises:
        UsageError: bad input (unknown model or data set, missing data, a size a model cannot
            take, a recipe value no training can use), before anything trains.
        TrainingInterrupted: on Ctrl-C, a ``KeyboardInterrupt`` whose ``run`` holds the
            interrupted run's finished epochs (on disk too, with ``output``).
    """
    from archprobe.training.plan import plan_training
    from archprobe.training.runner import TrainRunner
    from archprobe.training.sweep import train_sweep
    from archprobe.zoo.resolution import model_list

    plan = plan_training(model_list(models), dataset=dataset, data_root=data_root, download=download, device=device,
                         threads=threads,
                         limit_train=limit_train, limit_test=limit_test, nproc=nproc, timeout=timeout,
                         exclude=exclude, **overrides)
    directory = run_directory(output, runs=plan.runs, resume=resume, force=force) if output is not None else None
    return list(train_sweep(plan, runner=TrainRunner(threads=threads), output=directory, resume=resume,
                            workers=workers, on_epoch=on_epoch))


# --- the zoo, frames and the report --------------------------------------------------------------


def list_models(pattern: str | Sequence[str] | None = None,
                exclude: str | Sequence[str] | None = None) -> list[ZooEntry]:
    """The zoo entries whose names match ``pattern`` (globs) and not ``exclude``, in natural order."""
    from archprobe.zoo.resolution import zoo_entries

    return zoo_entries(pattern, exclude)


def expand(models: str | Iterable[str], exclude: str | Iterable[str] | None = None) -> list[str]:
    """The spec strings ``models`` name: zoo globs (``'resnet*'``) and library globs (``'tv:*'``,
    ``'timm:convnext*'``) expanded offline in natural order, ``exclude`` globs left out, repeats
    kept once; every command expands its models the same way."""
    from archprobe.zoo.resolution import expand as expand_specs

    return expand_specs([models] if isinstance(models, str) else models, exclude)


def sweep(models: str | Iterable[str], output: str | Path, *, analyses: Sequence[str] = ("params",),
          exclude: str | Iterable[str] | None = None, jobs: int = 1, cell_timeout: float = 600.0,
          cell_memory: int | str | None = None, shard: str | tuple[int, int] | None = None,
          retry_failed: bool = False, mode: str = "eval", batch_size: int = 32, device: str = "cpu",
          input_size=None, in_channels: int | None = None, num_classes: int | None = None,
          min_time: float = 2.0, on_cell: Callable[[SweepCell], None] | None = None) -> SweepRun:
    """Every model x analysis of ``models`` (spec strings; globs expand) into the store in
    directory ``output``, each cell in a worker process with a time limit and a memory guard,
    written as it ends; cells already stored (same spec, analysis, options, library versions)
    are not computed again. See :func:`archprobe.bench.atlas.run_sweep`.

    Args:
        analyses: of ``params``, ``min-input``, ``memory``, ``shapes``, ``throughput``.
        jobs: worker processes (at most the machine's CPUs).
        cell_timeout: seconds a cell may run (then ``"timeout"``).
        cell_memory: bytes (or text, ``"4GiB"``) a cell may allocate beyond its worker's own
            (then ``"oom"``); default: 3/4 of the machine's memory shared between the jobs.
        shard: ``"I/N"``: the I-th of N deterministic shares of the cells.
        retry_failed: compute again the stored cells that did not end ``"ok"``.
        mode, batch_size, device: params/min-input/memory/throughput's mode; memory and
            throughput's batch and device (static analyses run at batch 1).

    Returns:
        A :class:`SweepRun`: ``.cells`` (:class:`SweepCell`: ``status``, ``error``, ``result``).
    """
    from archprobe.bench.atlas import SweepConfig, run_sweep
    from archprobe.units import parse_bytes

    config = SweepConfig(mode=Mode.of(mode).value, batch_size=batch_size, device=device, input_size=input_size, in_channels=in_channels,
                         num_classes=num_classes, min_time=min_time)
    memory = parse_bytes(cell_memory, param="cell_memory") if cell_memory is not None else None
    return run_sweep([models] if isinstance(models, str) else list(models), list(analyses), output,
                     config=config, exclude=[exclude] if isinstance(exclude, str) else list(exclude or ()),
                     jobs=jobs, cell_timeout=cell_timeout, cell_memory=memory, shard=shard,
                     retry_failed=retry_failed, on_cell=on_cell)


def sweep_report(directory: str | Path, output: str | Path | None = None, *, force: bool = False) -> list[Path]:
    """The report of the sweep store in ``directory`` (``archprobe report --from``), written into
    ``output`` (default ``directory/report``): a table and CSV per analysis, the failures, and
    accuracy against MACs, parameters and throughput with the Pareto fronts (``pareto.csv``).
    ``force`` replaces such a report already there. Returns the files' paths."""
    from pathlib import Path

    from archprobe.report.atlas import write_atlas

    return write_atlas(directory, output if output is not None else Path(directory) / "report", force=force)


def to_frame(results: Any) -> "pd.DataFrame":
    """A pandas DataFrame of results, with the same columns (base units) as the CSV output.

    Takes one result or a sequence of results of one type; a :class:`LayerTable` or a
    :class:`CostBreakdown` gives its rows.
    """
    from archprobe.report.frames import machine_frame

    if isinstance(results, (LayerTable, CostBreakdown)):
        results = results.rows
    elif not isinstance(results, (list, tuple)):
        results = [results]
    return machine_frame(list(results))


def report(models: Iterable[ModelLike], *, memory: bool = True, memory_batch_sizes: Sequence[int] = (32,),
           measure: Callable[[Sequence["ModelSpec"]], Sequence[ThroughputResult]] | None = None,
           on_progress: Callable[[str], None] | None = None, exclude: str | Iterable[str] | None = None,
           **options: Any) -> Report:
    """Everything ``archprobe report`` shows for ``models`` (zoo and library globs expand, less
    those matching ``exclude``), as one :class:`Report` (see
    :func:`archprobe.analysis.comparison.compare`); ``options`` are ``input_size``,
    ``in_channels`` and ``num_classes``."""
    from archprobe.analysis.comparison import compare
    from archprobe.zoo.resolution import resolve_all

    return compare(resolve_all(models, exclude, **options), measure=measure, on_progress=on_progress, memory=memory,
                   memory_batch_sizes=memory_batch_sizes)
