"""Peak memory of one inference forward or training step, predicted without allocating a byte.

What is predicted: the peak of *live tensor bytes* (every tensor storage alive at the same time,
seen at PyTorch's dispatch level) during

* inference: one eval-mode forward under ``torch.inference_mode`` (autocast for bfloat16/float16);
* training: one steady-state step of the runtime's :class:`~archprobe.runtime.step.TrainStep`,
  the throughput engine's step: ``zero_grad(set_to_none=True)``, forward, cross-entropy,
  backward, optimizer step, with the optimizer state (momentum buffers, Adam's moments) and the
  previous step's gradients alive when it starts.

How: the step runs on tensors without memory under torch's ``MemTracker``
(``torch.distributed._tools.mem_tracker``, a private API whose behaviour the tests pin). The
tracker follows every storage as it is created and freed, files it as a parameter, buffer,
gradient, optimizer state (created in the optimizer step, its temporaries too), activation
(created in the forward), temporary (created in the backward) or other (the batch and its
labels); a record after every op gives the peak and what was alive there. float32 runs on a
meta twin of the model with the trace's fast shape paths; bfloat16 and float16 need autocast,
which only acts on tensors of a device, so they run on a fake twin (``FakeTensorMode``: CPU
tensors without memory; slower). Both give the same bytes for float32.

Every tensor of a convolutional network's step holds a fixed number of bytes or a number
proportional to the batch, so each record is a line in the batch size: two steps give all
batch sizes (:class:`BatchLine`), which the largest batch that fits a budget and the report's
curve use, each checked against measured steps.

The device modelled: ``"cuda"`` runs the optimizer's multi-tensor (foreach) kernels, as torch
does by default for CUDA parameters (Adam's then hold one temporary the size of all parameters);
``"cpu"`` updates one tensor at a time, as torch does on the CPU. Not counted: what the allocator
adds (CUDA rounds every block up to 512 bytes and caches freed blocks), workspaces that kernels
take outside the dispatcher (cuDNN, cuBLAS, oneDNN) and the CUDA context.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from archprobe.errors import ArchprobeError, UsageError, first_line
from archprobe.results import MemoryResult
from archprobe.runtime.precision import check_dtype, compute_dtype

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from archprobe.probe import Mode, Probe
    from archprobe.zoo.spec import ModelSpec

DEVICES = ("cuda", "cpu")
PHASES = ("forward", "loss", "backward", "optimizer")
FIT_LIMIT = 1 << 20  # the largest batch a fit tries

# MemTracker's categories -> MemoryResult fields.
_CATEGORIES = {
    "Parameter": "param_bytes",
    "Buffer": "buffer_bytes",
    "Gradient": "grad_bytes",
    "Optstate": "optimizer_bytes",
    "Activation": "activation_bytes",
    "Temp": "temp_bytes",
    "Other": "input_bytes",
}


@functools.lru_cache(maxsize=None)
def timeline_tracker_type():
    """A subclass of torch's ``MemTracker`` that records, after every op, the live bytes of each
    category on one device, the step's phase and the modules running (``ModTracker.parents``).

    ``MemTracker`` updates the peak of every module it has seen after every op (a walk over all
    modules per op: 20 s for one DenseNet-121 step) and snapshots each module's memory as it
    starts and ends; this keeps its bookkeeping of live storages and replaces those with the
    record. A torch without the tracker, or whose tracker lacks what this reads, gets a one-line
    error; the tests pin that the peak and its breakdown equal the stock tracker's.
    """
    import torch

    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except Exception as exc:  # noqa: BLE001 - ImportError, or torch.distributed unavailable
        raise ArchprobeError(
            f"memory prediction needs torch's MemTracker (torch.distributed._tools.mem_tracker), which "
            f"torch {torch.__version__} lacks ({type(exc).__name__}: {exc}); use torch 2.5 or newer"
        ) from exc
    stock = MemTracker()
    read = ("_update_peak_stats", "_curr_mem_snap", "_mod_tracker", "_param_to_grad_hook_handles",
            "_track_module_params_and_buffers", "_pre_fw_hook", "_post_fw_hook", "_pre_bw_hook", "_post_bw_hook")
    missing = [name for name in read if not hasattr(stock, name)]
    if missing or not hasattr(stock._mod_tracker, "parents"):
        raise ArchprobeError(f"torch {torch.__version__}'s MemTracker lacks {', '.join(missing) or 'parents'},"
                             " which the memory prediction reads; use torch 2.5 to 2.15")

    class TimelineTracker(MemTracker):
        def __init__(self, device: "torch.device") -> None:
            super().__init__()
            self.device = device  # whose memory is recorded
            self.phase = PHASES[0]  # set by the step's hooks as each phase starts
            self.records: list[tuple[str, frozenset[str], tuple[int, ...]]] = []

        def __enter__(self):
            super().__enter__()
            self._record()  # before the first op: what the step starts with
            return self

        def _update_peak_stats(self, peak_state) -> None:
            self._record()

        # MemTracker's module hooks take per-module snapshots (deepcopies) this does not read. On
        # the first module call it tracks the model's parameters with gradient hooks (which file
        # gradients as gradients); the rest only snapshot. (Activation checkpointing's
        # recomputation would be filed as temporaries instead of activations: the same bytes.)
        def _pre_fw_hook(self, module, inputs) -> None:
            if not self._param_to_grad_hook_handles:
                self._track_module_params_and_buffers(module, install_grad_hooks=True)

        def _post_fw_hook(self, module, inputs, outputs) -> None:
            pass

        def _pre_bw_hook(self, module, args) -> None:
            pass

        def _post_bw_hook(self, module, args) -> None:
            pass

        def _record(self) -> None:
            snapshot = self._curr_mem_snap.get(self.device, {})
            self.records.append((self.phase, frozenset(self._mod_tracker.parents),
                                 tuple(snapshot.get(category, 0) for category in _CATEGORIES)))

    return TimelineTracker


@dataclass(frozen=True)
class Timeline:
    """One measured step: the live bytes by category (:data:`_CATEGORIES`, one column each)
    before the first op and after every op, with the phase and the modules running."""

    batch_size: int
    bytes: "np.ndarray"  # (records, categories), int64
    phases: tuple[str, ...]
    modules: tuple[frozenset, ...]

    @classmethod
    def of(cls, batch_size: int, records) -> "Timeline":
        import numpy as np

        phases, modules, values = zip(*records)
        return cls(batch_size, np.array(values, dtype=np.int64), phases, modules)

    def peak(self) -> int:
        """The index of the record where the total first reaches its largest value."""
        return int(self.bytes.sum(axis=1).argmax())


@dataclass(frozen=True)
class BatchLine:
    """The live bytes of every record as a line in the batch size, ``intercept + slope * b``,
    from two steps that ran the same ops in the same places: every tensor of a convolutional
    network's step holds either a fixed number of bytes or a number proportional to the batch."""

    intercept: "np.ndarray"
    slope: "np.ndarray"
    phases: tuple[str, ...]
    modules: tuple[frozenset, ...]

    @classmethod
    def through(cls, first: Timeline, second: Timeline) -> "BatchLine | None":
        """The line through two timelines, or None where their steps differ."""
        step = second.batch_size - first.batch_size
        if (step <= 0 or first.bytes.shape != second.bytes.shape or first.phases != second.phases
                or first.modules != second.modules):
            return None
        rise = second.bytes - first.bytes
        if (rise % step).any():
            return None
        slope = rise // step
        return cls(first.bytes - slope * first.batch_size, slope, first.phases, first.modules)

    def at(self, batch_size: int) -> Timeline:
        return Timeline(batch_size, self.intercept + self.slope * batch_size, self.phases, self.modules)

    def largest_fitting(self, budget: int) -> int:
        """The largest batch whose every record's total stays within ``budget`` (0 if none)."""
        intercept, slope = self.intercept.sum(axis=1), self.slope.sum(axis=1)
        if (intercept[slope <= 0] > budget).any():
            return 0
        growing = slope > 0
        if not growing.any():
            return FIT_LIMIT
        return max(0, int(((budget - intercept[growing]) // slope[growing]).min()))


def check_device(device: str | None) -> str:
    """``device``, checked; ``None`` is the machine's own: cuda where one is visible, else cpu."""
    if device is None:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}: use {' or '.join(DEVICES)}", param="device")
    return device


def _fake_grad_scaler():
    """A ``GradScaler`` that steps without reading ``found_inf``: fake tensors have no value to
    read (``.item()``), and a steady-state step has finite gradients, so it steps."""
    import torch

    class AssumeFiniteGradScaler(torch.amp.GradScaler):
        def _maybe_opt_step(self, optimizer, optimizer_state, *args, **kwargs):
            return optimizer.step(*args, **kwargs)

    return AssumeFiniteGradScaler("cpu")


class StepMemory:
    """One model ready to predict the peak memory of its step at any batch size.

    Built once: the twin and, in training, its step and optimizer. Before the first measured
    training step the optimizer is put in its steady state: gradients of the shapes a step leaves
    and the optimizer state one ``optimizer.step()`` on them creates (what a whole first step
    would leave, without its forward and backward). Should some trainable parameter receive no
    gradient in the measured step, that state was too large: a fresh optimizer is put in the
    steady state of the parameters that did get one (what a whole first step would leave) and the
    step is measured again (``used_only``). Each prediction measures one step.

    Args:
        probe: the model, its input shape and mode (its own model is never touched).
        optimizer: ``"sgd"`` (SGD, lr 0.001, momentum 0.9: the throughput engine's) or ``"adam"``.
        dtype: ``"float32"``, or ``"bfloat16"``/``"float16"`` autocast (float16 training adds a
            gradient scaler).
        device: the device whose step is modelled, ``"cuda"`` or ``"cpu"``.
        fake: run on fake CPU tensors even for float32 (the meta twin's cross-check).
    """

    def __init__(self, probe: "Probe", *, optimizer: str = "sgd", dtype: str = "float32",
                 device: str = "cuda", fake: bool = False):
        import torch

        from archprobe.analysis.trace import FastMeta
        from archprobe.runtime.precision import autocast
        from archprobe.runtime.step import check_optimizer
        from archprobe.zoo.twin import fake_twin, twin

        self.tracker_type = timeline_tracker_type()
        self.probe = probe
        self.optimizer_name = check_optimizer(optimizer)
        self.dtype = check_dtype(dtype)
        self.device = check_device(device)
        try:
            if dtype == "float32" and not fake:
                self.model = twin(probe.model, "meta")
                self.tensor_device = torch.device("meta")
                self.tensors: Callable[[], Any] = lambda: torch.device("meta")  # factories make meta tensors
                # The optimizer makes its step counts with ``torch.tensor``: host tensors, as on a
                # real device, so its first step runs outside the meta device (torch 2.5's Adam
                # reads them with ``.item()``); its other state follows the parameters.
                self.warm_tensors: Callable[[], Any] = contextlib.nullcontext
            else:
                # Fake tensors on the CPU: autocast acts on them, and they run on any machine (a
                # fake CUDA backward needs a GPU); the device modelled only picks optimizer kernels.
                from torch._subclasses.fake_tensor import FakeTensorMode

                fake_mode = FakeTensorMode()
                self.model = fake_twin(probe.model, fake_mode, "cpu")
                self.tensor_device = torch.device("cpu")
                self.tensors = lambda: fake_mode
                self.warm_tensors = self.tensors  # fake constants: their ``.item()`` reads
        except TypeError as exc:
            raise ArchprobeError(f"{probe.name}: {exc}") from exc
        self.model.train(probe.train)
        # meta: the fast shape paths; meta and fake: the real kernels' output dtypes (trace.run_op)
        self.fast_paths = FastMeta
        self.autocast = autocast(torch.device("cpu"), dtype)
        self.step = self._train_step() if probe.train else None
        self.used_only = False
        self.timelines: dict[int, Timeline] = {}  # the measured steps, by batch size
        self._warm = False
        self._logit_shapes: list[tuple[int, ...]] | None = None
        self.attention_notes: tuple = ()  # which attention kernel the last step followed

    def _train_step(self):
        import torch

        from archprobe.runtime.step import train_step

        try:
            step = train_step(self.model, torch.device("cpu"), self.dtype, self.optimizer_name,
                              foreach=self.device == "cuda")
        except ValueError as exc:
            raise ArchprobeError(f"{self.probe.name}: {exc}") from exc
        if step.scaler is not None:
            step.scaler = _fake_grad_scaler()
        return step

    def _parameters(self) -> list:
        return [p for group in self.step.optimizer.param_groups for p in group["params"]]

    def _steady_state(self, used: list | None = None) -> None:
        """Gradients as a step leaves them and the optimizer state one step on them creates
        (``used``: only those parameters get a gradient)."""
        import torch

        with self.warm_tensors():
            for param in self._parameters():
                param.grad = torch.empty_like(param) if used is None or any(param is u for u in used) else None
            self.step.optimizer.step()
            if self.step.scaler is not None:
                self.step.scaler.scale(torch.ones(()))  # creates the scale and its growth tracker

    def _inputs(self, batch_size: int) -> tuple["torch.Tensor", Any]:
        """A batch and, in training, synthetic labels for each logits tensor the model returns
        (their shapes come from one forward, run once: they do not depend on the batch)."""
        import torch

        from archprobe.runtime.step import logits_of, synthetic_targets

        x = torch.empty((batch_size, *self.probe.input_shape), dtype=self.probe.dtype)
        if self.step is None:
            return x, None
        if self._logit_shapes is None:
            with torch.no_grad(), self.autocast(), self.fast_paths():
                out = self.model(x)
            self._logit_shapes = [tuple(o.shape[1:]) for o in logits_of(out, batch_size)]
        outputs = [torch.empty((batch_size, *shape), dtype=self.probe.dtype) for shape in self._logit_shapes]
        return x, synthetic_targets(outputs, batch_size, torch.Generator().manual_seed(0))

    def _run(self, x: "torch.Tensor", targets: Any) -> None:
        import torch

        if self.step is None:
            with torch.inference_mode(), self.autocast():
                self.model(x)
        else:
            self.step(x, targets)

    def predict(self, batch_size: int) -> MemoryResult:
        """The peak live tensor bytes of one step at ``batch_size``, with its breakdown."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise UsageError(f"must be a positive integer, not {batch_size!r}", param="batch_size")
        try:
            if self.step is not None and not self._warm:
                self._steady_state()
                self._warm = True
            with self.tensors():
                x, targets = self._inputs(batch_size)
                records = self._measure(x, targets)
            if (self.step is not None and not self.used_only
                    and any(p.grad is None for p in self._parameters())):
                # some get no gradient: a fresh optimizer's steady state for those that do
                used = [p for p in self._parameters() if p.grad is not None]
                self.step = self._train_step()
                self._steady_state(used)
                self.used_only = True
                self.timelines.clear()
                with self.tensors():
                    records = self._measure(x, targets)
        except ArchprobeError:
            raise
        except Exception as exc:  # noqa: BLE001 - model code that cannot run without memory
            raise ArchprobeError(f"{self.probe.name}: the step could not run without memory: "
                                 f"{first_line(exc)}") from exc
        timeline = Timeline.of(batch_size, records)
        self.timelines[batch_size] = timeline
        return self.row(timeline)

    def _measure(self, x: "torch.Tensor", targets: Any) -> list:
        """Run one step under a fresh tracker that starts with everything alive before it; the
        records of the model's device (tensors an optimizer keeps on the host whatever the
        model's device, such as Adam's step counts, are not device memory)."""
        import torch
        from torch.utils._pytree import tree_flatten

        from archprobe.analysis.attention import device_attention

        tracker = self.tracker_type(self.tensor_device)
        labels = [t for t in tree_flatten(targets)[0] if isinstance(t, torch.Tensor)]
        # only modules, optimizers and tensors: torch 2.5's tracker refuses anything else (None)
        tracker.track_external(self.model, *([self.step.optimizer] if self.step else []), x, *labels)
        attention = device_attention(self.device)  # the kernel the device picks, not meta's math path
        with self.fast_paths(), attention, _phase_hooks(self, tracker), tracker:
            self._run(x, targets)
        self.attention_notes = attention.notes()
        return tracker.records

    def line(self) -> BatchLine | None:
        """The line through the two smallest measured steps (None before two, or where they
        differ in more than their batch)."""
        measured = sorted(self.timelines)
        if len(measured) < 2:
            return None
        return BatchLine.through(self.timelines[measured[0]], self.timelines[measured[1]])

    def row(self, timeline: Timeline) -> MemoryResult:
        """The result of a step's timeline: its peak and what was alive there."""
        index = timeline.peak()
        values = [int(v) for v in timeline.bytes[index]]
        return MemoryResult(
            model=self.probe.name,
            mode=str(self.probe.mode),
            batch_size=timeline.batch_size,
            dtype=compute_dtype(self.dtype, self.probe.dtype),
            optimizer=self.optimizer_name if self.step is not None else None,
            peak_bytes=sum(values),
            peak_at=_innermost(timeline.modules[index]),
            peak_phase=timeline.phases[index],
            device=self.device,
            input_shape=(timeline.batch_size, *self.probe.input_shape),
            notes=self.probe.notes + self.attention_notes,
            **dict(zip(_CATEGORIES.values(), values)),
        )


def _innermost(running: set[str]) -> str | None:
    """The deepest of the modules running (``ModTracker`` names them ``Root.child.grandchild``
    beside ``"Global"``) as a path in the model ("" for the model itself), None if none ran."""
    names = [name for name in running if name != "Global"]
    if not names:
        return None
    deepest = max(names, key=lambda name: (name.count("."), name))
    return deepest.partition(".")[2]


@contextlib.contextmanager
def _phase_hooks(memory: StepMemory, tracker):
    """Tell ``tracker`` the step's phase as each one starts: the forward (the model's pre-hook),
    the loss (its forward hook), the backward (the loss returned) and the optimizer step (its
    pre-step hook)."""
    def enter(phase: str) -> Callable[..., None]:
        def hook(*_args) -> None:
            tracker.phase = phase

        return hook

    handles = [memory.model.register_forward_pre_hook(enter("forward")),
               memory.model.register_forward_hook(enter("loss"))]
    step = memory.step
    loss_fn = step.loss_fn if step is not None else None
    if step is not None:
        def loss_then_backward(out, targets):
            loss = loss_fn(out, targets)
            tracker.phase = "backward"
            return loss

        step.loss_fn = loss_then_backward
        handles.append(step.optimizer.register_step_pre_hook(enter("optimizer")))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if step is not None:
            step.loss_fn = loss_fn


def sweep(probe: "Probe", batch_sizes, *, optimizer: str = "sgd", dtype: str = "float32",
          device: str = "cuda") -> list[MemoryResult]:
    """One measured step per batch size, from one twin (see :class:`StepMemory`)."""
    memory = StepMemory(probe, optimizer=optimizer, dtype=dtype, device=device)
    return [memory.predict(b) for b in batch_sizes]


def curve(probe: "Probe", batch_sizes, *, measure_at=(), optimizer: str = "sgd", dtype: str = "float32",
          device: str = "cuda") -> list[MemoryResult]:
    """Rows at every batch size in ``batch_sizes`` for the price of a few steps: the two smallest
    and those in ``measure_at`` are measured; the others are read off the :class:`BatchLine`
    through the two smallest when it reproduces every measured row exactly (and measured too
    when it does not)."""
    memory = StepMemory(probe, optimizer=optimizer, dtype=dtype, device=device)
    sizes = sorted(set(batch_sizes))
    rows = {b: memory.predict(b) for b in sorted({*sizes[:2], *measure_at})}
    line = memory.line()
    if line is None or any(memory.row(line.at(b)) != row for b, row in rows.items()):
        rows.update((b, memory.predict(b)) for b in sizes if b not in rows)
    return [rows.get(b) or memory.row(line.at(b)) for b in sizes]


def fit(probe: "Probe", budget_bytes: int, *, optimizer: str = "sgd", dtype: str = "float32",
        device: str = "cuda", limit: int = FIT_LIMIT) -> MemoryResult:
    """The largest batch whose predicted peak fits in ``budget_bytes``: its row, with
    ``max_batch_size`` and ``budget_bytes`` set.

    Two steps at the smallest batches give the :class:`BatchLine` of every record, hence the
    largest batch it keeps within the budget; the steps at that batch and the next one check
    it (the figure at ``max_batch_size`` fits and the next does not). Where the check fails, a
    search over predictions takes over (:func:`search_largest_fit`). ``max_batch_size`` is 0
    when the smallest batch that runs (1, or 2 where a training-mode BatchNorm needs it) does
    not fit, and the row is then that batch's; the search stops at ``limit`` (``fit_capped``).
    """
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes <= 0:
        raise UsageError(f"must be a positive number of bytes, not {budget_bytes!r}", param="fit")
    smallest = smallest_batch(probe)
    memory = StepMemory(probe, optimizer=optimizer, dtype=dtype, device=device)
    rows: dict[int, MemoryResult] = {}

    def peak(batch: int) -> int:
        if batch not in rows:
            rows[batch] = memory.predict(batch)
        return rows[batch].peak_bytes

    answer = None
    if peak(smallest) > budget_bytes:
        answer = (0, False)
    elif limit > smallest:
        peak(smallest + 1)
        line = memory.line()
        guess = min(line.largest_fitting(budget_bytes), limit) if line is not None else 0
        if guess >= smallest and peak(guess) <= budget_bytes and (guess == limit or peak(guess + 1) > budget_bytes):
            answer = (guess, guess == limit)
    best, capped = answer or search_largest_fit(peak, budget_bytes, limit, smallest=smallest)
    above = rows.get(best + 1) if best else None
    return replace(rows[max(best, smallest)], max_batch_size=best, budget_bytes=budget_bytes, fit_capped=capped,
                   next_peak_bytes=above.peak_bytes if above is not None else None)


def smallest_batch(probe: "Probe") -> int:
    """1, or 2 where one example cannot run in the probe's mode (training-mode BatchNorm over a
    1x1 map needs more than one value per channel); an input size the model cannot take at
    all raises the ``InputSizeError`` naming the layer and the valid sizes."""
    from archprobe.analysis.min_input import ensure_input_size
    from archprobe.analysis.trace import forward_runs

    for batch in (1, 2):
        if forward_runs(probe.model, probe.with_setting(batch_size=batch).shape, train=probe.train):
            return batch
    ensure_input_size(probe.with_setting(batch_size=1))
    return 1


def search_largest_fit(peak: Callable[[int], int], budget: int, limit: int, *,
                       smallest: int = 1) -> tuple[int, bool]:
    """The largest ``b`` in ``smallest``..``limit`` with ``peak(b) <= budget`` (0 if none) for a
    peak that grows with ``b``, and whether the search stopped at ``limit``.

    The peak grows about linearly with the batch, so the search interpolates: from the two
    smallest batches it guesses, steps past the guess (doubling) until a batch does not fit,
    then narrows the bracket by interpolation, bisecting when one side moved twice in a row.
    The answer is verified: ``peak(b)`` fits and ``peak(b + 1)`` does not (unless ``b`` is
    ``limit``).
    """
    first = smallest
    if peak(first) > budget:
        return 0, False
    if limit <= first:
        return first, True
    lo = first  # peak(lo) fits ...
    candidate = min(max(_interpolate(first, peak(first), first + 1, peak(first + 1), budget), first + 1), limit)
    while peak(candidate) <= budget:
        lo = candidate
        if lo == limit:
            return limit, True
        candidate = min(max(lo + 1, _interpolate(first, peak(first), lo, peak(lo), budget), 2 * lo - 1), limit)
    hi = candidate  # ... and peak(hi) does not
    moved, repeats = None, 0
    while hi - lo > 1:
        if repeats >= 2:
            middle = (lo + hi) // 2
        else:
            middle = min(max(_interpolate(lo, peak(lo), hi, peak(hi), budget), lo + 1), hi - 1)
        side = "lo" if peak(middle) <= budget else "hi"
        if side == "lo":
            lo = middle
        else:
            hi = middle
        repeats = repeats + 1 if side == moved else 1
        moved = side
    return lo, False


def _interpolate(b0: int, p0: int, b1: int, p1: int, budget: int) -> int:
    """Where the line through (b0, p0) and (b1, p1) reaches ``budget``, rounded down."""
    if p1 <= p0:
        return b1 + 1
    return b0 + (budget - p0) * (b1 - b0) // (p1 - p0)


# --- rows for the command line, the API and the report ---------------------------------------------


def memory_rows(specs: Sequence["ModelSpec"], modes: Sequence["Mode"], batch_sizes: Sequence[int] = (32,), *,
                optimizer: str = "sgd", dtype: str = "float32", device: str | None = None,
                budget: int | None = None) -> list[MemoryResult]:
    """Predicted peak memory: one row per model x mode x batch size, or with ``budget`` (bytes)
    one row per model x mode at the largest batch that fits. Each model is built once on meta
    and every input size is checked before any prediction (an ``InputSizeError`` names the layer
    and the valid sizes). ``device``: the one modelled, by default cuda where one is visible,
    else cpu."""
    from archprobe.analysis.min_input import ensure_input_size
    from archprobe.probe import Probe

    check_dtype(dtype)
    device = check_device(device)
    probes = [meta.with_setting(mode=mode) for meta in map(Probe.build, specs) for mode in modes]
    for p in probes:
        if budget is not None:
            smallest_batch(p)
        else:
            ensure_input_size(p.with_setting(batch_size=min(batch_sizes)))
    rows: list[MemoryResult] = []
    for p in probes:
        if budget is not None:
            rows.append(fit(p, budget, optimizer=optimizer, dtype=dtype, device=device))
        else:
            rows.extend(sweep(p, batch_sizes, optimizer=optimizer, dtype=dtype, device=device))
    return rows


MEMORY_CURVE = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # the batch sizes of the report's memory plot


def report_memory(p: "Probe", batch_sizes: Sequence[int]) -> tuple[list[MemoryResult], list[MemoryResult]]:
    """The report's memory rows of one model: inference and training at ``batch_sizes``
    (measured), and over :data:`MEMORY_CURVE` from the smallest batch that runs (read off the
    line through the two smallest steps where it reproduces the measured ones)."""
    from archprobe.probe import Mode

    table: list[MemoryResult] = []
    plotted: list[MemoryResult] = []
    for mode in (Mode.EVAL, Mode.TRAIN):
        probe_mode = p.with_setting(mode=mode)
        smallest = smallest_batch(probe_mode)
        points = [b for b in MEMORY_CURVE if b >= smallest]
        rows = curve(probe_mode, [*points, *batch_sizes], measure_at=batch_sizes)
        table += [r for r in rows if r.batch_size in batch_sizes]
        plotted += [r for r in rows if r.batch_size in points]
    return table, plotted
