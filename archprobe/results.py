"""Every result archprobe produces: frozen dataclasses in base units, with no display strings.

Counts are plain integers (parameters, MACs, FLOPs), memory is in bytes, times are in the unit
their field name says (``_s``, ``_ms``), rates are per second and shares are fractions. How a
field is shown (header, unit, rounding) is decided in :mod:`archprobe.report` alone; JSON and
CSV carry every field unformatted.

This module imports neither torch nor the report layer, so results can be built, compared and
serialised anywhere.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# --- notes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A fact about a result that :mod:`archprobe.report` puts into words: ``code`` names the
    kind of fact (each has one sentence in ``report.notes.NOTE_TEXT``), ``values`` hold its
    figures and names as ``(key, value)`` pairs. JSON carries ``{"code": ..., key: value}``."""

    code: str
    values: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, code: str, **values: Any) -> "Note":
        return cls(code, tuple(values.items()))

    def __getitem__(self, key: str) -> Any:
        return dict(self.values)[key]


# --- the zoo ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZooEntry:
    """One model as ``archprobe list`` shows it (zoo models, or any spec given to ``report``)."""

    name: str
    family: str
    variant: str  # "imagenet", "d2l", or "-" for models outside the zoo
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int | None
    source: str  # "archprobe", "torchvision", "timm", "user" or "module"
    paper: str = ""
    year: int | None = None
    notes: str = ""


# --- static analysis ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCounts:
    """Parameters, MACs and FLOPs of one model at one input shape (see ``archprobe.analysis.costs``).

    ``params``: every parameter of the built module; ``params_forward``: those an eval-mode
    forward reads; ``macs``: multiply-accumulates of conv/linear/matmul; ``flops``: 2 per MAC
    plus the other arithmetic. ``train_*``: one training step (forward in training mode, loss,
    backward), present when asked for. ``param_bytes`` are counted in each parameter's own dtype;
    ``dtype`` is the model's (its first floating-point tensor's), the input's too.
    """

    model: str
    input_shape: tuple[int, ...]  # (batch, C, H, W)
    params: int
    params_forward: int
    trainable: int
    param_bytes: int
    macs: int
    flops: int
    conv_params: int
    linear_params: int
    linear_share: float
    largest_linear: tuple[int, int] | None = None  # (in_features, out_features) of the largest Linear
    flattened_map: tuple[int, int, int] | None = None  # (C, H, W) a Linear takes flattened, H x W > 1
    flattened_linear: tuple[int, int] | None = None  # (in_features, out_features) of that Linear
    idle_modules: tuple[str, ...] = ()  # modules an eval forward does not read (aux heads)
    idle_in_training: tuple[str, ...] | None = ()  # those a training forward does not read either
    train_macs: int | None = None
    train_flops: int | None = None
    fvcore_macs: int | None = None  # fvcore's conv/linear/matmul count, comparable with ``macs``
    fvcore_total: int | None = None  # everything fvcore counts (also norms, adaptive pools, upsampling)
    unsupported_ops: tuple[str, ...] = ()
    counter: str = "archprobe"
    dtype: str = "float32"
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class LayerRow:
    """One module call: its own parameters and cost (not those of the rows below it)."""

    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    flops: int
    model: str = ""
    path: str = ""  # the module's qualified name in the model, "" for the model itself
    depth: int = 0
    output_shapes: tuple[tuple[int, ...], ...] = ()
    # Receptive fields (asked for with ``rf``; see ``archprobe.analysis.receptive``), per spatial
    # dimension (height, width), in input pixels: the field one output unit sees, the distance
    # between neighbouring units and the centre of the first unit's field (pixel centres at 0, 1,
    # ...). ``rf_global``: every unit sees the whole input (the three are then None); None when
    # not computed, or where the field cannot be followed exactly (non-spatial inputs, flips,
    # rolls, cumulative ops along the image). Where units differ (after upsampling) the field is
    # the largest and the stride the mean (a float where it is not whole).
    receptive_field: tuple[int, ...] | None = None
    effective_stride: tuple[int | float, ...] | None = None
    rf_offset: tuple[float, ...] | None = None
    rf_global: bool | None = None


@dataclass(frozen=True)
class LayerTable:
    """The per-layer rows of one model and its totals."""

    model: str
    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]
    params: int
    params_forward: int
    macs: int
    flops: int
    unsupported_ops: tuple[str, ...]
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class CostRow:
    """One operator's or one module's part of a model's MACs and FLOPs (``archprobe params --by``).

    ``by="operator"``: ``name`` is the aten operator (``"convolution"``, ``"addmm"``; in-place
    variants such as ``"relu_"`` apart), ``calls`` how often it ran, ``macs``/``flops`` its
    cost. ``by="module"``: ``name`` is the module's qualified name (``""`` the model itself),
    ``macs``/``flops`` everything it runs, the modules inside it included (fvcore's
    ``by_module``, ``FlopCounterMode``'s per-module figures), and ``own_macs``/``own_flops``
    what no row below it holds (its own ops, and those of modules deeper than the table goes),
    so the ``own_*`` of a table sum to the model's total. Shares are of that total.
    """

    model: str
    by: str  # "operator" | "module"
    name: str
    calls: int
    macs: int
    flops: int
    macs_share: float
    flops_share: float
    type: str | None = None  # the module's class (module rows)
    depth: int | None = None  # the module's depth, 0 the model (module rows)
    own_macs: int | None = None  # module rows
    own_flops: int | None = None


@dataclass(frozen=True)
class CostBreakdown:
    """A model's MACs and FLOPs broken down by operator or by module; ``macs``/``flops`` are
    the totals the rows add up to (those of :class:`ModelCounts`, the same count). ``mode``
    "train": one training step (forward, loss, backward; by operator only)."""

    model: str
    input_shape: tuple[int, ...]  # (batch, C, H, W)
    by: str  # "operator" | "module"
    mode: str  # "eval" | "train"
    rows: tuple[CostRow, ...]
    macs: int
    flops: int
    depth: int | None = None  # module rows down to this depth (None: all)
    unsupported_ops: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()


# --- memory -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryResult:
    """The predicted peak of live tensor bytes of one step (``archprobe.analysis.memory``).

    ``mode`` "eval": one eval-mode forward under ``inference_mode``; "train": one steady-state
    training step (zero_grad, forward, cross-entropy, backward, optimizer step, with the
    optimizer state already present). The ``*_bytes`` fields break ``peak_bytes`` down at the
    peak and sum to it: ``activation_bytes`` are tensors the forward created (those saved for the
    backward, in training), ``temp_bytes`` those the backward created (activation gradients),
    ``optimizer_bytes`` the optimizer's state and its step's temporaries, ``input_bytes`` the
    batch and its labels. ``peak_at`` is the
    path of the innermost module running when the peak was first reached ("" the model itself,
    None outside every module, e.g. in the loss or the optimizer step); ``peak_phase`` is
    "forward", "loss", "backward" or "optimizer". ``device``: whose step is modelled ("cuda":
    multi-tensor optimizer kernels, torch's default there; "cpu": one tensor at a time).
    With a budget, ``max_batch_size`` is the largest batch whose peak fits in ``budget_bytes``
    (0 if not even the smallest batch does) and the row's figures are those at that batch (at
    the smallest when none fits); ``next_peak_bytes`` is the peak one example above, which does
    not fit; ``fit_capped``: the search stopped at its upper limit, more may fit.
    """

    model: str
    mode: str  # "eval" or "train"
    batch_size: int
    dtype: str
    optimizer: str | None  # "sgd" | "adam" in training, None in eval
    peak_bytes: int
    param_bytes: int
    buffer_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    temp_bytes: int
    peak_at: str | None
    input_bytes: int = 0
    peak_phase: str = "forward"
    device: str = "cuda"
    input_shape: tuple[int, ...] = ()  # (batch, C, H, W)
    max_batch_size: int | None = None
    budget_bytes: int | None = None
    next_peak_bytes: int | None = None  # the peak at max_batch_size + 1, which does not fit
    fit_capped: bool | None = None
    notes: tuple[Note, ...] = ()

    @property
    def fits(self) -> bool | None:
        """Whether the peak fits the budget (None without one)."""
        return None if self.budget_bytes is None else self.peak_bytes <= self.budget_bytes


# --- minimum input size -------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSize:
    """One module call's output at the explained size (``min-input --explain``)."""

    depth: int
    layer: str  # the module's qualified name, "" for the model itself
    type: str
    output: tuple  # (C, H, W) without the batch


@dataclass(frozen=True)
class Check:
    """One verification pass: the analysis said ``expected``, the forward pass ``ran``."""

    height: int
    width: int
    expected: bool
    ran: bool

    @property
    def agrees(self) -> bool:
        return self.expected == self.ran


@dataclass(frozen=True)
class MinInputResult:
    """The valid input sizes of one model in one mode (``archprobe.analysis.min_input``).

    ``valid``: square sides that run, as ``(lo, hi)`` intervals (``hi`` None where the set runs
    on to ``max_size``); ``anchor``: the default ``(H, W)`` if it runs, else the smallest valid
    square; ``min_height``/``min_width``: the smallest height at the anchor width and the
    smallest width at the anchor height; ``min_size``: the smallest input that runs, by area
    (then by its longer side): every ``H x W`` below the smallest valid square's area is
    replayed; a scan compares only that square and the two minima together. ``method``:
    ``"analytic"`` (replayed layer arithmetic, checked by forward passes) or ``"scan"``
    (forward passes over square sides 1..``scan_limit``).
    """

    model: str
    mode: str  # "eval" or "train"
    batch_size: int
    min_size: tuple | None
    min_square: int | None
    limiting_layer: str | None
    method: str
    verified: bool
    in_channels: int = 3
    valid: tuple = ()
    valid_h: tuple | None = None
    valid_w: tuple | None = None
    anchor: tuple | None = None
    min_height: int | None = None
    min_width: int | None = None
    max_size: int = 4096
    capped: bool = False
    scan_limit: int | None = None
    limiting_reason: str | None = None
    upper_limiting_layer: str | None = None
    upper_limiting_reason: str | None = None
    checks: tuple[Check, ...] = ()
    traced: tuple = ()
    notes: tuple[Note, ...] = ()
    explain_size: tuple | None = None
    layers: tuple[LayerSize, ...] = ()

    @property
    def examined_to(self) -> int:
        return self.scan_limit if self.scan_limit is not None else self.max_size


# --- measurements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """Library versions and hardware names (the same for every row on one device)."""

    torch_version: str
    cuda_version: str | None  # the CUDA toolkit torch was built with, None for CPU-only builds
    cudnn_version: int | None
    device_name: str  # "NVIDIA A100-SXM4-40GB", or the CPU model for "cpu"
    cpu_model: str
    python_version: str


@dataclass(frozen=True)
class TimingStats:
    """Summary of per-iteration times, in seconds."""

    samples: int
    median_s: float
    iqr_s: float
    p10_s: float
    p90_s: float
    mean_s: float
    min_s: float
    max_s: float

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        return self.iqr_s / self.median_s if self.median_s > 0 else math.inf


@dataclass(frozen=True)
class Ceiling:
    """The best matmul-class rate measured on one device and dtype, in FLOP/s."""

    flops_per_sec: float
    shape: str  # the GEMM or convolution that set it, e.g. "mm 2048x2048x2048"
    precision: str  # the dtype, or "tf32" for float32 on CUDA when cuDNN convolutions use TF32
    # --- how steady its measurement was (None: not measured)
    spread: float | None = None  # IQR / median of the calls of the shape that set it
    samples: int | None = None  # timed calls of that shape
    other_cpu_cores: float | None = None  # cores other processes kept busy while it was measured
    cpu_steal: float | None = None  # share of CPU time the hypervisor stole meanwhile


@dataclass(frozen=True)
class ThroughputResult:
    """One model x device x mode x batch row, in base units (times in ms, rates per second).

    ``peak_memory_bytes`` is the displayed memory figure: peak CUDA memory allocated on CUDA;
    on CPU the peak of live tensor bytes of one step (weights, buffers, gradients, optimizer
    state, the batch, activations and temporaries), counted on a step run after the timed ones.
    ``speedup`` is CUDA over CPU examples/sec for the same model, mode, batch and settings
    (set on the CUDA row when both were measured).

    ``achieved_flops_per_sec`` counts matmul-class work only (2 x the MACs of convolutions,
    linear layers and matmuls, the backward's too in training) and ``utilisation`` divides it by
    the device's measured matmul-class ceiling; it is ``None`` (with the ``ceiling_low`` warning)
    where the row beat the ceiling, which then cannot be the device's best.

    ``warnings`` are codes (decided by ``archprobe.runtime.load.machine_warnings``, the same for
    every measurement): ``spread`` (IQR above 10% of the median), ``busy`` (other processes
    kept ``other_cpu_cores`` busy, more than 0.25 cores), ``steal`` (the hypervisor took
    ``cpu_steal``, more than 5%, of the CPU time), ``ceiling_low`` (see above); and the same three
    of the ceiling's own measurement behind ``utilisation`` (``ceiling_spread``, ``ceiling_busy``,
    ``ceiling_steal``, from the ``ceiling_*`` fields: its figure, and so Util., is then
    uncertain). A data-parallel row also carries those of its single-process baseline
    (``baseline_spread``, ``baseline_busy``, ``baseline_steal``: ``scaling_efficiency`` is then
    uncertain); its ``other_cpu_cores`` and ``cpu_steal`` are the busiest host's while the ranks
    ran, with every rank's own CPU time (``process_cpu_cores``, summed) left out.

    Data-parallel rows (``world_size`` set; ``archprobe.bench.distributed``): ``batch_size`` is
    per rank and ``global_batch_size`` = batch_size x world_size; a step's time is the slowest
    rank's, and ``examples_per_sec`` = global batch / median of those per-step maxima;
    ``scaling_efficiency`` = examples_per_sec / (world_size x
    ``single_process_examples_per_sec``), one process at the same per-rank batch, threads and
    device measured in the same run; ``threads`` are per rank; ``matmul_flops_per_iter`` and
    ``achieved_flops_per_sec`` count every rank's work, and ``utilisation`` is over world_size
    ceilings. All of these are ``None`` on single-process rows.
    """

    model: str
    device: str
    mode: str  # "eval" or "train"
    batch_size: int
    dtype: str
    status: str  # "ok" | "oom" | "error"
    examples_per_sec: float | None = None
    median_ms: float | None = None
    iqr_ms: float | None = None
    achieved_flops_per_sec: float | None = None
    utilisation: float | None = None
    peak_memory_bytes: int | None = None
    speedup: float | None = None
    # --- statistics
    samples: int | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    spread: float | None = None  # iqr / median
    warmup_iters: int | None = None
    compile_s: float | None = None
    # --- utilisation
    matmul_flops_per_iter: int | None = None  # 2 x MACs of one step at this batch size
    ceiling_flops_per_sec: float | None = None
    ceiling_shape: str | None = None  # the GEMM or convolution that set the ceiling
    ceiling_precision: str | None = None  # the dtype, "tf32" for float32 on CUDA
    ceiling_spread: float | None = None  # IQR / median of the ceiling's own timed calls
    ceiling_samples: int | None = None
    ceiling_other_cpu_cores: float | None = None  # cores other processes kept busy while it was measured
    ceiling_cpu_steal: float | None = None
    # --- memory
    peak_cuda_allocated_bytes: int | None = None
    peak_cuda_reserved_bytes: int | None = None
    peak_live_tensor_bytes: int | None = None  # CPU: the step's peak of live tensor bytes
    # --- setup
    input_shape: tuple[int, ...] = ()  # (C, H, W) of one example
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    cudnn_benchmark: bool | None = None  # None on CPU
    optimizer: str | None = None
    torch_version: str = ""
    cuda_version: str | None = None
    cudnn_version: int | None = None
    device_name: str = ""
    cpu_model: str = ""
    python_version: str = ""
    # --- the machine while the row ran
    other_cpu_cores: float | None = None  # cores other processes kept busy, on average
    process_cpu_cores: float | None = None  # cores this process used, on average
    cpu_steal: float | None = None  # share of CPU time stolen by the hypervisor
    load_average: float | None = None  # 1-minute load average at the end of the row
    warnings: tuple[str, ...] = ()
    error: str | None = None
    # --- data-parallel runs (torch.distributed)
    world_size: int | None = None
    nproc_per_node: int | None = None
    nnodes: int | None = None
    backend: str | None = None  # "gloo" or "nccl"
    global_batch_size: int | None = None
    scaling_efficiency: float | None = None
    single_process_examples_per_sec: float | None = None
    rank_median_ms: tuple[float, ...] | None = None  # each rank's own median step time, rank order
    rank_hosts: tuple[str, ...] | None = None  # each rank's host name, rank order
    rank_device_names: tuple[str, ...] | None = None  # each rank's device ("cuda:0 NVIDIA H200"), rank order
    nccl_version: str | None = None
    notes: tuple[Note, ...] = ()  # how the input shape was chosen, a head other than the library's

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        ranks = f" x{self.world_size}" if self.world_size else ""
        return f"{self.model} {self.device} {self.mode} b={self.batch_size}{ranks}"


# --- where the time goes (profile) -------------------------------------------------------------


@dataclass(frozen=True)
class Bandwidth:
    """The memory-bandwidth ceiling of one device, bytes read + written per second by copies
    (``archprobe.bench.bandwidth``), the same for every dtype: ``bytes_per_sec`` the best over
    copies from cache-sized to far beyond every cache, ``large_bytes_per_sec`` the largest copy's
    (the device memory's bandwidth)."""

    bytes_per_sec: float
    shape: str  # the copy that set it, e.g. "copy 4 MiB"
    large_bytes_per_sec: float | None = None
    large_shape: str | None = None  # e.g. "copy 256 MiB"
    spread: float | None = None  # IQR / median of its timed calls
    samples: int | None = None
    other_cpu_cores: float | None = None  # cores other processes kept busy while it was measured
    cpu_steal: float | None = None


@dataclass(frozen=True)
class ProfileRow:
    """One layer (a module at the chosen depth) in one phase of a profiled step, or a row no layer
    owns: ``(loss)`` (the cross-entropy and its backward), ``(optimizer)`` (zero_grad and the
    optimizer step, phase ``step``), ``(unattributed)`` (what ran in the step outside every
    layer: the backward's seed, gradient accumulation, the step's own glue) and, on a GPU,
    ``(device idle)`` (step time in which no kernel ran).

    ``time_s``: the median over the profiled repeats of the layer's time in that phase (CPU: the
    self-times of the ops it ran; CUDA: the kernel times of the ops it launched); ``share``:
    ``time_s`` over the median profiled step. ``macs``/``flops``/``bytes`` are counted on meta by
    the same counter as ``archprobe params`` (FLOPs = 2 x MACs for matmul-class ops, plus the
    other arithmetic; bytes = what each op reads and writes, weights included, views none;
    ``archprobe.analysis.layer_costs``). ``intensity`` = flops / bytes (FLOP/byte);
    ``attainable_flops_per_sec`` = min(compute ceiling, bandwidth x intensity), the roofline;
    ``bound`` is ``"compute"`` or ``"memory"``: which roof is the lower one at that intensity.
    """

    model: str
    layer: str  # module path at the chosen depth ("" the model itself) or "(loss)" ...
    phase: str  # "forward" | "backward" | "step" | "-" (no phase: unattributed, idle)
    time_s: float
    share: float
    type: str = ""  # the module's class ("" for the pseudo rows)
    depth: int = 0
    macs: int | None = None
    flops: int | None = None
    bytes: int | None = None
    achieved_flops_per_sec: float | None = None
    achieved_bytes_per_sec: float | None = None
    intensity: float | None = None
    attainable_flops_per_sec: float | None = None
    bound: str | None = None
    p10_s: float | None = None
    p90_s: float | None = None
    device: str = ""
    mode: str = ""
    batch_size: int = 0


@dataclass(frozen=True)
class ProfileResult:
    """Where one step's time goes, layer by layer (``archprobe profile``), with its setup.

    ``step_s``: the median of the profiled steps (each timed as throughput times one, with the
    profiler on); ``attributed_s``: the sum of the rows' median times (``(unattributed)`` and
    ``(device idle)`` included), which should be within 5% of ``step_s``; ``coverage``: the share
    of ``step_s`` the layers, the loss and the optimizer own. ``throughput_step_s``: the median
    of the same step timed as ``archprobe throughput`` times it (no hooks, no profiler), in
    rounds alternating with the profiled ones; ``profiler_overhead`` = step_s / throughput_step_s - 1. ``timing`` says where
    times come from: ``"cpu_self"`` (op self-times) or ``"cuda_kernels"`` (kernel times).

    ``warnings`` are codes: ``profiler_cost`` (the profiled step is more than 10% slower than
    throughput's), ``unaccounted`` (the rows add up to more than 5% off the step), ``above_roof``
    (a row beat the roofline: ``above_roof_layers`` names them), ``spread``, ``busy``, ``steal``
    (the machine while it ran, as throughput's), and the same three of each roof's own
    measurement (``ceiling_busy``, ``bandwidth_spread`` ...: a roof measured on a busy machine is
    too low, and rows may beat it).
    """

    model: str
    device: str
    mode: str
    batch_size: int
    dtype: str
    depth: int | None
    status: str  # "ok" | "oom" | "error"
    rows: tuple[ProfileRow, ...] = ()
    step_s: float | None = None
    step_p10_s: float | None = None
    step_p90_s: float | None = None
    spread: float | None = None
    repeats: int | None = None
    warmup_iters: int | None = None
    attributed_s: float | None = None
    coverage: float | None = None
    throughput_step_s: float | None = None
    profiler_overhead: float | None = None
    timing: str = "cpu_self"
    macs: int | None = None  # the step's, summed over the rows
    flops: int | None = None
    # --- the roofline
    ceiling_flops_per_sec: float | None = None
    ceiling_shape: str | None = None
    ceiling_precision: str | None = None
    bandwidth_bytes_per_sec: float | None = None
    bandwidth_shape: str | None = None
    large_bandwidth_bytes_per_sec: float | None = None  # the largest copy's: device memory
    large_bandwidth_shape: str | None = None
    ridge_intensity: float | None = None  # FLOP/byte where the two roofs meet
    above_roof_layers: tuple[str, ...] = ()
    unsupported_ops: tuple[str, ...] = ()
    # --- setup
    input_shape: tuple[int, ...] = ()
    threads: int | None = None
    cudnn_benchmark: bool | None = None
    optimizer: str | None = None
    torch_version: str = ""
    cuda_version: str | None = None
    cudnn_version: int | None = None
    device_name: str = ""
    cpu_model: str = ""
    python_version: str = ""
    other_cpu_cores: float | None = None
    process_cpu_cores: float | None = None
    cpu_steal: float | None = None
    load_average: float | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    notes: tuple[Note, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return f"{self.model} {self.device} {self.mode} b={self.batch_size}"


# --- training experiments -----------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How one model is trained: the book's defaults for zoo models, with the user's overrides.

    ``resize``: the square side images are resized to on the device (None: the data set's own
    size). ``init``: ``"xavier"`` re-initialises the weights of every ``Conv2d`` and ``Linear``
    with ``xavier_uniform_`` (what d2l's ``train_ch6`` does); ``"default"`` keeps the builder's
    initialisation. ``source`` says where the defaults come from; ``overrides`` names the fields
    the user changed.
    """

    model: str
    optimizer: str  # "sgd" | "adam"
    lr: float
    batch_size: int
    epochs: int
    resize: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    init: str = "default"  # "default" | "xavier"
    dtype: str = "float32"
    seed: int = 0
    source: str = ""
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class EpochRow:
    """One finished training epoch, the book's figures (d2l ``train_ch6``).

    ``train_loss``: mean per-example loss over the epoch's training batches (label smoothing
    included); ``train_acc``: accuracy on those batches in training mode, as they were trained;
    ``test_acc``: accuracy on the test set in eval mode after the epoch. ``examples_per_sec`` =
    training examples / ``train_seconds`` (the time of the training batches, evaluation
    excluded); ``epoch_seconds``: the whole epoch, evaluation included. ``world_size``: the
    data-parallel ranks that trained the epoch (None: one process); the figures are then over
    every rank's examples and ``train_seconds`` is the slowest rank's.

    The machine while the training batches ran, sampled as around a throughput row:
    ``other_cpu_cores`` (cores other processes kept busy; with ranks, the busiest host's, every
    rank's own time left out), ``process_cpu_cores`` (this process's, or all ranks'),
    ``cpu_steal``; ``warnings`` holds ``busy`` and ``steal`` where they pass the thresholds
    throughput rows use (``examples_per_sec`` is then likely low).
    """

    model: str
    device: str
    dataset: str
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    test_acc: float
    examples_per_sec: float
    epoch_seconds: float
    train_seconds: float
    train_examples: int
    world_size: int | None = None  # the data-parallel ranks that trained it (None: one process)
    other_cpu_cores: float | None = None
    process_cpu_cores: float | None = None
    cpu_steal: float | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainRun:
    """One model trained on one device: the recipe, the setup and every finished epoch.

    ``status``: ``"ok"``, ``"diverged"`` (the loss stopped being finite; the run stopped),
    ``"oom"`` (out of memory at the recipe's batch size, which is never changed), ``"error"``
    or ``"interrupted"``; ``train.json`` says ``"running"`` while a run is under way. ``test_acc`` is the last finished epoch's, ``best_test_acc`` the best
    of them; ``train_loss`` and ``train_acc`` are the last finished epoch's too (the book's final
    ``loss ..., train acc ...``); ``train_seconds`` sums the epochs' training time and ``examples_per_sec`` is all
    training examples over it. ``macs``: multiply-accumulates of one example's forward pass at
    ``input_shape``. ``speedup``: CUDA over CPU examples/sec for the same model and recipe.
    ``warnings``: every code its epochs carry (see :class:`EpochRow`), in order.

    Data-parallel runs (``world_size`` set; :mod:`archprobe.training.distributed`): the recipe's
    ``batch_size`` is per rank and ``global_batch_size`` = batch_size x world_size; each rank
    trains on its DistributedSampler share of every epoch, and an epoch's figures are global
    (loss and accuracies summed over ranks, its training time the slowest rank's). ``threads``
    is per rank; ``rank_hosts`` and ``rank_device_names`` name each rank's host and device, in rank order.
    """

    model: str
    device: str
    dataset: str
    status: str
    recipe: Recipe
    input_shape: tuple[int, int, int]  # (C, H, W) fed to the model
    params: int | None = None
    macs: int | None = None
    epochs: tuple[EpochRow, ...] = ()
    epochs_done: int = 0
    test_acc: float | None = None
    best_test_acc: float | None = None
    train_loss: float | None = None  # the last finished epoch's
    train_acc: float | None = None  # the last finished epoch's
    train_seconds: float | None = None
    total_seconds: float | None = None
    examples_per_sec: float | None = None
    speedup: float | None = None
    train_examples: int = 0  # per epoch
    test_examples: int = 0
    resumed_from: int | None = None  # the epoch a resumed run continued after
    threads: int | None = None
    cudnn_benchmark: bool | None = None
    environment: Environment | None = None
    error: str | None = None
    notes: tuple[Note, ...] = ()
    warnings: tuple[str, ...] = ()
    # --- data-parallel runs (torch.distributed)
    world_size: int | None = None
    global_batch_size: int | None = None
    backend: str | None = None  # "gloo" or "nccl"
    rank_hosts: tuple[str, ...] | None = None  # each rank's host name, rank order
    rank_device_names: tuple[str, ...] | None = None  # each rank's device, rank order

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        ranks = f" x{self.world_size}" if self.world_size else ""
        return f"{self.model} on {self.device}{ranks}"


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantPair:
    """An ImageNet model next to a variant of it: its Dive-into-DL version (``kind`` "d2l": 1
    channel, 10 classes) or the paper's own layout where the library's model departs from it
    (``kind`` "paper", e.g. AlexNet's two-GPU grouped convolutions next to torchvision's)."""

    family: str
    imagenet: str
    imagenet_input: tuple[int, ...]
    imagenet_params: int
    imagenet_macs: int
    d2l: str
    d2l_input: tuple[int, ...]
    d2l_params: int
    d2l_macs: int
    params_ratio: float
    kind: str = "d2l"  # "d2l" or "paper"


@dataclass(frozen=True)
class ModelFailure:
    """One model an analysis could not run for, and the error that stopped it."""

    model: str
    error: str


@dataclass(frozen=True)
class Report:
    """Everything ``archprobe report`` writes, before it is laid out."""

    models: tuple[str, ...]
    zoo: tuple[ZooEntry, ...] = ()
    counts: tuple[ModelCounts, ...] = ()
    min_inputs: tuple[MinInputResult, ...] = ()
    variants: tuple[VariantPair, ...] = ()
    throughput: tuple[ThroughputResult, ...] = ()
    environment: Environment | None = None
    # Predicted peak memory: ``memory`` at the report's batch sizes (inference and training),
    # ``memory_curve`` over a range of batch sizes (the plot); models whose step could not be
    # predicted are listed in ``memory_failures``.
    memory: tuple[MemoryResult, ...] = ()
    memory_curve: tuple[MemoryResult, ...] = ()
    memory_failures: tuple[ModelFailure, ...] = ()
    profiles: tuple[ProfileResult, ...] = ()  # report --profile MODEL: where one training step's time goes


# --- serialisation ------------------------------------------------------------------------------


def plain(value: Any, words: Callable[[Sequence[Note]], list[str]] | None = None) -> Any:
    """A JSON-friendly copy of a result value: dataclasses as dicts, tuples as lists, non-finite
    floats as ``None`` (base units, nothing rounded); notes as ``words(notes)`` (the report's
    sentences), else each as ``{"code": ..., **values}``."""
    if words is not None and isinstance(value, (list, tuple)) and value and all(isinstance(v, Note) for v in value):
        return words(value)
    if isinstance(value, Note):
        return words([value])[0] if words else {"code": value.code, **{k: plain(v) for k, v in value.values}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), words) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v, words) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, words) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flat_record(result: Any) -> dict[str, Any]:
    """One CSV row of a result (or of its :func:`plain` record): list values joined by ``;``
    (a note as ``code(key=value, ...)``)."""
    def cell(v: Any) -> str:
        if isinstance(v, dict) and "code" in v:
            args = ", ".join(f"{k}={x}" for k, x in v.items() if k != "code")
            return f"{v['code']}({args})"
        return str(v)

    record = result if isinstance(result, dict) else plain(result)
    return {k: (";".join(map(cell, v)) if isinstance(v, list) else v) for k, v in record.items()}


# --- sweeps (the atlas) -------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepCell:
    """One model x one analysis of a sweep (:mod:`archprobe.bench.atlas`), as its store keeps it.

    ``key``: the SHA-256 of the spec, analysis, options and library versions. ``status``: "ok"
    (``result`` holds the analysis's result), "error" (the analysis raised; ``error`` is its
    message), "timeout" (it ran past the cell's time limit), "oom" (past the cell's memory
    guard, or out of memory) or "crashed" (the worker died: ``error`` names the signal or exit
    status). ``seconds``: the cell's wall time in its worker; ``finished_at``: Unix time.
    """

    key: str
    model: str  # the spec as swept (tv:resnet18, lenet, file.py:build)
    analysis: str  # "params", "min-input", "memory", "shapes" or "throughput"
    options: tuple[tuple[str, Any], ...]
    versions: tuple[tuple[str, str], ...]  # (library, version): torch, torchvision, timm
    status: str
    error: str | None = None
    seconds: float = 0.0
    result: Any = None
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class SweepRun:
    """What one ``sweep`` did: every cell of its share (stored before or computed now), how many
    it computed and how many it found in the store; ``shard`` is ``(index, count)``, 1-based."""

    cells: tuple[SweepCell, ...]
    computed: int
    cached: int
    shard: tuple[int, int] = (1, 1)

    @property
    def failed(self) -> tuple[SweepCell, ...]:
        return tuple(c for c in self.cells if not c.ok)


@dataclass(frozen=True)
class AtlasPoint:
    """A swept model with a published accuracy: torchvision's ``weights.meta`` ImageNet-1K top-1
    of its default weights (``weights``, the enum member's name; ``acc1`` a fraction), beside the
    sweep's params and MACs (params cells) and examples/sec (throughput cells). ``front``: the
    axes (``"macs"``, ``"params"``, ``"throughput"``) on whose Pareto front it lies: no other
    model is at least as accurate and at least as cheap (or fast) there, and better in one."""

    model: str
    weights: str
    acc1: float
    params: int | None = None
    macs: int | None = None
    examples_per_sec: float | None = None
    front: tuple[str, ...] = ()


# --- how a result prints ------------------------------------------------------------------------
# ``print(result)`` shows a result as its command's table, and a notebook as an HTML table; the
# report layer renders both (``archprobe.report.views`` puts its ``text`` and ``html`` here when
# archprobe is imported), so results stay plain data and this module imports nothing above it.
# Without a view a result prints as its repr, which stays the dataclass's own.
VIEWS: dict[str, Callable[[Any], Any]] = {}


def _view_text(result: Any) -> str:
    view = VIEWS.get("text")
    return view(result) if view is not None else repr(result)


def _view_html(result: Any) -> str | None:
    view = VIEWS.get("html")
    return view(result) if view is not None else None


for _type in [t for t in list(globals().values()) if isinstance(t, type) and dataclasses.is_dataclass(t)
              and t.__module__ == __name__ and t is not Note]:
    _type.__str__ = _view_text
    _type._repr_html_ = _view_html
del _type
