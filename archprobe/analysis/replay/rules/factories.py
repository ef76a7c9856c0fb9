"""Rules for factories: ``zeros``, ``new_empty``, ``arange``... inside the forward.

A factory's output is its ``size`` argument, each entry bound to a tensor dimension where it
changes with the input size (``torch.zeros(x.shape[2:])``); ``arange``'s length follows its
bounds, which must not run against its step.
"""

from __future__ import annotations

from archprobe.analysis.replay.align import Unsupported
from archprobe.analysis.replay.dims import at, is_array, logical_and, logical_or, maximum
from archprobe.analysis.replay.engine import Context, rule


def _factory(ctx: Context) -> list:
    """A new tensor of the given ``size`` (bound to tensor dimensions where it varies)."""
    for name in list(ctx.op.values[0]):
        if name in ctx.op.keys:
            ctx.tensor(name)
        elif name == "stride":
            ctx.consumed.add(name)
        elif name != "size":
            ctx.raw(name)
    return [ctx.ints("size")]


rule("empty", "zeros", "ones", "full", "empty_strided", "rand", "randn", "new_empty", "new_zeros", "new_ones",
     "new_full", "new_empty_strided", "empty_permuted")(_factory)


@rule("arange")
def arange(ctx: Context) -> list:
    values = ctx.op.values[0]
    start = ctx.int("start") if "start" in values else 0
    end = ctx.int("end")
    step = ctx.int("step") if "step" in values else 1
    for name in values:
        if name not in ("start", "end", "step"):
            ctx.raw(name)
    if not any(is_array(v) for v in (start, end, step)):
        return [list(ctx.op.out_shapes[0][0])]
    if any(isinstance(v, float) for v in (start, end, step)):
        raise Unsupported(f"{ctx.op}: floating-point ranges that change with the input size")
    forward = logical_and(step > 0, end >= start)
    backward = logical_and(step < 0, end <= start)
    ctx.check(logical_or(forward, backward),
              lambda i: f"the range from {at(start, i)} to {at(end, i)} runs against its step {at(step, i)}")
    n = (end - start + step - 1) // step if step > 0 else (start - end - step - 1) // (-step)
    return [[maximum(n, 0)]]
