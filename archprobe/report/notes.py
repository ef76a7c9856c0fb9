"""Prose under the tables: conventions, warnings and notes derived from the numbers.

Every sentence archprobe prints about a result is written here, from the result's fields.
"""

from __future__ import annotations

from typing import Sequence

from archprobe.results import MemoryResult, MinInputResult, ModelCounts, ThroughputResult

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
    "'-': not followed (non-spatial input, resampling, padding or permuting ops)."
)
