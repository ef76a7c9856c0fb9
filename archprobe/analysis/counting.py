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

import warnings
from collections import Counter
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

from archprobe.analysis.guarded import traced
from archprobe.errors import ArchprobeError, ModelCodeError, first_line
from archprobe.probe import dtype_name
from archprobe.results import ModelCounts

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from archprobe.analysis.trace import Trace
    from archprobe.probe import Probe



@dataclass(frozen=True)
class CostTotals:
    """A pass's MACs and FLOPs, the sums of ``by_operator``: ``(operator, calls, macs, flops)``
    per aten operator that costs something, in the order each first ran."""

    macs: int
    flops: int
    unsupported: tuple[str, ...]
    by_operator: tuple[tuple[str, int, int, int], ...] = ()


def op_costs(t: "Trace", phases: tuple[str, ...]):
    """``(op, (macs, flops) | None)`` for every op of ``t`` in ``phases``, in order: the one
    count behind the totals, the per-operator and the per-module breakdowns."""
    from archprobe.analysis.costs import op_cost

    for op in t.ops:
        if op.phase in phases:
            yield op, op_cost(op)


def cost_totals(t: "Trace", phases: tuple[str, ...]) -> CostTotals:
    operators: dict[str, list[int]] = {}
    unsupported: Counter[str] = Counter()
    for op, cost in op_costs(t, phases):
        if cost is None:
            unsupported[op.overload] += 1
        elif cost != (0, 0):
            entry = operators.setdefault(op.name, [0, 0, 0])
            entry[0] += 1
            entry[1] += cost[0]
            entry[2] += cost[1]
    return CostTotals(sum(e[1] for e in operators.values()), sum(e[2] for e in operators.values()),
                      tuple(f"{name} (x{n})" for name, n in sorted(unsupported.items())),
                      tuple((name, *entry) for name, entry in operators.items()))


def _layer_params(model: "nn.Module") -> tuple[int, int, tuple[int, int] | None]:
    """Parameters in convolutions and in linear layers, and the largest linear layer's
    ``(in_features, out_features)``."""
    from torch import nn

    conv = linear = 0
    largest: tuple[int, tuple[int, int]] | None = None
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, nn.modules.conv._ConvNd):
            conv += own
        elif isinstance(module, nn.Linear):
            linear += own
            if largest is None or own > largest[0]:
                largest = (own, (module.in_features, module.out_features))
    return conv, linear, largest[1] if largest else None


# Ops that only reshape or copy: a matrix product's input is followed back through them.
_RESHAPES = frozenset("view _unsafe_view reshape flatten _reshape_alias alias clone contiguous detach".split())


def _from_window(ref, producers: dict, steps: int = 32) -> bool:
    """Was ``ref`` made by a convolution or pool, through ops that keep its shape (activations,
    normalisation, dropout, adds)?"""
    from archprobe.analysis.trace import TensorRef

    for _ in range(steps):
        op = producers.get(ref.id)
        if op is None:
            return False
        if op.window is not None:
            return True
        same = [a for a in op.args if isinstance(a, TensorRef) and a.shape == ref.shape]
        if not same:
            return False
        ref = same[0]
    return False


def flattened_map(t: "Trace") -> tuple[tuple[int, int, int], tuple[int, int]] | None:
    """The first matrix product (a Linear) whose input is a flattened ``C x H x W`` feature map
    with ``H x W > 1``: ``((C, H, W), (in_features, out_features))``, or ``None``.

    A classifier after global pooling flattens a ``C x 1 x 1`` map, and a transformer's Linear
    layers read token sequences, not flattened maps: neither counts.
    """
    from archprobe.analysis.trace import FORWARD, TensorRef

    producers = {}
    for op in t.ops:
        if op.phase != FORWARD:
            continue
        if op.name in ("addmm", "mm"):
            x, weight = (op.named.get("mat1"), op.named.get("mat2")) if op.name == "addmm" else \
                (op.named.get("self"), op.named.get("mat2"))
            ref = x
            while isinstance(ref, TensorRef) and len(ref.shape) != 4:
                source = producers.get(ref.id)
                if source is None or source.name not in _RESHAPES:
                    break
                ref = source.args[0] if source.args else None
            # a flattened map: its C x H x W values are the layer's input features, one row per
            # example, and it comes from a convolution or pool (not an attention reshape)
            if (isinstance(ref, TensorRef) and len(ref.shape) == 4 and ref.shape[2] * ref.shape[3] > 1
                    and isinstance(weight, TensorRef) and prod(ref.shape[1:]) == weight.shape[0]
                    and _from_window(ref, producers)):
                return tuple(ref.shape[1:]), (weight.shape[0], weight.shape[1])
        for out in op.outputs:
            if out is not None:
                producers.setdefault(out.id, op)
    return None


def idle_modules(model: "nn.Module", used_param_ids: frozenset) -> tuple[str, ...]:
    """The outermost modules none of whose parameters a pass read (e.g. aux classifiers in eval)."""
    idle: list[str] = []
    for name, module in model.named_modules():
        params = list(module.parameters())
        if not name or not params or any(id(p) in used_param_ids for p in params):
            continue
        if not any(name.startswith(outer + ".") for outer in idle):
            idle.append(name)
    return tuple(idle)


def _idle_in_training(probe: "Probe", idle: tuple[str, ...]) -> tuple[str, ...] | None:
    """Which of the modules idle in eval a training forward does not read either (aux heads do
    run in training); ``None`` where a training forward cannot be traced. Batch 2 at least, so
    BatchNorm's batch statistics exist."""
    from archprobe.analysis.trace import TraceFailure, trace

    if not idle:
        return ()
    train_probe = probe.with_setting(batch_size=max(2, probe.batch_size), mode="train")
    try:
        used = trace(train_probe.model, train_probe.input(), train=True, track_modules=False).used_param_ids
    except TraceFailure:
        return None
    return idle_modules(probe.model, used)


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
    conv, linear, largest_linear = _layer_params(model)
    flattened = flattened_map(forward)
    idle = idle_modules(model, forward.used_param_ids)
    idle_in_training = _idle_in_training(probe, idle)
    unsupported = totals.unsupported + (train_totals.unsupported if train_totals else ())
    fvcore = fvcore_counts(probe) if counter == "fvcore" else (None, None)
    return ModelCounts(
        model=probe.name,
        input_shape=probe.shape,
        params=params,
        params_forward=forward.params_used,
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        dtype=dtype_name(probe.dtype),
        macs=totals.macs,
        flops=totals.flops,
        conv_params=conv,
        linear_params=linear,
        linear_share=linear / params if params else 0.0,
        largest_linear=largest_linear,
        flattened_map=flattened[0] if flattened else None,
        flattened_linear=flattened[1] if flattened else None,
        idle_modules=idle,
        idle_in_training=idle_in_training,
        train_macs=train_totals.macs if train_totals else None,
        train_flops=train_totals.flops if train_totals else None,
        fvcore_macs=fvcore[0],
        fvcore_total=fvcore[1],
        unsupported_ops=tuple(dict.fromkeys(unsupported)),
        counter=counter,
        notes=probe.notes,
    )


def count_pass(probe: "Probe") -> CostTotals:
    """MACs and FLOPs of one pass in the probe's mode: an eval forward, or one training step
    (forward in training mode + loss + backward). Traces only that pass."""
    from archprobe.analysis.trace import BACKWARD, FORWARD, LOSS

    t = traced(probe, train=probe.train, backward=probe.train, track_modules=False)
    return cost_totals(t, (FORWARD, LOSS, BACKWARD) if probe.train else (FORWARD,))


# The operators fvcore's by_operator() names for conv/linear/matmul: archprobe's MACs count these.
FVCORE_MATMUL_CLASS = frozenset({"conv", "linear", "matmul", "mm", "addmm", "bmm", "baddbmm", "einsum", "mv",
                                 "addmv"})


def fvcore_counts(probe: "Probe") -> tuple[int, int]:
    """fvcore's count on real CPU tensors (fvcore is imported only here): ``(macs, total)``.

    fvcore counts one "flop" per MAC; ``macs`` is its conv/linear/matmul part, the figure
    comparable with archprobe's ``macs``; ``total`` adds what else fvcore counts (BatchNorm,
    LayerNorm, adaptive pooling, upsampling), fvcore's ``total()``.
    """
    import torch

    from archprobe.user_code import running_user_code

    with warnings.catch_warnings():  # fvcore uses torch.jit, which now warns that it is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

        model = probe.spec.build("cpu")
        analysis = FlopCountAnalysis(model, torch.randn(probe.shape, dtype=probe.dtype))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        try:
            with running_user_code(f"forward of {probe.name}"):
                by_operator = analysis.by_operator()
        except ModelCodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - fvcore's tracer fails on some models
            raise ArchprobeError(f"fvcore could not count {probe.name}: {first_line(exc)}") from exc
    macs = sum(n for op, n in by_operator.items() if op in FVCORE_MATMUL_CLASS)
    return int(macs), int(sum(by_operator.values()))
