"""Arithmetic on *Dims*: one tensor dimension over all candidate input sizes at once.

A Dim is a Python ``int`` where the dimension does not depend on the input's height and width,
else an ``int64`` numpy array with one entry per candidate. A condition on Dims (a validity
mask) is likewise a ``bool`` or a bool array. The helpers here keep the plain-``int`` case in
Python (no array is made for a constant) and otherwise use numpy; the rules and the engine
write their arithmetic with them.
"""

from __future__ import annotations

from math import prod  # works on Dims: ints and int64 arrays alike
from typing import Any

import numpy as np

Dim = Any  # int | np.ndarray

__all__ = ["Dim", "as_int", "at", "broadcast", "equal", "fmt", "is_array", "logical_and", "logical_or", "maximum",
           "minimum", "norm_dim", "prod", "where"]


def is_array(d) -> bool:
    return isinstance(d, np.ndarray)


def minimum(a, b):
    if not is_array(a) and not is_array(b):
        return min(a, b)
    return np.minimum(a, b)


def maximum(a, b):
    if not is_array(a) and not is_array(b):
        return max(a, b)
    return np.maximum(a, b)


def where(cond, a, b):
    if isinstance(cond, (bool, np.bool_)):
        return a if cond else b
    return np.where(cond, a, b)


def as_int(cond):
    """A bool or bool array as 0/1."""
    if isinstance(cond, (bool, np.bool_)):
        return int(bool(cond))
    return cond.astype(np.int64)


def logical_and(a, b):
    if isinstance(a, (bool, np.bool_)) and isinstance(b, (bool, np.bool_)):
        return bool(a) and bool(b)
    return np.logical_and(a, b)


def logical_or(a, b):
    if isinstance(a, (bool, np.bool_)) and isinstance(b, (bool, np.bool_)):
        return bool(a) or bool(b)
    return np.logical_or(a, b)


def equal(a, b):
    """``a == b``; ``True`` outright for the same object (an array equal to itself)."""
    if a is b:
        return True
    return a == b


def at(d: Dim, i: int) -> int:
    """The value of ``d`` for candidate ``i``."""
    return int(d[i]) if is_array(d) else int(d)


def fmt(dims, i: int, clip: bool = False) -> str:
    """A shape at candidate ``i`` as text (``"3x7x7"``), negative sizes shown as 0 with ``clip``."""
    vals = [at(d, i) for d in dims]
    if clip:
        vals = [max(0, v) for v in vals]
    return "x".join(str(v) for v in vals) if vals else "scalar"


def norm_dim(d: int, rank: int) -> int:
    """A dimension index counted from the end (``-1``) as one counted from the start."""
    return d + rank if d < 0 else d


def broadcast(dim_lists: list[list]) -> tuple[list, Any]:
    """Broadcast dims (right-aligned); returns (dims, ok)."""
    rank = max(len(d) for d in dim_lists)
    out = []
    ok: Any = True
    for p in range(rank):
        ds = [d[len(d) - rank + p] for d in dim_lists if len(d) - rank + p >= 0]
        first = ds[0]
        if all(x is first for x in ds[1:]):
            out.append(first)
            continue
        if not any(is_array(x) for x in ds):
            non1 = [x for x in ds if x != 1]
            res = non1[0] if non1 else 1
            if any(x != res for x in non1):
                ok = False
            out.append(res)
            continue
        res: Dim = 1
        for x in ds:
            res = where(equal(x, 1), res, x)
        for x in ds:
            ok = logical_and(ok, (x == 1) | (x == res))
        out.append(res)
    return out, ok
