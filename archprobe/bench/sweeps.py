"""The measurement sweeps the command line and the API run: one row per model x device x mode x
batch size in one process, or per world size through torch.distributed.

Input sizes are checked before anything is measured (an ``InputSizeError`` names the layer and
the valid sizes); rows are yielded as each is measured, so the caller writes them as they come.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from archprobe.analysis.min_input import check_sizes
from archprobe.bench.throughput import ThroughputConfig, ThroughputRunner, sweep
from archprobe.errors import UsageError
from archprobe.probe import Mode
from archprobe.results import ThroughputResult
from archprobe.runtime.distributed import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.zoo.resolution import ModelLike
    from archprobe.zoo.spec import ModelSpec


def throughput_sweep(specs: Sequence["ModelSpec"], devices: Sequence[str], modes: Sequence[Mode],
                     batch_sizes: Sequence[int], config: ThroughputConfig, *,
                     runner: ThroughputRunner | None = None,
                     on_start: Callable[[str], None] | None = None) -> Iterator[ThroughputResult]:
    """One row per model x device x mode x batch size, yielded as each is measured.

    Input sizes are checked now, before anything is measured (an ``InputSizeError`` names the
    layer and the valid sizes)."""
    runner = runner or ThroughputRunner()
    check_sizes(specs, modes, min(batch_sizes), build=runner.meta_probe)
    return sweep(specs, devices, modes, batch_sizes, config, runner=runner, on_start=on_start)


def distributed_sweep(models: Sequence[ModelLike], devices: Sequence[str], modes: Sequence[Mode],
                      batch_sizes: Sequence[int], config: ThroughputConfig, *,
                      nprocs: Sequence[int] | None = None, join_group: bool = False, input_size=None,
                      in_channels: int | None = None, num_classes: int | None = None,
                      timeout: float = DEFAULT_TIMEOUT_S, runner: ThroughputRunner | None = None,
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
    from archprobe.runtime.distributed import RankInfo, check_nprocs, rank_device_kind
    from archprobe.zoo.resolution import as_spec, check_sendable, expand

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
        check_nprocs(nprocs, kinds[0], threads=config.threads)
    from archprobe.zoo.sizes import sizes_for

    options = dict(in_channels=in_channels, num_classes=num_classes)
    names = expand(models)
    sizes = sizes_for(names, input_size)  # MODEL=SIZE: each model its own, its ranks too
    specs = [as_spec(m, input_size=size, **options) for m, size in zip(names, sizes)]
    runner = runner or ThroughputRunner()
    check_sizes(specs, modes, min(batch_sizes), build=runner.meta_probe)
    pairs = list(zip(names, specs))
    if join_group:
        return dist.group_sweep(pairs, kinds[0], modes, batch_sizes, config, timeout_s=timeout, runner=runner,
                                on_start=on_start)
    return itertools.chain.from_iterable(  # lazily, one model at a time: rows are yielded as measured
        dist.local_sweep([pair], {**options, "input_size": size}, kinds[0], modes, batch_sizes, nprocs, config,
                         timeout_s=timeout, runner=runner, on_start=on_start)
        for pair, size in zip(pairs, sizes))
