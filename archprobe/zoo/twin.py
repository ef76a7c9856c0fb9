"""Twins of a caller's live ``nn.Module``: the same structure, never its weights.

archprobe never moves, copies the weights of, or changes a module handed to its API. Static
analysis runs on a *meta twin* (parameters and buffers replaced by meta tensors: no memory, no
data read); timing runs on a *device twin* whose parameters are new tensors on the target
device, initialised afresh (``reset_parameters`` where a layer has one). Buffers (BatchNorm
statistics, index tables) are small and can hold values the forward depends on, so a device twin
copies them; a meta twin does not.
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
    from torch import nn

    meta = torch.device(device).type == "meta"
    memo: dict[int, object] = {}
    for param in module.parameters():
        if id(param) not in memo:
            fresh = torch.empty_like(param, device=device)
            memo[id(param)] = nn.Parameter(fresh, requires_grad=param.requires_grad)
    for buffer in module.buffers():
        if id(buffer) not in memo:
            memo[id(buffer)] = torch.empty_like(buffer, device=device) if meta else buffer.detach().to(device, copy=True)
    for sub in module.modules():  # tensors kept as plain attributes (not registered) travel too
        for value in vars(sub).values():
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = torch.empty_like(value, device=device) if meta else value.detach().to(device, copy=True)
    try:
        clone = copy.deepcopy(module, memo)
    except Exception as exc:  # noqa: BLE001 - locks, generators, compiled or scripted modules
        raise TypeError(f"cannot make a copy of its structure ({type(exc).__name__}: {exc})") from exc
    if not meta:
        _initialise(clone)
    return clone


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
