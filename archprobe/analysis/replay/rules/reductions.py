"""Rules for reductions: ``sum``, ``mean``, ``amax``, norms, ``var``/``std``, ``max.dim``...

The reduced dimensions (``dim``, or all of them) are dropped, or kept as 1 with ``keepdim``; the
others pass through. Reductions with two outputs (values and indices, ``var_mean``) give the same
shape twice. Reductions without an identity (``amax``/``amin``, ``argmax``/``argmin``,
``aminmax``, ``max.dim``/``min.dim``, ``mode``, the medians, norms of order < 0 or inf) fail on
an empty reduced dimension, as on the CPU (meta runs some of them), ``kthvalue`` where ``k`` is
not between 1 and the reduced size.
"""

from __future__ import annotations

import math
from typing import Any

from archprobe.analysis.replay.dims import at, fmt, logical_and, norm_dim
from archprobe.analysis.replay.engine import Context, rule


def _reduction(ctx: Context) -> tuple[list, list[int], list]:
    """``(input dims, reduced positions, output dims)`` of a reduction over argument ``dim``."""
    x = ctx.tensor("self")
    rank = len(x)
    dims = ctx.raw("dim") if "dim" in ctx.op.values[0] else None
    keepdim = bool(ctx.raw("keepdim")) if "keepdim" in ctx.op.values[0] else False
    for name in ctx.op.values[0]:
        if name not in ("dim", "self", "keepdim"):
            ctx.raw(name) if name not in ctx.op.keys else ctx.tensor(name)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        reduced = set(range(rank))
    elif isinstance(dims, int):
        reduced = {norm_dim(dims, rank)} if rank else set()
    else:
        reduced = {norm_dim(d, rank) for d in dims}
    out = [(1 if keepdim else None) if p in reduced else x[p] for p in range(rank)]
    out = [d for d in out if d is not None]
    return x, sorted(reduced), out


def _not_empty(ctx: Context, x: list, reduced: list[int]) -> None:
    ok: Any = True
    for p in reduced:
        ok = logical_and(ok, x[p] != 0)
    name = ctx.op.name
    ctx.check(ok, lambda i: f"reduces an empty dimension of {fmt(x, i)} (aten.{name} has no identity)")


@rule("mean", "sum", "any", "all", "logsumexp", "nansum", "prod", "var", "std")
def reduce(ctx: Context) -> list:
    return [_reduction(ctx)[2]]


@rule("var_mean", "std_mean")
def reduce_to_two(ctx: Context) -> list:
    """Reductions with two outputs of the reduced shape (two statistics)."""
    out = _reduction(ctx)[2]
    return [out, list(out)]


@rule("max.dim", "min.dim", "mode", "median.dim", "nanmedian.dim", "aminmax")
def reduce_to_two_without_identity(ctx: Context) -> list:
    """Values and indices (or the minimum and the maximum) of a non-empty reduced dimension."""
    x, reduced, out = _reduction(ctx)
    _not_empty(ctx, x, reduced)
    return [out, list(out)]


@rule("amax", "amin", "argmax", "argmin")
def reduce_without_identity(ctx: Context) -> list:
    x, reduced, out = _reduction(ctx)
    _not_empty(ctx, x, reduced)
    return [out]


@rule("linalg_vector_norm", "norm")
def vector_norm(ctx: Context) -> list:
    x, reduced, out = _reduction(ctx)
    values = ctx.op.values[0]
    order = values["ord"] if "ord" in values else values.get("p")
    if order is not None and (order < 0 or order == math.inf):
        _not_empty(ctx, x, reduced)
    return [out]


@rule("kthvalue")
def kthvalue(ctx: Context) -> list:
    x, reduced, out = _reduction(ctx)
    k = ctx.raw("k")
    n = x[reduced[0]] if reduced else 1
    ctx.check(logical_and(k >= 1, n >= k), lambda i: f"k={k} is out of range for {at(n, i)} values")
    return [out, list(out)]
