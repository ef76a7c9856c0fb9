"""Data-parallel training through torch.distributed: ``archprobe train MODEL --nproc N``.

* Ranks: ``N`` local processes started by the elastic launcher the throughput runner uses
  (:func:`archprobe.runtime.launch.launch_local`): gloo between CPU ranks, whose node's physical
  cores are split between them unless ``threads`` says otherwise (recorded per rank); NCCL
  between GPUs, one per rank (``cuda:LOCAL_RANK``).
* Each rank loads the data set itself (the same files and limits), builds the model with the
  recipe's seed (every rank starts from the same weights; DDP broadcasts rank 0's as well),
  wraps it in ``DistributedDataParallel`` and trains on its share of each epoch: the indices
  torch's ``DistributedSampler`` gives it (:func:`rank_share`), applied to the data set on the
  device. ``set_epoch`` makes the shuffle differ by epoch and agree across ranks; rank ``r``
  takes every N-th shuffled index from the r-th on. Where N does not divide the training set,
  the sampler repeats the first shuffled examples so that every rank takes as many (and runs
  as many steps). The recipe's batch size is per rank; the global batch is N times it, and
  DDP averages the gradients over the ranks.
* Figures: loss sums, correct counts and examples are summed over the ranks, so an epoch's
  figures are global; its training time is the slowest rank's (every epoch starts at a
  barrier); examples/sec = global training examples / that time, the book's definition. The
  test set is evaluated sharded: rank ``r`` takes test examples r, r+N, r+2N, ... with rank 0's
  buffers (BatchNorm statistics), and the correct counts are summed: what rank 0 alone would
  get on the whole test set, in 1/N of the time.
* Output: rank 0 writes the checkpoint (the model unwrapped from DDP, so a run resumes with any
  number of ranks or none; every rank's random states) and hands each finished epoch to the
  launching process through a private directory (:class:`EpochMailbox`); the launching
  process writes the CSV row, ``train.json`` and the curves and prints the epoch, as for one
  process. The other ranks write nothing. A resumed run continues at the next epoch's sampler
  order (``set_epoch`` depends on the epoch alone).
* Faults: a rank that raises or dies ends the launch (the launcher stops the others; a rank
  waiting on a peer that stopped answering gives up after the process-group timeout); the run
  is recorded with status ``error`` (``oom`` for out of memory) naming the rank, with every
  epoch finished before it. A loss that stops being finite is seen by every rank at once (the
  check sums over the ranks), so they stop together: ``diverged``. Ctrl-C stops every rank and
  raises :class:`TrainingInterrupted` with the finished epochs.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from archprobe.plumbing.files import write_atomic
from archprobe.results import EpochRow, ModelCounts, Recipe, TrainRun
from archprobe.runtime.backends import is_oom, make_backend
from archprobe.runtime.distributed import (
    DEFAULT_TIMEOUT_S,
    Collectives,
    RankInfo,
    backend_for,
    process_group,
    rank_device,
    rank_failed,
    rank_threads,
)
from archprobe.runtime.launch import RankFailure, launch_local
from archprobe.training.checkpoint import load_checkpoint
from archprobe.training.runner import TrainingInterrupted, TrainRunner, check_resumable, check_weights, resumed

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from archprobe.training.plan import TrainJob, TrainPlan

EpochCallback = Callable[[EpochRow, TrainRun], None]
MAILBOX_POLL_S = 0.1  # how often the launching process looks for finished epochs


@dataclass(frozen=True)
class TrainRankJob:
    """What every rank of a data-parallel run trains: picklable, so the model travels as its
    spec text and the data set as its name, place and limits; each rank resolves and loads them."""

    model: str  # the spec text
    side: int  # the input side the model trains at
    device: str  # "cpu" or "cuda"
    dataset: str
    data_root: str | None
    limit_train: int | None
    limit_test: int | None
    recipe: Recipe  # batch_size: per rank
    counts: ModelCounts | None
    threads: int | None  # per rank
    checkpoint: str | None = None
    resume: bool = False
    workers: int = 0
    check_every: int = 50
    timeout_s: float = DEFAULT_TIMEOUT_S
    cwd: str | None = None  # the caller's directory (relative paths); a forked rank starts elsewhere
    mailbox: str | None = None  # where rank 0 leaves finished epochs (set by the launch)


def rank_share(examples: int, world_size: int, rank: int, seed: int, epoch: int) -> "torch.Tensor":
    """The training examples rank ``rank`` of ``world_size`` takes in ``epoch`` (1-based), in
    order: ``DistributedSampler``'s indices (shuffled with ``seed`` and the epoch, padded by
    repetition to a multiple of ``world_size``), as an int64 tensor."""
    import torch
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(examples), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch - 1)  # the sampler counts epochs from 0
    return torch.tensor(list(sampler), dtype=torch.int64)


class DataParallel:
    """One rank of a data-parallel run: the :class:`archprobe.training.runner.Replicas` its
    runner trains with (see the module docstring)."""

    failures_are_local = False  # the peers wait in collectives: a failure must end the process

    def __init__(self, info: RankInfo, device: str, seed: int, collectives: Collectives | None = None):
        self.rank, self.world_size = info.rank, info.world_size
        self.seed = seed
        self.collectives = collectives or Collectives(device)

    def setup(self, run: TrainRun, backend) -> dict[str, Any]:
        name = backend.environment().device_name
        places = self.collectives.gather((socket.gethostname(), f"{backend.label} {name}"))
        return dict(world_size=self.world_size, global_batch_size=run.recipe.batch_size * self.world_size,
                    backend=backend_for(backend.kind), rank_hosts=tuple(h for h, _ in places),
                    rank_device_names=tuple(d for _, d in places))

    def wrap(self, model: "nn.Module") -> "nn.Module":
        """``model`` in DDP; then each rank reseeds with seed + rank, so that the ranks draw their
        own dropout masks (the weights are already equal)."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        device = self.collectives.device
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(self.seed + self.rank)
        return wrapped

    def unwrap(self, model: "nn.Module") -> "nn.Module":
        return model.module

    def start_epoch(self) -> None:
        self.collectives.barrier()

    def train_order(self, examples: int, epoch: int, shuffle: "torch.Generator") -> "torch.Tensor":
        return rank_share(examples, self.world_size, self.rank, self.seed, epoch)

    def test_order(self, examples: int) -> "torch.Tensor":
        import torch

        return torch.arange(self.rank, examples, self.world_size)

    def total(self, values: "torch.Tensor") -> "torch.Tensor":
        return self.collectives.sum(values)

    def slowest(self, seconds: float) -> float:
        return self.collectives.max([seconds])[0]

    def share_buffers(self, model: "nn.Module") -> None:
        self.collectives.broadcast(model.buffers(), src=0)

    def gather(self, value: Any) -> list[Any]:
        return self.collectives.gather(value)


class EpochMailbox:
    """Finished epochs from rank 0 to the launching process: one file per epoch, written
    atomically into a directory only this user can write (pickles of ``(row, run so far)``)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._taken: set[str] = set()

    def post(self, row: EpochRow, run: TrainRun) -> None:
        """Rank 0's ``on_epoch``: leave the epoch's row and the run so far."""
        write_atomic(self.directory / f"epoch-{row.epoch:06d}.pickle", pickle.dumps((row, run)))

    def collect(self) -> list[tuple[EpochRow, TrainRun]]:
        """The epochs posted since the last call, in epoch order."""
        found = sorted(p for p in self.directory.glob("epoch-*.pickle") if p.name not in self._taken)
        self._taken.update(p.name for p in found)
        return [pickle.loads(p.read_bytes()) for p in found]


class _Watcher(threading.Thread):
    """Hands each epoch posted to ``mailbox`` to ``deliver`` while the ranks train; an error in
    ``deliver`` (a full disk) is kept for the launching thread to raise."""

    def __init__(self, mailbox: EpochMailbox, deliver: EpochCallback):
        super().__init__(name="archprobe-epochs", daemon=True)
        self.mailbox, self.deliver = mailbox, deliver
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(MAILBOX_POLL_S):
                self._hand_over()
        except BaseException as exc:  # noqa: BLE001 - raised again by finish()
            self.error = exc

    def _hand_over(self) -> None:
        for row, run in self.mailbox.collect():
            self.deliver(row, run)

    def finish(self) -> None:
        """Stop watching, then hand over what is left (from the calling thread)."""
        self.stopping.set()
        self.join()
        if self.error is not None:
            raise self.error
        self._hand_over()


def train_rank(job: TrainRankJob) -> TrainRun | None:
    """The launcher's entrypoint, run by every rank (module level: the ranks look it up by
    name). Rank 0 returns the run, the others ``None``."""
    from archprobe.zoo.resolution import data_spec
    from archprobe.training.datasets import load_dataset

    info = RankInfo.from_env()
    if job.cwd:
        os.chdir(job.cwd)
    device = rank_device(job.device, info.local_rank)
    try:
        with process_group(backend_for(job.device), device, job.timeout_s):
            data = load_dataset(job.dataset, job.data_root, limit_train=job.limit_train, limit_test=job.limit_test)
            spec = data_spec(job.model, data.shape[0], data.num_classes, side=job.side)
            runner = TrainRunner(threads=job.threads, check_every=job.check_every,
                                 backend_factory=lambda _kind: make_backend(device),
                                 replicas=DataParallel(info, device, job.recipe.seed))
            mailbox = EpochMailbox(job.mailbox) if info.rank == 0 and job.mailbox else None
            run = runner.run(spec, job.device, data, job.recipe, counts=job.counts, checkpoint=job.checkpoint,
                             resume=job.resume, workers=job.workers,
                             on_epoch=mailbox.post if mailbox is not None else None)
        return run if info.rank == 0 else None
    except Exception as exc:
        rank_failed(exc, info)
        raise


def launch_training(job: TrainRankJob, nproc: int, start: TrainRun, *, on_epoch: EpochCallback | None = None,
                    launch: Callable[..., dict[int, Any]] = launch_local) -> TrainRun:
    """Train ``job`` on ``nproc`` local ranks, calling ``on_epoch(row, run so far)`` in this
    process as each epoch finishes. Returns rank 0's run; after a rank's failure, ``start``
    with the epochs finished before it, status ``error`` (or ``oom``) and the failure naming the
    rank. Raises :class:`TrainingInterrupted` (with the finished epochs) on Ctrl-C."""
    latest = start

    def deliver(row: EpochRow, so_far: TrainRun) -> None:
        nonlocal latest
        latest = so_far
        if on_epoch is not None:
            on_epoch(row, so_far)

    failure: RankFailure | None = None
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="archprobe-epochs-") as directory:
        watcher = _Watcher(EpochMailbox(directory), deliver)
        watcher.start()
        try:
            finished = launch(train_rank, replace(job, mailbox=directory), nproc)[0]
        except RankFailure as exc:
            failure = exc
        except KeyboardInterrupt as exc:
            interrupted = exc
        finally:
            watcher.finish()
    if interrupted:
        raise TrainingInterrupted(replace(latest, status="interrupted"), interrupted) from None
    if failure is not None:
        return replace(latest, status="oom" if is_oom(failure) else "error", error=str(failure))
    return finished


def train_on_ranks(plan: "TrainPlan", job: "TrainJob", device: str, runner: TrainRunner, *,
                   checkpoint: str | os.PathLike | None = None, resume: bool = False, workers: int = 0,
                   on_epoch: EpochCallback | None = None,
                   launch: Callable[..., dict[int, Any]] = launch_local) -> TrainRun:
    """One job of a training plan on ``plan.nproc`` local ranks of ``device`` (``cpu`` or
    ``cuda``): :func:`launch_training` with the job made picklable, the threads per rank from
    ``runner`` (default: the cores split between the ranks) and, when resuming, the checkpoint
    checked here first (another recipe or data set is a ``UsageError``, a damaged file an
    ``ArchprobeError`` naming it, before any rank starts)."""
    nproc = plan.nproc
    threads = rank_threads(device, runner.threads, nproc)
    start = replace(runner.new_run(job.spec, device, plan.data, job.recipe, job.counts), threads=threads,
                    world_size=nproc, global_batch_size=job.recipe.batch_size * nproc, backend=backend_for(device))
    if resume and checkpoint:
        saved = load_checkpoint(checkpoint, "cpu")  # a damaged file ends the sweep here, named
        if saved is not None:
            check_resumable(saved, start, checkpoint)
            check_weights(saved, job.spec.build("meta"), checkpoint)  # shapes alone: no weights made
            start = resumed(start, saved)  # a launch that fails keeps the epochs already done
    rank_job = TrainRankJob(
        model=job.text, side=job.spec.input_shape[1], device=device, dataset=plan.data.name,
        data_root=plan.data_root, limit_train=plan.limit_train, limit_test=plan.limit_test, recipe=job.recipe,
        counts=job.counts, threads=threads, checkpoint=os.fspath(checkpoint) if checkpoint else None, resume=resume,
        workers=workers, check_every=runner.check_every, timeout_s=plan.timeout_s, cwd=os.getcwd(),
    )
    return launch_training(rank_job, nproc, start, on_epoch=on_epoch, launch=launch)
