"""The attention kernel a real device runs, followed on tensors without memory.

``torch.nn.functional.scaled_dot_product_attention`` picks a kernel per call. On the CPU it is
usually a flash-attention kernel, which keeps only the output and a log-sum-exp per query for the
backward; on the meta device (and on fake tensors) it always takes the math path, which
materialises the L x S attention matrix and, in training, saves it: a training step predicted
on meta was 5-10% above the real CPU step of an attention model (timm's pvt_v2_b0, vit_tiny).

:class:`DeviceAttention` reroutes each call, as the modelled device would: it asks that device's
own choice function (``torch._fused_sdp_choice``) with stand-ins of the same sizes, dtypes and
last-dimension strides (one row of storage each, the other strides zero: the choice reads sizes,
dtypes and the last stride only), then runs the kernel chosen on the tensors without memory.
The CPU's flash kernel is followed exactly (the math path is the composite's own). A CUDA step
is followed along the math path, an upper bound that the result's notes say (CUDA's fused
kernels hold no attention matrix; their padding and masks are not reproduced here).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import TYPE_CHECKING

from archprobe.results import Note

if TYPE_CHECKING:  # pragma: no cover
    import torch

FLASH = 1  # torch.nn.attention.SDPBackend.FLASH_ATTENTION, as _fused_sdp_choice returns it


def _stand_in(tensor: "torch.Tensor", device: str) -> "torch.Tensor":
    """A tensor on ``device`` with ``tensor``'s sizes, dtype, last stride and requires_grad,
    backed by one row of storage."""
    import torch

    if tensor.dim() == 0:
        return torch.empty((), dtype=tensor.dtype, device=device)
    last = tensor.stride()[-1]
    storage = torch.empty(max(1, (tensor.shape[-1] - 1) * last + 1), dtype=tensor.dtype, device=device)
    stand_in = storage.as_strided(tuple(tensor.shape), (0,) * (tensor.dim() - 1) + (last,))
    return stand_in.requires_grad_(tensor.requires_grad) if torch.is_grad_enabled() else stand_in


def device_choice(device: str, query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False,
                  scale: float | None = None, enable_gqa: bool = False) -> int:
    """The kernel ``device`` picks for these arguments (an ``SDPBackend`` value)."""
    import torch
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes():  # the stand-ins are no tensors of the step: no tracker sees them
        tensors = [_stand_in(t, device) for t in (query, key, value)]
        mask = _stand_in(attn_mask, device) if isinstance(attn_mask, torch.Tensor) else attn_mask
        extra = {"enable_gqa": True} if enable_gqa else {}  # a keyword torch < 2.5 lacks
        return int(torch._fused_sdp_choice(*tensors, mask, dropout_p, is_causal, scale=scale, **extra))


def _bool_mask_as_bias(mask, dtype):
    """As the composite does before a fused kernel (``convert_boolean_attn_mask``): True keeps
    (0), False masks out (-inf)."""
    import torch

    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.where(mask, 0.0, torch.scalar_tensor(float("-inf"), dtype=dtype, device=mask.device))


@functools.lru_cache(maxsize=None)
def _mode_type():
    """The mode's class, made on first use (torch is imported then)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class DeviceAttention(TorchFunctionMode):
        """Runs every ``scaled_dot_product_attention`` along the kernel ``device`` would pick;
        ``kernels`` counts the calls by the kernel followed (``"flash"``, ``"math"``)."""

        def __init__(self, device: str) -> None:
            super().__init__()
            self.device = device
            self.kernels: Counter[str] = Counter()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is not F.scaled_dot_product_attention:
                return func(*args, **(kwargs or {}))
            return self._attention(func, *args, **(kwargs or {}))

        def _attention(self, func, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                       scale=None, **rest):
            if self.device == "cpu" and device_choice("cpu", query, key, value, attn_mask, dropout_p, is_causal,
                                                      scale, bool(rest.get("enable_gqa", False))) == FLASH:
                self.kernels["flash"] += 1
                return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    query, key, value, dropout_p, is_causal, attn_mask=_bool_mask_as_bias(attn_mask, query.dtype),
                    scale=scale)[0]
            self.kernels["math"] += 1  # the CPU's own choice, or CUDA (see the module docstring)
            return func(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **rest)

        def notes(self) -> tuple[Note, ...]:
            """What the calls took, for the result (none where the model has no attention, or
            where the real device takes the math path too)."""
            if self.device != "cpu" and self.kernels["math"]:
                return (Note.of("attention_upper_bound", calls=self.kernels["math"], device=self.device),)
            if self.kernels["flash"]:
                return (Note.of("attention_kernel", calls=self.kernels["flash"], device=self.device,
                                kernel="flash"),)
            return ()

    return DeviceAttention


def device_attention(device: str):
    """A ``TorchFunctionMode`` that runs every ``scaled_dot_product_attention`` along the kernel
    ``device`` (``"cpu"`` or ``"cuda"``) picks, on tensors without memory; its ``notes()`` say
    what the calls took."""
    return _mode_type()(device)
