"""Parameter, MAC and FLOP counts of a model, on the meta device (no weights allocated).

* ``params``: every parameter of the built module.
* ``params_forward``: the parameters an eval-mode forward reads (seen at dispatch level);
  aux heads of GoogLeNet/Inception are built but not run in eval.
* ``trainable``: parameters with ``requires_grad``.
* ``macs`` / ``flops``: see ``archprobe.analysis.costs`` for the conventions.
* ``train_macs`` / ``train_flops`` (probe in training mode): one training step's forward
  (training mode: aux heads and dropout run, BatchNorm uses batch statistics), cross-entropy
  loss and backward, each op counted where it runs at dispatch level (not assumed as 3x forward).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archprobe.errors import ArchprobeError, InputSizeError, ModelCodeError, first_line
from archprobe.results import ModelCounts

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from archprobe.analysis.trace import Trace
    from archprobe.probe import Probe

BYTES_PER_FP32 = 4


@dataclass(frozen=True)
class CostTotals:
    macs: int
    flops: int
    unsupported: tuple[str, ...]


def traced(probe: "Probe", *, train: bool = False, backward: bool = False, track_modules: bool = True) -> "Trace":
    """Trace the probe's model at its input shape.

    A failing pass is classified by cause: where other input sizes run (the min-input solver
    finds them), a one-line ``InputSizeError`` naming the layer and the valid sizes; otherwise
    the model's own failure, a one-line ``ModelCodeError`` naming the exception type, the layer
    and the first line of its message.
    """
    from archprobe.analysis.trace import TraceFailure, trace

    try:
        return trace(probe.model, probe.input(), train=train, backward=backward, track_modules=track_modules)
    except TraceFailure as failure:
        if not track_modules:  # trace again with module hooks to name the failing layer
            return traced(probe, train=train, backward=backward, track_modules=True)
        _explain_failure(probe.with_setting(mode=train))
        shape = "x".join(map(str, probe.shape))
        raise ModelCodeError(f"{probe.name} failed on input {shape}: {failure}") from failure


def _explain_failure(probe: "Probe") -> None:
    """Raise an ``InputSizeError`` stating the valid sizes when the input size is the cause."""
    from archprobe.analysis.min_input import check_input_size

    try:
        check_input_size(probe)
    except (InputSizeError, ModelCodeError):
        raise
    except Exception:  # noqa: BLE001 - the solver could not decide; keep the original error
        return


def cost_totals(t: "Trace", phases: tuple[str, ...]) -> CostTotals:
    from archprobe.analysis.costs import op_cost

    macs = flops = 0
    unsupported: Counter[str] = Counter()
    for op in t.ops:
        if op.phase not in phases:
            continue
        cost = op_cost(op)
        if cost is None:
            unsupported[op.overload] += 1
        else:
            macs += cost[0]
            flops += cost[1]
    return CostTotals(macs, flops, tuple(f"{name} (x{n})" for name, n in sorted(unsupported.items())))


def _layer_params(model: "nn.Module") -> tuple[int, int]:
    from torch import nn

    conv = linear = 0
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, nn.modules.conv._ConvNd):
            conv += own
        elif isinstance(module, nn.Linear):
            linear += own
    return conv, linear


def count(probe: "Probe", *, counter: str = "archprobe") -> ModelCounts:
    """Count the probe's model at its input shape and batch size.

    The forward is counted in eval mode; a probe in training mode adds one training step
    (``train_macs``/``train_flops``). ``counter="fvcore"`` adds fvcore's count on real CPU
    tensors as a cross-check.
    """
    from archprobe.analysis.trace import BACKWARD, FORWARD, LOSS

    model = probe.model
    forward = traced(probe, track_modules=False)
    totals = cost_totals(forward, (FORWARD,))
    train_totals = None
    if probe.train:
        step = traced(probe, train=True, backward=True, track_modules=False)
        train_totals = cost_totals(step, (FORWARD, LOSS, BACKWARD))
    params = sum(p.numel() for p in model.parameters())
    conv, linear = _layer_params(model)
    unsupported = totals.unsupported + (train_totals.unsupported if train_totals else ())
    return ModelCounts(
        model=probe.name,
        input_shape=probe.shape,
        params=params,
        params_forward=forward.params_used,
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        param_bytes=params * BYTES_PER_FP32,
        macs=totals.macs,
        flops=totals.flops,
        conv_params=conv,
        linear_params=linear,
        linear_share=linear / params if params else 0.0,
        train_macs=train_totals.macs if train_totals else None,
        train_flops=train_totals.flops if train_totals else None,
        fvcore_macs=fvcore_macs(probe) if counter == "fvcore" else None,
        unsupported_ops=tuple(dict.fromkeys(unsupported)),
        counter=counter,
        notes=probe.notes,
    )


def count_flops(probe: "Probe") -> int:
    """FLOPs of one pass in the probe's mode: an eval forward, or one training step (forward in
    training mode + loss + backward). Traces only that pass."""
    from archprobe.analysis.trace import BACKWARD, FORWARD, LOSS

    t = traced(probe, train=probe.train, backward=probe.train, track_modules=False)
    return cost_totals(t, (FORWARD, LOSS, BACKWARD) if probe.train else (FORWARD,)).flops


def fvcore_macs(probe: "Probe") -> int:
    """fvcore's count on real CPU tensors (fvcore is imported only here).

    fvcore counts one "flop" per MAC for conv/linear/matmul but also counts BatchNorm,
    adaptive pooling and upsampling, so it runs a little above archprobe's ``macs``.
    """
    import torch
    from fvcore.nn import FlopCountAnalysis

    from archprobe.user_code import running_user_code

    model = probe.spec.build("cpu")
    analysis = FlopCountAnalysis(model, torch.randn(probe.shape))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    try:
        with running_user_code(f"forward of {probe.name}"):
            return int(analysis.total())
    except ModelCodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - fvcore's tracer fails on some models
        raise ArchprobeError(f"fvcore could not count {probe.name}: {first_line(exc)}") from exc
