"""The checks real kernels make on sizes that some meta kernels skip.

Static analysis runs a model's ops on the meta device, whose kernels compute output shapes only.
A few of them accept sizes the CPU (and CUDA) kernels refuse, and which ones changes between torch
releases: on 2.5 a convolution may run to a 0-wide output on meta, on 2.14 ``addmv`` takes a bias
of the wrong length, on every release ``max(dim)`` of an empty dimension and adaptive average
pools of an empty map run. A size that fails on the real device is not a valid size, so every
meta op in a pass (:func:`archprobe.analysis.trace.run_op`) is checked here first, with the real
kernel's rule and a message in its words. ``tests/test_replay_rules.py`` finds the disagreements:
it runs every replay case on the CPU and on meta and asks both to agree.

Each check takes the op's arguments by schema name (:func:`archprobe.analysis.geometry.named_args`)
and the outputs the meta kernel made, and returns the error the CPU kernel raises, or ``None``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from archprobe.analysis.geometry import named_args

Check = Callable[[dict[str, Any], tuple], "str | None"]


def _sides(value, n: int, default: int) -> list[int]:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return [default] * n
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value] * (n if len(value) == 1 else 1)
    return [int(value)] * n


def conv_output_sides(named: dict[str, Any]) -> list[int]:
    """The spatial output sides of ``aten.convolution`` (transposed or not), as the CPU computes them."""
    x, weight = named["input"], named["weight"]
    n = weight.dim() - 2
    stride, padding = _sides(named["stride"], n, 1), _sides(named["padding"], n, 0)
    dilation = _sides(named["dilation"], n, 1)
    spatial, kernel = list(x.shape[x.dim() - n:]), list(weight.shape[2:])
    if named["transposed"]:
        extra = _sides(named["output_padding"], n, 0)
        return [(s - 1) * st - 2 * p + d * (k - 1) + e + 1
                for s, k, st, p, d, e in zip(spatial, kernel, stride, padding, dilation, extra)]
    return [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip(spatial, kernel, stride, padding, dilation)]


def _convolution(named: dict[str, Any], _out: tuple) -> str | None:
    sides = conv_output_sides(named)
    # a transposed convolution may produce an empty output (the CPU runs it); any other must
    # keep at least one position per side
    smallest = 0 if named["transposed"] else 1
    if any(s < smallest for s in sides):
        return f"Calculated output size {'x'.join(map(str, sides))} is too small"
    return None


def _broadcasts_to(term: torch.Tensor | None, shape: tuple[int, ...]) -> bool:
    if term is None:
        return True
    if term.dim() > len(shape):
        return False
    return all(t in (1, s) for t, s in zip(reversed(term.shape), reversed(shape)))


def _added_term(product_shape: Callable[[dict[str, Any]], tuple[int, ...]]) -> Check:
    """``addmm``/``addmv``/``baddbmm``: ``self`` is expanded to the product, never the reverse."""

    def check(named: dict[str, Any], _out: tuple) -> str | None:
        shape = product_shape(named)
        if not _broadcasts_to(named["self"], shape):
            return f"size mismatch, got input ({tuple(named['self'].shape)}), product {shape}"
        return None

    return check


def _non_batch_dims_not_empty(spatial: int) -> Check:
    """Adaptive average pools need every dimension but the batch to be non-empty."""

    def check(named: dict[str, Any], _out: tuple) -> str | None:
        x = named["self"]
        dims = range(1, x.dim()) if x.dim() == spatial + 2 else range(x.dim())
        empty = [d for d in dims if x.shape[d] == 0]
        if empty:
            return (f"Expected input to have non-zero size for non-batch dimensions, but input has sizes "
                    f"{list(x.shape)} with dimension {empty[0]} being empty")
        return None

    return check


def _reduced_dims(named: dict[str, Any]) -> list[int]:
    x = named["self"]
    dim = named.get("dim")
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(x.dim()))
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    return [d % x.dim() if x.dim() else 0 for d in dims]


def _reduces_something(named: dict[str, Any], _out: tuple) -> str | None:
    """Reductions without an identity (max, min, median, mode, arg-extremes) of an empty dimension."""
    x = named["self"]
    if x.dim() == 0:
        return None
    empty = [d for d in _reduced_dims(named) if x.shape[d] == 0]
    if empty:
        return f"Expected reduction dim {empty[0]} to have non-zero size"
    return None


def _whole_tensor_not_empty(named: dict[str, Any], _out: tuple) -> str | None:
    if named["self"].numel() == 0:
        return "Expected reduction dim to be specified for input.numel() == 0"
    return None


def _upsample(spatial: int) -> Check:
    """Every interpolation mode needs a non-empty input and output (``upsample_*_common_check``)."""

    def check(named: dict[str, Any], out: tuple) -> str | None:
        x = named["input"] if "input" in named else named["self"]
        sides = list(x.shape[x.dim() - spatial:])
        made = list(out[0].shape[out[0].dim() - spatial:])
        if any(s <= 0 for s in sides + made):
            return f"Input and output sizes should be greater than 0, but got input {sides} output {made}"
        return None

    return check


def _upsample_checks() -> dict[str, Check]:
    checks: dict[str, Check] = {}
    for name, n in (("upsample_nearest", None), ("_upsample_nearest_exact", None), ("upsample_linear1d", 1),
                    ("upsample_bilinear2d", 2), ("upsample_bicubic2d", 2), ("upsample_trilinear3d", 3),
                    ("_upsample_bilinear2d_aa", 2), ("_upsample_bicubic2d_aa", 2)):
        if n is None:
            for d in (1, 2, 3):
                checks[f"{name}{d}d"] = _upsample(d)
        else:
            checks[name] = _upsample(n)
    return checks


# Keyed by "name.overload" (``OpEvent.overload``) or, for every overload, by name.
CHECKS: dict[str, Check] = {
    "convolution": _convolution,
    "addmm": _added_term(lambda a: (a["mat1"].shape[0], a["mat2"].shape[1])),
    "addmv": _added_term(lambda a: (a["mat"].shape[0],)),
    "baddbmm": _added_term(lambda a: (a["batch1"].shape[0], a["batch1"].shape[1], a["batch2"].shape[2])),
    "_adaptive_avg_pool2d": _non_batch_dims_not_empty(2),
    "_adaptive_avg_pool3d": _non_batch_dims_not_empty(3),
    **{f"{name}.dim": _reduces_something for name in ("max", "min", "median", "nanmedian")},
    **{name: _reduces_something for name in ("mode", "kthvalue", "amax", "amin", "argmax", "argmin", "aminmax")},
    **{f"{name}.default": _whole_tensor_not_empty for name in ("max", "min")},
    **_upsample_checks(),
}


_BY_FUNC: dict[Any, "Check | None"] = {}


def device_check(func) -> Check | None:
    """The check for aten op ``func`` (an ``OpOverload``), or ``None``."""
    try:
        return _BY_FUNC[func]
    except KeyError:
        packet = func.overloadpacket.__name__
        check = _BY_FUNC[func] = CHECKS.get(f"{packet}.{func._overloadname}") or CHECKS.get(packet)
        return check


def check_op(func, args: tuple, kwargs: dict, out) -> None:
    """Raise the real kernel's ``RuntimeError`` where ``func(*args, **kwargs)``, which made
    ``out`` on meta, fails on the real device."""
    check = device_check(func)
    if check is not None:
        message = check(named_args(func, args, kwargs), out if isinstance(out, (tuple, list)) else (out,))
        if message is not None:
            raise RuntimeError(f"{func.overloadpacket.__name__}(): {message}")
