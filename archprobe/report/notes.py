"""Prose under the tables: conventions, warnings and notes derived from the numbers.

Every sentence archprobe prints about a result is written here, from the result's fields.
"""

from __future__ import annotations

from typing import Sequence

from archprobe.results import MinInputResult, ModelCounts, ThroughputResult

SPREAD_WARNING = 0.10  # IQR / median above this is flagged

CONVENTIONS = (
    "MACs: multiply-accumulates of conv/linear/matmul only (torchvision's _ops convention); "
    "FLOPs: 2 per MAC + norm, pooling, activation and elementwise work (see 'archprobe params --help')."
)


def unsupported_warnings(results: Sequence) -> list[str]:
    """One line per result that met ops without a cost formula."""
    return [f"warning: {r.model}: unsupported ops counted as 0: {', '.join(r.unsupported_ops)}"
            for r in results if r.unsupported_ops]


def parameter_note(results: Sequence[ModelCounts]) -> str | None:
    """Why some models are small, stated from the numbers (seed 000, question 3)."""
    if len(results) < 2:
        return None
    heavy = [r for r in results if r.linear_share >= 0.5]
    light = [r for r in results if r.linear_share < 0.5]
    if not heavy or not light:
        return None

    def m(n: int) -> str:
        return f"{n / 1e6:.1f}M"

    heavy_text = ", ".join(
        f"{r.model} keeps {m(r.linear_params)} of its {m(r.params)} parameters "
        f"({100 * r.linear_share:.0f}%) in fully connected layers"
        for r in heavy
    )
    light_text = "; ".join(
        f"{r.model}: {m(r.params)}, "
        + (f"{m(r.linear_params)} ({100 * r.linear_share:.0f}%) in linear layers" if r.linear_params
           else "none in linear layers")
        for r in light
    )
    return (
        f"Where the parameters live: {heavy_text}. "
        f"The small models ({light_text}) replace those layers with 1x1 convolutions and "
        "global average pooling, so the classifier no longer multiplies a large flattened "
        "feature map by a 4096-wide matrix; convolution weights do not grow with the "
        "image size."
    )


def min_input_notes(results: Sequence[MinInputResult]) -> list[str]:
    """The definitions, the limiting layers just outside each valid set, and the solver's notes."""
    notes = [
        "Valid sides: square inputs s x s whose forward pass runs. Min HxW: smallest height at the"
        " anchor width and smallest width at the anchor height (anchor: the default size if it runs,"
        " else the smallest valid square).",
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
        for note in r.notes:
            notes.append(prefix + note)
        if not r.verified:
            notes.append(f"{prefix}NOT verified: forward passes disagreed with the analysis")
    return notes


def throughput_notes(results: Sequence[ThroughputResult]) -> list[str]:
    """Warnings (spread, faults), the setup and the conventions, one line each."""
    notes: list[str] = []
    for r in results:
        if r.ok and r.spread is not None and r.spread > SPREAD_WARNING:
            notes.append(f"warning: {r.label}: large spread, IQR is {100 * r.spread:.0f}% of the median "
                         f"({r.samples} samples); the machine may be busy")
        elif r.status == "oom":
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
            setup.append(f"{r.threads} threads")
        if r.cudnn_benchmark is not None:
            setup.append(f"cudnn.benchmark {'on' if r.cudnn_benchmark else 'off'}")
        setup.append(f"{r.dtype}{' autocast' if r.dtype != 'float32' else ''}")
        setup.append("channels_last" if r.channels_last else "contiguous")
        setup.append("torch.compile" if r.compile else "eager")
        versions = f"torch {r.torch_version}"
        if device != "cpu":
            versions += f", CUDA {r.cuda_version}, cuDNN {r.cudnn_version}"
        notes.append(f"{device}: {', '.join(setup)}; {versions}")
    ceilings = {(r.device, r.ceiling_precision): r for r in results if r.ceiling_flops_per_sec}
    for (device, precision), r in ceilings.items():
        notes.append(f"Util. = achieved FLOP/s over the {device} {precision} matmul ceiling "
                     f"{r.ceiling_flops_per_sec / 1e9:,.1f} GFLOP/s ({r.ceiling_matmul_n}^2, measured in this run)")
    if results:
        notes.append("Examples/s = batch / median time per iteration; IQR = p75 - p25; "
                     "train = zero_grad, forward, cross-entropy, backward, SGD step")
    return notes


# --- training experiments (archprobe train) -----------------------------------------------------

from archprobe.results import EpochRow, Recipe, TrainRun  # noqa: E402  (kept with the block it serves)


def epoch_line(row: EpochRow, epochs: int) -> str:
    """One finished epoch, in the book's words (``loss …, train acc …, test acc …``)."""
    return (f"{row.model} on {row.device}, epoch {row.epoch}/{epochs}: loss {row.train_loss:.3f}, "
            f"train acc {row.train_acc:.3f}, test acc {row.test_acc:.3f}, "
            f"{row.examples_per_sec:,.1f} examples/sec, {row.epoch_seconds:.1f} s")


def recipe_line(recipe: Recipe, input_shape: Sequence[int] | None = None) -> str:
    """A recipe in one line: optimizer, batch, epochs, input, initialisation, source, changes."""
    from archprobe.training.recipes import describe

    parts = [describe(recipe), f"batch {recipe.batch_size}", f"{recipe.epochs} epochs"]
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
    from archprobe.training.recipes import BOOK_RESULTS

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
        if r.resumed_from:
            notes.append(f"{r.label}: resumed after epoch {r.resumed_from}")
        notes.extend(f"{r.label}: {n}" for n in r.notes)
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
            setup.append(f"{r.threads} thread{'s' if r.threads != 1 else ''}")
        if r.cudnn_benchmark is not None:
            setup.append(f"cudnn.benchmark {'on' if r.cudnn_benchmark else 'off'}")
        versions = f"torch {env.torch_version}"
        if device != "cpu":
            versions += f", CUDA {env.cuda_version}, cuDNN {env.cudnn_version}"
        notes.append(f"{device}: {', '.join(setup)}; {versions}")
    notes.extend(book_results_note([r.model for r in runs]))
    if runs:
        notes.append("Test acc: after the last finished epoch; Best: the best epoch's. Examples/s: training "
                     "examples / training time (evaluation excluded), the book's definition; Train s: the "
                     "training time of all epochs" + ("; Speedup: CUDA over CPU examples/s"
                                                      if any(r.speedup for r in runs) else ""))
    return notes
