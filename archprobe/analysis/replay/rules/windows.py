"""Rules for sliding windows: convolutions, pools and adaptive pools.

A convolution's or pool's output side is ``(n + 2 * pad - dilation * (k - 1) - 1) // stride + 1``
(with ``ceil_mode``, rounded up unless the last window would start in the padding) and must come
out at least 1; ``avg_pool3d`` also needs the unpadded input to hold the kernel. A transposed
convolution's side is ``(n - 1) * stride - 2 * pad + dilation * (k - 1) + output_padding + 1``: it
may be 0 (the CPU runs an empty output). Adaptive pools give their output size and need a non-empty input.
The 1-d pools and the public ``adaptive_*`` and ``max_poolNd`` ops reach the trace as these (2-d
after an ``unsqueeze``, or ``*_with_indices``, ``_adaptive_avg_poolNd``).
Identical windows over the same arrays are computed once (:meth:`Context.memo`), so branches
that agree are seen to agree by identity.
"""

from __future__ import annotations

from typing import Any

from archprobe.analysis.replay.dims import as_int, fmt, is_array, logical_and
from archprobe.analysis.replay.engine import Context, rule


def _window(ctx: Context, n, k, s, pad, d, ceil_mode: bool, transposed: bool, output_padding=0):
    """One spatial dimension of a convolution or pool: (out, ok). A transposed convolution's
    side may be 0 (see :func:`convolution`)."""
    if (
        not transposed
        and is_array(n)
        and id(n) in ctx.state.positive
        and not any(is_array(v) for v in (k, s, pad, d))
        and s == 1
        and 2 * pad == d * (k - 1)
    ):
        return n, True  # "same" window: the size passes through unchanged
    if transposed:
        o = (n - 1) * s - 2 * pad + d * (k - 1) + output_padding + 1
        return o, o >= 0
    o = _pool_out(n, k, pad, s, d, ceil_mode)
    return o, o >= 1


def _grows(ctx: Context, n, k, s, pad, d, output_padding) -> bool:
    """Is a transposed convolution's side ``(n - 1) * s + d * (k - 1) + output_padding + 1 - 2 * pad``
    at least 1 wherever ``n`` is (so the size is known positive, as after any other window)?"""
    if any(is_array(v) for v in (k, s, pad, d, output_padding)):
        return False
    positive = id(n) in ctx.state.positive if is_array(n) else n >= 1
    return positive and d * (k - 1) + output_padding + 1 - 2 * pad >= 1


@rule("convolution")
def convolution(ctx: Context) -> list:
    x = ctx.tensor("input")
    w = ctx.tensor("weight")
    ctx.tensor("bias")
    nsp = len(w) - 2
    stride = ctx.ints("stride", nsp)
    padding = ctx.ints("padding", nsp)
    dilation = ctx.ints("dilation", nsp)
    transposed = bool(ctx.raw("transposed"))
    output_padding = ctx.ints("output_padding", nsp)
    groups = ctx.int("groups")
    spatial = x[len(x) - nsp:]
    lead = x[: len(x) - nsp - 1]
    kernel = w[2:]

    def compute():
        outs = []
        ok: Any = True
        for p in range(nsp):
            o, good = _window(ctx, spatial[p], kernel[p], stride[p], padding[p], dilation[p], False,
                              transposed, output_padding[p])
            outs.append(o)
            ok = logical_and(ok, good)
        return outs, ok

    out, ok = ctx.memo(("conv", spatial, kernel, stride, padding, dilation, transposed, output_padding), compute)
    channels = w[1] * groups if transposed else w[0]
    ctx.check(ok, lambda i: f"output would be {fmt(out, i, clip=True)}")
    if transposed:
        ctx.positive([o for p, o in enumerate(out)
                      if _grows(ctx, spatial[p], kernel[p], stride[p], padding[p], dilation[p], output_padding[p])])
    else:
        ctx.positive(out)
    return [[*lead, channels, *out]]


def _pool_out(n, k, pad, s, d, ceil_mode: bool):
    o = (n + 2 * pad - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode:
        o = o - as_int((o - 1) * s >= n + pad)
    return o


def _pool(ctx: Context, nsp: int, with_dilation: bool, n_out: int, kernel_fits: bool = False) -> list:
    """``kernel_fits``: the input itself (without padding) must be at least the kernel in every
    side (``avg_pool3d`` checks this; the other pools do not)."""
    x = ctx.tensor("self")
    k = ctx.ints("kernel_size", nsp)
    s = ctx.ints("stride", nsp) or k
    pad = ctx.ints("padding", nsp)
    dil = ctx.ints("dilation", nsp) if with_dilation else [1] * nsp
    ceil_mode = bool(ctx.raw("ceil_mode"))
    for name in ("count_include_pad", "divisor_override"):
        if name in ctx.op.values[0]:
            ctx.raw(name)
    spatial = x[len(x) - nsp:]
    lead = x[: len(x) - nsp]
    if kernel_fits:
        fits: Any = True
        for p in range(nsp):
            fits = logical_and(fits, spatial[p] >= k[p])
        ctx.check(fits, lambda i: f"input {fmt(spatial, i)} is smaller than the kernel {fmt(k, i)}")

    def compute():
        outs = []
        ok: Any = True
        for p in range(nsp):
            n = spatial[p]
            ok = logical_and(ok, k[p] > 0)
            ok = logical_and(ok, s[p] > 0)
            ok = logical_and(ok, k[p] // 2 >= pad[p])
            ok = logical_and(ok, pad[p] <= ((k[p] - 1) * dil[p] + 1) // 2)
            o, good = _window(ctx, n, k[p], s[p], pad[p], dil[p], ceil_mode, False)
            if good is not True:
                good = logical_and(n != 0, good)
            ok = logical_and(ok, good)
            outs.append(o)
        for c in lead[1:]:
            ok = logical_and(ok, c != 0)
        return outs, ok

    out, ok = ctx.memo(("pool", spatial, lead[1:], k, s, pad, dil, ceil_mode), compute)
    ctx.check(ok, lambda i: f"output would be {fmt(out, i, clip=True)}")
    ctx.positive(out)
    return [[*lead, *out] for _ in range(n_out)]


@rule("max_pool2d_with_indices")
def max_pool2d_with_indices(ctx: Context) -> list:
    return _pool(ctx, 2, with_dilation=True, n_out=2)


@rule("max_pool3d_with_indices")
def max_pool3d_with_indices(ctx: Context) -> list:
    return _pool(ctx, 3, with_dilation=True, n_out=2)


@rule("avg_pool2d")
def avg_pool2d(ctx: Context) -> list:
    return _pool(ctx, 2, with_dilation=False, n_out=1)


@rule("avg_pool3d")
def avg_pool3d(ctx: Context) -> list:
    return _pool(ctx, 3, with_dilation=False, n_out=1, kernel_fits=True)


def _adaptive(ctx: Context, nsp: int, n_out: int) -> list:
    x = ctx.tensor("self")
    size = ctx.ints("output_size", nsp)
    lead = x[: len(x) - nsp]
    ok: Any = True
    for d in x[1:] if len(x) == nsp + 2 else x:
        ok = logical_and(ok, d >= 1)
    spatial = x[len(x) - nsp:]
    ctx.check(ok, lambda i: f"input is empty ({fmt(spatial, i)})")
    return [[*lead, *size] for _ in range(n_out)]


@rule("_adaptive_avg_pool2d")
def adaptive_avg_pool2d(ctx: Context) -> list:
    return _adaptive(ctx, 2, n_out=1)


@rule("_adaptive_avg_pool3d")
def adaptive_avg_pool3d(ctx: Context) -> list:
    return _adaptive(ctx, 3, n_out=1)


@rule("adaptive_max_pool2d")
def adaptive_max_pool2d(ctx: Context) -> list:
    return _adaptive(ctx, 2, n_out=2)


@rule("adaptive_max_pool3d")
def adaptive_max_pool3d(ctx: Context) -> list:
    return _adaptive(ctx, 3, n_out=2)


