"""Rules for resampling and padding: ``F.interpolate``, ``F.pad``, pixel (un)shuffle.

``F.interpolate`` gives ``floor(n * scale)`` per side with scale factors, else its output size
(bound to a tensor where it varies); input and output must not be empty (as on CPU: meta's
bilinear, bicubic and trilinear kernels run an empty output). Negative constant padding must not
cut more than the input has; replication padding must leave at least 1 in every side (on older torch releases
the 2-d and 3-d CPU kernels only ask it of some side: the rule asks the kernel which),
and reflection padding must be smaller than the side it reflects. Pixel unshuffle needs sides divisible by its factor.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from archprobe.analysis.replay.align import Unsupported
from archprobe.analysis.replay.dims import fmt, is_array, logical_and, logical_or, minimum
from archprobe.analysis.replay.engine import Context, rule


def _upsample(ctx: Context) -> list:
    """``F.interpolate``: with scale factors the output is ``floor(in * scale)`` (as
    ``F.interpolate`` computes it); otherwise the output size (bound to a tensor if it varies)."""
    x = ctx.tensor("input") if "input" in ctx.op.keys else ctx.tensor("self")
    name = ctx.op.name
    nsp = 3 if "3d" in name else 1 if "1d" in name else 2
    values = ctx.op.values[0]
    if "align_corners" in values:
        ctx.raw("align_corners")
    if "scale_factors" in values:
        scales = ctx.raw("scale_factors")
    else:
        scales = [ctx.raw(n) for n in values if n.startswith("scales")] or None
        if scales is not None and any(v is None for v in scales):
            scales = None
    spatial = x[len(x) - nsp:]
    if scales is not None:
        ctx.consumed.add("output_size")
        if len(scales) == 1:
            scales = list(scales) * nsp
        size = []
        for n, factor in zip(spatial, scales):
            if is_array(n):
                size.append(np.floor(n.astype(np.float64) * float(factor)).astype(np.int64))
            else:
                size.append(int(np.floor(float(n) * float(factor))))
    else:
        size = ctx.ints("output_size", nsp)
        if size is None:
            raise Unsupported(f"{ctx.op}: neither an output size nor scale factors")
    ok: Any = True
    for n, o in zip(spatial, size):
        ok = logical_and(ok, logical_and(n >= 1, o >= 1))
    ctx.check(ok, lambda i: f"output would be {fmt(size, i, clip=True)}")
    return [[*x[: len(x) - nsp], *size]]


rule("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
     "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d",
     "upsample_bicubic2d", "upsample_trilinear3d", "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa")(_upsample)


@rule("constant_pad_nd")
def constant_pad(ctx: Context) -> list:
    x_in = ctx.tensor("self")
    x = list(x_in)
    pad = ctx.ints("pad")
    ctx.raw("value")
    ok: Any = True
    for j in range(len(pad) // 2):
        p = len(x) - 1 - j
        left, right = pad[2 * j], pad[2 * j + 1]
        # negative padding first cuts the input, which must keep at least nothing (so the output
        # is at least the positive padding)
        ok = logical_and(ok, x[p] + minimum(left, 0) + minimum(right, 0) >= 0)
        x[p] = x[p] + left + right
    ctx.check(ok, lambda i: f"negative padding {fmt(pad, i)} cuts more than the input {fmt(x_in, i)}")
    return [x]


@functools.cache
def _replication_allows_empty_sides(spatial: int) -> bool:
    """Does ``replication_pad{spatial}d`` on this torch's CPU kernel run an output with an empty
    side, as long as another side is not empty? Older releases check "some side >= 1" in the 2-d
    and 3-d forms (2.5 does), newer ones "every side >= 1". Asked of the kernel itself, on a 2x2
    input whose width is cut to nothing (microseconds)."""
    import torch
    import torch.nn.functional as F

    if spatial < 2:
        return False
    try:
        F.pad(torch.zeros((1, 1) + (2,) * spatial), (-1, -1) + (0, 0) * (spatial - 1), mode="replicate")
    except RuntimeError:
        return False
    return True


def _pad(ctx: Context, reflect: bool) -> list:
    x = list(ctx.tensor("self"))
    pad = ctx.ints("padding")
    spatial = len(pad) // 2
    some_side_only = not reflect and _replication_allows_empty_sides(spatial)
    ok: Any = True
    some: Any = False
    for j in range(spatial):
        p = len(x) - 1 - j
        n = x[p]
        left, right = pad[2 * j], pad[2 * j + 1]
        if reflect:
            ok = logical_and(ok, logical_and(left < n, right < n))
        x[p] = n + left + right
        ok = logical_and(ok, logical_and(n >= 1, x[p] >= (0 if some_side_only else 1)))
        some = logical_or(some, x[p] >= 1)
    if some_side_only:
        ok = logical_and(ok, some)
    ctx.check(ok, lambda i: "padding is too large for the input" if reflect else f"output would be {fmt(x, i, clip=True)}")
    return [x]


@rule("reflection_pad1d", "reflection_pad2d", "reflection_pad3d")
def reflection_pad(ctx: Context) -> list:
    return _pad(ctx, reflect=True)


@rule("replication_pad1d", "replication_pad2d", "replication_pad3d")
def replication_pad(ctx: Context) -> list:
    return _pad(ctx, reflect=False)


@rule("pixel_shuffle")
def pixel_shuffle(ctx: Context) -> list:
    x = ctx.tensor("self")
    r = ctx.raw("upscale_factor")
    return [[*x[:-3], x[-3] // (r * r), x[-2] * r, x[-1] * r]]


@rule("pixel_unshuffle")
def pixel_unshuffle(ctx: Context) -> list:
    x = ctx.tensor("self")
    r = ctx.raw("downscale_factor")
    ctx.check(logical_and(x[-2] % r == 0, x[-1] % r == 0), lambda i: f"{fmt(x[-2:], i)} is not divisible by {r}")
    return [[*x[:-3], x[-3] * r * r, x[-2] // r, x[-1] // r]]


