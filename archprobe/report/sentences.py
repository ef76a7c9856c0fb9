"""The sentence of each kind of note a result carries (:class:`archprobe.results.Note`).

A leaf of ``report/``: the machine records (:mod:`archprobe.report.frames`) and the prose under
the tables (:mod:`archprobe.report.notes`) word notes the same way.
"""

from __future__ import annotations

from typing import Sequence

from archprobe.results import Note


def _processes(n: int | None) -> str:
    return "one process" if n is None else f"{n} rank{'s' if n != 1 else ''}"


# One sentence per kind of note a result carries (:class:`archprobe.results.Note`).
NOTE_TEXT = {
    "input_size_assumed": lambda v: f"input size not given: {v['height']}x{v['width']} assumed",
    "channels_read": lambda v: (f"{v['channels']} input channel{'s' if v['channels'] != 1 else ''} read from "
                                f"{v['layer'] or '(model)'} ({v['type']})"),
    "arguments_unsettled": lambda v: "the traces could not settle every size-dependent argument; verification decides",
    "coupled": lambda v: (f"H and W are coupled: min H {v['min_height']} is at W={v['anchor_width']} and min W "
                          f"{v['min_width']} at H={v['anchor_height']}, but {v['min_height']}x{v['min_width']} "
                          "itself does not run"),
    "default_size_fails": lambda v: (f"the default size {v['height']}x{v['width']} does not run; analysed from "
                                     f"{v['analysed_height']}x{v['analysed_width']}"),
    "scanned": lambda v: (f"scanned square sides 1–{v['limit']} by forward passes: {v['reason']}; min HxW is the "
                          "smaller of the smallest square and the per-dimension minima (other shapes not searched)"),
    "world_size_changed": lambda v: (f"resumed a checkpoint of {_processes(v['before'])} on {_processes(v['now'])}: "
                                     "the global batch, the order of the examples and the random streams change "
                                     "from here"),
    "data_on_host": lambda v: ("the data set stays in host memory (too large for a quarter of the free device "
                               f"memory); batches come through a DataLoader with {v['workers']} workers"),
    "head_differs": lambda v: (f"head built for {v['classes']:,} classes; {v['library']}'s default is "
                               f"{v['default']:,}"),
    "last_batch_dropped": lambda v: (f"the last training batch of each epoch would hold 1 of {v['examples']:,} "
                                     "examples and is left out (BatchNorm in training refuses a batch of one)"),
    "attention_kernel": lambda v: (f"scaled_dot_product_attention ({v['calls']} call{'s' if v['calls'] != 1 else ''}) "
                                   f"followed along the {v['device'].upper()}'s {v['kernel']}-attention kernel, as the "
                                   f"{v['device'].upper()} picks it (on the meta device it takes the math path, which also "
                                   "holds each attention matrix)"),
    "attention_upper_bound": lambda v: (f"scaled_dot_product_attention ({v['calls']} call"
                                        f"{'s' if v['calls'] != 1 else ''}) followed along the math path, which holds "
                                        "each attention matrix; CUDA's fused kernels hold none, so the peak is an "
                                        "upper bound"),
    "cuda_skipped": lambda v: "CUDA rows skipped: no usable CUDA device (torch.cuda.is_available() is False)",
}
# Notes about how one input shape was chosen read as one sentence, in this order.
_INPUT_NOTES = ("input_size_assumed", "channels_read")


def note_text(note: Note) -> str:
    """The sentence of one note."""
    return NOTE_TEXT[note.code](dict(note.values))


def notes_text(notes: Sequence[Note]) -> list[str]:
    """The sentences of a result's notes; those about its input shape joined into one."""
    shape = [note_text(n) for n in notes if n.code in _INPUT_NOTES]
    rest = [note_text(n) for n in notes if n.code not in _INPUT_NOTES]
    return (["; ".join(shape)] if shape else []) + rest
