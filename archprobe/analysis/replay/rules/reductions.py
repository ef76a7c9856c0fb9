"""Rules for reductions: ``sum``, ``mean``, ``amax``, norms, ``var``/``std``, ``max.dim``...

The reduced dimensions (``dim``, or all of them) are dropped, or kept as 1 with ``keepdim``; the
others pass through. Reductions with two outputs (values and indices, ``var_mean``) give the same
shape twice.
"""

from __future__ import annotations

from archprobe.analysis.replay.dims import norm_dim
from archprobe.analysis.replay.engine import Context, rule


def _reduce(ctx: Context, n_out: int = 1, dim_name: str = "dim") -> list:
    x = ctx.tensor("self")
    rank = len(x)
    dims = ctx.raw(dim_name) if dim_name in ctx.op.values[0] else None
    keepdim = bool(ctx.raw("keepdim")) if "keepdim" in ctx.op.values[0] else False
    for name in ctx.op.values[0]:
        if name not in (dim_name, "self", "keepdim"):
            ctx.raw(name) if name not in ctx.op.keys else ctx.tensor(name)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        reduced = set(range(rank))
    elif isinstance(dims, int):
        reduced = {norm_dim(dims, rank)} if rank else set()
    else:
        reduced = {norm_dim(d, rank) for d in dims}
    out = [(1 if keepdim else None) if p in reduced else x[p] for p in range(rank)]
    out = [d for d in out if d is not None]
    return [list(out) for _ in range(n_out)]


rule("mean", "sum", "amax", "amin", "any", "all", "logsumexp", "nansum", "prod", "argmax", "argmin",
     "linalg_vector_norm", "norm", "var", "std")(_reduce)


@rule("max.dim", "min.dim", "var_mean", "std_mean", "aminmax", "mode", "median.dim", "nanmedian.dim", "kthvalue")
def reduce_to_two(ctx: Context) -> list:
    """Reductions with two outputs of the reduced shape (values and indices, or two statistics)."""
    return _reduce(ctx, n_out=2)
