"""A training sweep's plan: the data loaded, each model settled to it with its recipe, every
input size, recipe value and device checked before the first epoch starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from archprobe.errors import UsageError
from archprobe.probe import Mode
from archprobe.results import ModelCounts, Note, Recipe
from archprobe.runtime.distributed import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.training.datasets import ImageData
    from archprobe.zoo.resolution import ModelLike
    from archprobe.zoo.spec import ModelSpec


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
    notes: tuple[Note, ...] = ()
    # where the data came from, for processes that load it again
    data_root: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    # data-parallel training: ranks per run (None: one process) and the process-group timeout
    nproc: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def runs(self) -> tuple[tuple[str, str], ...]:
        """The (model, device) pair of every run, in the order the sweep trains them."""
        return tuple((job.spec.name, device) for job in self.jobs for device in self.devices)


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
    from archprobe.zoo.resolution import data_spec, expand_all

    items = expand_all(models)
    if not items:
        raise UsageError("name at least one model to train", hint="list")
    info = dataset_info(dataset)
    specs = [data_spec(m, info.channels, info.num_classes) for m in items]
    return [with_overrides(default_recipe(spec), **overrides) for spec in specs]


def plan_training(models: Iterable[ModelLike], *, dataset: str = "fashion-mnist", data_root=None,
                  download: bool = False, device: str | Sequence[str] | None = None,
                  limit_train: int | None = None, limit_test: int | None = None, nproc: int | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S, threads: int | None = None,
                  exclude: str | Iterable[str] | None = None, **overrides: Any) -> TrainPlan:
    """Load the data set, settle each model to it with its recipe, and check every input size
    and device before anything trains (bad input raises a one-line ``UsageError``). Globs in
    ``models`` expand, less the models matching ``exclude``.

    ``device`` None: CUDA if it is usable, else the CPU (the book's ``try_gpu()``). ``nproc``:
    train each model on that many data-parallel ranks of one device kind (see :func:`train`);
    ``threads`` (per rank) only bounds them: ranks x threads may not exceed the logical CPUs.
    """
    from archprobe.analysis.counting import count
    from archprobe.analysis.min_input import check_sizes
    from archprobe.probe import Probe
    from archprobe.runtime.backends import cuda_usable, resolve_devices
    from archprobe.training.datasets import dataset_info, load_dataset
    from archprobe.zoo.resolution import check_sendable, data_spec, expand_all

    items = expand_all(models, exclude)
    recipes = training_recipes(items, dataset=dataset, **overrides)  # a typo fails before the data loads
    if device is None:
        device = "cuda" if cuda_usable() else "cpu"
    requested = [device] if isinstance(device, str) else list(device)
    if nproc is not None:
        from archprobe.runtime.distributed import check_nprocs, rank_device_kind

        check_sendable(items)
        requested = [rank_device_kind(requested)]
        check_nprocs([nproc], requested[0], threads=threads)
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
        counts = count(Probe.build(spec))
        if not counts.trainable:  # every model is checked before any trains
            raise UsageError(f"{spec.name} has no trainable parameters")
        jobs.append(TrainJob(spec, recipe, counts, text=model if isinstance(model, str) else None))
    return TrainPlan(data=data, devices=tuple(devices), jobs=tuple(jobs), notes=tuple(notes),
                     data_root=None if data_root is None else str(data_root), limit_train=limit_train,
                     limit_test=limit_test, nproc=nproc, timeout_s=timeout)
