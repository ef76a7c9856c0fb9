"""Reading a traced op's arguments by name, and the window geometry of convolutions and pools.

One reader for every analysis that looks inside an op: the cost table (kernel areas), the
min-input replay (every argument, by schema name) and the receptive fields (kernel, stride,
padding, dilation). Arguments are named from the op's own schema, so positional and keyword
forms, and omitted arguments with defaults, read the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SCHEMAS: dict[Any, tuple[tuple[str, bool, Any], ...]] = {}


def _schema(func) -> tuple[tuple[str, bool, Any], ...]:
    spec = _SCHEMAS.get(func)
    if spec is None:
        spec = tuple(
            (a.name, a.kwarg_only, a.default_value if a.has_default_value() else None)
            for a in func._schema.arguments
        )
        _SCHEMAS[func] = spec
    return spec


def named_args(func, args: tuple, kwargs: dict) -> dict[str, Any]:
    """``{argument name: value}`` for an aten op call, defaults filled in from its schema."""
    named: dict[str, Any] = {}
    pos = 0
    for name, kwarg_only, default in _schema(func):
        if not kwarg_only and pos < len(args):
            named[name] = args[pos]
            pos += 1
        elif name in kwargs:
            named[name] = kwargs[name]
        else:
            named[name] = default
    return named


@dataclass(frozen=True)
class Window:
    """The sliding window of a convolution or pool over its spatial dimensions (one entry each).

    ``output_size`` is set for adaptive pools instead (their window depends on the input size).
    """

    kind: str  # "conv", "pool" or "adaptive"
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False
    transposed: bool = False
    output_size: tuple[int, ...] | None = None


def _expand(value, n: int, default: int) -> tuple[int, ...]:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return (default,) * n
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value) * (n if len(value) == 1 and n > 1 else 1)
    return (int(value),) * n


_POOLS = {f"{kind}_pool{n}d{suffix}": (kind, n)
          for kind in ("max", "avg") for n in (1, 2, 3) for suffix in ("", "_with_indices")}
_ADAPTIVE = {f"{prefix}adaptive_{kind}_pool{n}d": n
             for prefix in ("", "_") for kind in ("avg", "max") for n in (1, 2, 3)}
_CONVS = ("convolution", "_convolution", "convolution_overrideable", "cudnn_convolution")


def window(name: str, named: dict[str, Any], weight_shape: tuple[int, ...] | None = None) -> Window | None:
    """The window of op ``name`` with arguments ``named`` (:func:`named_args`), or ``None`` for
    ops that do not slide a window. ``weight_shape`` is the convolution weight's shape."""
    if name in _CONVS:
        if weight_shape is None:
            return None
        n = len(weight_shape) - 2
        return Window(
            kind="conv",
            kernel=tuple(int(k) for k in weight_shape[2:]),
            stride=_expand(named.get("stride"), n, 1),
            padding=_expand(named.get("padding"), n, 0),
            dilation=_expand(named.get("dilation"), n, 1),
            transposed=bool(named.get("transposed", False)),
        )
    if name in _POOLS:
        _, n = _POOLS[name]
        kernel = _expand(named.get("kernel_size"), n, 1)
        stride = named.get("stride")
        return Window(
            kind="pool",
            kernel=kernel,
            stride=kernel if not stride else _expand(stride, n, 1),  # stride defaults to the kernel
            padding=_expand(named.get("padding"), n, 0),
            dilation=_expand(named.get("dilation"), n, 1),
            ceil_mode=bool(named.get("ceil_mode", False)),
        )
    if name in _ADAPTIVE:
        n = _ADAPTIVE[name]
        return Window(kind="adaptive", kernel=(), stride=(), padding=(), dilation=(),
                      output_size=_expand(named.get("output_size"), n, 1))
    return None
