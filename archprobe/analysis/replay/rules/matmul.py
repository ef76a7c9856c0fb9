"""Rules for matrix products: ``mm``, ``addmm`` (``Linear``), ``bmm``, ``baddbmm``, ``mv``, ``addmv``.

The contracted dimensions must agree (a fixed ``Linear`` after ``Flatten`` bounds the input
size), batch dimensions too, and an added bias must expand to the product.
"""

from __future__ import annotations

from typing import Any

from archprobe.analysis.replay.dims import at, equal, fmt, logical_and, logical_or
from archprobe.analysis.replay.engine import Context, rule


def _inner(ctx: Context, a, b, i_a, i_b) -> None:
    """The contracted dimensions ``a[i_a]`` and ``b[i_b]`` must agree."""
    ka, kb = a[i_a], b[i_b]
    ctx.check(equal(ka, kb), lambda i: f"gets {at(ka, i)} input features, expects {at(kb, i)}")


def _bias(ctx: Context, bias: list, out: list) -> None:
    """The added term is expanded to the product's shape: each of its dimensions (right-aligned)
    must be 1 or the product's (it does not broadcast the other way)."""
    ok: Any = len(bias) <= len(out)
    for b, o in zip(reversed(bias), reversed(out)):
        ok = logical_and(ok, logical_or(equal(b, 1), equal(b, o)))
    ctx.check(ok, lambda i: f"bias {fmt(bias, i)} does not fit {fmt(out, i)}")


@rule("mm")
def mm(ctx: Context) -> list:
    a = ctx.tensor("self")
    b = ctx.tensor("mat2")
    _inner(ctx, a, b, 1, 0)
    return [[a[0], b[1]]]


@rule("addmm")
def addmm(ctx: Context) -> list:
    bias = ctx.tensor("self")
    a = ctx.tensor("mat1")
    b = ctx.tensor("mat2")
    ctx.raw("beta")
    ctx.raw("alpha")
    _inner(ctx, a, b, 1, 0)
    out = [a[0], b[1]]
    _bias(ctx, bias, out)
    return [out]


@rule("bmm")
def bmm(ctx: Context) -> list:
    a = ctx.tensor("self")
    b = ctx.tensor("mat2")
    ctx.check(equal(a[0], b[0]), lambda i: "batch sizes disagree")
    _inner(ctx, a, b, 2, 1)
    return [[a[0], a[1], b[2]]]


@rule("baddbmm")
def baddbmm(ctx: Context) -> list:
    bias = ctx.tensor("self")
    a = ctx.tensor("batch1")
    b = ctx.tensor("batch2")
    ctx.raw("beta")
    ctx.raw("alpha")
    ctx.check(equal(a[0], b[0]), lambda i: "batch sizes disagree")
    _inner(ctx, a, b, 2, 1)
    out = [a[0], a[1], b[2]]
    _bias(ctx, bias, out)
    return [out]


@rule("mv")
def mv(ctx: Context) -> list:
    a = ctx.tensor("self")
    v = ctx.tensor("vec")
    _inner(ctx, a, v, 1, 0)
    return [[a[0]]]


@rule("addmv")
def addmv(ctx: Context) -> list:
    bias = ctx.tensor("self")
    a = ctx.tensor("mat")
    v = ctx.tensor("vec")
    ctx.raw("beta")
    ctx.raw("alpha")
    _inner(ctx, a, v, 1, 0)
    out = [a[0]]
    _bias(ctx, bias, out)
    return [out]


