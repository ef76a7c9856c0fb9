"""The training step every runner shares, and synthetic batches for timing.

A step is ``zero_grad(set_to_none=True)``, the forward under autocast, the loss, the backward
and the optimizer step (through the gradient scaler for float16). Throughput times it on
synthetic on-device data; training experiments run it on real batches; the memory analysis
runs it on fake tensors (and on real ones to check the prediction).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

from archprobe.errors import UsageError
from archprobe.runtime.precision import autocast, grad_scaler

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


def logits_of(out: Any, batch: int) -> list["torch.Tensor"]:
    """The tensors a model returned that have one row per example (logits, aux logits)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        found = [o for o in out if isinstance(o, torch.Tensor) and o.dim() >= 1 and o.shape[0] == batch]
        if found:
            return found
    raise TypeError(f"the model returned {type(out).__name__}, not a tensor of logits")


class ClassificationLoss:
    """Cross-entropy summed over every logits tensor a model returns (aux heads included).

    ``targets`` is one label tensor shared by every output, or one target per output (``None``
    for an output without classes, which then contributes its mean square).
    """

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, out: Any, targets: "torch.Tensor | Sequence[torch.Tensor | None]") -> "torch.Tensor":
        import torch
        import torch.nn.functional as F

        batch = targets.shape[0] if isinstance(targets, torch.Tensor) else len(targets[0])
        outputs = logits_of(out, batch)
        per_output = [targets] * len(outputs) if isinstance(targets, torch.Tensor) else list(targets)
        losses = [
            F.cross_entropy(o.float(), t, label_smoothing=self.label_smoothing) if t is not None
            else o.float().square().mean()
            for o, t in zip(outputs, per_output)
        ]
        return sum(losses[1:], losses[0])


class TrainStep:
    """One optimisation step of ``model``: the attributes are the parts a runner may inspect.

    ``step(x, targets)`` returns ``(loss, outputs)`` without synchronising the device.
    """

    def __init__(
        self,
        model: "nn.Module",
        optimizer: "torch.optim.Optimizer",
        loss_fn: Callable[[Any, Any], "torch.Tensor"],
        *,
        scaler=None,
        autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    ):
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scaler = scaler
        self.autocast = autocast

    def __call__(self, x: "torch.Tensor", targets: Any) -> tuple["torch.Tensor", Any]:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.model(x)
            loss = self.loss_fn(out, targets)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss, out


# The optimizers a step can use, with the settings :func:`make_optimizer` gives them by default.
OPTIMIZERS = {"sgd": "SGD(lr=0.001, momentum=0.9)", "adam": "Adam(lr=0.001)"}


def check_optimizer(name: str) -> str:
    """``name`` if it is a key of :data:`OPTIMIZERS`, else a ``UsageError``."""
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {name!r}: use {', '.join(OPTIMIZERS)}", param="optimizer")
    return name


def make_optimizer(name: str, params: Sequence["torch.Tensor"], *, lr: float = 1e-3, momentum: float = 0.9,
                   weight_decay: float = 0.0, foreach: bool | None = None) -> "torch.optim.Optimizer":
    """The optimizer ``name`` (a key of :data:`OPTIMIZERS`) over ``params`` (``momentum`` is SGD's).

    ``foreach=None`` takes torch's default for the parameters' device (the multi-tensor kernels
    on CUDA, one tensor at a time on the CPU); the memory analysis sets it to model a device.
    """
    import torch

    if check_optimizer(name) == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=foreach)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=foreach)


def train_step(model: "nn.Module", device: "torch.device", dtype: str, optimizer: str = "sgd", *,
               foreach: bool | None = None) -> TrainStep:
    """The training step of ``model`` on ``device``: the optimizer ``optimizer`` over its trainable
    parameters, cross-entropy, autocast for ``dtype`` and a gradient scaler for float16."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return TrainStep(model, make_optimizer(optimizer, params, foreach=foreach), ClassificationLoss(),
                     scaler=grad_scaler(device, dtype), autocast=autocast(device, dtype))


def synthetic_targets(out: Any, batch: int, generator: "torch.Generator") -> list:
    """Random labels for every logits tensor of ``out`` (dense outputs get dense labels)."""
    import torch

    targets: list = []
    for o in logits_of(out, batch):
        if o.dim() >= 2:
            targets.append(torch.randint(0, o.shape[1], (o.shape[0], *o.shape[2:]), device=o.device,
                                         generator=generator))
        else:
            targets.append(None)
    return targets


def seeded(device: "torch.device"):
    """``torch.random.fork_rng`` over the CPU and, on CUDA, the device's generator."""
    import torch

    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)
