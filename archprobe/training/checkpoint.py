"""Checkpoints after every epoch.

A checkpoint holds the model (its spec string, and its state: every name and shape, checked
on resume), the optimizer (and gradient scaler), the finished epochs' rows, the recipe and data
it was trained with, and the random states (CPU, the CUDA device, the shuffle generator; of
every rank in a data-parallel run), so a resumed run continues exactly where the saved one
stopped. It is written to a temporary file, flushed to disk and renamed over the last one
(:func:`archprobe.plumbing.files.write_atomic`), and read back with
``weights_only=True`` (tensors and plain values only: loading it runs no code). The runner
writes it, then the epoch's row, in one block that SIGINT and SIGTERM wait for
(:func:`archprobe.plumbing.signals.signals_deferred`); after a kill between the two, the rows
the checkpoint holds are written when the run resumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archprobe.errors import ArchprobeError, first_line
from archprobe.plumbing.files import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = 1
ERROR_LIMIT = 200  # characters of torch's reason kept in the one-line error


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    import torch

    return write_atomic(path, lambda fh: torch.save({"format": FORMAT, **payload}, fh))


def load_checkpoint(path: str | os.PathLike, device: "torch.device | str") -> dict[str, Any] | None:
    """The checkpoint at ``path`` with its tensors on ``device``; None where there is none.

    Raises:
        ArchprobeError: the file cannot be read or is no training checkpoint (one line naming it).
    """
    import torch

    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):  # a FIFO or device would block or never end; a dangling link reads nothing
        raise ArchprobeError(f"cannot read checkpoint {path}: not a regular file")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is named, not guessed at
        raise ArchprobeError(f"cannot read checkpoint {path}: {first_line(exc, limit=ERROR_LIMIT)}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ArchprobeError(f"{path} is not an archprobe training checkpoint (format {FORMAT})")
    return payload


def rng_states(device: "torch.device", shuffle: "torch.Generator") -> dict[str, Any]:
    """Every random state a training epoch draws from."""
    import torch

    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda, "shuffle": shuffle.get_state()}


def restore_rng_states(states: dict[str, Any], device: "torch.device", shuffle: "torch.Generator") -> None:
    import torch

    torch.set_rng_state(states["cpu"].cpu())
    if device.type == "cuda" and states.get("cuda") is not None:
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)
    shuffle.set_state(states["shuffle"].cpu())
