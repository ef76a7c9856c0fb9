"""Rules for normalisation: batch, group and layer norm.

The output has the input's shape. Batch norm in training refuses exactly one value per channel
(batch x spatial size; an empty input runs), group norm exactly one per group in either mode;
layer norm needs a normalised shape equal to the input's trailing dimensions.

``F.batch_norm`` reaches the trace as ``native_batch_norm`` in both modes, on meta and on CPU
(``F.instance_norm`` too); the ``_native_batch_norm_legit*``/``_batch_norm_with_update`` forms
come from export decompositions and ``cudnn``/``miopen_batch_norm`` are GPU kernels.
"""

from __future__ import annotations

from typing import Any

from archprobe.analysis.replay.dims import at, equal, fmt, logical_and, prod
from archprobe.analysis.replay.engine import Context, rule


def _batch_norm(ctx: Context) -> list:
    """The output has the input's shape; the statistics keep their traced (per-channel) shape."""
    x = ctx.tensor("input")
    outs_n = len(ctx.op.out_shapes[0])
    training = False
    for name in list(ctx.op.values[0]):
        if name == "input":
            continue
        if name in ctx.op.keys:
            ctx.tensor(name)
        else:
            value = ctx.raw(name)
            if name == "training":
                training = bool(value)
    if training:
        per_channel = prod([x[0], *x[2:]]) if len(x) > 1 else x[0]
        ctx.check(
            per_channel != 1,  # F.batch_norm refuses exactly one value (an empty batch runs)
            lambda i: f"gets {at(per_channel, i)} value per channel in training"
            " (batch x spatial size must be more than 1)",
        )
    outs = [list(x)]
    for j in range(1, outs_n):
        shape = ctx.op.out_shapes[0][j]
        outs.append(list(shape) if shape is not None else None)
    return outs


rule("native_batch_norm")(_batch_norm)


@rule("native_group_norm")
def group_norm(ctx: Context) -> list:
    x = ctx.tensor("input")
    ctx.tensor("weight")
    ctx.tensor("bias")
    ctx.raw("eps")
    n = ctx.int("N")
    c = ctx.int("C")
    groups = ctx.raw("group")
    ctx.consumed.add("HxW")
    hxw = prod(x[2:])
    size_prods = (n * c // groups) * hxw
    ctx.check(size_prods != 1, lambda i: "gets 1 value per group (batch x channels/groups x spatial must be more than 1)")
    return [list(x), [n, groups], [n, groups]]


@rule("native_layer_norm")
def layer_norm(ctx: Context) -> list:
    x = ctx.tensor("input")
    shape = ctx.ints("normalized_shape")
    ctx.tensor("weight")
    ctx.tensor("bias")
    ctx.raw("eps")
    k = len(shape)
    ok: Any = True
    for a, b in zip(x[len(x) - k:], shape):
        ok = logical_and(ok, equal(a, b))
    ctx.check(ok, lambda i: f"normalised shape {fmt(shape, i)} does not match {fmt(x, i)}")
    stats = [*x[: len(x) - k], *([1] * k)]
    return [list(x), stats, list(stats)]


