"""One model trained on one device with its recipe: the book's ``train_ch6`` loop, on the runtime.

Per epoch: the shuffled training batches go through the runtime's :class:`TrainStep`
(zero_grad, forward under autocast, loss, backward, optimizer step); the loss and the correct
predictions are summed on the device (no host synchronisation per batch), and the training
time is taken with the backend's timer (CUDA events on CUDA) around the training batches
alone, as d2l's ``Timer`` does. Then the test set is evaluated in eval mode. A row per epoch:
train loss, train accuracy, test accuracy, examples/sec (training examples / training time)
and the epoch's wall time. Around the training batches the machine is sampled as around a
throughput row (:mod:`archprobe.runtime.load`): other processes' CPU use and CPU steal put the
same ``busy`` / ``steal`` codes in the epoch's row (every rank's window gathered, with ranks).

Faults end the run, never the sweep: a loss that stops being finite (checked every
``check_every`` batches and at the end of each epoch) is ``diverged``; an out-of-memory error
is ``oom`` (the batch size is never changed); anything else is ``error``. Ctrl-C raises
:class:`TrainingInterrupted`, which carries the run so far.

How the data and the work are shared is the runner's :class:`Replicas`: one process
(:class:`SingleProcess`, the default) or one rank of a data-parallel group
(:class:`archprobe.training.distributed.DataParallel`), which wraps the model in
``DistributedDataParallel``, serves the rank its ``DistributedSampler`` share of each epoch and
sums the epoch's figures over the ranks. The loop is the same.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from archprobe.errors import UsageError, as_interrupted, first_line
from archprobe.probe import Mode, Probe, model_dtype
from archprobe.results import EpochRow, ModelCounts, Note, Recipe, TrainRun, plain
from archprobe.runtime.backends import Devices, is_oom
from archprobe.runtime.load import group_load, machine_warnings, sample, window
from archprobe.runtime.precision import autocast, grad_scaler
from archprobe.plumbing.signals import signals_deferred
from archprobe.runtime.step import ClassificationLoss, TrainStep, logits_of, make_optimizer, seeded
from archprobe.runtime.timing import Clock
from archprobe.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from archprobe.training.loader import DeviceData

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from archprobe.training.datasets import ImageData
    from archprobe.zoo.spec import ModelSpec

EpochCallback = Callable[[EpochRow, TrainRun], None]
ERROR_LIMIT = 300  # characters of a failed run's error kept in the run
BatchCallback = Callable[[int, int], None]  # (batches done this epoch, batches per epoch)
# Recipe fields a resumed run must share with its checkpoint (the epoch count may grow).
RESUME_KEYS = ("optimizer", "lr", "batch_size", "resize", "momentum", "weight_decay", "label_smoothing",
               "init", "dtype", "seed")


class Diverged(Exception):
    def __init__(self, epoch: int, batch: int | None, value: float):
        where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
        super().__init__(f"the training loss became {value} in {where}")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; ``run`` holds every finished epoch (status
    ``interrupted``), ``signum`` the signal (SIGINT for a plain ``KeyboardInterrupt``)."""

    def __init__(self, run: TrainRun, cause: BaseException | None = None):
        self.signum = as_interrupted(cause).signum if isinstance(cause, KeyboardInterrupt) else signal.SIGINT
        super().__init__(f"interrupted: {run.label} after {run.epochs_done} epochs")
        self.run = run


def xavier_init(model: "nn.Module") -> None:
    """d2l's ``init_weights``: ``xavier_uniform_`` on the weight of every ``Linear`` and
    ``Conv2d`` (exact types, as the book tests them; biases keep their initialisation)."""
    from torch import nn

    for module in model.modules():
        if type(module) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)


class Replicas(Protocol):
    """How the model, the data and the figures are shared between the processes of a run."""

    rank: int  # this process's rank; only rank 0 writes checkpoints
    world_size: int | None  # None: one process, no process group

    def setup(self, run: TrainRun, backend) -> dict[str, Any]:
        """The fields of the run that describe the group (none for one process)."""
        ...

    def wrap(self, model: "nn.Module") -> "nn.Module":
        """The model the training step runs (``model`` is built, initialised and on the device)."""
        ...

    def unwrap(self, model: "nn.Module") -> "nn.Module":
        """The model itself, from what :meth:`wrap` returned."""
        ...

    def start_epoch(self) -> None: ...

    def train_order(self, examples: int, epoch: int, shuffle: "torch.Generator") -> "torch.Tensor":
        """The training examples this process takes in ``epoch`` (1-based), in order."""
        ...

    def test_order(self, examples: int) -> "torch.Tensor | None":
        """The test examples this process evaluates (None: all of them, in order)."""
        ...

    def total(self, values: "torch.Tensor") -> "torch.Tensor":
        """``values`` summed over the processes (a new tensor)."""
        ...

    def slowest(self, seconds: float) -> float:
        """The longest of the processes' ``seconds``."""
        ...

    def share_buffers(self, model: "nn.Module") -> None:
        """Give every process rank 0's buffers (BatchNorm statistics) before evaluating."""
        ...

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (a collective: every process calls it)."""
        ...

    @property
    def failures_are_local(self) -> bool:
        """Whether a failure may end the run alone; False where peers would wait for this process."""
        ...


class SingleProcess:
    """One process holds the model and the whole data set; the shuffle is one ``randperm``."""

    rank = 0
    world_size = None
    failures_are_local = True

    def setup(self, run: TrainRun, backend) -> dict[str, Any]:
        return {}

    def wrap(self, model):
        return model

    def unwrap(self, model):
        return model

    def start_epoch(self) -> None:
        pass

    def train_order(self, examples, epoch, shuffle):
        import torch

        return torch.randperm(examples, generator=shuffle)

    def test_order(self, examples):
        return None

    def total(self, values):
        return values

    def slowest(self, seconds):
        return seconds

    def share_buffers(self, model) -> None:
        pass

    def gather(self, value):
        return [value]


class TrainRunner(Devices):
    """Trains one model on one device at a time; caches backends and environments.

    ``threads``: CPU threads (default: the physical cores, as throughput uses);
    ``check_every``: batches between two checks that the loss is still finite (each check
    waits for the device); ``replicas``: how the work is shared (default: one process).
    """

    def __init__(self, *, threads: int | None = None, check_every: int = 50, clock: Clock = time.perf_counter,
                 backend_factory: Callable[[str], Any] | None = None, replicas: Replicas | None = None):
        self.threads = threads
        self.check_every = check_every
        super().__init__(backend_factory, clock)
        self.clock = clock
        self.replicas = replicas or SingleProcess()

    def run(self, spec: "ModelSpec", device: str, data: "ImageData", recipe: Recipe, *,
            counts: ModelCounts | None = None, checkpoint: str | Path | None = None, resume: bool = False,
            workers: int = 0, placement: str | None = None, on_epoch: EpochCallback | None = None,
            on_batch: BatchCallback | None = None) -> TrainRun:
        """Train ``spec`` (its input shape settled to the data set's channels and ``recipe.resize``)
        on ``device`` for ``recipe.epochs`` epochs in all.

        With ``checkpoint``, one is written after every epoch; with ``resume`` too, the run
        continues after the epoch the checkpoint holds (its rows come first in the result, an
        interrupted or failed one included). The checkpoint is read and checked before anything
        is built: one that cannot be read raises an ``ArchprobeError`` naming it, one trained
        otherwise a ``UsageError``.
        ``on_epoch(row, run_so_far)`` is called after each epoch, inside the block a Ctrl-C
        does not interrupt, together with the checkpoint.
        """
        backend = self.backend(device)
        run = self.new_run(spec, device, data, recipe, counts)
        # Read and checked before anything is built: a checkpoint that cannot be read or resumed
        # ends the sweep naming it (the directory's record untouched), and from here on an
        # interrupt or a failure keeps the epochs it holds.
        saved = load_checkpoint(checkpoint, backend.device) if resume and checkpoint else None
        if saved is not None:
            check_resumable(saved, run, checkpoint)
        with backend.settings(threads=self.threads) as applied:
            run = replace(run, threads=applied["threads"], cudnn_benchmark=applied["cudnn_benchmark"],
                          **self.replicas.setup(run, backend))
            try:
                with seeded(backend.device):  # the caller's random state is restored afterwards
                    return self._train(run, spec, backend, data, recipe, checkpoint, saved, workers, placement,
                                       on_epoch, on_batch)
            finally:
                backend.cleanup()

    def new_run(self, spec: "ModelSpec", device: str, data: "ImageData", recipe: Recipe,
                counts: ModelCounts | None = None) -> TrainRun:
        """The record of a run about to start: the model, data, recipe and environment, no epochs."""
        return TrainRun(
            model=spec.name, device=device, dataset=data.name, status="ok", recipe=recipe,
            input_shape=tuple(spec.input_shape), params=counts.params if counts else None,
            macs=counts.macs if counts else None, environment=self.environment(device),
            train_examples=len(data.train_labels), test_examples=len(data.test_labels),
        )

    # -- the loop ------------------------------------------------------------------------------

    def _train(self, run: TrainRun, spec, backend, data, recipe, checkpoint, saved, workers, placement,
               on_epoch, on_batch) -> TrainRun:
        import torch

        device = backend.device
        replicas = self.replicas
        if saved is not None:
            run = replace(resumed(run, saved), notes=run.notes + self._world_change_note(saved))
        rows = list(run.epochs)
        try:
            torch.manual_seed(recipe.seed)
            # Built on the CPU, then moved: the same seed gives the same initial weights on any device.
            model = Probe.build(spec, batch_size=recipe.batch_size, mode=Mode.TRAIN, device="cpu").model
            if recipe.init == "xavier":
                xavier_init(model)
            model.to(device).train()
            params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                raise UsageError(f"{spec.name} has no trainable parameters")
            scaler = grad_scaler(device, recipe.dtype)
            optimizer = make_optimizer(recipe.optimizer, params, lr=recipe.lr, momentum=recipe.momentum,
                                       weight_decay=recipe.weight_decay)
            step = TrainStep(replicas.wrap(model), optimizer,
                             ClassificationLoss(recipe.label_smoothing), scaler=scaler,
                             autocast=autocast(device, recipe.dtype))
            batches = DeviceData(data, device, recipe.resize, workers=workers, placement=placement,
                                 dtype=model_dtype(model))
            shuffle = torch.Generator().manual_seed(recipe.seed)
            run = replace(run, notes=run.notes + self._placement_note(batches, workers)
                          + _last_batch_note(batches.train_examples, replicas.world_size, recipe.batch_size))
            if saved is not None:
                self._restore(saved, step, shuffle, device, checkpoint)
            run = _summarised(run, rows)
            for epoch in range(len(rows) + 1, recipe.epochs + 1):
                row = self._epoch(epoch, run, step, batches, backend, shuffle, on_batch)
                rows.append(row)
                run = _summarised(run, rows)
                # every rank takes part in the payload (its random states); rank 0 writes it
                payload = self._payload(run, rows, step, shuffle, device) if checkpoint else None
                # The checkpoint, then the epoch's row, with Ctrl-C held back; after a kill between
                # the two, the checkpoint holds the row and a resumed run writes it.
                with signals_deferred():
                    if payload is not None and replicas.rank == 0:
                        save_checkpoint(checkpoint, payload)
                    if on_epoch is not None:
                        on_epoch(row, run)
            return run
        except KeyboardInterrupt as exc:
            raise TrainingInterrupted(replace(_summarised(run, rows), status="interrupted"), exc) from None
        except UsageError:
            raise
        except Diverged as exc:
            return replace(_summarised(run, rows), status="diverged", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the run records the failure; the sweep goes on
            if not replicas.failures_are_local:
                raise  # the rank ends, so that the launcher stops its peers and names it
            status = "oom" if is_oom(exc) else "error"
            return replace(_summarised(run, rows), status=status, error=first_line(exc, limit=ERROR_LIMIT))

    def _epoch(self, epoch: int, run: TrainRun, step: TrainStep, batches: DeviceData, backend, shuffle,
               on_batch: BatchCallback | None) -> EpochRow:
        import torch

        recipe, device, replicas = run.recipe, backend.device, self.replicas
        replicas.start_epoch()
        backend.synchronize()
        started = self.clock()
        before = sample()
        order = replicas.train_order(batches.train_examples, epoch, shuffle)
        if _ends_in_one(len(order), recipe.batch_size):
            order = order[:-1]  # BatchNorm in training refuses a batch of one example (see _last_batch_note)
        timer = backend.timer()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        total = -(-len(order) // recipe.batch_size)
        marks = [timer.mark()]
        for index, (x, y) in enumerate(batches.train(recipe.batch_size, order), 1):
            loss, out = step(x, y)
            with torch.no_grad():
                loss_sum += loss.detach().float() * len(y)
                correct += (logits_of(out, len(y))[0].argmax(dim=1) == y).sum()
            seen += len(y)
            if index % self.check_every == 0:  # the processes agree: a NaN on any of them is in the sum
                so_far = float(replicas.total(loss_sum))
                if not math.isfinite(so_far):
                    raise Diverged(epoch, index, so_far)
            if on_batch is not None:
                on_batch(index, total)
        marks.append(timer.mark())
        (train_seconds,) = timer.intervals(marks)
        train_seconds = replicas.slowest(train_seconds)
        load = group_load(replicas.gather(window(before, sample())))  # every rank's window
        sums = torch.stack([loss_sum.double(), correct.double(), torch.tensor(seen, dtype=torch.float64, device=device)])
        loss_total, correct_total, seen_total = replicas.total(sums).tolist()
        seen = int(seen_total)
        train_loss = loss_total / seen
        if not math.isfinite(train_loss):
            raise Diverged(epoch, None, train_loss)
        test_acc = self._evaluate(step, batches, recipe)
        backend.synchronize()
        return EpochRow(
            model=run.model, device=run.device, dataset=run.dataset, epoch=epoch, train_loss=train_loss,
            train_acc=int(correct_total) / seen, test_acc=test_acc,
            examples_per_sec=seen / train_seconds if train_seconds > 0 else math.inf,
            epoch_seconds=self.clock() - started, train_seconds=train_seconds, train_examples=seen,
            world_size=replicas.world_size, other_cpu_cores=load.other_cores, process_cpu_cores=load.process_cores,
            cpu_steal=load.steal_share, warnings=machine_warnings(other_cores=load.other_cores, steal=load.steal_share),
        )

    def _evaluate(self, step: TrainStep, batches: DeviceData, recipe: Recipe) -> float:
        """Test accuracy in eval mode (d2l's ``evaluate_accuracy_gpu``), over every test example
        once: each process evaluates its share with rank 0's buffers, and the counts are summed."""
        import torch

        model = self.replicas.unwrap(step.model)
        self.replicas.share_buffers(model)
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=batches.device)
        try:
            with torch.inference_mode(), step.autocast():
                for x, y in batches.test(recipe.batch_size, self.replicas.test_order(batches.test_examples)):
                    correct += (logits_of(model(x), len(y))[0].argmax(dim=1) == y).sum()
        finally:
            model.train()
        return int(self.replicas.total(correct)) / batches.test_examples

    # -- checkpoints ---------------------------------------------------------------------------

    def _payload(self, run: TrainRun, rows: list[EpochRow], step: TrainStep, shuffle, device) -> dict:
        """The checkpoint: the model itself (unwrapped from DDP, so any number of processes can
        resume it), the optimizer, the rows, and the random states (``rng``: this process's,
        rank 0's in the file; ``rank_rng``: every rank's, in a data-parallel run)."""
        states = rng_states(device, shuffle)
        payload = {
            "model": run.model, "device": run.device, "dataset": run.dataset,
            "train_examples": run.train_examples, "test_examples": run.test_examples,
            "recipe": plain(run.recipe), "epoch": len(rows), "epochs": [asdict(r) for r in rows],
            "model_state": self.replicas.unwrap(step.model).state_dict(),
            "optimizer_state": step.optimizer.state_dict(),
            "scaler_state": step.scaler.state_dict() if step.scaler is not None else None,
            "rng": states, "world_size": run.world_size,
        }
        if run.world_size:
            payload["rank_rng"] = self.replicas.gather(states)
        return payload

    def _restore(self, saved: dict, step: TrainStep, shuffle, device, path) -> None:
        """Load a checkpoint (checked by :func:`check_resumable`) into the run's model, after
        checking it holds that model's weights, and its optimizer. Each process takes its own
        saved random states where the checkpoint has them (a rank the saved run did not have
        keeps its fresh ones)."""
        model = self.replicas.unwrap(step.model)
        check_weights(saved, model, path)
        model.load_state_dict(saved["model_state"])
        step.optimizer.load_state_dict(saved["optimizer_state"])
        if step.scaler is not None and saved.get("scaler_state"):
            step.scaler.load_state_dict(saved["scaler_state"])
        states = saved.get("rank_rng") or [saved["rng"]]
        if self.replicas.rank < len(states):
            restore_rng_states(states[self.replicas.rank], device, shuffle)

    def _world_change_note(self, saved: dict) -> tuple[Note, ...]:
        before, now = saved.get("world_size"), self.replicas.world_size
        if before == now:
            return ()
        return (Note.of("world_size_changed", before=before, now=now),)

    @staticmethod
    def _placement_note(batches: DeviceData, workers: int) -> tuple[Note, ...]:
        if batches.placement == "host":
            return (Note.of("data_on_host", workers=workers),)
        return ()


def _ends_in_one(examples: int, batch_size: int) -> bool:
    return examples > 1 and examples % batch_size == 1


def _last_batch_note(examples: int, world_size: int | None, batch_size: int) -> tuple[Note, ...]:
    """A note where each epoch's last training batch would hold one example, which is left out:
    BatchNorm in training needs more than one value per channel (``BatchNorm1d`` after a Linear
    fails on it), and one example's gradient is no batch's. Each rank takes ``ceil(examples /
    world_size)`` (``DistributedSampler`` pads), so every rank leaves it out or none does."""
    share = -(-examples // (world_size or 1))
    return (Note.of("last_batch_dropped", examples=share),) if _ends_in_one(share, batch_size) else ()


def check_resumable(saved: dict, run: TrainRun, path) -> None:
    """A :class:`UsageError` unless checkpoint ``saved`` was trained with ``run``'s recipe and
    data, of the same model (its spec string), and holds no more epochs than the run asks for."""
    if saved.get("model") != run.model:
        raise UsageError(f"{path} holds a run of {saved.get('model')!r}, not {run.model!r}; train "
                         f"{run.model!r} into another directory", param="resume")
    recipe = plain(run.recipe)
    mismatched = [f"{key} {saved['recipe'].get(key)!r} (now {recipe[key]!r})"
                  for key in RESUME_KEYS if saved["recipe"].get(key) != recipe[key]]
    for key in ("dataset", "train_examples", "test_examples"):
        if saved.get(key) != getattr(run, key):
            mismatched.append(f"{key} {saved.get(key)!r} (now {getattr(run, key)!r})")
    if mismatched:
        raise UsageError(f"{path} was trained with {', '.join(mismatched)}; resume with the same recipe "
                         "and data, or train into another directory", param="resume")
    if saved["epoch"] > run.recipe.epochs:
        raise UsageError(f"{path} already holds {saved['epoch']} epochs, more than the {run.recipe.epochs} "
                         "asked for", param="epochs")


def check_weights(saved: dict, model: "nn.Module", path) -> None:
    """A :class:`UsageError` unless checkpoint ``saved`` holds ``model``'s state: the same names
    and shapes (one spec string can name other code since: an edited file, another directory)."""
    have = {name: tuple(value.shape) for name, value in saved["model_state"].items()}
    want = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    if have == want:
        return
    differ = [f"{name} {_shape_text(have.get(name))} (now {_shape_text(want.get(name))})"
              for name in [*want, *(n for n in have if n not in want)] if have.get(name) != want.get(name)]
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    raise UsageError(f"{path} holds weights of another model than {saved.get('model')!r} builds now: "
                     f"{', '.join(differ[:3])}{more}; train it into another directory", param="resume")


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "absent"
    return "x".join(map(str, shape)) or "scalar"


def resumed(run: TrainRun, saved: dict) -> TrainRun:
    """``run`` continuing checkpoint ``saved``: its finished epochs, and the figures over them,
    are the run's from the start (a resume that fails or is interrupted still records them)."""
    rows = [EpochRow(**{**row, "warnings": tuple(row.get("warnings") or ())}) for row in saved["epochs"]]
    return _summarised(replace(run, resumed_from=len(rows)), rows)


def _summarised(run: TrainRun, rows: list[EpochRow]) -> TrainRun:
    """``run`` with its rows and the figures over them."""
    if not rows:
        return replace(run, epochs=(), epochs_done=0)
    train_seconds = sum(r.train_seconds for r in rows)
    examples = sum(r.train_examples for r in rows)
    return replace(
        run, epochs=tuple(rows), epochs_done=len(rows), test_acc=rows[-1].test_acc,
        train_loss=rows[-1].train_loss, train_acc=rows[-1].train_acc,
        warnings=tuple(dict.fromkeys(code for r in rows for code in r.warnings)),
        best_test_acc=max(r.test_acc for r in rows), train_seconds=train_seconds,
        total_seconds=sum(r.epoch_seconds for r in rows),
        examples_per_sec=examples / train_seconds if train_seconds > 0 else None,
    )
