"""Receptive fields: what one unit of each layer's output sees of the input image.

For every feature map, per spatial dimension (height, width):

* ``size``: the receptive field, the input pixels one unit depends on (padding included);
* ``jump``: the effective stride, the input pixels between two neighbouring units;
* ``start``: the centre of the first unit's field, in input pixel coordinates with pixel centres
  at 0, 1, 2, ... (negative or half-integer when it sits in the padding or between pixels).

They follow the traced ops' geometry (kernel, stride, padding, dilation, read once by
:mod:`archprobe.analysis.geometry`), with the recurrences for a window of kernel ``k``, dilation
``d``, stride ``s`` and padding ``p`` (``k' = d (k - 1) + 1``)::

    size' = size + (k' - 1) * jump      jump' = jump * s      start' = start + ((k' - 1) / 2 - p) * jump

Ops that keep the spatial shape (activations, normalisation, dropout, channel concatenation)
pass the field through; where branches merge (``cat``, ``add``, ``mul``) a unit sees the union
of the branches' fields (the largest, when they share a centre). A unit that sees the whole input
map is *global*: after a pool or convolution whose window covers the whole map, a mean over the
spatial dimensions, or a fully connected layer over a flattened map (and everything after).
Transposed convolutions, interpolation, padding ops, permutations and adaptive pools with
unequal windows end what can be followed: their outputs have no field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Union

from archprobe.analysis.geometry import Window

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.analysis.trace import OpEvent, Trace


@dataclass(frozen=True)
class Field:
    """The receptive field of the units of one feature map, one entry per spatial dimension."""

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]


class Global:
    """Every unit sees the whole input."""

    def __repr__(self) -> str:
        return "GLOBAL"


GLOBAL = Global()


@dataclass(frozen=True)
class Flat:
    """A feature map flattened into features (``x.flatten(1)``): each feature keeps its unit's field."""

    field: Field


State = Union[Field, Global, Flat]

_LINEAR = {"addmm", "mm", "matmul", "linear", "bmm", "baddbmm"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp"}
_RESHAPES = {"view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze", "alias", "detach", "clone",
             "contiguous", "_to_copy", "to", "expand"}
_OPAQUE = {"permute", "transpose", "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "pad",
           "upsample_nearest2d", "upsample_bilinear2d", "_upsample_nearest_exact2d", "_upsample_bilinear2d_aa",
           "pixel_shuffle", "pixel_unshuffle", "roll", "flip", "narrow", "slice", "select", "index", "gather",
           "as_strided", "unfold", "im2col", "col2im", "grid_sampler_2d"}


def input_field(spatial_dims: int) -> Field:
    """One input pixel: size 1, jump 1, centred on itself."""
    return Field(size=(1,) * spatial_dims, jump=(1,) * spatial_dims, start=(0.0,) * spatial_dims)


def through_window(field: Field, window: Window, in_spatial: tuple[int, ...],
                   out_spatial: tuple[int, ...]) -> State | None:
    """The field after a convolution or pool with ``window`` over an input of ``in_spatial``."""
    if window.transposed or len(in_spatial) != len(field.size):
        return None
    kernel, stride, padding, dilation = window.kernel, window.stride, window.padding, window.dilation
    if window.kind == "adaptive":
        if any(n % m for n, m in zip(in_spatial, window.output_size)):
            return None  # windows of unequal sizes: no single field
        kernel = stride = tuple(n // m for n, m in zip(in_spatial, window.output_size))
        padding, dilation = (0,) * len(kernel), (1,) * len(kernel)
    if len(kernel) != len(field.size):
        return None
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    whole_map = all(m == 1 and e - p >= n for m, p, e, n in zip(out_spatial, padding, span, in_spatial))
    if whole_map and any(n > 1 for n in in_spatial):
        return GLOBAL  # one window over the whole map (over a single unit it changes nothing)
    return Field(
        size=tuple(r + (e - 1) * j for r, e, j in zip(field.size, span, field.jump)),
        jump=tuple(j * s for j, s in zip(field.jump, stride)),
        start=tuple(c + ((e - 1) / 2 - p) * j for c, e, p, j in zip(field.start, span, padding, field.jump)),
    )


def union(fields: list[Field]) -> Field:
    """The field of a unit that sees what each of ``fields`` sees (branches merged)."""
    if len(fields) == 1:
        return fields[0]
    size, jump, start = [], [], []
    for i in range(len(fields[0].size)):
        low = min(f.start[i] - (f.size[i] - 1) / 2 for f in fields)
        high = max(f.start[i] + (f.size[i] - 1) / 2 for f in fields)
        size.append(round(high - low) + 1)
        jump.append(max(f.jump[i] for f in fields))
        start.append((low + high) / 2)
    return Field(tuple(size), tuple(jump), tuple(start))


def _tensors(value) -> Iterator[Any]:
    from archprobe.analysis.trace import TensorRef

    if isinstance(value, TensorRef):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _merge(states: list[State], shape: tuple[int, ...]) -> State | None:
    """The state of an output of ``shape`` made from inputs in ``states`` by an op that keeps
    each unit where it is (elementwise, normalisation, concatenation, reshapes)."""
    if any(s is GLOBAL for s in states):
        return GLOBAL
    fields = [s for s in states if isinstance(s, Field)]
    flats = [s.field for s in states if isinstance(s, Flat)]
    if len(shape) >= 3 and fields:
        return union(fields)
    if len(shape) == 2 and (fields or flats):
        return Flat(union(fields + flats))
    return None


def receptive_fields(trace: "Trace") -> dict[int, State]:
    """The state of every tensor of the forward pass (by ``TensorRef`` id) that has one."""
    from archprobe.analysis.trace import FORWARD

    states: dict[int, State] = {}
    image = trace.input
    if len(image.shape) >= 3:
        states[image.id] = input_field(len(image.shape) - 2)
    shapes: dict[int, tuple[int, ...]] = {image.id: image.shape}
    for op in trace.ops:
        if op.phase != FORWARD:
            continue
        inputs = list(_tensors(op.args)) + list(_tensors(list(op.kwargs.values())))
        for ref in inputs:
            shapes.setdefault(ref.id, ref.shape)
        for ref, state in zip(_outputs(op), _op_states(op, inputs, states)):
            if state is None:
                states.pop(ref.id, None)
            else:
                states[ref.id] = state
    return states


def _outputs(op: "OpEvent") -> list:
    return [o for o in op.outputs if o is not None]


def _op_states(op: "OpEvent", inputs: list, states: dict[int, State]) -> list[State | None]:
    outputs = _outputs(op)
    known = [(ref, states[ref.id]) for ref in inputs if ref.id in states]
    if not known:
        return [None] * len(outputs)
    window = op.window
    if window is not None:
        ref, state = known[0]
        first = outputs[0]
        if state is GLOBAL:
            return [GLOBAL] + [None] * (len(outputs) - 1)
        if not isinstance(state, Field) or len(ref.shape) < 3:
            return [None] * len(outputs)
        out = through_window(state, window, ref.shape[2:], first.shape[2:])
        return [out] + [None] * (len(outputs) - 1)  # pools' second output: indices
    name = op.name
    if name in _LINEAR:
        return [GLOBAL if any(s is GLOBAL or isinstance(s, Flat) for _, s in known) else None] * len(outputs)
    if name in _REDUCTIONS and not op.overload.endswith(".other"):  # max.other: elementwise
        return [_reduced(op, known, out) for out in outputs]
    if name in _OPAQUE:
        return [None] * len(outputs)
    results: list[State | None] = []
    for out in outputs:
        if name in _RESHAPES and len(out.shape) == 2:  # flatten: keep the batch, fold the rest
            source = known[0][0]
            same = out.shape[0] == source.shape[0] and out.numel() == source.numel()
            results.append(_merge([s for _, s in known], out.shape) if same else None)
            continue
        spatial = out.shape[2:]
        matching = [s for ref, s in known
                    if s is GLOBAL or isinstance(s, Flat) or (len(ref.shape) >= 3 and ref.shape[2:] == spatial)]
        if len(out.shape) >= 3 and not any(isinstance(s, Field) for s in matching) and not any(
                s is GLOBAL for s in matching):
            results.append(None)  # the spatial shape changed in a way this module does not follow
        else:
            results.append(_merge(matching, out.shape))
    return results


def _reduced(op: "OpEvent", known: list, out) -> State | None:
    """A reduction over every spatial dimension sees the whole map; over others, it passes."""
    ref, state = known[0]
    if state is GLOBAL:
        return GLOBAL
    if not isinstance(state, Field):
        return None
    dims = op.named.get("dim")
    rank = len(ref.shape)
    if dims is None:
        reduced = set(range(rank))
    else:
        reduced = {d % rank for d in ([dims] if isinstance(dims, int) else dims)}
    if set(range(2, rank)) <= reduced:
        return GLOBAL
    if not reduced & set(range(2, rank)) and len(out.shape) >= 3:
        return state
    return None


def layer_fields(trace: "Trace") -> dict[int, State | None]:
    """Each module call's state (by call index): that of its first output tensor."""
    states = receptive_fields(trace)
    return {call.index: states.get(call.output_ids[0]) if call.output_ids else None for call in trace.calls}
