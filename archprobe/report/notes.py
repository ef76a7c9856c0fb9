"""Prose under the tables: conventions, warnings and notes derived from the numbers.

Every sentence archprobe prints about a result is written here, from the result's fields.
"""

from __future__ import annotations

from typing import Sequence

from archprobe.runtime.precision import AUTOCAST_DTYPES
from archprobe.report.sentences import NOTE_TEXT, note_text, notes_text  # noqa: F401 - re-exported
from archprobe.results import (EpochRow, MemoryResult, MinInputResult, ModelCounts, Recipe, ThroughputResult,
                               TrainRun)
from archprobe.results import ProfileResult


CONVENTIONS = (
    "MACs: multiply-accumulates of conv/linear/matmul only (torchvision's _ops convention); "
    "FLOPs: 2 per MAC + norm, pooling, activation and elementwise work (see 'archprobe params --help')."
)


FVCORE_NOTE = (
    "fvcore MACs: fvcore's conv/linear/matmul count, comparable with MACs; fvcore total: everything fvcore "
    "counts (also BatchNorm, LayerNorm, adaptive pooling and upsampling), its total()."
)


def unsupported_warnings(results: Sequence) -> list[str]:
    """One line per result that met ops without a cost formula."""
    return [f"warning: {r.model}: unsupported ops counted as 0: {', '.join(r.unsupported_ops)}"
            for r in results if r.unsupported_ops]


def breakdown_notes(tables: Sequence) -> list[str]:
    """Under a table of ``params --by``: each model's total, which the rows add up to, and what
    a row holds."""
    notes = []
    for t in tables:
        shape = "x".join(map(str, t.input_shape))
        step = " for one training step (forward, loss, backward)" if t.mode == "train" else ""
        column = "Own MACs and Own FLOPs" if t.by == "module" else "the rows"
        notes.append(f"{t.model}: {t.macs:,} MACs, {t.flops:,} FLOPs{step} for input {shape}; {column} add up "
                     "to them exactly")
    if any(t.by == "operator" for t in tables):
        notes.append("Operator: the aten operator as it ran (in-place variants such as relu_ apart); operators "
                     "that cost nothing by definition (views, copies, cat) are left out")
    if any(t.by == "module" for t in tables):
        depths = {t.depth for t in tables if t.by == "module"}
        down = "every module" if None in depths else f"modules down to depth {max(depths)}"
        notes.append(f"Module: {down} (the model is depth 0); MACs and FLOPs: all it runs, the modules inside it "
                     "included (fvcore's by_module, torch's FlopCounterMode); Own: what no row below it holds")
    return notes


def idle_notes(results: Sequence[ModelCounts]) -> list[str]:
    """Which parameters an eval forward leaves unread, and why (aux heads run only in training)."""
    notes = []
    for r in results:
        if not r.idle_modules:
            continue
        idle = r.params - r.params_forward
        text = (f"{r.model}: {_count(idle)} of its {_count(r.params)} parameters ({', '.join(r.idle_modules)})"
                " are not read by an eval-mode forward, so Params (fwd) leaves them out")
        if r.idle_in_training is None:
            text += "; whether training reads them could not be traced"
        elif not r.idle_in_training:
            text += "; they run only in training (auxiliary classifiers)"
        elif set(r.idle_in_training) == set(r.idle_modules):
            text += "; training does not read them either: they are built but never used"
        else:
            text += f"; training reads all but {', '.join(r.idle_in_training)}"
        notes.append(text)
    return notes


def _count(n: int) -> str:
    from archprobe.report.frames import format_value

    return format_value(n, "count")


def _share(fraction: float) -> str:
    """A percentage that never rounds a part up to the whole (99.8% is not 100%)."""
    text = f"{100 * fraction:.0f}%"
    return f"{100 * fraction:.1f}%" if text in ("0%", "100%") and 0 < fraction < 1 else text


def _where_parameters_live(r: ModelCounts) -> str:
    share = _share(r.linear_share)
    if not r.linear_params:
        return f"{r.model} ({_count(r.params)}) has no linear layer"
    text = f"{r.model} keeps {_count(r.linear_params)} of its {_count(r.params)} parameters ({share}) in linear layers"
    if r.largest_linear:
        fan_in, fan_out = r.largest_linear
        largest = fan_in * fan_out
        if largest >= 0.5 * r.linear_params:
            text += f", {_count(largest)} of them in one {fan_in}x{fan_out} weight"
    if r.flattened_map:
        c, h, w = r.flattened_map
        text += f"; its classifier takes the flattened {c}x{h}x{w} feature map ({c * h * w:,} values)"
    return text


def parameter_note(results: Sequence[ModelCounts]) -> str | None:
    """Where the parameters live (seed 000's question 3), stated from the numbers of the models
    shown: true for any set of models, with no fixed list and no assumed layer widths."""
    if len(results) < 2:
        return None
    sentences = ["Where the parameters live: " + "; ".join(_where_parameters_live(r) for r in results) + "."]
    flattening = [r for r in results if r.flattened_map]
    others = [r for r in results if not r.flattened_map and r.linear_share < 0.5 and r.params > 0]
    if flattening and others and min(r.params for r in flattening) > max(r.params for r in others):
        lo = min(r.params for r in flattening) / max(r.params for r in others)
        hi = max(r.params for r in flattening) / min(r.params for r in others)
        ratio = f"{lo:.1f}x" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}-{hi:.1f}x"
        sentences.append(
            f"The models whose classifier takes a flattened feature map ({', '.join(r.model for r in flattening)})"
            f" have {ratio} the parameters of those that reduce the map before it or have no linear layer"
            f" ({', '.join(r.model for r in others)}): a fully connected layer needs C x H x W weights per"
            " output, so it grows with the map, while convolution weights do not depend on the image size."
        )
    return " ".join(sentences)


def min_input_notes(results: Sequence[MinInputResult]) -> list[str]:
    """The definitions, the limiting layers just outside each valid set, and the solver's notes."""
    notes = [
        "Valid sides: square inputs s x s whose forward pass runs. Min HxW: the smallest input that runs,"
        " by area (every H x W smaller than the smallest valid square is solved)."
        " Min H, min W: the smallest height at the anchor width and the smallest width at the anchor"
        " height (anchor: the default size if it runs, else the smallest valid square).",
    ]
    if any(r.capped for r in results):
        notes.append("'N+': valid up to N, the largest side examined (--max-size, or the scan limit for"
                     " scanned models); larger sides were not checked.")
    for r in results:
        prefix = f"{r.model}: "
        if r.limiting_layer and r.min_square and r.min_square > 1:
            notes.append(f"{prefix}at side {r.min_square - 1}, {r.limiting_layer} {r.limiting_reason or 'fails'}")
        if r.upper_limiting_layer and r.valid and r.valid[0][1] is not None:
            notes.append(f"{prefix}at side {r.valid[0][1] + 1} (above the first interval), {r.upper_limiting_layer}"
                         f" {r.upper_limiting_reason or 'fails'}")
        for note in notes_text(r.notes):
            notes.append(prefix + note)
        if not r.verified:
            notes.append(f"{prefix}NOT verified: forward passes disagreed with the analysis")
    return notes


def _own_cores(cores: float | None, world_size: int | None) -> str:
    """Whose CPU time is left out of "other processes": this process's, or the ranks'."""
    who = f"its {_plural(world_size, 'rank')}" if world_size else "this process"
    return f"{who} used {cores:.2f}" if cores is not None else f"{who} left out"


def _warning_text(r: ThroughputResult, code: str) -> str:
    if code == "spread":
        return f"large spread, IQR is {100 * r.spread:.0f}% of the median ({r.samples} samples)"
    if code == "busy":
        return (f"other processes kept {r.other_cpu_cores:.2f} cores busy while it ran"
                f" ({_own_cores(r.process_cpu_cores, r.world_size)}); the figure is likely low, measure again on a"
                " quiet machine")
    if code == "steal":
        return f"the hypervisor stole {100 * r.cpu_steal:.0f}% of the CPU time; the figure is likely low"
    if code == "ceiling_low":
        return (f"its matmul-class rate {r.achieved_flops_per_sec / 1e9:,.1f} GFLOP/s beats the measured ceiling"
                f" {r.ceiling_flops_per_sec / 1e9:,.1f} GFLOP/s, so that ceiling is not this device's best:"
                " utilisation not shown")
    return code


_BASELINE_WORDS = {"baseline_spread": "large spread", "baseline_busy": "busy machine", "baseline_steal": "CPU steal"}


def _baseline_warning(r: ThroughputResult) -> str | None:
    """One line for a data-parallel row whose 1-process baseline was flagged (``baseline_*``)."""
    words = [_BASELINE_WORDS.get(code, code) for code in r.warnings if code.startswith("baseline_")]
    if not words:
        return None
    return (f"warning: {r.label}: its 1-process baseline was flagged too ({', '.join(words)}), so 1-process ex/s"
            " and Scaling eff. are uncertain")


def _ceiling_warning(r: ThroughputResult, where: str) -> str | None:
    """One line for an unsteady ceiling (its ``ceiling_*`` codes), said once per ceiling."""
    reasons = []
    if "ceiling_spread" in r.warnings:
        over = f" over {r.ceiling_samples} calls" if r.ceiling_samples else ""
        reasons.append(f"its calls spread widely (IQR {100 * r.ceiling_spread:.0f}% of the median{over})")
    if "ceiling_busy" in r.warnings:
        reasons.append(f"other processes kept {r.ceiling_other_cpu_cores:.2f} cores busy while it was measured")
    if "ceiling_steal" in r.warnings:
        reasons.append(f"the hypervisor stole {100 * r.ceiling_cpu_steal:.0f}% of the CPU time while it was measured")
    if not reasons:
        return None
    low = " (likely too high: a ceiling measured on a busy machine is low)" \
        if {"ceiling_busy", "ceiling_steal"} & set(r.warnings) else ""
    return (f"warning: the {where} ceiling behind Util. is unsteady: {'; '.join(reasons)}; Util. is uncertain{low},"
            " measure again on a quiet machine")


def model_notes(results: Sequence) -> list[str]:
    """Each model's notes (the input chosen, the attention kernel followed), once per model: every
    row of a model carries the same ones."""
    first: dict[str, tuple] = {}
    for r in results:
        first.setdefault(r.model, r.notes)
    return [f"{model}: {text}" for model, notes in first.items() for text in notes_text(notes)]


def throughput_notes(results: Sequence[ThroughputResult]) -> list[str]:
    """How each model's input was chosen, warnings (spread, a busy machine, faults), the setup and
    the conventions, one line each."""
    notes = model_notes(results)
    for r in results:
        notes.extend(f"warning: {r.label}: {_warning_text(r, code)}" for code in r.warnings
                     if not code.startswith(("ceiling_", "baseline_")) or code == "ceiling_low")
        if baseline := _baseline_warning(r):  # a ceiling's own codes are said once per ceiling, below
            notes.append(baseline)
        if r.status == "oom":
            notes.append(f"oom: {r.label}: out of memory at this batch size ({r.error})")
        elif r.status == "error":
            notes.append(f"error: {r.label}: {r.error}")
        if r.compile_s is not None:
            notes.append(f"{r.label}: compile + first call {r.compile_s:.1f} s (not in the throughput)")
    seen: dict[str, ThroughputResult] = {}
    for r in results:
        seen.setdefault(r.device, r)
    for device, r in seen.items():
        setup = [f"{r.device_name}"]
        if r.device == "cpu" or r.threads:
            setup.append(_plural(r.threads, "thread"))
        if r.cudnn_benchmark is not None:
            setup.append(f"cudnn.benchmark {'on' if r.cudnn_benchmark else 'off'}")
        dtypes = dict.fromkeys(row.dtype for row in results if row.device == device)
        setup.append("/".join(f"{d}{' autocast' if d in AUTOCAST_DTYPES else ''}" for d in dtypes))
        setup.append("channels_last" if r.channels_last else "contiguous")
        setup.append("torch.compile" if r.compile else "eager")
        versions = f"torch {r.torch_version}"
        if device != "cpu":
            versions += f", CUDA {r.cuda_version}, cuDNN {r.cudnn_version}"
        notes.append(f"{device}: {', '.join(setup)}; {versions}")
    ceilings = {(r.device, r.ceiling_precision, r.threads, r.world_size or 1): r
                for r in results if r.ceiling_flops_per_sec}
    for (device, precision, threads, ranks), r in ceilings.items():
        where = f"{device}, {_plural(threads, 'thread')}" if device == "cpu" else device
        if r.world_size:  # a data-parallel row: one ceiling per rank, summed
            where = f"{device} x{ranks} ({_plural(ranks, 'rank')} of {where})"
        notes.append(f"Util. = matmul-class FLOP/s (2 x MACs of conv/linear/matmul) over the {where} {precision}"
                     f" ceiling {r.ceiling_flops_per_sec / 1e9:,.1f} GFLOP/s ({r.ceiling_shape}, the best of several"
                     " GEMMs and convolutions measured in a separate process"
                     + (", times the ranks)" if r.world_size else ")"))
        unsteady = _ceiling_warning(r, f"{where} {precision}")
        if unsteady:
            notes.append(unsteady)
    if results:
        notes.append("Examples/s = batch / median time per iteration; IQR = p75 - p25; "
                     "train = zero_grad, forward, cross-entropy, backward, SGD step")
    notes.extend(distributed_notes(results))
    return notes


def _plural(n: int | None, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


RANK_SPREAD_WARNING = 0.10  # slowest rank's median over the fastest's, above 1 + this, is flagged


def distributed_notes(results: Sequence[ThroughputResult]) -> list[str]:
    """The data-parallel rows' setup (ranks, threads, backend, devices), slow ranks and the
    definitions of their columns; nothing for single-process rows."""
    rows = [r for r in results if r.world_size]
    notes: list[str] = []
    for r in rows:
        medians = [m for m in r.rank_median_ms or () if m > 0]
        if r.ok and len(medians) > 1 and max(medians) > (1 + RANK_SPREAD_WARNING) * min(medians):
            notes.append(f"warning: {r.label}: rank medians range from {min(medians):,.2f} to {max(medians):,.2f} ms;"
                         " the slowest rank sets every step's time")
    setups: dict[tuple, ThroughputResult] = {}
    for r in rows:
        setups.setdefault((r.device, r.world_size, r.nnodes, r.threads), r)
    for (device, world, nodes, threads), r in setups.items():
        text = f"{device} x{world}: {_plural(world, 'rank')} on {_plural(nodes, 'node')}"
        if device == "cpu" and threads:
            text += f", {_plural(threads, 'thread')} per rank"
        text += f", {r.backend}" + (f" {r.nccl_version}" if r.nccl_version else "")
        if r.rank_hosts:
            text += f"; {_rank_devices_text(r.rank_hosts, r.rank_device_names)}"
        notes.append(text)
    if rows:
        notes.append("Ranks: data-parallel processes (DistributedDataParallel in train, independent in eval), each with"
                     " its own batch of Batch examples; Examples/s = global batch / median over steps of the slowest"
                     " rank's step time; Scaling eff. = Examples/s / (ranks x 1-process ex/s), one process at the same"
                     " per-rank batch and threads measured in this run")
    return notes


def _rank_devices_text(hosts: Sequence[str], devices: Sequence[str]) -> str:
    """Each rank's host and ``"cuda:0 NVIDIA H100"`` -> ``2x NVIDIA H100 on 1 host``."""
    names = [d.split(" ", 1)[-1] for d in devices]
    hosts = set(hosts)
    counted = ", ".join(f"{names.count(n)}x {n}" for n in dict.fromkeys(names))
    return f"{counted} on {len(hosts)} host{'s' if len(hosts) != 1 else ''}"


def _binary_bytes(n: int) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,} B"


def memory_notes(results: Sequence[MemoryResult]) -> list[str]:
    """What the peak is and leaves out, and each fit's boundary in words."""
    if not results:
        return []
    notes = [
        "Peak: live tensor bytes of one step, predicted without allocating (torch's MemTracker on meta/fake "
        "tensors). eval: one forward under inference_mode; train: zero_grad, forward, cross-entropy, backward, "
        "optimizer step, with the optimizer state and the last step's gradients present. Activations: made by the "
        "forward; Temp: made by the backward; Opt. state: the optimizer's state and its step's temporaries; "
        "Peak at: the innermost module running. "
        "Not counted: allocator rounding and caching, cuDNN/cuBLAS workspaces, the CUDA context.",
    ]
    notes.extend(model_notes(results))
    for r in results:
        if r.budget_bytes is None:
            continue
        where = f"{r.model} ({r.mode}, {r.dtype}{', ' + r.optimizer if r.optimizer else ''})"
        budget = _binary_bytes(r.budget_bytes)
        if not r.max_batch_size:
            notes.append(f"{where}: does not fit in {budget} even at batch {r.batch_size} "
                         f"(peak {_binary_bytes(r.peak_bytes)})")
        elif r.fit_capped:
            notes.append(f"{where}: batch {r.max_batch_size} (the largest tried) fits in {budget} "
                         f"(peak {_binary_bytes(r.peak_bytes)}); larger batches were not tried")
        else:
            above = f"; batch {r.max_batch_size + 1} needs {_binary_bytes(r.next_peak_bytes)}" \
                if r.next_peak_bytes is not None else ""
            notes.append(f"{where}: the largest batch that fits in {budget} is {r.max_batch_size} "
                         f"(peak {_binary_bytes(r.peak_bytes)}){above}")
    return notes


RECEPTIVE_FIELDS = (
    "Receptive field: the input pixels (HxW) one output unit of the layer sees, padding included; Eff. stride: "
    "input pixels between neighbouring units; First centre: the centre of the first unit's field (pixel centres "
    "at 0, 1, 2, ...; negative in the padding). Merged branches (cat, add) see the union of their fields; "
    "'global': every unit sees the whole input (after global pooling or a fully connected layer over the map); "
    "'-': not followed exactly, so not given (an op that moves, flips, rolls, indexes or accumulates along a "
    "spatial dimension, antialiased resizing, a non-spatial input, and what depends on them); upsampling, "
    "transposed convolutions, pads and crops are followed, and where units differ (after upsampling) the "
    "largest field and the mean stride are shown."
)


# --- training experiments (archprobe train) -----------------------------------------------------


def epoch_line(row: EpochRow, epochs: int) -> str:
    """One finished epoch, in the book's words (``loss …, train acc …, test acc …``), and its
    warnings (a busy machine, CPU steal)."""
    ranks = f" x{row.world_size}" if row.world_size else ""
    text = (f"{row.model} on {row.device}{ranks}, epoch {row.epoch}/{epochs}: loss {row.train_loss:.3f}, "
            f"train acc {row.train_acc:.3f}, test acc {row.test_acc:.3f}, "
            f"{row.examples_per_sec:,.1f} examples/sec, {row.epoch_seconds:.1f} s")
    for code in row.warnings or ():
        if code == "busy":
            text += (f"; warning: other processes kept {row.other_cpu_cores:.2f} cores busy "
                     f"({_own_cores(row.process_cpu_cores, row.world_size)})")
        elif code == "steal":
            text += f"; warning: the hypervisor stole {100 * row.cpu_steal:.0f}% of the CPU time"
    return text


def epoch_warnings(run: TrainRun) -> list[str]:
    """A run's epochs that trained on a busy machine or under CPU steal, one line per kind."""
    notes = []
    for code in run.warnings:
        rows = [e for e in run.epochs if code in (e.warnings or ())]
        if not rows:
            continue
        which = f"epoch{'s' if len(rows) != 1 else ''} {', '.join(str(e.epoch) for e in rows)}"
        if code == "busy":
            worst = max(rows, key=lambda e: e.other_cpu_cores or 0.0)
            text = (f"other processes kept up to {worst.other_cpu_cores:.2f} cores busy while {which} trained"
                    f" ({_own_cores(worst.process_cpu_cores, worst.world_size)})")
        elif code == "steal":
            worst = max(rows, key=lambda e: e.cpu_steal or 0.0)
            text = f"the hypervisor stole up to {100 * worst.cpu_steal:.0f}% of the CPU time while {which} trained"
        else:
            text = f"{code} in {which}"
        notes.append(f"warning: {run.label}: {text}; its examples/s are likely low, measure again on a quiet machine")
    return notes


def describe_optimizer(recipe: Recipe) -> str:
    """The optimizer as a short text: ``SGD(lr=0.1)``, ``Adam(lr=0.001, weight_decay=0.0005)``."""
    name = {"sgd": "SGD", "adam": "Adam"}[recipe.optimizer]
    parts = [f"lr={recipe.lr:g}"]
    if recipe.momentum:
        parts.append(f"momentum={recipe.momentum:g}")
    if recipe.weight_decay:
        parts.append(f"weight_decay={recipe.weight_decay:g}")
    return f"{name}({', '.join(parts)})"


def recipe_line(recipe: Recipe, input_shape: Sequence[int] | None = None) -> str:
    """A recipe in one line: optimizer, batch, epochs, input, initialisation, source, changes."""
    parts = [describe_optimizer(recipe), f"batch {recipe.batch_size}", _plural(recipe.epochs, "epoch")]
    if input_shape is not None:
        parts.append("input " + "x".join(map(str, input_shape)))
    elif recipe.resize:
        parts.append(f"resized to {recipe.resize}x{recipe.resize}")
    parts.append("Xavier init" if recipe.init == "xavier" else "default init")
    if recipe.label_smoothing:
        parts.append(f"label smoothing {recipe.label_smoothing:g}")
    if recipe.dtype != "float32":
        parts.append(f"{recipe.dtype} autocast")
    text = f"{recipe.model}: {', '.join(parts)}, seed {recipe.seed}; {recipe.source}"
    if recipe.overrides:
        text += f"; changed: {', '.join(recipe.overrides)}"
    return text


def book_results_note(models: Sequence[str]) -> list[str]:
    """What the book reached on Fashion-MNIST with each Dive-into-DL model's recipe."""
    from archprobe.zoo.book import BOOK_RESULTS

    return [f"{m}: the book reached train acc {BOOK_RESULTS[m][0]:.3f}, test acc {BOOK_RESULTS[m][1]:.3f} "
            f"with its recipe on Fashion-MNIST ({BOOK_RESULTS[m][2]})"
            for m in dict.fromkeys(models) if m in BOOK_RESULTS]


RECIPE_CONVENTIONS = (
    "Init: xavier = xavier_uniform_ on every Conv2d and Linear weight (d2l's train_ch6), default = the "
    "builder's own. Resize '-': the data set's own size. Images are scaled to [0, 1] (the book's ToTensor) "
    "and resized bilinearly on the device."
)


def recipe_notes(recipes: Sequence[Recipe]) -> list[str]:
    """Under the recipe table: what the book reached with them, and the conventions."""
    return book_results_note([r.model for r in recipes]) + [RECIPE_CONVENTIONS]


def train_notes(runs: Sequence[TrainRun], data: str | None = None) -> list[str]:
    """Under the comparison table: faults, the data, each recipe, the setup per device, the
    book's numbers to compare with, and the definitions."""
    notes: list[str] = []
    for r in runs:
        after = f"after {r.epochs_done} finished epoch{'s' if r.epochs_done != 1 else ''}"
        if r.status == "diverged":
            notes.append(f"diverged: {r.label}: {r.error}; the run stopped {after}")
        elif r.status == "oom":
            notes.append(f"oom: {r.label}: out of memory at batch size {r.recipe.batch_size}, which is never "
                         f"changed ({r.error})")
        elif r.status == "error":
            notes.append(f"error: {r.label}: {r.error}")
        elif r.status == "interrupted":
            notes.append(f"interrupted: {r.label} {after}")
        notes.extend(epoch_warnings(r))
        if r.resumed_from:
            notes.append(f"{r.label}: resumed after epoch {r.resumed_from}")
        notes.extend(f"{r.label}: {n}" for n in notes_text(r.notes))
    if data:
        notes.append(f"Data: {data}")
    seen: dict[str, TrainRun] = {}
    for r in runs:
        seen.setdefault(r.model, r)
    notes.extend(recipe_line(r.recipe, r.input_shape) for r in seen.values())
    devices: dict[str, TrainRun] = {}
    for r in runs:
        if r.environment is not None:
            devices.setdefault(r.device, r)
    for device, r in devices.items():
        env = r.environment
        setup = [env.device_name]
        if device == "cpu":
            setup.append(f"{r.threads} thread{'s' if r.threads != 1 else ''}" + (" per rank" if r.world_size else ""))
        if r.cudnn_benchmark is not None:
            setup.append(f"cudnn.benchmark {'on' if r.cudnn_benchmark else 'off'}")
        versions = f"torch {env.torch_version}"
        if device != "cpu":
            versions += f", CUDA {env.cuda_version}, cuDNN {env.cudnn_version}"
        notes.append(f"{device}: {', '.join(setup)}; {versions}")
    notes.extend(data_parallel_train_notes(runs))
    notes.extend(book_results_note([r.model for r in runs]))
    if runs:
        notes.append("Train loss, train acc, test acc: after the last finished epoch; Best: the best epoch's. "
                     "Examples/s: training "
                     "examples / training time (evaluation excluded), the book's definition; Train s: the "
                     "training time of all epochs" + ("; Speedup: CUDA over CPU examples/s"
                                                      if any(r.speedup for r in runs) else ""))
    return notes


def data_parallel_train_notes(runs: Sequence[TrainRun]) -> list[str]:
    """The data-parallel runs' setup (ranks, backend, devices) and how their figures are made;
    nothing for single-process runs."""
    runs = [r for r in runs if r.world_size]
    notes = []
    setups: dict[tuple, TrainRun] = {}
    for r in runs:
        setups.setdefault((r.device, r.world_size, r.threads), r)
    for (device, world, threads), r in setups.items():
        text = f"{device} x{world}: {_plural(world, 'rank')} ({r.backend})"
        if device == "cpu" and threads:
            text += f", {_plural(threads, 'thread')} per rank"
        if r.rank_hosts:
            text += f"; {_rank_devices_text(r.rank_hosts, r.rank_device_names)}"
        notes.append(text)
    if runs:
        notes.append("Ranks: data-parallel processes (DistributedDataParallel), each training on its "
                     "DistributedSampler share of every epoch in batches of the recipe's batch size (Global batch = "
                     "batch x ranks; DDP averages the gradients). An epoch's loss and train accuracy are over every "
                     "rank's examples, its training time is the slowest rank's (Examples/s = all ranks' training "
                     "examples / that time), and the test accuracy is over the whole test set, shared between the "
                     "ranks")
    return notes


# --- where the time goes (archprobe profile) -----------------------------------------------------

PROFILE_CONVENTIONS = (
    "Time: the median over the profiled repeats of each layer's time in that phase (CPU: the self-times of the ops"
    " and Python it ran; CUDA: the kernel times of the ops it launched); backward rows hold the ops of the autograd"
    " nodes the layer's forward created. Share = Time / the median profiled step. MACs and FLOPs as in 'archprobe"
    " params' (FLOPs = 2 x MACs for conv/linear/matmul, plus the other arithmetic); Bytes = what each op reads"
    " (weights included) and writes, views none, caches not modelled; FLOP/B = FLOPs / Bytes; FLOP/s = FLOPs /"
    " Time; Roofline = min(compute ceiling, bandwidth x FLOP/B), Bound = the lower of the two roofs there"
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.{max(1, 3 - len(str(int(seconds * 1e3))))}f} ms"


def profile_notes(results: Sequence[ProfileResult]) -> list[str]:
    """Per profile: the setup, the profiled step and what the rows add up to, the profiler's
    cost against throughput, the roofline's two ceilings, warnings; then the conventions."""
    notes = []
    for r in results:
        notes.extend(f"{r.model}: {text}" for text in notes_text(r.notes))
        if r.status == "oom":
            notes.append(f"oom: {r.label}: out of memory at this batch size ({r.error})")
            continue
        if r.status != "ok":
            notes.append(f"error: {r.label}: {r.error}")
            continue
        setup = [r.device_name or r.device]
        if r.device == "cpu" or r.threads:
            setup.append(_plural(r.threads, "thread"))
        if r.cudnn_benchmark is not None:
            setup.append(f"cudnn.benchmark {'on' if r.cudnn_benchmark else 'off'}")
        setup.append(f"{r.dtype}{' autocast' if r.dtype in AUTOCAST_DTYPES else ''}")
        versions = f"torch {r.torch_version}" + (f", CUDA {r.cuda_version}" if r.device != "cpu" else "")
        step = "zero_grad, forward, cross-entropy, backward, SGD step" if r.mode == "train" else \
            "forward under inference_mode"
        depth = f", layers at depth {r.depth}" if r.depth is not None else ""
        notes.append(f"{r.label}: {', '.join(setup)}; {versions}; step = {step}{depth}")
        notes.append(
            f"{r.label}: profiled step {_ms(r.step_s)} (median of {r.repeats} after {r.warmup_iters} warm-up; p10"
            f" {_ms(r.step_p10_s)}, p90 {_ms(r.step_p90_s)}); the rows add up to {100 * r.attributed_s / r.step_s:.1f}%"
            f" of it, the layers, the loss and the optimizer own {100 * r.coverage:.1f}%")
        if r.throughput_step_s:
            cost = f"{100 * r.profiler_overhead:+.1f}%"
            text = (f"{r.label}: throughput's median step for the same setup (no profiler, in rounds between the"
                    " profiled ones) is"
                    f" {_ms(r.throughput_step_s)}: the profiled step differs by {cost}")
            if "profiler_cost" in r.warnings and r.profiler_overhead > 0:
                text = ("warning: " + text + f", more than {OVERHEAD_TEXT}; that is what the profiler (its ranges"
                        " and event recording) cost, and the shares are of the profiled step")
            elif "profiler_cost" in r.warnings:
                text = ("warning: " + text + f", faster by more than {OVERHEAD_TEXT}: timing noise (a profiler"
                        " cannot make a step faster), so neither median is steady; measure again on a quiet machine")
            notes.append(text)
        if "unaccounted" in r.warnings:
            notes.append(f"warning: {r.label}: the rows add up to {100 * r.attributed_s / r.step_s:.1f}% of the"
                         " profiled step, more than 5% off: events were lost or counted twice")
        if r.above_roof_layers:
            notes.append(f"warning: {r.label}: above the roofline (a count, a time or a ceiling is wrong): "
                         + ", ".join(r.above_roof_layers))
        for code in r.warnings:
            if code == "spread":
                notes.append(f"warning: {r.label}: large spread, IQR is {100 * r.spread:.0f}% of the median step")
            elif code == "busy":
                notes.append(f"warning: {r.label}: other processes kept {r.other_cpu_cores:.2f} cores busy while"
                             " it ran; times are likely high, measure again on a quiet machine")
            elif code == "steal":
                notes.append(f"warning: {r.label}: the hypervisor stole {100 * r.cpu_steal:.0f}% of the CPU time")
        if r.ceiling_flops_per_sec and r.bandwidth_bytes_per_sec:
            notes.append(
                f"{r.label}: roofline: compute ceiling {r.ceiling_flops_per_sec / 1e9:,.1f} GFLOP/s"
                f" ({r.ceiling_shape}, {r.ceiling_precision}), memory bandwidth"
                f" {r.bandwidth_bytes_per_sec / 1e9:,.2f} GB/s ({r.bandwidth_shape}, read + write), each measured"
                f" in a separate process; they meet at {r.ridge_intensity:,.1f} FLOP/B")
        elif r.ceiling_flops_per_sec is None or r.bandwidth_bytes_per_sec is None:
            notes.append(f"{r.label}: no roofline: a ceiling could not be measured")
        unsteady = [code for code in r.warnings if code.startswith(("ceiling_", "bandwidth_"))]
        if unsteady:
            notes.append(f"warning: {r.label}: the roofs' own measurements were unsteady ({', '.join(unsteady)}):"
                         " a roof measured on a busy machine is too low, so rows may beat it; measure again on a"
                         " quiet machine")
        if r.unsupported_ops:
            notes.append(f"warning: {r.model}: unsupported ops counted as 0: {', '.join(r.unsupported_ops)}")
    if any(r.ok for r in results):
        notes.append(PROFILE_CONVENTIONS)
    return notes


OVERHEAD_TEXT = "10%"
