"""Compute dtypes: float32 runs as is (in the model's own dtype: float64 for ``model.double()``);
bfloat16 and float16 run under autocast (float16 with a gradient scaler when training)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, ContextManager

from archprobe.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DTYPES = ("float32", "bfloat16", "float16")
AUTOCAST_DTYPES = ("bfloat16", "float16")


def check_dtype(name: str) -> str:
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}: use {', '.join(DTYPES)}", param="dtype")
    return name


def torch_dtype(name: str) -> "torch.dtype":
    """``"float64"`` -> ``torch.float64``: any floating-point dtype by its name."""
    import torch

    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise UsageError(f"unknown dtype {name!r}: use {', '.join(DTYPES)}", param="dtype")
    return value


def compute_dtype(dtype: str, model_dtype: "torch.dtype") -> str:
    """The dtype a step computes in, as rows name it: the autocast dtype, or with none (``"float32"``,
    "as is") the model's own (``"float64"`` for a float64 model)."""
    from archprobe.probe import dtype_name

    return dtype if check_dtype(dtype) in AUTOCAST_DTYPES else dtype_name(model_dtype)


def autocast(device: "torch.device", dtype: str) -> Callable[[], ContextManager]:
    """A factory of the autocast context for ``dtype`` on ``device`` (a no-op for float32)."""
    import torch

    if check_dtype(dtype) == "float32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch_dtype(dtype))


def grad_scaler(device: "torch.device", dtype: str):
    """A ``GradScaler`` for float16 training (its gradients underflow without one), else None."""
    import torch

    return torch.amp.GradScaler(device.type) if check_dtype(dtype) == "float16" else None
