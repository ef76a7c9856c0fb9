"""Parameter, MAC and FLOP counts of a model, on the meta device (no weights allocated).

* ``params``: every parameter of the built module.
* ``params_forward``: the parameters an eval-mode forward reads (seen at dispatch level);
  aux heads of GoogLeNet/Inception are built but not run in eval.
* ``trainable``: parameters with ``requires_grad``.
* ``macs`` / ``flops``: see ``archprobe.analysis.costs`` for the conventions.
* ``train_macs`` / ``train_flops`` (optional): one training step's forward (training mode:
  aux heads and dropout run, BatchNorm uses batch statistics), cross-entropy loss and
  backward, each op counted where it runs at dispatch level (not assumed as 3x forward).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from archprobe.errors import ArchprobeError, InputSizeError
from archprobe.report.columns import column

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from archprobe.analysis.trace import Trace
    from archprobe.zoo.spec import ModelSpec

BYTES_PER_FP32 = 4


@dataclass(frozen=True)
class ModelCounts:
    model: str = column("Model")
    input_shape: tuple[int, ...] = column("Input", "shape")
    params: int = column("Params", "count")
    params_forward: int = column("Params (fwd)", "count")
    trainable: int = column("Trainable", "count")
    param_bytes: int = column("Param mem (fp32)", "bytes")
    macs: int = column("MACs", "macs")
    flops: int = column("FLOPs", "flops")
    conv_params: int = column("Conv params", "count")
    linear_params: int = column("Linear params", "count")
    linear_share: float = column("In linear", "percent")
    train_macs: int | None = column("Train-step MACs", "macs", default=None)
    train_flops: int | None = column("Train-step FLOPs", "flops", default=None)
    fvcore_macs: int | None = column("fvcore MACs", "macs", default=None)
    unsupported_ops: tuple[str, ...] = field(default=())
    counter: str = "archprobe"


@dataclass(frozen=True)
class CostTotals:
    macs: int
    flops: int
    unsupported: tuple[str, ...]


def traced(
    spec: "ModelSpec",
    model: "nn.Module",
    batch_size: int = 1,
    *,
    train: bool = False,
    backward: bool = False,
    track_modules: bool = True,
) -> "Trace":
    """Trace ``model`` at the spec's input shape; a size the model cannot take becomes a
    one-line ``InputSizeError`` naming the layer and, where known, the valid sizes."""
    from archprobe.analysis.trace import TraceFailure, make_input, trace

    shape = (batch_size, *spec.input_shape)
    try:
        return trace(model, make_input(shape), train=train, backward=backward, track_modules=track_modules)
    except TraceFailure as failure:
        if not track_modules:  # trace again with module hooks to name the failing layer
            return traced(spec, model, batch_size, train=train, backward=backward, track_modules=True)
        _explain_failure(spec, model, batch_size, train)
        error_type = InputSizeError if _is_size_error(failure) else ArchprobeError
        raise error_type(f"{spec.name} failed on input {'x'.join(map(str, shape))}: {failure}") from failure


_SIZE_ERRORS = ("too small", "cannot be multiplied", "must match", "Expected more than 1 value",
                "Kernel size can't be greater", "shape '[", "Padding size should be less")


def _is_size_error(failure) -> bool:
    return any(text in str(failure) for text in _SIZE_ERRORS)


def _explain_failure(spec, model, batch_size, train) -> None:
    """Raise an ``InputSizeError`` stating the valid sizes when the input size is the cause."""
    from archprobe.analysis.min_input import check_input_size

    _, height, width = spec.input_shape
    try:
        check_input_size(spec, model, height, width, train=train, batch_size=batch_size)
    except InputSizeError:
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


def count(
    spec: "ModelSpec",
    *,
    batch_size: int = 1,
    train: bool = False,
    counter: str = "archprobe",
    model: "nn.Module | None" = None,
) -> ModelCounts:
    """Count ``spec`` at its input shape and ``batch_size``; ``train`` adds the training step."""
    from archprobe.analysis.trace import BACKWARD, FORWARD, LOSS

    model = model if model is not None else spec.build("meta")
    forward = traced(spec, model, batch_size, track_modules=False)
    totals = cost_totals(forward, (FORWARD,))
    train_totals = None
    if train:
        step = traced(spec, model, batch_size, train=True, backward=True, track_modules=False)
        train_totals = cost_totals(step, (FORWARD, LOSS, BACKWARD))
    params = sum(p.numel() for p in model.parameters())
    conv, linear = _layer_params(model)
    unsupported = totals.unsupported + (train_totals.unsupported if train_totals else ())
    return ModelCounts(
        model=spec.name,
        input_shape=(batch_size, *spec.input_shape),
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
        fvcore_macs=fvcore_macs(spec, batch_size) if counter == "fvcore" else None,
        unsupported_ops=tuple(dict.fromkeys(unsupported)),
        counter=counter,
    )


def count_flops(spec: "ModelSpec", *, batch_size: int = 1, train: bool = False) -> int:
    """FLOPs of one forward pass, or of one training step (forward + loss + backward).

    Traces only the pass asked for (``count`` with ``train`` traces the forward as well).
    """
    from archprobe.analysis.trace import BACKWARD, FORWARD, LOSS

    model = spec.build("meta")
    t = traced(spec, model, batch_size, train=train, backward=train, track_modules=False)
    return cost_totals(t, (FORWARD, LOSS, BACKWARD) if train else (FORWARD,)).flops


def fvcore_macs(spec: "ModelSpec", batch_size: int = 1) -> int:
    """fvcore's count on real CPU tensors (fvcore is imported only here).

    fvcore counts one "flop" per MAC for conv/linear/matmul but also counts BatchNorm,
    adaptive pooling and upsampling, so it runs a little above archprobe's ``macs``.
    """
    import torch
    from fvcore.nn import FlopCountAnalysis

    model = spec.build("cpu")
    analysis = FlopCountAnalysis(model, torch.randn(batch_size, *spec.input_shape))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    try:
        return int(analysis.total())
    except Exception as exc:  # noqa: BLE001 - fvcore's tracer fails on some models
        raise ArchprobeError(f"fvcore could not count {spec.name}: {type(exc).__name__}: {exc}") from exc


def parameter_note(results: list[ModelCounts]) -> str | None:
    """Why some models are small, stated from the numbers (seed 000, question 3)."""
    if len(results) < 2:
        return None
    heavy = [r for r in results if r.linear_share >= 0.5]
    light = [r for r in results if r.linear_share < 0.5]
    if not heavy or not light:
        return None

    def m(n: int) -> str:
        return f"{n / 1e6:.1f}M"

    heavy_text = ", ".join(
        f"{r.model} keeps {m(r.linear_params)} of its {m(r.params)} parameters "
        f"({100 * r.linear_share:.0f}%) in fully connected layers"
        for r in heavy
    )
    light_text = "; ".join(
        f"{r.model}: {m(r.params)}, "
        + (f"{m(r.linear_params)} ({100 * r.linear_share:.0f}%) in linear layers" if r.linear_params
           else "none in linear layers")
        for r in light
    )
    return (
        f"Where the parameters live: {heavy_text}. "
        f"The small models ({light_text}) replace those layers with 1x1 convolutions and "
        "global average pooling, so the classifier no longer multiplies a large flattened "
        "feature map by a 4096-wide matrix; convolution weights do not grow with the "
        "image size."
    )
