"""What each analysis runs, in one place: the Python API and the command line both call these.

A model is a spec string (``"googlenet"``, ``"tv:resnet50"``, ``"timm:convnext_tiny"``,
``"path/file.py:factory"``), a resolved :class:`ModelSpec`, or a live ``nn.Module`` on any
device. A live module is never moved, changed or copied with its weights: the analyses run on a
meta twin, timing on a freshly initialised twin (:mod:`archprobe.zoo.twin`).

``input_size`` is an ``int`` (square side), ``(H, W)``, ``(C, H, W)`` or the command line's
``"CxHxW"`` text. Without it a zoo or library model takes its default size; a user factory or
module takes 224x224 and the channel count of its first input-consuming layer, and the result's
``notes`` say so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, Union

from archprobe.errors import ArchprobeError, SpecError, UsageError
from archprobe.probe import Mode, Probe
from archprobe.runtime.distributed import DEFAULT_TIMEOUT_S
from archprobe.results import (
    EpochRow,
    LayerTable,
    MemoryResult,
    MinInputResult,
    ModelCounts,
    Recipe,
    Report,
    ThroughputResult,
    TrainRun,
    VariantPair,
    ZooEntry,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from torch import nn

    from archprobe.bench.throughput import ThroughputConfig, ThroughputRunner
    from archprobe.training.datasets import ImageData
    from archprobe.training.outputs import RunDirectory
    from archprobe.training.runner import TrainRunner
    from archprobe.zoo.spec import ModelSpec

ModelLike = Union[str, "nn.Module", "ModelSpec"]
D2L_SUFFIX = "-d2l"
PAPER_SUFFIX = "-paper"  # a paper's own layout of a model the libraries build differently


# --- models -> specs -> probes ------------------------------------------------------------------


def expand(models: Iterable[str]) -> list[str]:
    """Zoo globs (``'inception*'``, ``'*'``) expand to the matching zoo names, in zoo order;
    repeated names (in any spelling) are kept once."""
    from archprobe.zoo.registry import canonical_name, list_models

    expanded: list[str] = []
    for model in models:
        if ":" not in model and any(ch in model for ch in "*?["):
            names = [info.name for info in list_models(model)]
            if not names:
                raise SpecError(f"no zoo model matches {model!r}; see 'archprobe list'")
            expanded.extend(names)
        else:
            expanded.append(model)
    seen: dict[str, str] = {}
    for model in expanded:
        key = canonical_name(model) if ":" not in model else model.strip()
        seen.setdefault(key, model)
    return list(seen.values())


def as_spec(model: ModelLike, *, input_size=None, in_channels: int | None = None,
            num_classes: int | None = None, name: str | None = None) -> "ModelSpec":
    """Resolve ``model`` to a spec (nothing is built yet for strings and specs)."""
    from archprobe.zoo.spec import ModelSpec, module_spec, normalise_input_size, resolve

    if isinstance(model, ModelSpec):
        size = normalise_input_size(input_size)
        return model.with_input_size(size[1], size[2], size[0]) if size else model
    if isinstance(model, str):
        return resolve(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    return module_spec(model, name=name, input_size=input_size)


def resolve_all(models: Iterable[ModelLike], **options) -> list["ModelSpec"]:
    """Every model resolved up front, so a typo fails before any work starts; zoo globs expand
    and repeated names are kept once."""
    return [as_spec(m, **options) for m in expand_all(models)]


def expand_all(models: Iterable[ModelLike]) -> list[ModelLike]:
    """Zoo globs in spec strings expanded; repeated names kept once (specs and modules as given)."""
    items: list[ModelLike] = []
    for model in models:
        items.extend(expand([model]) if isinstance(model, str) else [model])
    if all(isinstance(m, str) for m in items):
        items = expand(items)  # drops repeats across arguments too ("alexnet ALEXNET")
    return items


def probe(model: ModelLike, input_size=None, *, batch_size: int = 1, train: bool | Mode = False,
          device: str = "meta", in_channels: int | None = None, num_classes: int | None = None) -> Probe:
    """The run context of ``model``: built once (meta device by default), with its input shape,
    batch size and mode."""
    spec = as_spec(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    return Probe.build(spec, batch_size=batch_size, mode=Mode.of(train), device=device)


# --- static analysis ----------------------------------------------------------------------------


def count(model: ModelLike, input_size=None, *, batch_size: int = 1, train: bool = False,
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
        train: also count one training step (forward in training mode, cross-entropy, backward)
            as ``train_macs``/``train_flops``.
        counter: ``"fvcore"`` adds fvcore's count on real CPU tensors (``fvcore_macs``).

    Returns:
        A :class:`ModelCounts`.
    """
    from archprobe.analysis.counting import count as count_probe

    p = probe(model, input_size, batch_size=batch_size, train=train, in_channels=in_channels,
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


def min_input(model: ModelLike, input_size=None, *, batch_size: int = 1, train: bool = False,
              max_size: int = 4096, explain: bool = False,
              progress: Callable[[int, int], None] | None = None,
              in_channels: int | None = None, num_classes: int | None = None) -> MinInputResult:
    """The exact set of input sizes ``model`` accepts ("valid" = the forward pass runs).

    ``input_size`` gives the channel count and the anchor size (the default (H, W), at which the
    per-dimension minima are taken). ``train`` solves for training mode (BatchNorm needs more
    than one value per channel; aux heads run), where ``batch_size`` matters.

    Returns:
        A :class:`MinInputResult`: ``.min_size`` (the smallest valid input), ``.valid`` (square
        sides as intervals), ``.valid_h``/``.valid_w``, ``.limiting_layer``, ``.method``.
    """
    from archprobe.analysis.min_input import solve_min_input

    p = probe(model, input_size, batch_size=batch_size, train=train, in_channels=in_channels,
              num_classes=num_classes)
    return solve_min_input(p, max_size=max_size, explain=explain, progress=progress)


# --- measurements -------------------------------------------------------------------------------


def check_sizes(specs: Sequence["ModelSpec"], modes: Sequence[Mode], batch_size: int,
                build: Callable[["ModelSpec"], Probe] = Probe.build) -> None:
    """Raise the one-line ``InputSizeError`` (with the valid sizes) for a size a model cannot
    take, before anything is measured. ``build`` gives a spec's meta probe (a runner's cache)."""
    from archprobe.analysis.min_input import ensure_input_size

    for spec in specs:
        meta = build(spec)
        for mode in modes:
            ensure_input_size(meta.with_setting(batch_size=batch_size, mode=mode))


def throughput_sweep(specs: Sequence["ModelSpec"], devices: Sequence[str], modes: Sequence[Mode],
                     batch_sizes: Sequence[int], config: "ThroughputConfig", *,
                     runner: "ThroughputRunner | None" = None,
                     on_start: Callable[[str], None] | None = None) -> Iterator[ThroughputResult]:
    """One row per model x device x mode x batch size, yielded as each is measured.

    Input sizes are checked now, before anything is measured (an ``InputSizeError`` names the
    layer and the valid sizes)."""
    from archprobe.bench.throughput import ThroughputRunner, sweep

    runner = runner or ThroughputRunner()
    check_sizes(specs, modes, min(batch_sizes), build=runner.meta_probe)
    return sweep(specs, devices, modes, batch_sizes, config, runner=runner, on_start=on_start)


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

    ``nproc``: measure ``nproc`` data-parallel ranks instead (see :func:`distributed_sweep`;
    ``model`` must then be a spec string, and a script calling this needs the usual
    ``if __name__ == "__main__":`` guard, as the ranks are spawned processes).

    Returns:
        A :class:`ThroughputResult` (``status`` is ``"oom"`` or ``"error"`` when it failed).
    """
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


# --- data-parallel throughput (torch.distributed) -----------------------------------------------

def distributed_sweep(models: Sequence[ModelLike], devices: Sequence[str], modes: Sequence[Mode],
                      batch_sizes: Sequence[int], config: "ThroughputConfig", *,
                      nprocs: Sequence[int] | None = None, join_group: bool = False, input_size=None,
                      in_channels: int | None = None, num_classes: int | None = None,
                      timeout: float = DEFAULT_TIMEOUT_S, runner: "ThroughputRunner | None" = None,
                      on_start: Callable[[str], None] | None = None) -> Iterator[ThroughputResult]:
    """Data-parallel rows through torch.distributed: one per model x mode x batch x world size.

    ``nprocs``: world sizes to launch on this machine, each through torch.distributed's elastic
    launcher (the API torchrun uses); ``join_group``: this process is one rank of a group
    torchrun started (one or many nodes), and only rank 0 yields rows. ``devices`` names one
    device kind, ``"cpu"`` (gloo; the physical cores split between the ranks unless ``threads``
    sets the threads per rank) or ``"cuda"`` (NCCL, one GPU per rank). ``batch_sizes`` are per
    rank. ``timeout`` (seconds) bounds every collective: a rank that stops answering fails the row.

    A row's step time is its slowest rank's; ``examples_per_sec`` = batch x world size / median
    step time, and ``scaling_efficiency`` compares it with one process measured in the same run
    (see :class:`ThroughputResult`). Models are spec strings (each rank resolves its own);
    usage errors (unknown models, sizes, world sizes, more CUDA ranks than GPUs) raise now.
    """
    from archprobe.bench import distributed as dist
    from archprobe.bench.throughput import ThroughputRunner
    from archprobe.runtime.distributed import RankInfo, check_nprocs

    check_sendable(models)
    kinds = [rank_device_kind(devices)]
    if join_group:
        if nprocs:
            raise UsageError("is set by the launcher when joining its group (torchrun --nproc-per-node)",
                             param="nproc")
        RankInfo.from_env()  # not launched: a usage error
    elif not nprocs:
        raise UsageError("give the numbers of processes to launch", param="nproc")
    else:
        check_nprocs(nprocs, kinds[0])
    options = dict(input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    names = expand(models)
    specs = [as_spec(m, **options) for m in names]
    runner = runner or ThroughputRunner()
    check_sizes(specs, modes, min(batch_sizes), build=runner.meta_probe)
    pairs = list(zip(names, specs))
    if join_group:
        return dist.group_sweep(pairs, kinds[0], modes, batch_sizes, config, timeout_s=timeout, runner=runner,
                                on_start=on_start)
    return dist.local_sweep(pairs, options, kinds[0], modes, batch_sizes, nprocs, config, timeout_s=timeout,
                            runner=runner, on_start=on_start)


def check_sendable(models: Iterable[ModelLike]) -> None:
    """A ``UsageError`` unless every model is a spec string, which other processes can resolve."""
    if not all(isinstance(m, str) for m in models):
        raise UsageError("a live module or a resolved spec cannot be sent to other processes: give the model as a "
                         "spec string (a zoo name, tv:NAME, timm:NAME or file.py:factory)", param="model")


def rank_device_kind(devices: Sequence[str]) -> str:
    """The one device kind data-parallel ranks run on, ``cpu`` or ``cuda`` (a ``UsageError`` for
    none, several, ``all``, or cuda without a usable GPU)."""
    from archprobe.runtime.backends import resolve_devices

    kinds = [str(d).strip().lower() for d in devices]
    if len(kinds) != 1 or kinds[0] not in ("cpu", "cuda"):
        raise UsageError(f"data-parallel ranks need one device kind, cpu or cuda, not {', '.join(kinds) or 'none'}",
                         param="device")
    resolve_devices(kinds)  # cuda without a usable GPU is a usage error
    return kinds[0]


def writes_output(join_group: bool) -> bool:
    """Whether this process writes results: always, except the ranks other than 0 of a group."""
    import os

    return not join_group or os.environ.get("RANK", "0") == "0"


# --- memory -------------------------------------------------------------------------------------


def memory_rows(specs: Sequence["ModelSpec"], modes: Sequence[Mode], batch_sizes: Sequence[int] = (32,), *,
                optimizer: str = "sgd", dtype: str = "float32", device: str = "cuda",
                budget: int | None = None) -> list[MemoryResult]:
    """Predicted peak memory: one row per model x mode x batch size, or with ``budget`` (bytes)
    one row per model x mode at the largest batch that fits. Each model is built once on meta
    and every input size is checked before any prediction (an ``InputSizeError`` names the layer
    and the valid sizes)."""
    from archprobe.analysis.memory import check_device, fit, smallest_batch, sweep
    from archprobe.analysis.min_input import ensure_input_size
    from archprobe.runtime.precision import check_dtype

    check_dtype(dtype)
    check_device(device)
    probes = [meta.with_setting(mode=mode) for meta in map(Probe.build, specs) for mode in modes]
    for p in probes:
        if budget is not None:
            smallest_batch(p)
        else:
            ensure_input_size(p.with_setting(batch_size=min(batch_sizes)))
    rows: list[MemoryResult] = []
    for p in probes:
        if budget is not None:
            rows.append(fit(p, budget, optimizer=optimizer, dtype=dtype, device=device))
        else:
            rows.extend(sweep(p, batch_sizes, optimizer=optimizer, dtype=dtype, device=device))
    return rows


def memory(model: ModelLike, input_size=None, *, batch_size: int = 32, train: bool = False,
           optimizer: str = "sgd", dtype: str = "float32", device: str = "cuda",
           fit: int | str | None = None, in_channels: int | None = None,
           num_classes: int | None = None) -> MemoryResult:
    """The predicted peak memory of one step of ``model``, allocating no weights.

    The peak of live tensor bytes during one eval forward under ``inference_mode``, or with
    ``train`` one steady-state training step (zero_grad, forward, cross-entropy, backward,
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
            or ``"cpu"``.
        fit: a memory budget (bytes, or text such as ``"24GiB"``): find the largest batch whose
            peak fits; the row is that batch's, with ``max_batch_size`` and ``budget_bytes``.

    Returns:
        A :class:`MemoryResult` (bytes: ``peak_bytes``, ``param_bytes`` ...).
    """
    from archprobe.units import parse_bytes

    spec = as_spec(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    budget = parse_bytes(fit, param="fit") if fit is not None else None
    (row,) = memory_rows([spec], [Mode.of(train)], [batch_size], optimizer=optimizer, dtype=dtype,
                         device=device, budget=budget)
    return row


# --- the zoo, frames and the report -------------------------------------------------------------


def list_models(pattern: str | Sequence[str] | None = None,
                exclude: str | Sequence[str] | None = None) -> list[ZooEntry]:
    """The zoo entries whose names match ``pattern`` (globs) and not ``exclude``, in natural order."""
    from archprobe.zoo.registry import list_models as registered

    return [
        ZooEntry(name=i.name, family=i.family, variant=i.variant, input_shape=i.input_shape,
                 num_classes=i.num_classes, source=i.source, paper=i.paper, year=i.year, notes=i.notes)
        for i in registered(pattern, exclude)
    ]


def describe(probe_or_spec: "Probe | ModelSpec") -> ZooEntry:
    """The zoo entry of any model: the registry's for zoo models, what the spec knows otherwise."""
    spec = probe_or_spec.spec if isinstance(probe_or_spec, Probe) else probe_or_spec
    if spec.info is not None:
        (entry,) = list_models(spec.info.name)
        return entry
    return ZooEntry(name=spec.name, family="-", variant="-", input_shape=spec.input_shape,
                    num_classes=spec.num_classes, source=spec.kind, notes=spec.input_note or "")


def to_frame(results: Any) -> "pd.DataFrame":
    """A pandas DataFrame of results, with the same columns (base units) as the CSV output.

    Takes one result or a sequence of results of one type; a :class:`LayerTable` gives its rows.
    """
    from archprobe.report.frames import machine_frame

    if isinstance(results, LayerTable):
        results = results.rows
    elif not isinstance(results, (list, tuple)):
        results = [results]
    return machine_frame(list(results))


def variant_pairs(counts: Sequence[ModelCounts], families: dict[str, str]) -> list[VariantPair]:
    """Pair each ``X-d2l`` model with ``X``, else with the first ImageNet model of its family;
    and each ``X-paper`` model (the paper's own layout) with the library's ``X``."""
    by_name = {c.model: c for c in counts}
    pairs = []
    for c in counts:
        if c.model.endswith(D2L_SUFFIX):
            kind, base = "d2l", c.model[: -len(D2L_SUFFIX)]
            partner = by_name.get(base) or next(
                (o for o in counts
                 if families.get(o.model) == families.get(c.model) and not o.model.endswith(D2L_SUFFIX)),
                None,
            )
        elif c.model.endswith(PAPER_SUFFIX):
            kind, partner = "paper", by_name.get(c.model[: -len(PAPER_SUFFIX)])
        else:
            continue
        if partner is None:
            continue
        pairs.append(
            VariantPair(
                family=families.get(c.model, ""),
                imagenet=partner.model,
                imagenet_input=partner.input_shape[1:],
                imagenet_params=partner.params,
                imagenet_macs=partner.macs,
                d2l=c.model,
                d2l_input=c.input_shape[1:],
                d2l_params=c.params,
                d2l_macs=c.macs,
                params_ratio=c.params / partner.params if partner.params else 0.0,
                kind=kind,
            )
        )
    return pairs


def report(
    specs: Sequence["ModelSpec"],
    *,
    measure: Callable[[Sequence["ModelSpec"]], Sequence[ThroughputResult]] | None = None,
    on_progress: Callable[[str], None] | None = None,
    memory: bool = True,
    memory_batch_sizes: Sequence[int] = (32,),
) -> Report:
    """Everything ``archprobe report`` shows: each model built once on meta for the zoo entry,
    the counts and the valid input sizes; with ``memory`` the predicted peak memory of inference
    and training at ``memory_batch_sizes`` and over :data:`MEMORY_CURVE`; throughput through
    ``measure`` when given."""
    from archprobe.analysis.counting import count as count_probe
    from archprobe.analysis.min_input import solve_min_input
    from archprobe.runtime.environment import collect_environment

    zoo, counts, min_inputs, settled = [], [], [], []
    memory_table, memory_curve, memory_failures = [], [], []
    for spec in specs:
        if on_progress:
            on_progress(spec.name)
        p = Probe.build(spec)
        settled.append(p.spec)
        zoo.append(describe(p))
        counts.append(count_probe(p))
        min_inputs.append(solve_min_input(p))
        if memory:
            try:
                table, curve = report_memory(p, memory_batch_sizes)
            except ArchprobeError as exc:
                memory_failures.append(f"{p.name}: {exc}")
            else:
                memory_table += table
                memory_curve += curve
    families = {e.name: e.family for e in zoo if e.family != "-"}
    return Report(
        models=tuple(s.name for s in specs),
        zoo=tuple(zoo),
        counts=tuple(counts),
        min_inputs=tuple(min_inputs),
        variants=tuple(variant_pairs(counts, families)),
        throughput=tuple(measure(settled)) if measure is not None else (),
        environment=collect_environment("cpu"),
        memory=tuple(memory_table),
        memory_curve=tuple(memory_curve),
        memory_failures=tuple(memory_failures),
    )


MEMORY_CURVE = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # the batch sizes of the report's memory plot


def report_memory(p: Probe, batch_sizes: Sequence[int]) -> tuple[list[MemoryResult], list[MemoryResult]]:
    """The report's memory rows of one model: inference and training at ``batch_sizes``
    (measured), and over :data:`MEMORY_CURVE` from the smallest batch that runs (read off the
    line through the two smallest steps where it reproduces the measured ones)."""
    from archprobe.analysis.memory import curve as memory_curve
    from archprobe.analysis.memory import smallest_batch

    table: list[MemoryResult] = []
    curve: list[MemoryResult] = []
    for mode in (Mode.EVAL, Mode.TRAIN):
        probe_mode = p.with_setting(mode=mode)
        smallest = smallest_batch(probe_mode)
        points = [b for b in MEMORY_CURVE if b >= smallest]
        rows = memory_curve(probe_mode, [*points, *batch_sizes], measure_at=batch_sizes)
        table += [r for r in rows if r.batch_size in batch_sizes]
        curve += [r for r in rows if r.batch_size in points]
    return table, curve


# --- training experiments -----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainJob:
    """One model ready to train: its spec settled to the data (channels, classes, input side),
    its recipe, and its counts at that input."""

    spec: "ModelSpec"
    recipe: Recipe
    counts: ModelCounts | None
    text: str | None = None  # the spec string it was resolved from (what other processes resolve again)


@dataclass(frozen=True)
class TrainPlan:
    """Everything a training sweep needs, checked before the first epoch starts."""

    data: "ImageData"
    devices: tuple[str, ...]
    jobs: tuple[TrainJob, ...]
    notes: tuple[str, ...] = ()
    # where the data came from, for processes that load it again
    data_root: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    # data-parallel training: ranks per run (None: one process) and the process-group timeout
    nproc: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


def data_spec(model: ModelLike, channels: int, classes: int, side: int | None = None) -> "ModelSpec":
    """``model`` built for the data set: zoo and library models take its channels and classes;
    a user factory takes those of them it accepts (its own defaults hold otherwise)."""
    size = (channels, side, side) if side else None
    if not isinstance(model, str):
        return as_spec(model, input_size=size)
    options = {"in_channels": channels, "num_classes": classes}
    while True:
        try:
            return as_spec(model, input_size=size, **options)
        except UsageError as exc:
            if exc.param not in options:
                raise
            del options[exc.param]


def training_recipes(models: Iterable[ModelLike], *, dataset: str = "fashion-mnist",
                     **overrides: Any) -> list[Recipe]:
    """The recipe each model trains with: the book's for Dive-into-DL zoo models (archprobe's
    labelled default otherwise), with every override that is not None applied.

    Overrides are :class:`Recipe` fields: ``optimizer``, ``lr``, ``batch_size``, ``epochs``,
    ``resize``, ``momentum``, ``weight_decay``, ``label_smoothing``, ``init``, ``dtype``,
    ``seed``.
    """
    from archprobe.training.datasets import dataset_info
    from archprobe.training.recipes import default_recipe, with_overrides

    items = expand_all(models)
    if not items:
        raise UsageError("name at least one model to train (see 'archprobe list')")
    info = dataset_info(dataset)
    specs = [data_spec(m, info.channels, info.num_classes) for m in items]
    return [with_overrides(default_recipe(spec), **overrides) for spec in specs]


def plan_training(models: Iterable[ModelLike], *, dataset: str = "fashion-mnist", data_root=None,
                  download: bool = False, device: str | Sequence[str] | None = None,
                  limit_train: int | None = None, limit_test: int | None = None, nproc: int | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S, **overrides: Any) -> TrainPlan:
    """Load the data set, settle each model to it with its recipe, and check every input size
    and device before anything trains (bad input raises a one-line ``UsageError``).

    ``device`` None: CUDA if it is usable, else the CPU (the book's ``try_gpu()``). ``nproc``:
    train each model on that many data-parallel ranks of one device kind (see :func:`train`).
    """
    from archprobe.runtime.backends import cuda_usable, resolve_devices
    from archprobe.training.datasets import dataset_info, load_dataset

    items = expand_all(models)
    recipes = training_recipes(items, dataset=dataset, **overrides)  # a typo fails before the data loads
    if device is None:
        device = "cuda" if cuda_usable() else "cpu"
    requested = [device] if isinstance(device, str) else list(device)
    if nproc is not None:
        from archprobe.runtime.distributed import check_nprocs

        check_sendable(items)
        requested = [rank_device_kind(requested)]
        check_nprocs([nproc], requested[0])
    devices, notes = resolve_devices(requested)
    if not devices:
        raise UsageError("no device to train on", param="device")
    data = load_dataset(dataset_info(dataset).name, data_root, download=download, limit_train=limit_train,
                        limit_test=limit_test)
    channels, height, _ = data.shape
    jobs = []
    for model, recipe in zip(items, recipes):
        spec = data_spec(model, channels, data.num_classes, side=recipe.resize or height)
        check_sizes([spec], [Mode.TRAIN], recipe.batch_size)
        jobs.append(TrainJob(spec, recipe, count(spec), text=model if isinstance(model, str) else None))
    return TrainPlan(data=data, devices=tuple(devices), jobs=tuple(jobs), notes=tuple(notes),
                     data_root=None if data_root is None else str(data_root), limit_train=limit_train,
                     limit_test=limit_test, nproc=nproc, timeout_s=timeout)


def train_sweep(plan: TrainPlan, *, runner: "TrainRunner | None" = None, output: "RunDirectory | None" = None,
                resume: bool = False, workers: int = 0,
                on_start: Callable[[TrainJob, str], None] | None = None,
                on_epoch: Callable[[EpochRow, TrainRun], None] | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> Iterator[TrainRun]:
    """Train every job of ``plan`` on every device (CPU first), yielding each run as it ends.

    With ``output``, each epoch's row, ``train.json`` and the model's checkpoint are written
    as the epoch ends, and the curves when the sweep ends or is interrupted. A CUDA run gets
    its ``speedup`` over the same model's CPU run. Ctrl-C raises
    :class:`archprobe.training.runner.TrainingInterrupted` (a ``KeyboardInterrupt``) with the
    interrupted run, after writing it. With ``plan.nproc``, each run is trained by that many
    local ranks (:func:`archprobe.training.distributed.train_on_ranks`; ``on_batch`` is not
    called).
    """
    from archprobe.training.distributed import train_on_ranks
    from archprobe.training.runner import TrainingInterrupted, TrainRunner

    runner = runner or TrainRunner()
    done: list[TrainRun] = []

    def epoch_done(row: EpochRow, so_far: TrainRun) -> None:
        if output is not None:
            output.write_epoch(row)
            output.write_summary(done + [replace(so_far, status="running")])
        if on_epoch is not None:
            on_epoch(row, so_far)

    try:
        for job in plan.jobs:
            for device in plan.devices:
                if on_start is not None:
                    on_start(job, device)
                checkpoint = output.checkpoint(job.spec.name, device) if output is not None else None
                if plan.nproc is None:
                    run = runner.run(job.spec, device, plan.data, job.recipe, counts=job.counts,
                                     checkpoint=checkpoint, resume=resume, workers=workers, on_epoch=epoch_done,
                                     on_batch=on_batch)
                else:
                    run = train_on_ranks(plan, job, device, runner, checkpoint=checkpoint, resume=resume,
                                         workers=workers, on_epoch=epoch_done)
                done.append(with_train_speedup(run, done))
                if output is not None:
                    output.write_summary(done)
                yield done[-1]
    except TrainingInterrupted as interrupted:
        done.append(interrupted.run)
        if output is not None:
            output.write_summary(done)
        raise
    finally:
        if output is not None:
            output.write_curves(done)
            output.close()


def _model_list(models: ModelLike | Iterable[ModelLike]) -> list[ModelLike]:
    from torch import nn

    from archprobe.zoo.spec import ModelSpec

    # an nn.Sequential is iterable too: a model is one model, not its layers
    return [models] if isinstance(models, (str, ModelSpec, nn.Module)) else list(models)


def with_train_speedup(run: TrainRun, previous: Iterable[TrainRun]) -> TrainRun:
    """Set ``speedup`` on a CUDA run from the same model's CPU run among ``previous``."""
    if not run.device.startswith("cuda") or not run.examples_per_sec:
        return run
    for other in previous:
        if other.device == "cpu" and other.model == run.model and other.examples_per_sec:
            return replace(run, speedup=run.examples_per_sec / other.examples_per_sec)
    return run


def train(models: ModelLike | Iterable[ModelLike], *, dataset: str = "fashion-mnist", data_root=None,
          download: bool = False, device: str | Sequence[str] | None = None, output=None, resume: bool = False,
          force: bool = False, workers: int = 0, threads: int | None = None, limit_train: int | None = None,
          limit_test: int | None = None, on_epoch: Callable[[EpochRow, TrainRun], None] | None = None,
          nproc: int | None = None, timeout: float = DEFAULT_TIMEOUT_S, **overrides: Any) -> list[TrainRun]:
    """Train models on a real data set the book's way and return one run per model and device.

    Each Dive-into-DL zoo model trains with the book's recipe (:func:`training_recipes`);
    keyword overrides (``epochs=``, ``lr=``, ``optimizer=``, ``batch_size=``, ``resize=``,
    ``label_smoothing=``, ...) change it, and every run records the recipe it used. Images are
    scaled to [0, 1] and resized on the device. Per epoch: train loss (mean per example),
    train and test accuracy, examples/sec (training examples / training time, evaluation
    excluded: the book's definition) and the epoch's seconds.

    Args:
        models: zoo names, spec strings, specs or modules (a live module trains as a fresh twin;
            its own weights are never touched).
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
    from archprobe.training.outputs import RunDirectory
    from archprobe.training.runner import TrainRunner

    plan = plan_training(_model_list(models), dataset=dataset, data_root=data_root, download=download, device=device,
                         limit_train=limit_train, limit_test=limit_test, nproc=nproc, timeout=timeout, **overrides)
    directory = RunDirectory(output, resume=resume, force=force) if output is not None else None
    return list(train_sweep(plan, runner=TrainRunner(threads=threads), output=directory, resume=resume,
                            workers=workers, on_epoch=on_epoch))
