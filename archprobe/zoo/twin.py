"""Twins of a caller's live ``nn.Module``: the same structure, never its weights.

archprobe never moves, copies the weights of, or changes a module handed to its API. Static
analysis runs on a *meta twin* (parameters and buffers replaced by meta tensors: no memory, no
data read); timing runs on a *device twin* whose parameters are new tensors on the target
device, initialised afresh (``reset_parameters`` where a layer has one). Buffers (BatchNorm
statistics, index tables) are small and can hold values the forward depends on, so a device twin
copies them; a meta twin does not. A *fake twin* (for the memory analysis) holds fake tensors:
shapes and dtypes on a device, no memory.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def twin(module: "nn.Module", device: str = "meta") -> "nn.Module":
    """A structural copy of ``module`` on ``device`` sharing no storage with it.

    Raises ``TypeError`` for modules that cannot be copied structurally (``deepcopy`` fails).
    """
    import torch

    meta = torch.device(device).type == "meta"

    def fresh(tensor: "torch.Tensor") -> "torch.Tensor":
        return torch.empty_like(tensor, device=device)

    def copied(tensor: "torch.Tensor") -> "torch.Tensor":
        return fresh(tensor) if meta else tensor.detach().to(device, copy=True)

    clone = _structural_copy(module, fresh, copied)
    if not meta:
        _initialise(clone)
    return clone


def fake_twin(module: "nn.Module", fake_mode, device: str = "cpu") -> "nn.Module":
    """A structural copy of ``module`` whose parameters, buffers and tensor attributes are fake
    tensors of ``fake_mode`` (a ``FakeTensorMode``) on ``device``: the same shapes, strides and
    dtypes, no memory and no values.

    Raises ``TypeError`` for modules that cannot be copied structurally.
    """
    import torch

    def fake(tensor: "torch.Tensor") -> "torch.Tensor":
        with fake_mode:
            return torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device=device)

    return _structural_copy(module, fake, fake)


def _structural_copy(module: "nn.Module", make_param, make_tensor) -> "nn.Module":
    """``deepcopy`` with every parameter replaced by ``make_param(param)`` (as a parameter with the
    same ``requires_grad``) and every buffer or tensor attribute by ``make_tensor(tensor)``."""
    import torch
    from torch import nn

    memo: dict[int, object] = {}
    for param in module.parameters():
        if id(param) not in memo:
            memo[id(param)] = nn.Parameter(make_param(param), requires_grad=param.requires_grad)
    for buffer in module.buffers():
        if id(buffer) not in memo:
            memo[id(buffer)] = make_tensor(buffer)
    for sub in module.modules():  # tensors kept as plain attributes (not registered) travel too
        for value in vars(sub).values():
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = make_tensor(value)
    try:
        return copy.deepcopy(module, memo)
    except Exception as exc:  # noqa: BLE001 - locks, generators, compiled or scripted modules
        raise TypeError(f"cannot make a copy of its structure ({type(exc).__name__}: {exc})") from exc


def _initialise(model: "nn.Module") -> None:
    """Fresh values for a device twin's parameters: each layer's own ``reset_parameters``, and a
    small normal draw for parameters no layer resets."""
    import torch

    reset: set[int] = set()
    with torch.no_grad():
        for sub in model.modules():
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()
                reset.update(id(p) for p in sub.parameters(recurse=False))
        for param in model.parameters():
            if id(param) not in reset:
                param.normal_(0.0, 0.02)
