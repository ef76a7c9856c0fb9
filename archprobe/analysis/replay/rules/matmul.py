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


def _matrix_product(ctx: Context, a_name: str, b_name: str) -> list:
    a, b = ctx.tensor(a_name), ctx.tensor(b_name)
    _inner(ctx, a, b, 1, 0)
    return [a[0], b[1]]


def _batched_product(ctx: Context, a_name: str, b_name: str) -> list:
    a, b = ctx.tensor(a_name), ctx.tensor(b_name)
    ctx.check(equal(a[0], b[0]), lambda i: "batch sizes disagree")
    _inner(ctx, a, b, 2, 1)
    return [a[0], a[1], b[2]]


def _matrix_vector(ctx: Context, a_name: str, v_name: str) -> list:
    a, v = ctx.tensor(a_name), ctx.tensor(v_name)
    _inner(ctx, a, v, 1, 0)
    return [a[0]]


def _plus_bias(ctx: Context, out: list) -> list:
    """The ``add*`` form: ``beta * self + alpha * product``, ``self`` expanded to the product."""
    ctx.raw("beta")
    ctx.raw("alpha")
    _bias(ctx, ctx.tensor("self"), out)
    return [out]


@rule("mm")
def mm(ctx: Context) -> list:
    return [_matrix_product(ctx, "self", "mat2")]


@rule("addmm")
def addmm(ctx: Context) -> list:
    return _plus_bias(ctx, _matrix_product(ctx, "mat1", "mat2"))


@rule("bmm")
def bmm(ctx: Context) -> list:
    return [_batched_product(ctx, "self", "mat2")]


@rule("baddbmm")
def baddbmm(ctx: Context) -> list:
    return _plus_bias(ctx, _batched_product(ctx, "batch1", "batch2"))


@rule("mv")
def mv(ctx: Context) -> list:
    return [_matrix_vector(ctx, "self", "vec")]


@rule("addmv")
def addmv(ctx: Context) -> list:
    return _plus_bias(ctx, _matrix_vector(ctx, "mat", "vec"))
