"""Rules for views and shape ops: ``view``, ``expand``, ``permute``, ``cat``, ``slice``, ``split``...

Views keep the element count (a flatten's merged entry follows the input's dims, a ``-1`` is
inferred); ``cat``/``stack`` need their inputs to agree outside the joined dimension; slices
clamp to the side they cut; ``select``/``narrow_copy`` need their index inside it. Splitting or
unbinding a dimension that changes with the input size is not followed.

``reshape``, ``flatten``, ``narrow``, ``swapaxes`` and ``.T`` are not here: they decompose before
the dispatch level (into ``view`` or ``clone`` + ``_unsafe_view``, ``slice``, ``transpose``,
``permute``). The ``*_copy`` variants are the public ``torch.view_copy``... functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from archprobe.analysis.replay.align import Unsupported
from archprobe.analysis.replay.dims import (
    Dim,
    at,
    equal,
    fmt,
    is_array,
    logical_and,
    maximum,
    minimum,
    norm_dim,
    prod,
    where,
)
from archprobe.analysis.replay.engine import Context, rule


@rule("view", "_unsafe_view", "view_copy", "as_strided")
def view(ctx: Context) -> list:
    """A view to the sizes in argument ``size``: one ``-1`` is inferred, entries that vary are
    bound to tensor dimensions; the element count must not change (``as_strided`` is not
    checked: its strides decide)."""
    x = ctx.tensor("self")
    for name in ("stride", "storage_offset"):
        if name in ctx.op.values[0]:
            ctx.consumed.add(name)
    ctx.consumed.add("size")
    vals = [v["size"] for v in ctx.op.values]
    length = len(vals[0])
    if any(len(v) != length for v in vals[1:]):
        raise Unsupported(f"{ctx.op}: the rank of the view changes with the input size")
    numel = prod(x)
    # torch.flatten: explicit sizes merging a run of the input's dims; the merged entry follows
    # the input. (With a -1, as in view(-1, 400), the literal entries are the constraint.)
    run = None
    if not any(e == -1 for v in vals for e in v):
        run = _flatten_run(ctx.op.shapes["self"], [o[0] for o in ctx.op.out_shapes])
    if run is not None:
        a, m = run
        return [[*x[:a], prod(x[a:a + m]), *x[a + m:]]]
    out: list = []
    infer = None
    for j in range(length):
        entry = [v[j] for v in vals]
        if any(e == -1 for e in entry):
            if not all(e == -1 for e in entry) or infer is not None:
                raise Unsupported(f"{ctx.op}: cannot replay the view's -1")
            infer = j
            out.append(None)
        elif all(e == entry[0] for e in entry[1:]):
            out.append(ctx.resolve("size", entry, j, length))
        else:
            try:
                out.append(ctx.resolve("size", entry, j, length))
            except Unsupported:
                if infer is not None:
                    raise
                infer = j
                out.append(None)
    fixed = prod([d for d in out if d is not None])
    if infer is not None:
        safe = where(equal(fixed, 0), 1, fixed)
        out[infer] = numel // safe
        ok = logical_and(fixed != 0, numel % safe == 0)
    else:
        ok = equal(fixed, numel)
    if ctx.op.name != "as_strided":
        ctx.check(ok, lambda i: f"cannot view {fmt(x, i)} as "
                  + "x".join("-1" if j == infer else str(at(d, i)) for j, d in enumerate(out)))
    return [out]


def _flatten_run(in_shapes: list, out_shapes: list) -> tuple[int, int] | None:
    """``(a, m)`` if every traced output is its input with dims ``a..a+m-1`` merged into one
    (the flatten pattern, ``m >= 1``), else ``None``."""
    r_in, r_out = len(in_shapes[0]), len(out_shapes[0])
    m = r_in - r_out + 1
    if m < 1 or r_out == 0:
        return None
    for a in range(r_out):
        ok = True
        for src, dst in zip(in_shapes, out_shapes):
            if len(src) != r_in or len(dst) != r_out:
                return None
            merged = prod(src[a:a + m])
            if tuple(dst[:a]) != tuple(src[:a]) or dst[a] != merged or tuple(dst[a + 1:]) != tuple(src[a + m:]):
                ok = False
                break
        if ok:
            return a, m
    return None


@rule("expand", "expand_copy")
def expand(ctx: Context) -> list:
    x = ctx.tensor("self")
    size = ctx.ints("size")
    if "implicit" in ctx.op.values[0]:
        ctx.raw("implicit")
    lead = len(size) - len(x)
    out = []
    ok: Any = True
    for j, target in enumerate(size):
        p = j - lead
        if p < 0:
            out.append(target)
            continue
        if not is_array(target) and target == -1:
            out.append(x[p])
            continue
        ok = logical_and(ok, (x[p] == 1) | (x[p] == target))
        out.append(target)
    ctx.check(ok, lambda i: f"cannot expand {fmt(x, i)} to {fmt(out, i)}")
    return [out]


@rule("permute", "permute_copy")
def permute(ctx: Context) -> list:
    x = ctx.tensor("self")
    order = [norm_dim(d, len(x)) for d in ctx.raw("dims")]
    return [[x[d] for d in order]]


@rule("t", "t_copy")
def t(ctx: Context) -> list:
    x = ctx.tensor("self")
    return [list(reversed(x))] if len(x) == 2 else [list(x)]


@rule("transpose", "transpose_copy")
def transpose(ctx: Context) -> list:
    x = list(ctx.tensor("self"))
    names = [n for n in ctx.op.values[0] if n != "self"]
    a, b = (norm_dim(ctx.raw(n), len(x)) if len(x) else 0 for n in names[:2])
    if x:
        x[a], x[b] = x[b], x[a]
    return [x]


@rule("unsqueeze", "unsqueeze_copy")
def unsqueeze(ctx: Context) -> list:
    x = list(ctx.tensor("self"))
    d = ctx.raw("dim")
    d = d + len(x) + 1 if d < 0 else d
    x.insert(d, 1)
    return [x]


@rule("squeeze", "squeeze_copy")
def squeeze(ctx: Context) -> list:
    x = ctx.tensor("self")
    rank = len(x)
    if "dim" in ctx.op.values[0]:
        dims = ctx.raw("dim")
        dims = [dims] if isinstance(dims, int) else list(dims)
    else:
        dims = list(range(rank))
    dims = {norm_dim(d, rank) for d in dims} if rank else set()
    traced = ctx.op.out_shapes[0][0]
    shape0 = ctx.op.shapes["self"][0]
    removed = {p for p in dims if shape0[p] == 1}
    for p in removed:
        if is_array(x[p]) and np.any(x[p][ctx.state.valid] != 1):
            raise Unsupported(f"{ctx.op}: squeezes a dimension that is 1 only at some sizes")
    for p in dims - removed:
        if is_array(x[p]) and np.any(x[p][ctx.state.valid] == 1):
            raise Unsupported(f"{ctx.op}: squeezes a dimension that is 1 only at some sizes")
    out = [d for p, d in enumerate(x) if p not in removed]
    if len(out) != len(traced):
        raise Unsupported(f"{ctx.op}: cannot replay the squeeze")
    return [out]


@rule("cat")
def cat(ctx: Context) -> list:
    tensors = ctx.tensors("tensors")
    shapes0 = ctx.op.shapes["tensors"][0]
    items = [(d, s) for d, s in zip(tensors, shapes0) if d is not None and s != (0,)]
    if not items:
        return [list(ctx.op.out_shapes[0][0])]
    first = items[0][0]
    rank = len(first)
    d = norm_dim(ctx.raw("dim"), rank)
    total: Dim = 0
    ok: Any = True
    bad = []
    for dims, _ in items:
        if len(dims) != rank:
            raise Unsupported(f"{ctx.op}: inputs of different ranks")
        total = total + dims[d]
        for p in range(rank):
            if p != d and dims[p] is not first[p]:
                cond = equal(dims[p], first[p])
                if cond is not True:
                    bad.append(dims)
                ok = logical_and(ok, cond)
    out = list(first)
    out[d] = total

    def reason(i):
        for dims in bad:
            if any(at(dims[p], i) != at(first[p], i) for p in range(rank) if p != d):
                return f"inputs disagree: {fmt(first, i)} vs {fmt(dims, i)}"
        return "inputs disagree"

    ctx.check(ok, reason)
    return [out]


@rule("stack")
def stack(ctx: Context) -> list:
    tensors = [t for t in ctx.tensors("tensors") if t is not None]
    first = tensors[0]
    d = ctx.raw("dim")
    d = d + len(first) + 1 if d < 0 else d
    ok: Any = True
    for dims in tensors[1:]:
        for a, b in zip(dims, first):
            ok = logical_and(ok, equal(a, b))
    ctx.check(ok, lambda i: "inputs disagree: " + " vs ".join(fmt(t, i) for t in tensors))
    out = list(first)
    out.insert(d, len(tensors))
    return [out]


def _slice_len(n, start, end, step):
    if start is None:
        start = 0
    if end is None:
        end = n
    if not is_array(start):
        start = minimum(start, n) if start >= 0 else maximum(start + n, 0)
    else:
        start = np.clip(np.where(start < 0, start + n, start), 0, n)
    if not is_array(end):
        end = minimum(end, n) if end >= 0 else maximum(end + n, 0)
    else:
        end = np.where(end < 0, end + n, end)
        end = np.minimum(np.maximum(end, 0), n)
    end = maximum(end, start)
    return (end - start + step - 1) // step


@rule("slice", "slice_copy")
def slice(ctx: Context) -> list:
    x = list(ctx.tensor("self"))
    d = norm_dim(ctx.raw("dim"), len(x))
    start = ctx.int("start")
    end = ctx.int("end")
    step = ctx.raw("step") or 1
    x[d] = _slice_len(x[d], start, end, step)
    return [x]


@rule("narrow_copy")
def narrow_copy(ctx: Context) -> list:
    x = list(ctx.tensor("self"))
    d = norm_dim(ctx.raw("dim"), len(x))
    start = ctx.int("start")
    length = ctx.int("length")
    n = x[d]
    start_eff = start + n if (not is_array(start) and start < 0) else start
    ctx.check(logical_and(start_eff >= 0, start_eff + length <= n), lambda i: f"narrow runs past {at(n, i)}")
    x[d] = length
    return [x]


@rule("select", "select_copy")
def select(ctx: Context) -> list:
    x = list(ctx.tensor("self"))
    d = norm_dim(ctx.raw("dim"), len(x))
    index = ctx.int("index")
    n = x[d]
    ctx.check(logical_and(index < n, index >= -n), lambda i: f"index {at(index, i)} out of range {at(n, i)}")
    del x[d]
    return [x]


@rule("split", "split_copy", "unsafe_split")
def split(ctx: Context) -> list:
    x = ctx.tensor("self")
    d = norm_dim(ctx.raw("dim"), len(x))
    size = ctx.raw("split_size")
    n = x[d]
    if is_array(n):
        raise Unsupported(f"{ctx.op}: splits a dimension that changes with the input size")
    outs = []
    for j in range(len(ctx.op.out_shapes[0])):
        o = list(x)
        o[d] = min(size, n - j * size)
        outs.append(o)
    return outs


@rule("split_with_sizes", "split_with_sizes_copy", "unsafe_split_with_sizes")
def split_with_sizes(ctx: Context) -> list:
    x = ctx.tensor("self")
    d = norm_dim(ctx.raw("dim"), len(x))
    sizes = ctx.ints("split_sizes")
    ctx.check(equal(sum(sizes), x[d]), lambda i: f"split sizes do not add up to {at(x[d], i)}")
    outs = []
    for s in sizes:
        o = list(x)
        o[d] = s
        outs.append(o)
    return outs


@rule("unbind", "unbind_copy")
def unbind(ctx: Context) -> list:
    x = ctx.tensor("self")
    d = norm_dim(ctx.raw("dim"), len(x))
    if is_array(x[d]):
        raise Unsupported(f"{ctx.op}: unbinds a dimension that changes with the input size")
    o = [v for p, v in enumerate(x) if p != d]
    return [list(o) for _ in range(len(ctx.op.out_shapes[0]))]


@rule("index_select")
def index_select(ctx: Context) -> list:
    x = list(ctx.tensor("self"))
    index = ctx.tensor("index")
    d = norm_dim(ctx.raw("dim"), len(x))
    if x:
        x[d] = index[0] if index else 1
    return [x]


