"""Receptive fields: what one unit of each layer's output sees of the input image.

For every feature map, per spatial dimension (height, width):

* ``size``: the receptive field, the input pixels one unit depends on (padding included);
* ``jump``: the effective stride, the input pixels between two neighbouring units;
* ``start``: the centre of the first unit's field, in input pixel coordinates with pixel centres
  at 0, 1, 2, ... (negative or half-integer when it sits in the padding or between pixels).

Each unit's field is followed exactly, per dimension, as an :class:`Axis`: unit ``i`` sees the
input pixels ``low(i)`` to ``high(i)``, where ``low`` and ``high`` repeat with a period (units
``i`` and ``i + period`` see the same pixels, ``jump * period`` further on). After convolutions
and pools alone the period is 1 and the fields follow the recurrences for a window of kernel
``k``, dilation ``d``, stride ``s`` and padding ``p`` (``k' = d (k - 1) + 1``)::

    size' = size + (k' - 1) * jump      jump' = jump * s      start' = start + ((k' - 1) / 2 - p) * jump

Every op that moves units is an :class:`IndexMap` (which input units each output unit reads),
composed with the fields of its input: windows, transposed convolutions, adaptive pools,
nearest/linear/cubic resampling by any ratio of sizes (a source pixel whose weight is exactly
zero is not read), constant, reflect and replicate pads (their new units count as padding, as a
convolution's zeros do), crops, strided slices, splits and pixel (un)shuffles. Where branches
merge (``cat``, ``add``, ``mul``, broadcasting included) a unit sees the union of what its
branches' units see. Where units differ (after upsampling), ``size`` is the largest field and
``jump`` the mean distance.

A unit that depends on every unit of a map is *global*: after a pool or convolution whose window
covers the whole map, a reduction or normalisation over every spatial dimension (a mean, group
or instance norm, batch statistics), a fully connected layer over a flattened map, and
everything after. An op whose dependence cannot be followed exactly gives :class:`Unknown`
with a short reason (an op that moves spatial dimensions or indexes, flips, rolls, accumulates
or samples along them; a write through a view), and so does everything that depends on it:
never a field that is too small.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import gcd, lcm
from typing import TYPE_CHECKING, Any, Iterator, Union

from archprobe.analysis.geometry import Window

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.analysis.trace import OpEvent, Trace, TensorRef

_MAX_PERIOD = 4096  # longer periods (resampling by ratios like 1000/999) are not followed


@dataclass(frozen=True)
class Axis:
    """The input pixels each unit along one spatial dimension depends on: unit
    ``i = period * m + r`` sees pixels ``low[r] + jump * m`` to ``high[r] + jump * m``
    (inclusive; outside ``0 .. n - 1`` in the padding)."""

    period: int
    jump: int
    low: tuple[int, ...]
    high: tuple[int, ...]

    def unit(self, i: int) -> tuple[int, int]:
        """The first and last input pixel unit ``i`` depends on."""
        m, r = divmod(i, self.period)
        return self.low[r] + self.jump * m, self.high[r] + self.jump * m


@dataclass(frozen=True)
class IndexMap:
    """The input units each output unit of an op reads along one dimension: output unit
    ``o = period * m + r`` reads input units ``step * m + t`` for ``t`` in ``taps[r]``."""

    period: int
    step: int
    taps: tuple[tuple[int, ...], ...]


IDENTITY = IndexMap(1, 1, ((0,),))


@dataclass(frozen=True)
class Field:
    """The receptive fields of the units of one feature map, one :class:`Axis` per spatial dimension
    (the tensor's last ``len(axes)`` dimensions)."""

    axes: tuple[Axis, ...]

    @property
    def size(self) -> tuple[int, ...]:
        """The largest field of a unit, per dimension."""
        return tuple(max(h - lo + 1 for lo, h in zip(a.low, a.high)) for a in self.axes)

    @property
    def jump(self) -> tuple[int | float, ...]:
        """Input pixels between neighbouring units (their mean where units differ)."""
        return tuple(a.jump // a.period if a.jump % a.period == 0 else a.jump / a.period for a in self.axes)

    @property
    def start(self) -> tuple[float, ...]:
        """The centre of the first unit's field."""
        return tuple((a.low[0] + a.high[0]) / 2 for a in self.axes)

    def unit(self, index: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """The first and last input pixel, per dimension, that the unit at ``index`` depends on."""
        return tuple(a.unit(i) for a, i in zip(self.axes, index))


class Global:
    """Every unit sees the whole input."""

    def __repr__(self) -> str:
        return "GLOBAL"


GLOBAL = Global()


@dataclass(frozen=True)
class Flat:
    """A feature map flattened into features (``x.flatten(1)``): each feature keeps its unit's field."""

    field: Field


@dataclass(frozen=True)
class Unknown:
    """The tensor depends on the input in a way that is not followed exactly; ``reason`` says why."""

    reason: str


State = Union[Field, Global, Flat, Unknown]


def input_field(spatial_dims: int) -> Field:
    """One input pixel: size 1, jump 1, centred on itself."""
    return Field((Axis(1, 1, (0,), (0,)),) * spatial_dims)


# --- one dimension ----------------------------------------------------------------------------------


def _normal(axis: Axis) -> Axis:
    """``axis`` with its shortest period."""
    for p in range(1, axis.period):
        if axis.period % p or axis.jump * p % axis.period:
            continue
        step = axis.jump * p // axis.period
        if all(axis.low[r + p] == axis.low[r] + step and axis.high[r + p] == axis.high[r] + step
               for r in range(axis.period - p)):
            return Axis(p, step, axis.low[:p], axis.high[:p])
    return axis


def compose(axis: Axis, index_map: IndexMap) -> Axis | None:
    """The fields of an op's output units, reading input units of fields ``axis`` through
    ``index_map``; None where the period would exceed the followed range."""
    repeats = axis.period // gcd(index_map.step, axis.period)  # output periods until the input's repeats
    period = index_map.period * repeats
    if period > _MAX_PERIOD:
        return None
    low, high = [], []
    for o in range(period):
        m, r = divmod(o, index_map.period)
        spans = [axis.unit(index_map.step * m + t) for t in index_map.taps[r]]
        low.append(min(s[0] for s in spans))
        high.append(max(s[1] for s in spans))
    jump = axis.jump * index_map.step * repeats // axis.period
    return _normal(Axis(period, jump, tuple(low), tuple(high)))


def union(axes: list[Axis], n: int | None = None) -> Axis | None:
    """The fields of units that see what the units of each of ``axes`` see (branches merged), over
    a map of ``n`` units; None where that cannot be followed."""
    if len(set(axes)) == 1:
        return axes[0]
    period = lcm(*(a.period for a in axes))
    if len({Fraction(a.jump, a.period) for a in axes}) == 1 and period <= _MAX_PERIOD:
        spans = [[a.unit(r) for a in axes] for r in range(period)]
        jump = axes[0].jump * period // axes[0].period
        return _normal(Axis(period, jump, tuple(min(s[0] for s in u) for u in spans),
                            tuple(max(s[1] for s in u) for u in spans)))
    if n is None or n > _MAX_PERIOD:
        return None
    # Branches of different mean strides (align_corners resampling, a mean along the dimension
    # broadcast): each of the n units, with the map repeating one map's width further on.
    spans = [[a.unit(i) for a in axes] for i in range(n)]
    low, high = tuple(min(s[0] for s in u) for u in spans), tuple(max(s[1] for s in u) for u in spans)
    jump = 0 if len(set(low)) == len(set(high)) == 1 else max(-(-n * a.jump // a.period) for a in axes)
    return _normal(Axis(n, jump, low, high))


def whole(axis: Axis, n: int) -> Axis:
    """One field for every unit: what all ``n`` units of the map see together."""
    spans = [axis.unit(i) for i in range(n)]
    return Axis(1, 0, (min(s[0] for s in spans),), (max(s[1] for s in spans),))


def window_map(kernel: int, stride: int, padding: int, dilation: int, transposed: bool = False) -> IndexMap | None:
    """A convolution's or pool's window; None for a transposed convolution that leaves some output
    units reading no input."""
    if not transposed:
        return IndexMap(1, stride, (tuple(t * dilation - padding for t in range(kernel)),))
    # output o = stride * i - padding + dilation * t, so o = stride * m + r reads i = m + (r + p - d t) / s
    taps = tuple(tuple((r + padding - dilation * t) // stride for t in range(kernel)
                       if (r + padding - dilation * t) % stride == 0) for r in range(stride))
    return IndexMap(stride, 1, taps) if all(taps) else None


def adaptive_map(n: int, m: int) -> IndexMap:
    """An adaptive pool from ``n`` units to ``m``: unit ``o`` reads ``floor(o n / m)`` up to
    ``ceil((o + 1) n / m) - 1``."""
    g = gcd(n, m)
    taps = tuple(tuple(range(r * n // m, -(-(r + 1) * n // m))) for r in range(m // g))
    return IndexMap(m // g, n // g, taps)


def resample_map(mode: str, n: int, size: int, scale: float | None, align_corners: bool) -> IndexMap | None:
    """Resampling ``n`` units to ``size`` (PyTorch's ``upsample_*`` kernels): the source
    coordinate of output unit ``o`` is ``o * ratio`` (nearest, align_corners) or
    ``(o + 0.5) * ratio - 0.5`` (nearest-exact and linear/cubic rounded down, plus 0.5), where
    ``ratio`` is ``1 / scale`` where a scale is given, else ``n / size``. Nearest reads one unit;
    linear the two around the coordinate, cubic four; only one where the coordinate is a whole
    unit (the others' weights are zero). None where the period is too long."""
    if align_corners and mode in ("linear", "cubic"):
        ratio = Fraction(n - 1, size - 1) if size > 1 else Fraction(0)
    else:
        ratio = 1 / Fraction(scale) if scale and scale > 0 else Fraction(n, size)
    period, step = ratio.denominator, ratio.numerator
    if period > _MAX_PERIOD:
        return None
    taps = []
    for r in range(period):
        if mode == "nearest":
            taps.append((int(r * ratio),))
            continue
        if mode == "nearest-exact":
            taps.append((int((r + Fraction(1, 2)) * ratio),))
            continue
        x = r * ratio if align_corners else (r + Fraction(1, 2)) * ratio - Fraction(1, 2)
        i = x.numerator // x.denominator
        reach = (0,) if x == i else (0, 1) if mode == "linear" else (-1, 0, 1, 2)
        taps.append(tuple(i + t for t in reach))
    return IndexMap(period, step, tuple(taps))


def shift_map(offset: int, step: int = 1) -> IndexMap:
    """Output unit ``o`` reads input unit ``offset + step * o`` (pads, crops, strided slices)."""
    return IndexMap(1, step, ((offset,),))


def broadcast_map() -> IndexMap:
    """Every output unit reads the one input unit (a dimension of size 1 broadcast)."""
    return IndexMap(1, 0, ((0,),))


# --- the trace ----------------------------------------------------------------------------------------


_LINEAR = {"addmm", "mm", "matmul", "linear", "bmm", "baddbmm"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp", "var", "std", "var_mean", "std_mean",
               "prod", "argmax", "argmin", "linalg_vector_norm", "norm", "nansum", "nanmean", "all", "any",
               "median", "count_nonzero"}
_RESHAPES = {"view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze", "alias", "detach", "clone",
             "contiguous", "_to_copy", "to", "lift_fresh", "lift_fresh_copy", "expand", "repeat"}
_SLICES = {"slice", "split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes", "narrow", "select",
           "unbind", "index_select", "index"}
_SOFTMAX = {"_softmax", "_log_softmax", "softmax", "log_softmax"}
_CUMULATIVE = {"cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "sort", "argsort", "topk", "kthvalue"}
_PADS = {f"{kind}_pad{n}d": kind for kind in ("reflection", "replication") for n in (1, 2, 3)}
_RESAMPLE = {f"{prefix}{mode}{n}d": name for prefix, mode, name in [
    ("upsample_", "nearest", "nearest"), ("_upsample_", "nearest_exact", "nearest-exact"),
    ("upsample_", "linear", "linear"), ("upsample_", "bilinear", "linear"), ("upsample_", "trilinear", "linear"),
    ("upsample_", "bicubic", "cubic")] for n in (1, 2, 3)}
# Outputs that depend on the input's shape only, and elementwise ops without PyTorch's pointwise tag.
_INDEPENDENT = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
                "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided", "fill_", "zero_"}
_ELEMENTWISE = {"hardswish", "hardswish_", "_prelu_kernel", "native_dropout", "dropout", "_native_batch_norm_legit",
                "_native_batch_norm_legit_no_training", "native_batch_norm", "batch_norm", "cudnn_batch_norm",
                "_batch_norm_impl_index", "_batch_norm_no_update"}


def _tensors(value) -> Iterator[Any]:
    from archprobe.analysis.trace import TensorRef

    if isinstance(value, TensorRef):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def receptive_fields(trace: "Trace") -> dict[int, State]:
    """The state of every tensor of the forward pass (by ``TensorRef`` id) that depends on the input."""
    from archprobe.analysis.trace import FORWARD

    states: dict[int, State] = {}
    image = trace.input
    if len(image.shape) >= 3:
        states[image.id] = input_field(len(image.shape) - 2)
    bases: dict[int, int] = {}  # a view's id -> the id of the tensor it views
    for op in trace.ops:
        if op.phase != FORWARD:
            continue
        written = _views(op, bases)
        inputs = list(_tensors(op.args)) + list(_tensors(list(op.kwargs.values())))
        if not any(ref.id in states for ref in inputs):
            continue
        outputs = [o for o in op.outputs if o is not None]
        for ref, state in zip(outputs, _op_states(op, inputs, states)):
            before = states.get(ref.id)
            if state is None:
                states.pop(ref.id, None)
            else:
                states[ref.id] = state
            if ref.id in written and state != before:
                # the write changes what the viewed tensor holds, in the part this view sees
                states[bases[ref.id]] = Unknown("write into a view")
    return states


def _views(op: "OpEvent", bases: dict[int, int]) -> set[int]:
    """Record the views ``op`` makes in ``bases``; the ids of the views it writes into."""
    schema = op.func._schema
    written = {ref.id for arg, ref in zip(schema.arguments, op.args)
               if arg.alias_info is not None and arg.alias_info.is_write and getattr(ref, "id", None) in bases}
    source = getattr(op.args[0], "id", None) if op.args else None
    if source is not None and any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns):
        for out in op.outputs:  # a view (split: a list of views) of its first argument
            if out is not None and out.id != source:
                bases[out.id] = bases.get(source, source)
    return written


def _op_states(op: "OpEvent", inputs: list, states: dict[int, State]) -> list[State | None]:
    outputs = [o for o in op.outputs if o is not None]
    name = op.name
    if name in _INDEPENDENT:
        return [None] * len(outputs)
    if name == "copy_":  # the destination now holds the source's values
        inputs = [op.named["src"]]
        if inputs[0].id not in states:
            return [None] * len(outputs)
    known = [states[ref.id] for ref in inputs if ref.id in states]
    if any(s is GLOBAL for s in known):
        return [GLOBAL] * len(outputs)
    unknown = next((s for s in known if isinstance(s, Unknown)), None)
    if unknown is not None:
        return [unknown] * len(outputs)
    if op.window is not None:
        return _windowed(op, states, outputs)
    source = op.named.get("self", op.named.get("input"))
    state = states.get(getattr(source, "id", None))
    if name in _LINEAR:
        return [GLOBAL if any(isinstance(s, Flat) for s in known) else Unknown("matmul")] * len(outputs)
    if name in _REDUCTIONS and not op.overload.endswith(".other"):  # max.other: elementwise
        return _reduced(op, source, state, outputs)
    if name in _RESHAPES:
        return [_reshaped(source, state, out) for out in outputs]
    if name in ("cat", "stack"):
        return [_joined(op, inputs, states, outputs[0])]
    follow = _FOLLOW.get(name)
    if follow is not None and isinstance(state, Field):
        if any(ref.id in states and ref.id != source.id for ref in inputs):
            return [Unknown(name)] * len(outputs)  # indices or sizes that depend on the input
        return follow(op, source, state, outputs)
    if name in _ELEMENTWISE or name == "copy_" or _pointwise(op):
        if op.named.get("training"):
            return [GLOBAL] * len(outputs)  # batch statistics (instance norm too): every unit of the map
        return [_elementwise(inputs, states, out) for out in outputs]
    return [Unknown(name)] * len(outputs)


def _pointwise(op: "OpEvent") -> bool:
    import torch

    return torch.Tag.pointwise in op.func.tags


def _spatial(ref: "TensorRef", k: int) -> tuple[int, ...]:
    return ref.shape[len(ref.shape) - k:]


def _fits(field: Field, ref: "TensorRef") -> bool:
    """Whether ``ref`` has the field's spatial dimensions last and some dimension before them."""
    return len(ref.shape) > len(field.axes)


def _mapped(field: Field, maps: list[IndexMap | None]) -> State:
    """``field`` with each axis read through its map (None: the op is not followed)."""
    axes = []
    for axis, index_map in zip(field.axes, maps):
        out = compose(axis, index_map) if index_map is not None else None
        if out is None:
            return Unknown("period")
        axes.append(out)
    return Field(tuple(axes))


def _windowed(op: "OpEvent", states: dict[int, State], outputs: list) -> list[State | None]:
    """Convolutions and pools: every output (a pool's indices too) gets the window's field."""
    window: Window = op.window
    source = op.named.get("input", op.named.get("self"))
    state = states.get(getattr(source, "id", None))
    if any(ref.id in states and ref.id != source.id for ref in _tensors(op.args[1:])) or state is None:
        return [Unknown("dynamic weights")] * len(outputs)
    if not isinstance(state, Field) or not _fits(state, source) or len(outputs[0].shape) != len(source.shape):
        return [Unknown("layout")] * len(outputs)
    k = len(state.axes)
    n_in, n_out = _spatial(source, k), _spatial(outputs[0], k)
    dims = len(window.output_size if window.kind == "adaptive" else window.kernel)
    maps: list[IndexMap | None] = []
    for j in range(k):
        w = j - (k - dims)  # the window's dimensions are the tensor's last ones
        if w < 0:
            maps.append(IDENTITY)
        elif window.kind == "adaptive":
            maps.append(adaptive_map(n_in[j], n_out[j]))
        else:
            maps.append(window_map(window.kernel[w], window.stride[w], window.padding[w], window.dilation[w],
                                   window.transposed))
    if any(m is None for m in maps):
        return [Unknown("transposed gaps")] * len(outputs)
    whole_map = all(m == 1 and im.period == 1 and min(im.taps[0]) <= 0 and max(im.taps[0]) >= n - 1
                    for m, n, im in zip(n_out, n_in, maps))
    if whole_map and any(n > 1 for n in n_in):
        return [GLOBAL] * len(outputs)  # one window over the whole map (over a single unit it changes nothing)
    return [_mapped(state, maps)] * len(outputs)


def _elementwise(inputs: list, states: dict[int, State], out: "TensorRef") -> State:
    """An op that keeps each unit where it is: a unit sees the union of what its inputs' units
    (broadcast where a dimension is 1) see."""
    known = [(ref, states[ref.id]) for ref in inputs if ref.id in states]
    if len(out.shape) == 2 and all(isinstance(s, Flat) for _, s in known):
        axes = [union([s.field.axes[j] for _, s in known]) for j in range(len(known[0][1].field.axes))]
        return Flat(Field(tuple(axes))) if all(a is not None for a in axes) else Unknown("union")
    fields = [(ref, s) for ref, s in known if isinstance(s, Field) and _fits(s, ref)]
    if len(fields) < len(known) or len({len(s.axes) for _, s in fields}) != 1 or not _fits(fields[0][1], out):
        return Unknown("layout")
    k = len(fields[0][1].axes)
    axes = []
    for j, n in enumerate(_spatial(out, k)):
        branch = []
        for ref, s in fields:
            m = _spatial(ref, k)[j]
            if m not in (n, 1):
                return Unknown("layout")
            branch.append(s.axes[j] if m == n else compose(s.axes[j], broadcast_map()))
        merged = union(branch, n)
        if merged is None:
            return Unknown("union")
        axes.append(merged)
    return Field(tuple(axes))


def _joined(op: "OpEvent", inputs: list, states: dict[int, State], out: "TensorRef") -> State:
    """``cat``/``stack``: the union of the inputs, unless joined along a spatial dimension."""
    known = [states[ref.id] for ref in inputs if ref.id in states]
    k = len(known[0].axes) if isinstance(known[0], Field) else 0
    dim = op.named.get("dim", 0) % len(out.shape)
    if dim >= len(out.shape) - k:
        return Unknown("cat along a spatial dimension")
    return _elementwise(inputs, states, out)


def _reshaped(source: "TensorRef", state: State, out: "TensorRef") -> State:
    """Views and copies: a map flattened per example is :class:`Flat`; the field stays where the
    spatial dimensions do (leading ones reshaped, size-1 ones broadcast)."""
    field = state.field if isinstance(state, Flat) else state
    if len(out.shape) == 2 and len(source.shape) >= 2 and out.shape[0] == source.shape[0] \
            and out.numel() == source.numel():
        return Flat(field)
    if not isinstance(state, Field) or not _fits(state, out):
        return Unknown("layout")
    k = len(state.axes)
    if _spatial(out, k) == _spatial(source, k):
        return state
    if len(out.shape) >= len(source.shape) and all(
            m in (n, 1) for m, n in zip(_spatial(source, k), _spatial(out, k))):  # expand
        return _mapped(state, [IDENTITY if m == n else broadcast_map()
                               for m, n in zip(_spatial(source, k), _spatial(out, k))])
    return Unknown("layout")


def _along(op: "OpEvent", source: "TensorRef", state: Field) -> int | None:
    """The spatial axis (index into ``state.axes``) that ``op``'s ``dim`` names, None for a
    leading dimension."""
    rank, k = len(source.shape), len(state.axes)
    d = op.named.get("dim", 0) % rank
    return d - (rank - k) if d >= rank - k else None


def _moved(op: "OpEvent", source: "TensorRef", state: Field, outputs: list) -> list[State]:
    """Slices, splits and selections: along a non-spatial dimension the field stays; along a
    spatial one, crops, strided slices and splits shift each unit."""
    if op.name == "index":  # x[idx]: the field stays where only leading dimensions are indexed
        if len(op.named.get("indices") or []) > len(source.shape) - len(state.axes):
            return [Unknown("index")] * len(outputs)
        axis = None
    else:
        axis = _along(op, source, state)
    if axis is None:
        return [_reshaped(source, state, out) for out in outputs]
    n = _spatial(source, len(state.axes))[axis]
    if op.name in ("slice", "narrow"):
        start = op.named.get("start") or 0
        start = min(max(start + n if start < 0 else start, 0), n)
        step = op.named.get("step") or 1
        offsets = [(start, step)]
    elif op.name.startswith(("split", "unsafe_split")):
        sizes = [o.shape[len(source.shape) - len(state.axes) + axis] for o in outputs]
        offsets = [(sum(sizes[:i]), 1) for i in range(len(outputs))]
    else:
        return [Unknown(op.name)] * len(outputs)
    maps = [[IDENTITY] * len(state.axes) for _ in outputs]
    for i, (offset, step) in enumerate(offsets):
        maps[i][axis] = shift_map(offset, step)
    return [_mapped(state, m) for m in maps]


def _permuted(op: "OpEvent", source: "TensorRef", state: Field, outputs: list) -> list[State]:
    """Permutes of the leading dimensions (channel shuffles); the spatial ones must stay in place."""
    rank, k = len(source.shape), len(state.axes)
    if op.name == "permute":
        order = [d % rank for d in op.named["dims"]]
    else:
        order = list(range(rank))
        a, b = op.named["dim0"] % rank, op.named["dim1"] % rank
        order[a], order[b] = b, a
    if order[rank - k:] != list(range(rank - k, rank)):
        return [Unknown("layout")] * len(outputs)  # an axis would pair a tensor dimension with another image one
    return [state] * len(outputs)


def _shuffled(op: "OpEvent", source: "TensorRef", state: Field, outputs: list) -> list[State]:
    """Pixel shuffle by ``r``: unit ``o`` reads unit ``o // r`` (of some channel); unshuffle: units
    ``r o`` to ``r o + r - 1`` (one per channel)."""
    if len(state.axes) < 2:
        return [Unknown("layout")] * len(outputs)
    if op.name == "pixel_shuffle":
        r = op.named["upscale_factor"]
        index_map = IndexMap(r, 1, ((0,),) * r)
    else:
        r = op.named["downscale_factor"]
        index_map = IndexMap(1, r, (tuple(range(r)),))
    maps = [IDENTITY] * (len(state.axes) - 2) + [index_map] * 2
    return [_mapped(state, maps)] * len(outputs)


def _along_one(op: "OpEvent", source: "TensorRef", state: Field, outputs: list) -> list[State]:
    """Softmax along a spatial dimension: each unit sees the whole line; cumulative sums and
    sorts along one are not followed."""
    axis = _along(op, source, state)
    if axis is None:
        return [_reshaped(source, state, out) for out in outputs]
    if op.name not in _SOFTMAX:
        return [Unknown("cumulative" if op.name.startswith(("cum", "logcum")) else op.name)] * len(outputs)
    n = _spatial(source, len(state.axes))[axis]
    axes = list(state.axes)
    axes[axis] = whole(axes[axis], n)
    return [Field(tuple(axes))] * len(outputs)


def _normalised(op: "OpEvent", source: "TensorRef", state: Field, outputs: list) -> list[State]:
    """Group norm sees the whole map; layer norm the dimensions it normalises over."""
    rank = len(source.shape)
    if op.name == "native_group_norm":
        return [GLOBAL] * len(outputs)
    dims = set(range(rank - len(op.named["normalized_shape"]), rank))
    return _over(source, state, dims, True, outputs)


def _reduced(op: "OpEvent", source: "TensorRef", state: State, outputs: list) -> list[State]:
    """A reduction over every spatial dimension is global; over some, each unit sees the whole
    line (with ``keepdim``); over others, the field stays where the spatial dimensions do."""
    rank = len(source.shape)
    dims = op.named.get("dim")
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        reduced = set(range(rank))
    else:
        reduced = {d % rank for d in ([dims] if isinstance(dims, int) else dims)}
    if isinstance(state, Flat):  # over the features: every unit
        return [GLOBAL if 1 in reduced else Unknown("layout")] * len(outputs)
    if not isinstance(state, Field):
        return [Unknown("layout")] * len(outputs)
    return _over(source, state, reduced, bool(op.named.get("keepdim")), outputs)


def _over(source: "TensorRef", state: Field, dims: set[int], keepdim: bool, outputs: list) -> list[State]:
    """The outputs of an op that makes each unit depend on every unit along ``dims``."""
    rank, k = len(source.shape), len(state.axes)
    spatial = set(range(rank - k, rank))
    if spatial <= dims:
        return [GLOBAL] * len(outputs)
    if not dims & spatial:
        return [_reshaped(source, state, out) for out in outputs]
    if not keepdim:
        return [Unknown("layout")] * len(outputs)
    n = _spatial(source, k)
    axes = tuple(whole(a, n[j]) if rank - k + j in dims else a for j, a in enumerate(state.axes))
    return [Field(axes)] * len(outputs)


def _resampled(op: "OpEvent", source: "TensorRef", state: Field, outputs: list) -> list[State]:
    """Nearest, linear and cubic resampling (``interpolate``, ``nn.Upsample``)."""
    k = len(state.axes)
    n_in, n_out = _spatial(source, k), _spatial(outputs[0], k)
    dims = len(source.shape) - 2  # every dimension after the batch and the channels
    scales = op.named.get("scale_factors") or [v for key, v in op.named.items() if key.startswith("scales")]
    scales = list(scales) + [None] * (dims - len(scales))
    maps: list[IndexMap | None] = [IDENTITY] * k
    for j in range(k):
        w = j - (k - dims)  # the resampled dimensions are the tensor's last ones
        if w >= 0:
            maps[j] = resample_map(_RESAMPLE[op.name], n_in[j], n_out[j], scales[w],
                                   bool(op.named.get("align_corners")))
    return [_mapped(state, maps)] * len(outputs)


def _padded(op: "OpEvent", source: "TensorRef", state: Field, outputs: list) -> list[State]:
    """Constant, reflect and replicate pads (negative: crops): unit ``o`` is input unit
    ``o - before``; the new units count as padding."""
    pad = op.named.get("pad", op.named.get("padding"))
    k = len(state.axes)
    maps = [IDENTITY] * k
    for i in range(len(pad) // 2):  # (last dimension: before, after), (the one before it), ...
        j = k - 1 - i
        if j >= 0:
            maps[j] = shift_map(-pad[2 * i])
    return [_mapped(state, maps)] * len(outputs)


_FOLLOW = {**{name: _moved for name in _SLICES}, "permute": _permuted, "transpose": _permuted,
           "pixel_shuffle": _shuffled, "pixel_unshuffle": _shuffled,
           **{name: _along_one for name in _SOFTMAX | _CUMULATIVE},
           "native_group_norm": _normalised, "native_layer_norm": _normalised,
           **{name: _resampled for name in _RESAMPLE}, **{name: _padded for name in [*_PADS, "constant_pad_nd"]}}


def layer_fields(trace: "Trace") -> dict[int, State | None]:
    """Each module call's state (by call index): that of its first output tensor."""
    states = receptive_fields(trace)
    return {call.index: states.get(call.output_ids[0]) if call.output_ids else None for call in trace.calls}
