"""One model trained on one device with its recipe: the book's ``train_ch6`` loop, on the runtime.

Per epoch: the shuffled training batches go through the runtime's :class:`TrainStep`
(zero_grad, forward under autocast, loss, backward, optimizer step); the loss and the correct
predictions are summed on the device (no host synchronisation per batch), and the training
time is taken with the backend's timer (CUDA events on CUDA) around the training batches
alone, as d2l's ``Timer`` does. Then the test set is evaluated in eval mode. A row per epoch:
train loss, train accuracy, test accuracy, examples/sec (training examples / training time)
and the epoch's wall time.

Faults end the run, never the sweep: a loss that stops being finite (checked every
``check_every`` batches and at the end of each epoch) is ``diverged``; an out-of-memory error
is ``oom`` (the batch size is never changed); anything else is ``error``. Ctrl-C raises
:class:`TrainingInterrupted`, which carries the run so far.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from archprobe.errors import UsageError
from archprobe.probe import Mode, Probe
from archprobe.results import EpochRow, ModelCounts, Recipe, TrainRun, plain
from archprobe.runtime.backends import Devices, is_oom
from archprobe.runtime.precision import autocast, grad_scaler
from archprobe.runtime.step import ClassificationLoss, TrainStep, logits_of, seeded
from archprobe.runtime.timing import Clock
from archprobe.training.checkpoint import (
    deferred_interrupt,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from archprobe.training.loader import DeviceData

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from archprobe.training.datasets import ImageData
    from archprobe.zoo.spec import ModelSpec

EpochCallback = Callable[[EpochRow, TrainRun], None]
BatchCallback = Callable[[int, int], None]  # (batches done this epoch, batches per epoch)
# Recipe fields a resumed run must share with its checkpoint (the epoch count may grow).
RESUME_KEYS = ("optimizer", "lr", "batch_size", "resize", "momentum", "weight_decay", "label_smoothing",
               "init", "dtype", "seed")


class Diverged(Exception):
    def __init__(self, epoch: int, batch: int | None, value: float):
        where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
        super().__init__(f"the training loss became {value} in {where}")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``run`` holds every finished epoch (status ``interrupted``)."""

    def __init__(self, run: TrainRun):
        super().__init__(f"interrupted: {run.label} after {run.epochs_done} epochs")
        self.run = run


def xavier_init(model: "nn.Module") -> None:
    """d2l's ``init_weights``: ``xavier_uniform_`` on the weight of every ``Linear`` and
    ``Conv2d`` (exact types, as the book tests them; biases keep their initialisation)."""
    from torch import nn

    for module in model.modules():
        if type(module) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)


def make_optimizer(recipe: Recipe, params) -> "torch.optim.Optimizer":
    import torch

    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TrainRunner(Devices):
    """Trains one model on one device at a time; caches backends and environments.

    ``threads``: CPU threads (default: the physical cores, as throughput uses);
    ``check_every``: batches between two checks that the loss is still finite (each check
    waits for the device).
    """

    def __init__(self, *, threads: int | None = None, check_every: int = 50, clock: Clock = time.perf_counter,
                 backend_factory: Callable[[str], Any] | None = None):
        self.threads = threads
        self.check_every = check_every
        super().__init__(backend_factory, clock)
        self.clock = clock

    def run(self, spec: "ModelSpec", device: str, data: "ImageData", recipe: Recipe, *,
            counts: ModelCounts | None = None, checkpoint: str | Path | None = None, resume: bool = False,
            workers: int = 0, placement: str | None = None, on_epoch: EpochCallback | None = None,
            on_batch: BatchCallback | None = None) -> TrainRun:
        """Train ``spec`` (its input shape settled to the data set's channels and ``recipe.resize``)
        on ``device`` for ``recipe.epochs`` epochs in all.

        With ``checkpoint``, one is written after every epoch; with ``resume`` too, the run
        continues after the epoch the checkpoint holds (its rows come first in the result).
        ``on_epoch(row, run_so_far)`` is called after each epoch, inside the block a Ctrl-C
        does not interrupt, together with the checkpoint.
        """
        backend = self.backend(device)
        run = TrainRun(
            model=spec.name, device=device, dataset=data.name, status="ok", recipe=recipe,
            input_shape=tuple(spec.input_shape), params=counts.params if counts else None,
            macs=counts.macs if counts else None, environment=self.environment(device),
        )
        with backend.settings(threads=self.threads) as applied:
            run = replace(run, threads=applied["threads"], cudnn_benchmark=applied["cudnn_benchmark"])
            try:
                with seeded(backend.device):  # the caller's random state is restored afterwards
                    return self._train(run, spec, backend, data, recipe, checkpoint, resume, workers, placement,
                                       on_epoch, on_batch)
            finally:
                backend.cleanup()

    # -- the loop ------------------------------------------------------------------------------

    def _train(self, run: TrainRun, spec, backend, data, recipe, checkpoint, resume, workers, placement,
               on_epoch, on_batch) -> TrainRun:
        import torch

        device = backend.device
        rows: list[EpochRow] = []
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
            step = TrainStep(model, make_optimizer(recipe, params), ClassificationLoss(recipe.label_smoothing),
                             scaler=scaler, autocast=autocast(device, recipe.dtype))
            batches = DeviceData(data, device, recipe.resize, workers=workers, placement=placement)
            shuffle = torch.Generator().manual_seed(recipe.seed)
            run = replace(run, train_examples=batches.train_examples, test_examples=batches.test_examples,
                          notes=run.notes + self._placement_note(batches, workers))
            saved = load_checkpoint(checkpoint, device) if resume and checkpoint else None
            if saved is not None:
                rows = self._restore(saved, run, step, shuffle, device, checkpoint)
                run = replace(run, resumed_from=len(rows))
            run = _summarised(run, rows)
            for epoch in range(len(rows) + 1, recipe.epochs + 1):
                row = self._epoch(epoch, run, step, batches, backend, shuffle, on_batch)
                rows.append(row)
                run = _summarised(run, rows)
                with deferred_interrupt():
                    if checkpoint:
                        save_checkpoint(checkpoint, self._payload(run, rows, step, shuffle, device))
                    if on_epoch is not None:
                        on_epoch(row, run)
            return run
        except KeyboardInterrupt:
            raise TrainingInterrupted(replace(_summarised(run, rows), status="interrupted")) from None
        except UsageError:
            raise
        except Diverged as exc:
            return replace(_summarised(run, rows), status="diverged", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the run records the failure; the sweep goes on
            status = "oom" if is_oom(exc) else "error"
            return replace(_summarised(run, rows), status=status, error=_one_line(exc))

    def _epoch(self, epoch: int, run: TrainRun, step: TrainStep, batches: DeviceData, backend, shuffle,
               on_batch: BatchCallback | None) -> EpochRow:
        import torch

        recipe, device = run.recipe, backend.device
        backend.synchronize()
        started = self.clock()
        timer = backend.timer()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        total = batches.batches_per_epoch(recipe.batch_size)
        marks = [timer.mark()]
        for index, (x, y) in enumerate(batches.train(recipe.batch_size, shuffle), 1):
            loss, out = step(x, y)
            with torch.no_grad():
                loss_sum += loss.detach().float() * len(y)
                correct += (logits_of(out, len(y))[0].argmax(dim=1) == y).sum()
            seen += len(y)
            if index % self.check_every == 0 and not bool(torch.isfinite(loss_sum)):
                raise Diverged(epoch, index, float(loss_sum))
            if on_batch is not None:
                on_batch(index, total)
        marks.append(timer.mark())
        (train_seconds,) = timer.intervals(marks)
        train_loss = float(loss_sum) / seen
        if not math.isfinite(train_loss):
            raise Diverged(epoch, None, train_loss)
        test_acc = self._evaluate(step, batches, recipe)
        backend.synchronize()
        return EpochRow(
            model=run.model, device=run.device, dataset=run.dataset, epoch=epoch, train_loss=train_loss,
            train_acc=int(correct) / seen, test_acc=test_acc,
            examples_per_sec=seen / train_seconds if train_seconds > 0 else math.inf,
            epoch_seconds=self.clock() - started, train_seconds=train_seconds, train_examples=seen,
        )

    def _evaluate(self, step: TrainStep, batches: DeviceData, recipe: Recipe) -> float:
        """Test accuracy in eval mode (d2l's ``evaluate_accuracy_gpu``)."""
        import torch

        model = step.model
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=batches.device)
        try:
            with torch.inference_mode(), step.autocast():
                for x, y in batches.test(recipe.batch_size):
                    correct += (logits_of(model(x), len(y))[0].argmax(dim=1) == y).sum()
        finally:
            model.train()
        return int(correct) / batches.test_examples

    # -- checkpoints ---------------------------------------------------------------------------

    @staticmethod
    def _payload(run: TrainRun, rows: list[EpochRow], step: TrainStep, shuffle, device) -> dict:
        return {
            "model": run.model, "device": run.device, "dataset": run.dataset,
            "train_examples": run.train_examples, "test_examples": run.test_examples,
            "recipe": plain(run.recipe), "epoch": len(rows), "epochs": [asdict(r) for r in rows],
            "model_state": step.model.state_dict(), "optimizer_state": step.optimizer.state_dict(),
            "scaler_state": step.scaler.state_dict() if step.scaler is not None else None,
            "rng": rng_states(device, shuffle),
        }

    @staticmethod
    def _restore(saved: dict, run: TrainRun, step: TrainStep, shuffle, device, path) -> list[EpochRow]:
        """Load a checkpoint into the run's model and optimizer, after checking it was trained
        the same way; returns its epochs' rows."""
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
        step.model.load_state_dict(saved["model_state"])
        step.optimizer.load_state_dict(saved["optimizer_state"])
        if step.scaler is not None and saved.get("scaler_state"):
            step.scaler.load_state_dict(saved["scaler_state"])
        restore_rng_states(saved["rng"], device, shuffle)
        return [EpochRow(**row) for row in saved["epochs"]]

    @staticmethod
    def _placement_note(batches: DeviceData, workers: int) -> tuple[str, ...]:
        if batches.placement == "host":
            return (f"the data set stays in host memory (too large for a quarter of the free device memory); "
                    f"batches come through a DataLoader with {workers} workers",)
        return ()


def _summarised(run: TrainRun, rows: list[EpochRow]) -> TrainRun:
    """``run`` with its rows and the figures over them."""
    if not rows:
        return replace(run, epochs=(), epochs_done=0)
    train_seconds = sum(r.train_seconds for r in rows)
    examples = sum(r.train_examples for r in rows)
    return replace(
        run, epochs=tuple(rows), epochs_done=len(rows), test_acc=rows[-1].test_acc,
        best_test_acc=max(r.test_acc for r in rows), train_seconds=train_seconds,
        total_seconds=sum(r.epoch_seconds for r in rows),
        examples_per_sec=examples / train_seconds if train_seconds > 0 else None,
    )
