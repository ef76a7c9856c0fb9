"""One step of a model built on a real device, on synthetic data: what throughput times and
what the memory measurement counts.

An eval step is the forward in eval mode under ``torch.inference_mode``; a training step is the
runtime's :func:`~archprobe.runtime.step.train_step` (zero_grad, forward, cross-entropy on
synthetic labels, backward, optimizer step). The batch (and the labels) are made on the device
from a generator seeded with 0.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from archprobe.runtime.precision import autocast
from archprobe.runtime.step import TrainStep, seeded, synthetic_targets, train_step

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from archprobe.probe import Probe


@dataclass
class Workload:
    step: Callable[[], Any]
    context: Callable[[], contextlib.AbstractContextManager]  # entered around all steps
    train_step: TrainStep | None = None  # the training step ``step`` runs, in train mode
    model: Any = None  # the module the step runs (compiled or wrapped as timed)
    inputs: tuple = ()  # the batch and, in training, its labels

    def alive(self):
        """The tensors that exist before a step (weights, state, the batch)."""
        return alive_before_step(self.model, self.train_step, self.inputs)


def step_workload(probe: "Probe", *, dtype: str = "float32", optimizer: str = "sgd", channels_last: bool = False,
                  compile: bool = False, wrap: Callable[[Any], Any] | None = None) -> Workload:
    """The step of ``probe``'s model (built on a real device) at its batch size and mode.

    ``wrap`` (e.g. DistributedDataParallel) wraps the model before it is compiled and the
    optimizer is built."""
    import torch

    device = torch.device(probe.device)
    with seeded(device):
        generator = torch.Generator(device=device)
        generator.manual_seed(0)
        x = torch.randn(probe.shape, device=device, generator=generator, dtype=probe.dtype)
    model = probe.model
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    cast = autocast(device, dtype)
    model.train(probe.train)
    if wrap is not None:
        model = wrap(model)
    if compile:
        model = torch.compile(model)

    if not probe.train:
        def infer():
            return model(x)

        @contextlib.contextmanager
        def inference_context():
            with torch.inference_mode(), cast():
                yield

        return Workload(infer, inference_context, model=model, inputs=(x,))

    step = train_step(model, device, dtype, optimizer)
    with torch.no_grad(), cast():  # one forward for the shapes of the synthetic labels
        targets = synthetic_targets(model(x), probe.batch_size, generator)
    return Workload(lambda: step(x, targets)[0], contextlib.nullcontext, step, model=model, inputs=(x, targets))


def alive_before_step(model: "torch.nn.Module", step, inputs: Iterable) -> Iterable[torch.Tensor]:
    """The tensors alive before a step: parameters, buffers, gradients, optimizer state, and the
    inputs (the batch and its labels; ``None`` entries are skipped)."""
    yield from model.parameters()
    yield from model.buffers()
    yield from (t for t in inputs if _is_tensor(t))
    for item in inputs:  # a list of per-output labels
        if isinstance(item, (list, tuple)):
            yield from (t for t in item if _is_tensor(t))
    if step is not None:
        yield from (p.grad for p in model.parameters() if p.grad is not None)
        for state in step.optimizer.state.values():
            yield from (v for v in state.values() if _is_tensor(v))


def _is_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)
