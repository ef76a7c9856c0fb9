"""A training sweep: every job of a plan on every device, each run yielded as it ends, each
epoch written as it ends (with a run directory), Ctrl-C keeping every finished epoch."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from archprobe.results import EpochRow, TrainRun
from archprobe.training.plan import TrainJob, TrainPlan

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.training.outputs import RunDirectory
    from archprobe.training.runner import TrainRunner


def train_sweep(plan: TrainPlan, *, runner: "TrainRunner | None" = None, output: "RunDirectory | None" = None,
                resume: bool = False, workers: int = 0,
                on_start: Callable[[TrainJob, str], None] | None = None,
                on_epoch: Callable[[EpochRow, TrainRun], None] | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> Iterator[TrainRun]:
    """Train every job of ``plan`` on every device (CPU first), yielding each run as it ends.

    With ``output``, each epoch's row, ``train.json`` and the model's checkpoint are written
    as the epoch ends (a resumed run's rows that ``train.csv`` lacks too), and the curves when
    the sweep ends or is interrupted. A CUDA run gets
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
            output.write_epochs(so_far.epochs)
            output.write_summary(done + [replace(so_far, status="running")])
        if on_epoch is not None:
            on_epoch(row, so_far)

    def finished(run: TrainRun) -> None:
        done.append(run)
        if output is not None:
            output.write_epochs(run.epochs)  # a resumed run may have run no epoch to write them
            output.write_summary(done)

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
                finished(with_train_speedup(run, done))
                yield done[-1]
    except TrainingInterrupted as interrupted:
        finished(interrupted.run)
        raise
    finally:
        if output is not None:
            output.write_curves()
            output.close()


def with_train_speedup(run: TrainRun, previous: Iterable[TrainRun]) -> TrainRun:
    """Set ``speedup`` on a CUDA run from the same model's CPU run among ``previous``."""
    if not run.device.startswith("cuda") or not run.examples_per_sec:
        return run
    for other in previous:
        if other.device == "cpu" and other.model == run.model and other.examples_per_sec:
            return replace(run, speedup=run.examples_per_sec / other.examples_per_sec)
    return run
