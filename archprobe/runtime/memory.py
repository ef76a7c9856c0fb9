"""The peak memory of one real step: what the memory prediction is checked against.

The step is the prediction's (:mod:`archprobe.analysis.memory`): an eval-mode forward under
``inference_mode``, or a steady-state training step of :func:`~archprobe.runtime.step.train_step`
(one step runs first; the second is measured), with real weights and synthetic data on the device.

* CPU: the peak of live tensor bytes, counted at dispatch level by :class:`LiveTensorBytes`
  (every storage an op returns, until it is freed), starting from the tensors alive before the
  step (parameters, buffers, gradients, optimizer state, the batch and its labels). The
  throughput engine reports the same figure for its CPU rows (:func:`live_peak`).
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``: everything the
  caching allocator handed out, workspaces and rounding included.
"""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.probe import Probe


class LiveTensorBytes(TorchDispatchMode):
    """A dispatch mode that counts the bytes of the tensor storages alive and keeps their peak.

    Every storage an op returns is counted once (views and in-place results share their
    input's) until it is freed; ``alive`` are the tensors that exist before the mode is entered.
    """

    def __init__(self, alive: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.current = 0
        self._live: dict[int, int] = {}  # storage data pointer -> bytes
        for tensor in alive:
            self._add(tensor)
        self.peak = self.current

    def _add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self._live:
            return
        self._live[key] = size
        self.current += size
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._add(value)
        self.peak = max(self.peak, self.current)
        return out


def measure_step_peak(probe: "Probe", *, optimizer: str = "sgd", dtype: str = "float32", backend=None) -> int:
    """The peak bytes of one step of the probe's model (built on a real device) at its batch
    size and mode: live tensor bytes on the CPU, the allocator's peak (``memory_begin`` /
    ``memory_end`` of the device's :class:`~archprobe.runtime.backends.Backend`) on CUDA."""
    from archprobe.runtime.backends import make_backend
    from archprobe.runtime.workload import step_workload

    work = step_workload(probe, dtype=dtype, optimizer=optimizer)
    backend = backend or make_backend(probe.device)
    with work.context():
        if probe.train:
            work.step()  # the first step: optimizer state and gradients as in steady state
        gc.collect()
        if backend.kind != "cuda":
            return live_peak(work.step, work.alive())
        backend.memory_begin()
        work.step()
        backend.synchronize()
        return int(backend.memory_end()["peak_cuda_allocated_bytes"])


def live_peak(run: Callable[[], Any], alive: Iterable[torch.Tensor]) -> int:
    """The peak live tensor bytes while ``run()`` runs, counting ``alive`` (the tensors that exist
    before it) from the start. The caller must hold no other reference to tensors ``run`` frees
    (a step's gradients), or they would be counted as alive to the end."""
    counter = LiveTensorBytes(alive)
    with counter:
        run()
    return counter.peak
