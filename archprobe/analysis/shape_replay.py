"""Replaying a traced forward pass's shape arithmetic over many input sizes at once.

Two or more dispatch-level traces of the same model at different input sizes
(:func:`archprobe.analysis.trace.trace`) are aligned op by op. Every tensor dimension then
becomes a value over all candidate input sizes: a Python ``int`` where it does not depend on
the input's height and width (batch, channels, parameters, adaptive-pool outputs), else an
``int64`` numpy array with one entry per candidate ``(H, W)``. Each aten op has a *transfer
function* computing its output dimensions and a validity mask from its input dimensions and
arguments; validity is AND-ed over the whole pass and the first op to rule a candidate out is
remembered (that is the limiting layer).

Arguments that change between the traces (``F.avg_pool2d(x, x.size()[2:])``, a
``view(b, c, h * w)``, ``interpolate(size=skip.shape[2:])``) are *size-dependent*: each such
integer is bound to a tensor dimension that took the same values in every trace (the op's own
inputs first, at the same position where possible, then any earlier tensor). What cannot be
bound, an op whose outputs no rule explains, or traces that do not align (control flow that
depends on the input) raise :class:`Unsupported`; the caller then falls back to forward passes.

Every transfer function is checked against the traces themselves: at the traced sizes the
replayed shapes must equal the recorded ones and every op must be valid. Ops without an entry
in the table follow generic rules: broadcasting (elementwise ops, activations, dropout, copies)
or "each output dimension follows the same input dimension, or is constant".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from archprobe.analysis.geometry import named_args
from archprobe.analysis.trace import TensorRef, Trace

INPUT = ("input",)

Dim = Any  # int | np.ndarray


class Unsupported(Exception):
    """The traced arithmetic cannot be replayed over other input sizes."""


# --- alignment ---------------------------------------------------------------------------------

def _is_tensor_list(value) -> bool:
    return isinstance(value, (list, tuple)) and any(isinstance(v, TensorRef) for v in value)


@dataclass
class AlignedOp:
    """One op, seen in every trace at the same position."""

    index: int
    func: Any
    name: str  # overload packet, e.g. "max_pool2d_with_indices"
    overload: str  # e.g. "max_pool2d_with_indices.default"
    call: int
    values: list[dict[str, Any]]  # per trace: argument name -> value (tensors as TensorRef)
    keys: dict[str, Any]  # tensor argument name -> key, or list of keys for tensor lists
    shapes: dict[str, list]  # tensor argument name -> per-trace shape (or list of shapes)
    varying: set[str]  # non-tensor arguments whose values differ between the traces
    out_shapes: list[list]  # per trace, per output: shape or None
    aliases: dict[int, str]  # output index -> argument it is (in-place ops)

    def __str__(self) -> str:
        return f"aten.{self.overload} (op {self.index})"


def align(traces: Sequence[Trace]) -> list[AlignedOp]:
    """Align the traces op by op; raise :class:`Unsupported` where they differ in structure."""
    first = traces[0]
    n = len(first.ops)
    for t in traces[1:]:
        if len(t.ops) != n:
            raise Unsupported(
                f"the forward runs {n} ops at {_size_text(first)} but {len(t.ops)} at {_size_text(t)}:"
                " its control flow depends on the input size"
            )
    keymaps = [{t.input.id: INPUT} for t in traces]
    aligned: list[AlignedOp] = []
    for i in range(n):
        ops = [t.ops[i] for t in traces]
        func = ops[0].func
        for t, o in zip(traces[1:], ops[1:]):
            if o.func != func:
                raise Unsupported(
                    f"op {i} is aten.{ops[0].overload} at {_size_text(first)} but aten.{o.overload} at"
                    f" {_size_text(t)}: the forward's control flow depends on the input size"
                )
        values = [named_args(func, o.args, o.kwargs) for o in ops]
        keys: dict[str, Any] = {}
        shapes: dict[str, list] = {}
        varying: set[str] = set()
        for name, v0 in values[0].items():
            if isinstance(v0, TensorRef) or _is_tensor_list(v0):
                per_trace_keys = []
                per_trace_shapes = []
                for tix, vals in enumerate(values):
                    v = vals[name]
                    if isinstance(v0, TensorRef):
                        if not isinstance(v, TensorRef):
                            raise Unsupported(f"op {i} (aten.{ops[0].overload}): argument {name} differs")
                        per_trace_keys.append(keymaps[tix].get(v.id, ("ext", i, name)))
                        per_trace_shapes.append(v.shape)
                    else:
                        if not _is_tensor_list(v) or len(v) != len(v0):
                            raise Unsupported(
                                f"op {i} (aten.{ops[0].overload}): the number of tensors in {name} depends"
                                " on the input size"
                            )
                        per_trace_keys.append(
                            [
                                keymaps[tix].get(x.id, ("ext", i, name, j)) if isinstance(x, TensorRef) else None
                                for j, x in enumerate(v)
                            ]
                        )
                        per_trace_shapes.append([x.shape if isinstance(x, TensorRef) else None for x in v])
                if any(k != per_trace_keys[0] for k in per_trace_keys[1:]):
                    raise Unsupported(
                        f"op {i} (aten.{ops[0].overload}) reads different tensors at different sizes:"
                        " the forward's data flow depends on the input size"
                    )
                keys[name] = per_trace_keys[0]
                shapes[name] = per_trace_shapes
            else:
                if any(not _same_value(vals[name], v0) for vals in values[1:]):
                    varying.add(name)
        out_shapes = []
        for tix, o in enumerate(ops):
            if len(o.outputs) != len(ops[0].outputs):
                raise Unsupported(f"op {i} (aten.{ops[0].overload}): the number of outputs depends on the input size")
            out_shapes.append([r.shape if r is not None else None for r in o.outputs])
        aliases = {}
        arg_ids = {v.id: name for name, v in values[0].items() if isinstance(v, TensorRef)}
        for j, r in enumerate(ops[0].outputs):
            if r is not None and r.id in arg_ids:
                aliases[j] = arg_ids[r.id]
        for tix, o in enumerate(ops):
            for j, r in enumerate(o.outputs):
                if r is not None:
                    keymaps[tix][r.id] = (i, j)
        aligned.append(
            AlignedOp(
                index=i,
                func=func,
                name=str(func.overloadpacket.__name__),
                overload=ops[0].overload,
                call=ops[0].call,
                values=values,
                keys=keys,
                shapes=shapes,
                varying=varying,
                out_shapes=out_shapes,
                aliases=aliases,
            )
        )
    return aligned


def _same_value(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN
    return type(a) is type(b) and a == b


def _size_text(t: Trace) -> str:
    shape = t.input.shape
    return "x".join(str(s) for s in shape[2:])


# --- arithmetic on Dims (int or int64 array) ----------------------------------------------------


def _is_arr(d) -> bool:
    return isinstance(d, np.ndarray)


def _min(a, b):
    if not _is_arr(a) and not _is_arr(b):
        return min(a, b)
    return np.minimum(a, b)


def _max(a, b):
    if not _is_arr(a) and not _is_arr(b):
        return max(a, b)
    return np.maximum(a, b)


def _where(cond, a, b):
    if isinstance(cond, (bool, np.bool_)):
        return a if cond else b
    return np.where(cond, a, b)


def _as_int(cond):
    """A bool or bool array as 0/1."""
    if isinstance(cond, (bool, np.bool_)):
        return int(bool(cond))
    return cond.astype(np.int64)


def _and(a, b):
    if isinstance(a, (bool, np.bool_)) and isinstance(b, (bool, np.bool_)):
        return bool(a) and bool(b)
    return np.logical_and(a, b)


def _eq(a, b):
    if a is b:
        return True
    if not _is_arr(a) and not _is_arr(b):
        return a == b
    return a == b


def _prod(dims) -> Dim:
    out: Dim = 1
    for d in dims:
        out = out * d
    return out


def _at(d: Dim, i: int) -> int:
    return int(d[i]) if _is_arr(d) else int(d)


def _fmt(dims, i: int, clip: bool = False) -> str:
    vals = [_at(d, i) for d in dims]
    if clip:
        vals = [max(0, v) for v in vals]
    return "x".join(str(v) for v in vals) if vals else "scalar"


# --- the replay ---------------------------------------------------------------------------------


@dataclass
class Ambiguity:
    """A decision the traces could not settle: ``array`` took the same value in every trace."""

    array: np.ndarray
    values: tuple[int, ...]
    what: str
    op: int = -1  # the op where it arose


@dataclass
class ReplayResult:
    valid: np.ndarray  # bool per candidate
    first_bad: np.ndarray  # op index that first ruled the candidate out, -1 if valid
    ambiguities: list[Ambiguity] = field(default_factory=list)
    failures: dict[int, list] = field(default_factory=dict, repr=False)  # op -> [(cond, reason)]

    def reason(self, i: int) -> str | None:
        """Why candidate ``i`` fails at its first failing op (``None`` if it is valid)."""
        op = int(self.first_bad[i])
        for cond, why in self.failures.get(op, ()):
            ok = cond if isinstance(cond, (bool, np.bool_)) else cond[i]
            if not ok:
                return why(i) if callable(why) else why
        return None


@dataclass
class _State:
    valid: np.ndarray
    first_bad: np.ndarray
    trace_ix: np.ndarray
    failures: dict[int, list]
    ambiguities: list[Ambiguity]
    n_user: int
    positive: set = field(default_factory=set)  # ids of arrays known to be >= 1 where valid
    memo: dict = field(default_factory=dict)  # shared arithmetic -> the same output arrays
    applied: set = field(default_factory=set)  # ids of validity masks already applied
    keep: list = field(default_factory=list)  # keeps memoised inputs alive (their ids are keys)


class Program:
    """Aligned traces, ready to be replayed over any candidate sizes."""

    def __init__(self, traces: Sequence[Trace]):
        if len(traces) < 2:
            raise ValueError("replaying needs at least two traces")
        self.traces = list(traces)
        self.sizes = [tuple(t.input.shape[2:]) for t in traces]
        if any(len(s) != 2 for s in self.sizes):
            raise Unsupported("only 4-d (N, C, H, W) inputs are replayed")
        self.ops = align(traces)
        self.batch, self.channels = traces[0].input.shape[:2]

    def replay(self, heights, widths) -> ReplayResult:
        """Replay over candidates ``(heights[i], widths[i])``."""
        h = np.asarray(heights, dtype=np.int64)
        w = np.asarray(widths, dtype=np.int64)
        n_user = len(h)
        h = np.concatenate([h, np.array([s[0] for s in self.sizes], dtype=np.int64)])
        w = np.concatenate([w, np.array([s[1] for s in self.sizes], dtype=np.int64)])
        n = len(h)
        state = _State(
            valid=np.ones(n, dtype=bool),
            first_bad=np.full(n, -1, dtype=np.int64),
            trace_ix=np.arange(n_user, n),
            failures={},
            ambiguities=[],
            n_user=n_user,
        )
        env: dict[Any, list] = {INPUT: [self.batch, self.channels, h, w]}
        state.positive.update((id(h), id(w)))
        sig: dict[tuple, list] = {}
        in_shapes = [t.input.shape for t in self.traces]
        _register(sig, INPUT, env[INPUT], in_shapes)
        with np.errstate(all="ignore"):
            for op in self.ops:
                ctx = _Ctx(self, op, env, sig, state)
                rule = _RULES.get(op.overload) or _RULES.get(op.name) or _generic
                outs = rule(ctx)
                ctx.finish(outs)
        return ReplayResult(
            valid=state.valid[:n_user],
            first_bad=state.first_bad[:n_user],
            ambiguities=state.ambiguities,
            failures=state.failures,
        )


def _register(sig: dict, key, dims: list, shapes_per_trace: list) -> None:
    """Index input-derived dims by their values across the traces (for binding arguments)."""
    for p, d in enumerate(dims):
        if _is_arr(d):
            values = tuple(s[p] for s in shapes_per_trace)
            if len(set(values)) > 1:
                entries = sig.setdefault(values, [])
                if not any(e is d for e in entries):
                    entries.append(d)
                    if len(entries) > 4:
                        del entries[0]


# Argument names never read as sizes taken from a tensor (checked for ambiguity otherwise).
_NOT_SIZES = frozenset(
    "dim dims dim0 dim1 start_dim end_dim groups stride padding pad dilation output_padding index "
    "upscale_factor downscale_factor correction source destination shifts repeats chunks k".split()
)


class _Ctx:
    """What a transfer function sees: its op's inputs as Dims and its arguments resolved."""

    def __init__(self, program: Program, op: AlignedOp, env: dict, sig: dict, state: _State):
        self.program = program
        self.op = op
        self.env = env
        self.sig = sig
        self.state = state
        self.consumed: set[str] = set()

    # tensors
    def _dims(self, key, shapes) -> list:
        d = self.env.get(key)
        if d is None:
            shape0 = shapes[0]
            if any(s != shape0 for s in shapes[1:]):
                raise Unsupported(f"{self.op}: a tensor not derived from the input changes shape with it")
            d = list(shape0)
            self.env[key] = d
        return d

    def tensor(self, name: str) -> list | None:
        self.consumed.add(name)
        key = self.op.keys.get(name)
        if key is None:
            return None
        return self._dims(key, self.op.shapes[name])

    def tensors(self, name: str) -> list[list]:
        self.consumed.add(name)
        keys = self.op.keys.get(name)
        if keys is None:
            return []
        shapes = self.op.shapes[name]
        out = []
        for j, key in enumerate(keys):
            if key is None:
                out.append(None)
            else:
                out.append(self._dims(key, [s[j] for s in shapes]))
        return out

    def all_tensor_inputs(self) -> list[tuple[str, list, list]]:
        """``(name, dims, per-trace shapes)`` for every tensor argument, lists flattened."""
        out = []
        for name, key in self.op.keys.items():
            self.consumed.add(name)
            shapes = self.op.shapes[name]
            if isinstance(key, list):
                for j, k in enumerate(key):
                    if k is not None:
                        out.append((name, self._dims(k, [s[j] for s in shapes]), [s[j] for s in shapes]))
            else:
                out.append((name, self._dims(key, shapes), shapes))
        return out

    # arguments
    def raw(self, name: str):
        """An argument that must not change with the input size."""
        self.consumed.add(name)
        if name in self.op.varying:
            raise Unsupported(f"{self.op}: argument {name!r} changes with the input size")
        return self.op.values[0].get(name)

    def int(self, name: str) -> Dim:
        self.consumed.add(name)
        vals = [v.get(name) for v in self.op.values]
        if vals[0] is None:
            return None
        if isinstance(vals[0], (list, tuple)):
            if len(vals[0]) != 1:
                raise Unsupported(f"{self.op}: argument {name!r} is a list")
            vals = [v[0] for v in vals]
        return self._resolve(name, vals, None, None)

    def ints(self, name: str, n: int | None = None) -> list | None:
        """An int-list argument (a single int is repeated to ``n`` entries)."""
        self.consumed.add(name)
        vals = [v.get(name) for v in self.op.values]
        if vals[0] is None:
            return None
        lists = [list(v) if isinstance(v, (list, tuple)) else [v] for v in vals]
        length = len(lists[0])
        if any(len(v) != length for v in lists[1:]):
            raise Unsupported(f"{self.op}: the length of argument {name!r} changes with the input size")
        out = [self._resolve(name, [v[j] for v in lists], j, length) for j in range(length)]
        if n is not None and length == 1 and n > 1:
            out = out * n
        return out

    def _resolve(self, name: str, vals: list, j: int | None, length: int | None) -> Dim:
        if all(v == vals[0] for v in vals[1:]):
            v = vals[0]
            if isinstance(v, bool) or not isinstance(v, int):
                return v
            if name not in _NOT_SIZES:
                self._check_ambiguous(name, v, j, length)
            return v
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            raise Unsupported(f"{self.op}: argument {name!r} changes with the input size ({vals})")
        target = tuple(vals)
        matches = []
        for _name, dims, shapes in self._inputs_for_binding():
            rank = len(shapes[0])
            natural = set()
            if j is not None:
                natural = {j, rank - length + j}
            for p in range(rank):
                if all(len(s) == rank and s[p] == v for s, v in zip(shapes, target)):
                    matches.append((0 if p in natural else 1, dims[p]))
        if matches:
            matches.sort(key=lambda m: m[0])
            chosen = matches[0][1]
            for _, other in matches[1:]:
                if other is chosen or not _is_arr(other) or not _is_arr(chosen):
                    continue
                valid = self.state.valid
                if not np.array_equal(other[valid], chosen[valid]):
                    self.state.ambiguities.append(
                        Ambiguity(chosen - other, (0,), f"{self.op}: {name} could follow two dimensions", self.op.index)
                    )
                    break
            return chosen
        entries = self.sig.get(target)
        if entries:
            chosen = entries[-1]  # the most recent tensor with these dims
            valid = self.state.valid
            for other in entries[:-1]:
                if not np.array_equal(other[valid], chosen[valid]):
                    self.state.ambiguities.append(
                        Ambiguity(chosen - other, (0,), f"{self.op}: {name} matches dims of two tensors", self.op.index)
                    )
                    break
            return chosen
        raise Unsupported(
            f"{self.op}: argument {name!r} changes with the input size ({', '.join(map(str, vals))})"
            " but matches no tensor dimension"
        )

    def _inputs_for_binding(self):
        out = []
        for name, key in self.op.keys.items():
            shapes = self.op.shapes[name]
            if isinstance(key, list):
                for j, k in enumerate(key):
                    if k is not None:
                        out.append((name, self._dims(k, [s[j] for s in shapes]), [s[j] for s in shapes]))
            else:
                out.append((name, self._dims(key, shapes), shapes))
        return out

    def _check_ambiguous(self, name: str, v: int, j, length) -> None:
        """A constant argument equal to an input-derived dimension that did not vary in the traces."""
        for _name, dims, shapes in self._inputs_for_binding():
            rank = len(shapes[0])
            positions = range(rank) if j is None else {j, rank - length + j}
            for p in positions:
                if 0 <= p < rank and _is_arr(dims[p]) and all(s[p] == v for s in shapes):
                    arr = dims[p]
                    if np.any(arr[self.state.valid] != v):
                        self.state.ambiguities.append(
                            Ambiguity(arr, (v,), f"{self.op}: {name}={v} equals an input dimension", self.op.index)
                        )
                        return

    # validity
    def check(self, cond, reason: Callable[[int], str] | str) -> None:
        state = self.state
        if isinstance(cond, (bool, np.bool_)):
            if cond:
                return
            raise Unsupported(f"{self.op}: modelled as failing at every size, yet it ran")
        if id(cond) in state.applied:
            return
        state.applied.add(id(cond))
        state.keep.append(cond)
        if not cond[state.trace_ix].all():
            raise Unsupported(f"{self.op}: modelled as failing at a size where it ran")
        newly = state.valid & ~cond
        if not newly.any():
            return
        state.first_bad[newly] = self.op.index
        state.failures.setdefault(self.op.index, []).append((cond, reason))
        state.valid &= cond

    def positive(self, dims) -> None:
        """Mark arrays just checked to be at least 1 wherever the candidate is still valid."""
        for d in dims:
            if _is_arr(d):
                self.state.positive.add(id(d))
                self.state.keep.append(d)

    def finish(self, outs: list) -> None:
        op = self.op
        for name in op.varying:
            if name not in self.consumed:
                raise Unsupported(
                    f"{op}: argument {name!r} changes with the input size in a way archprobe cannot follow"
                )
        if len(outs) != len(op.out_shapes[0]):
            raise Unsupported(f"{op}: the rule gives {len(outs)} outputs, the trace has {len(op.out_shapes[0])}")
        tix = self.state.trace_ix
        for j, dims in enumerate(outs):
            traced0 = op.out_shapes[0][j]
            if traced0 is None:
                continue
            if dims is None:
                raise Unsupported(f"{op}: no rule for output {j}")
            for t, traced in enumerate(s[j] for s in op.out_shapes):
                if len(dims) != len(traced):
                    raise Unsupported(f"{op}: replayed rank {len(dims)} but traced {len(traced)}")
                for p, d in enumerate(dims):
                    got = int(d[tix[t]]) if _is_arr(d) else d
                    if got != traced[p]:
                        raise Unsupported(
                            f"{op}: replayed shape disagrees with the trace at "
                            f"{'x'.join(map(str, self.program.sizes[t]))} (dim {p}: {got} vs {traced[p]})"
                        )
            key = (op.index, j)
            self.env[key] = list(dims)
            _register(self.sig, key, dims, [s[j] for s in op.out_shapes])


# --- transfer functions -------------------------------------------------------------------------

_RULES: dict[str, Callable[[_Ctx], list]] = {}


def _rule(*names: str):
    def deco(fn):
        for name in names:
            _RULES[name] = fn
        return fn

    return deco


def _norm_dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


def _broadcast(dim_lists: list[list]) -> tuple[list, Any]:
    """Broadcast dims (right-aligned); returns (dims, ok)."""
    rank = max(len(d) for d in dim_lists)
    out = []
    ok: Any = True
    for p in range(rank):
        ds = [d[len(d) - rank + p] for d in dim_lists if len(d) - rank + p >= 0]
        first = ds[0]
        if all(x is first for x in ds[1:]):
            out.append(first)
            continue
        if not any(_is_arr(x) for x in ds):
            non1 = [x for x in ds if x != 1]
            res = non1[0] if non1 else 1
            if any(x != res for x in non1):
                ok = False
            out.append(res)
            continue
        res: Dim = 1
        for x in ds:
            res = _where(_eq(x, 1), res, x)
        for x in ds:
            ok = _and(ok, (x == 1) | (x == res))
        out.append(res)
    return out, ok


def _shape_broadcast(shapes: list[tuple]) -> tuple | None:
    rank = max(len(s) for s in shapes)
    out = []
    for p in range(rank):
        ds = [s[len(s) - rank + p] for s in shapes if len(s) - rank + p >= 0]
        non1 = {d for d in ds if d != 1}
        if len(non1) > 1:
            return None
        out.append(non1.pop() if non1 else 1)
    return tuple(out)


def _generic(ctx: _Ctx) -> list:
    """Ops without an entry: broadcasting, or dims following the same input dim, or constant."""
    op = ctx.op
    inputs = ctx.all_tensor_inputs()
    outs = []
    n_traces = len(op.out_shapes)
    for j in range(len(op.out_shapes[0])):
        traced = [op.out_shapes[t][j] for t in range(n_traces)]
        if traced[0] is None:
            outs.append(None)
            continue
        if inputs:
            bshapes = [_shape_broadcast([shapes[t] for _, _, shapes in inputs]) for t in range(n_traces)]
            if all(b is not None and b == tr for b, tr in zip(bshapes, traced)):
                if len(inputs) == 1:
                    outs.append(list(inputs[0][1]))
                    continue
                dims, ok = _broadcast([d for _, d, _ in inputs])
                alias = op.aliases.get(j)
                if alias is not None:
                    self_dims = ctx.tensor(alias)
                    for a, b in zip(dims, self_dims):
                        ok = _and(ok, _eq(a, b))
                shapes_text = [d for _, d, _ in inputs]
                ctx.check(ok, lambda i, s=shapes_text: "operands disagree: " + " vs ".join(_fmt(d, i) for d in s))
                outs.append(dims)
                continue
        # same position as the first input of the same rank, else constant
        rank = len(traced[0])
        base = next((x for x in inputs if len(x[2][0]) == rank), None)
        dims = []
        for p in range(rank):
            values = [tr[p] for tr in traced]
            if base is not None and all(s[p] == v for s, v in zip(base[2], values)):
                d = base[1][p]
                if _is_arr(d) and len(set(values)) == 1 and np.any(d[ctx.state.valid] != values[0]):
                    ctx.state.ambiguities.append(
                        Ambiguity(d, (values[0],), f"{op}: output dim {p} follows its input or is constant", op.index)
                    )
                dims.append(d)
            elif len(set(values)) == 1:
                dims.append(values[0])
            else:
                raise Unsupported(f"{op}: no rule explains how its output shape follows the input size")
        outs.append(dims)
    return outs


# convolution


def _key(v):
    if _is_arr(v):
        return ("#", id(v))
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    return v


def _memo(ctx: _Ctx, key, compute):
    """The same arithmetic on the same arrays gives the same array objects (so later
    agreement checks in ``cat``/``add`` are identity checks, and validity is applied once)."""
    memo = ctx.state.memo
    k = _key(key)
    hit = memo.get(k)
    if hit is None:
        hit = compute()
        memo[k] = hit
        ctx.state.keep.append(key)
    return hit


def _window(ctx: _Ctx, n, k, s, pad, d, ceil_mode: bool, transposed: bool, output_padding=0):
    """One spatial dimension of a convolution or pool: (out, ok)."""
    if (
        not transposed
        and _is_arr(n)
        and id(n) in ctx.state.positive
        and not any(_is_arr(v) for v in (k, s, pad, d))
        and s == 1
        and 2 * pad == d * (k - 1)
    ):
        return n, True  # "same" window: the size passes through unchanged
    if transposed:
        o = (n - 1) * s - 2 * pad + d * (k - 1) + output_padding + 1
        return o, o >= 1
    o = _pool_out(n, k, pad, s, d, ceil_mode)
    return o, o >= 1


@_rule("convolution")
def _convolution(ctx: _Ctx) -> list:
    x = ctx.tensor("input")
    w = ctx.tensor("weight")
    ctx.tensor("bias")
    nsp = len(w) - 2
    stride = ctx.ints("stride", nsp)
    padding = ctx.ints("padding", nsp)
    dilation = ctx.ints("dilation", nsp)
    transposed = bool(ctx.raw("transposed"))
    output_padding = ctx.ints("output_padding", nsp)
    groups = ctx.int("groups")
    spatial = x[len(x) - nsp:]
    lead = x[: len(x) - nsp - 1]
    kernel = w[2:]

    def compute():
        outs = []
        ok: Any = True
        for p in range(nsp):
            o, good = _window(ctx, spatial[p], kernel[p], stride[p], padding[p], dilation[p], False,
                              transposed, output_padding[p])
            outs.append(o)
            ok = _and(ok, good)
        return outs, ok

    out, ok = _memo(ctx, ("conv", spatial, kernel, stride, padding, dilation, transposed, output_padding), compute)
    channels = w[1] * groups if transposed else w[0]
    ctx.check(ok, lambda i: f"output would be {_fmt(out, i, clip=True)}")
    ctx.positive(out)
    return [[*lead, channels, *out]]


# pooling


def _pool_out(n, k, pad, s, d, ceil_mode: bool):
    o = (n + 2 * pad - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode:
        o = o - _as_int((o - 1) * s >= n + pad)
    return o


def _pool(ctx: _Ctx, nsp: int, with_dilation: bool, n_out: int) -> list:
    x = ctx.tensor("self")
    k = ctx.ints("kernel_size", nsp)
    s = ctx.ints("stride", nsp) or k
    pad = ctx.ints("padding", nsp)
    dil = ctx.ints("dilation", nsp) if with_dilation else [1] * nsp
    ceil_mode = bool(ctx.raw("ceil_mode"))
    for name in ("count_include_pad", "divisor_override"):
        if name in ctx.op.values[0]:
            ctx.raw(name)
    spatial = x[len(x) - nsp:]
    lead = x[: len(x) - nsp]

    def compute():
        outs = []
        ok: Any = True
        for p in range(nsp):
            n = spatial[p]
            ok = _and(ok, k[p] > 0)
            ok = _and(ok, s[p] > 0)
            ok = _and(ok, k[p] // 2 >= pad[p])
            ok = _and(ok, pad[p] <= ((k[p] - 1) * dil[p] + 1) // 2)
            o, good = _window(ctx, n, k[p], s[p], pad[p], dil[p], ceil_mode, False)
            if good is not True:
                good = _and(n != 0, good)
            ok = _and(ok, good)
            outs.append(o)
        for c in lead[1:]:
            ok = _and(ok, c != 0)
        return outs, ok

    out, ok = _memo(ctx, ("pool", spatial, lead[1:], k, s, pad, dil, ceil_mode), compute)
    ctx.check(ok, lambda i: f"output would be {_fmt(out, i, clip=True)}")
    ctx.positive(out)
    return [[*lead, *out] for _ in range(n_out)]


for _nsp in (1, 2, 3):
    _rule(f"max_pool{_nsp}d_with_indices")(
        lambda ctx, _n=_nsp: _pool(ctx, _n, True, 2)
    )
    _rule(f"max_pool{_nsp}d")(lambda ctx, _n=_nsp: _pool(ctx, _n, True, 1))
    _rule(f"avg_pool{_nsp}d")(lambda ctx, _n=_nsp: _pool(ctx, _n, False, 1))


def _adaptive(ctx: _Ctx, nsp: int, n_out: int) -> list:
    x = ctx.tensor("self")
    size = ctx.ints("output_size", nsp)
    lead = x[: len(x) - nsp]
    ok: Any = True
    for d in x[1:] if len(x) == nsp + 2 else x:
        ok = _and(ok, d >= 1)
    spatial = x[len(x) - nsp:]
    ctx.check(ok, lambda i: f"input is empty ({_fmt(spatial, i)})")
    return [[*lead, *size] for _ in range(n_out)]


for _nsp in (1, 2, 3):
    _rule(f"_adaptive_avg_pool{_nsp}d", f"adaptive_avg_pool{_nsp}d")(
        lambda ctx, _n=_nsp: _adaptive(ctx, _n, 1)
    )
    _rule(f"adaptive_max_pool{_nsp}d")(lambda ctx, _n=_nsp: _adaptive(ctx, _n, 2))


# reductions


def _reduce(ctx: _Ctx, n_out: int = 1, dim_name: str = "dim") -> list:
    x = ctx.tensor("self")
    rank = len(x)
    dims = ctx.raw(dim_name) if dim_name in ctx.op.values[0] else None
    keepdim = bool(ctx.raw("keepdim")) if "keepdim" in ctx.op.values[0] else False
    for name in ctx.op.values[0]:
        if name not in (dim_name, "self", "keepdim"):
            ctx.raw(name) if name not in ctx.op.keys else ctx.tensor(name)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        reduced = set(range(rank))
    elif isinstance(dims, int):
        reduced = {_norm_dim(dims, rank)} if rank else set()
    else:
        reduced = {_norm_dim(d, rank) for d in dims}
    out = [(1 if keepdim else None) if p in reduced else x[p] for p in range(rank)]
    out = [d for d in out if d is not None]
    return [list(out) for _ in range(n_out)]


for _name in ("mean", "sum", "amax", "amin", "any", "all", "logsumexp", "nansum", "prod", "argmax", "argmin",
              "linalg_vector_norm", "norm"):
    _rule(_name)(_reduce)
for _name in ("max.dim", "min.dim", "var_mean", "std_mean", "aminmax", "mode", "median.dim",
              "nanmedian.dim", "kthvalue"):
    _rule(_name)(lambda ctx: _reduce(ctx, 2))
_rule("var", "std")(_reduce)


# shape ops


def _view(ctx: _Ctx, size_name: str = "size") -> list:
    x = ctx.tensor("self")
    for name in ("stride", "storage_offset"):
        if name in ctx.op.values[0]:
            ctx.consumed.add(name)
    ctx.consumed.add(size_name)
    vals = [v[size_name] for v in ctx.op.values]
    length = len(vals[0])
    if any(len(v) != length for v in vals[1:]):
        raise Unsupported(f"{ctx.op}: the rank of the view changes with the input size")
    numel = _prod(x)
    # torch.flatten: explicit sizes merging a run of the input's dims; the merged entry follows
    # the input. (With a -1, as in view(-1, 400), the literal entries are the constraint.)
    run = None
    if not any(e == -1 for v in vals for e in v):
        run = _flatten_run(ctx.op.shapes["self"], [o[0] for o in ctx.op.out_shapes])
    if run is not None:
        a, m = run
        return [[*x[:a], _prod(x[a:a + m]), *x[a + m:]]]
    out: list = []
    infer = None
    for j in range(length):
        entry = [v[j] for v in vals]
        if any(e == -1 for e in entry):
            if not all(e == -1 for e in entry) or infer is not None:
                raise Unsupported(f"{ctx.op}: cannot replay the view's -1")
            infer = j
            out.append(None)
        elif all(e == entry[0] for e in entry[1:]):
            out.append(ctx._resolve(size_name, entry, j, length))
        else:
            try:
                out.append(ctx._resolve(size_name, entry, j, length))
            except Unsupported:
                if infer is not None:
                    raise
                infer = j
                out.append(None)
    fixed = _prod([d for d in out if d is not None])
    if infer is not None:
        safe = _where(_eq(fixed, 0), 1, fixed)
        out[infer] = numel // safe
        ok = _and(fixed != 0, numel % safe == 0)
    else:
        ok = _eq(fixed, numel)
    if ctx.op.name != "as_strided":
        ctx.check(ok, lambda i: f"cannot view {_fmt(x, i)} as "
                  + "x".join("-1" if j == infer else str(_at(d, i)) for j, d in enumerate(out)))
    return [out]


def _flatten_run(in_shapes: list, out_shapes: list) -> tuple[int, int] | None:
    """``(a, m)`` if every traced output is its input with dims ``a..a+m-1`` merged into one
    (the flatten pattern, ``m >= 1``), else ``None``."""
    r_in, r_out = len(in_shapes[0]), len(out_shapes[0])
    m = r_in - r_out + 1
    if m < 1 or r_out == 0:
        return None
    for a in range(r_out):
        ok = True
        for src, dst in zip(in_shapes, out_shapes):
            if len(src) != r_in or len(dst) != r_out:
                return None
            merged = 1
            for v in src[a:a + m]:
                merged *= v
            if tuple(dst[:a]) != tuple(src[:a]) or dst[a] != merged or tuple(dst[a + 1:]) != tuple(src[a + m:]):
                ok = False
                break
        if ok:
            return a, m
    return None


_rule("view", "_unsafe_view", "view_copy", "_reshape_alias", "_reshape_alias_copy", "as_strided")(_view)
_rule("reshape")(lambda ctx: _view(ctx, "shape"))


@_rule("expand", "expand_copy")
def _expand(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    size = ctx.ints("size")
    if "implicit" in ctx.op.values[0]:
        ctx.raw("implicit")
    lead = len(size) - len(x)
    out = []
    ok: Any = True
    for j, target in enumerate(size):
        p = j - lead
        if p < 0:
            out.append(target)
            continue
        if not _is_arr(target) and target == -1:
            out.append(x[p])
            continue
        ok = _and(ok, (x[p] == 1) | (x[p] == target))
        out.append(target)
    ctx.check(ok, lambda i: f"cannot expand {_fmt(x, i)} to {_fmt(out, i)}")
    return [out]


@_rule("permute", "permute_copy")
def _permute(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    order = [_norm_dim(d, len(x)) for d in ctx.raw("dims")]
    return [[x[d] for d in order]]


@_rule("t", "t_copy", "numpy_T")
def _t(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    return [list(reversed(x))] if len(x) == 2 else [list(x)]


@_rule("transpose", "transpose_copy", "swapaxes", "swapdims")
def _transpose(ctx: _Ctx) -> list:
    x = list(ctx.tensor("self"))
    names = [n for n in ctx.op.values[0] if n != "self"]
    a, b = (_norm_dim(ctx.raw(n), len(x)) if len(x) else 0 for n in names[:2])
    if x:
        x[a], x[b] = x[b], x[a]
    return [x]


@_rule("unsqueeze", "unsqueeze_copy")
def _unsqueeze(ctx: _Ctx) -> list:
    x = list(ctx.tensor("self"))
    d = ctx.raw("dim")
    d = d + len(x) + 1 if d < 0 else d
    x.insert(d, 1)
    return [x]


@_rule("squeeze", "squeeze_copy")
def _squeeze(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    rank = len(x)
    if "dim" in ctx.op.values[0]:
        dims = ctx.raw("dim")
        dims = [dims] if isinstance(dims, int) else list(dims)
    else:
        dims = list(range(rank))
    dims = {_norm_dim(d, rank) for d in dims} if rank else set()
    traced = ctx.op.out_shapes[0][0]
    shape0 = ctx.op.shapes["self"][0]
    removed = {p for p in dims if shape0[p] == 1}
    for p in removed:
        if _is_arr(x[p]) and np.any(x[p][ctx.state.valid] != 1):
            raise Unsupported(f"{ctx.op}: squeezes a dimension that is 1 only at some sizes")
    for p in dims - removed:
        if _is_arr(x[p]) and np.any(x[p][ctx.state.valid] == 1):
            raise Unsupported(f"{ctx.op}: squeezes a dimension that is 1 only at some sizes")
    out = [d for p, d in enumerate(x) if p not in removed]
    if len(out) != len(traced):
        raise Unsupported(f"{ctx.op}: cannot replay the squeeze")
    return [out]


@_rule("flatten")
def _flatten(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    rank = len(x)
    if rank == 0:
        return [[1]]
    a = _norm_dim(ctx.raw("start_dim"), rank)
    b = _norm_dim(ctx.raw("end_dim"), rank)
    return [[*x[:a], _prod(x[a:b + 1]), *x[b + 1:]]]


@_rule("cat")
def _cat(ctx: _Ctx) -> list:
    tensors = ctx.tensors("tensors")
    shapes0 = ctx.op.shapes["tensors"][0]
    items = [(d, s) for d, s in zip(tensors, shapes0) if d is not None and s != (0,)]
    if not items:
        return [list(ctx.op.out_shapes[0][0])]
    first = items[0][0]
    rank = len(first)
    d = _norm_dim(ctx.raw("dim"), rank)
    total: Dim = 0
    ok: Any = True
    bad = []
    for dims, _ in items:
        if len(dims) != rank:
            raise Unsupported(f"{ctx.op}: inputs of different ranks")
        total = total + dims[d]
        for p in range(rank):
            if p != d and dims[p] is not first[p]:
                cond = _eq(dims[p], first[p])
                if cond is not True:
                    bad.append(dims)
                ok = _and(ok, cond)
    out = list(first)
    out[d] = total

    def reason(i):
        for dims in bad:
            if any(_at(dims[p], i) != _at(first[p], i) for p in range(rank) if p != d):
                return f"inputs disagree: {_fmt(first, i)} vs {_fmt(dims, i)}"
        return "inputs disagree"

    ctx.check(ok, reason)
    return [out]


@_rule("stack")
def _stack(ctx: _Ctx) -> list:
    tensors = [t for t in ctx.tensors("tensors") if t is not None]
    first = tensors[0]
    d = ctx.raw("dim")
    d = d + len(first) + 1 if d < 0 else d
    ok: Any = True
    for dims in tensors[1:]:
        for a, b in zip(dims, first):
            ok = _and(ok, _eq(a, b))
    ctx.check(ok, lambda i: "inputs disagree: " + " vs ".join(_fmt(t, i) for t in tensors))
    out = list(first)
    out.insert(d, len(tensors))
    return [out]


def _slice_len(n, start, end, step):
    if start is None:
        start = 0
    if end is None:
        end = n
    if not _is_arr(start):
        start = _min(start, n) if start >= 0 else _max(start + n, 0)
    else:
        start = np.clip(np.where(start < 0, start + n, start), 0, n)
    if not _is_arr(end):
        end = _min(end, n) if end >= 0 else _max(end + n, 0)
    else:
        end = np.where(end < 0, end + n, end)
        end = np.minimum(np.maximum(end, 0), n)
    end = _max(end, start)
    return (end - start + step - 1) // step


@_rule("slice", "slice_copy")
def _slice(ctx: _Ctx) -> list:
    x = list(ctx.tensor("self"))
    d = _norm_dim(ctx.raw("dim"), len(x))
    start = ctx.int("start")
    end = ctx.int("end")
    step = ctx.raw("step") or 1
    x[d] = _slice_len(x[d], start, end, step)
    return [x]


@_rule("narrow", "narrow_copy")
def _narrow(ctx: _Ctx) -> list:
    x = list(ctx.tensor("self"))
    d = _norm_dim(ctx.raw("dim"), len(x))
    start = ctx.int("start")
    length = ctx.int("length")
    n = x[d]
    start_eff = start + n if (not _is_arr(start) and start < 0) else start
    ctx.check(_and(start_eff >= 0, start_eff + length <= n), lambda i: f"narrow runs past {_at(n, i)}")
    x[d] = length
    return [x]


@_rule("select", "select_copy")
def _select(ctx: _Ctx) -> list:
    x = list(ctx.tensor("self"))
    d = _norm_dim(ctx.raw("dim"), len(x))
    index = ctx.int("index")
    n = x[d]
    ctx.check(_and(index < n, index >= -n), lambda i: f"index {_at(index, i)} out of range {_at(n, i)}")
    del x[d]
    return [x]


@_rule("split", "split_copy", "unsafe_split")
def _split(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    d = _norm_dim(ctx.raw("dim"), len(x))
    size = ctx.raw("split_size")
    n = x[d]
    if _is_arr(n):
        raise Unsupported(f"{ctx.op}: splits a dimension that changes with the input size")
    outs = []
    for j in range(len(ctx.op.out_shapes[0])):
        o = list(x)
        o[d] = min(size, n - j * size)
        outs.append(o)
    return outs


@_rule("split_with_sizes", "split_with_sizes_copy", "unsafe_split_with_sizes")
def _split_sizes(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    d = _norm_dim(ctx.raw("dim"), len(x))
    sizes = ctx.ints("split_sizes")
    ctx.check(_eq(_sum(sizes), x[d]), lambda i: f"split sizes do not add up to {_at(x[d], i)}")
    outs = []
    for s in sizes:
        o = list(x)
        o[d] = s
        outs.append(o)
    return outs


def _sum(values):
    out: Dim = 0
    for v in values:
        out = out + v
    return out


@_rule("unbind", "unbind_copy")
def _unbind(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    d = _norm_dim(ctx.raw("dim"), len(x))
    if _is_arr(x[d]):
        raise Unsupported(f"{ctx.op}: unbinds a dimension that changes with the input size")
    o = [v for p, v in enumerate(x) if p != d]
    return [list(o) for _ in range(len(ctx.op.out_shapes[0]))]


@_rule("index_select")
def _index_select(ctx: _Ctx) -> list:
    x = list(ctx.tensor("self"))
    index = ctx.tensor("index")
    d = _norm_dim(ctx.raw("dim"), len(x))
    if x:
        x[d] = index[0] if index else 1
    return [x]


# matrix products


def _inner(ctx, a, b, i_a, i_b) -> None:
    ka, kb = a[i_a], b[i_b]
    ctx.check(_eq(ka, kb), lambda i: f"gets {_at(ka, i)} input features, expects {_at(kb, i)}")


@_rule("mm")
def _mm(ctx: _Ctx) -> list:
    a = ctx.tensor("self")
    b = ctx.tensor("mat2")
    _inner(ctx, a, b, 1, 0)
    return [[a[0], b[1]]]


@_rule("addmm")
def _addmm(ctx: _Ctx) -> list:
    bias = ctx.tensor("self")
    a = ctx.tensor("mat1")
    b = ctx.tensor("mat2")
    ctx.raw("beta")
    ctx.raw("alpha")
    _inner(ctx, a, b, 1, 0)
    out = [a[0], b[1]]
    _, ok = _broadcast([out, bias])
    ctx.check(ok, lambda i: f"bias {_fmt(bias, i)} does not fit {_fmt(out, i)}")
    return [out]


@_rule("bmm")
def _bmm(ctx: _Ctx) -> list:
    a = ctx.tensor("self")
    b = ctx.tensor("mat2")
    ctx.check(_eq(a[0], b[0]), lambda i: "batch sizes disagree")
    _inner(ctx, a, b, 2, 1)
    return [[a[0], a[1], b[2]]]


@_rule("baddbmm")
def _baddbmm(ctx: _Ctx) -> list:
    bias = ctx.tensor("self")
    a = ctx.tensor("batch1")
    b = ctx.tensor("batch2")
    ctx.raw("beta")
    ctx.raw("alpha")
    ctx.check(_eq(a[0], b[0]), lambda i: "batch sizes disagree")
    _inner(ctx, a, b, 2, 1)
    out = [a[0], a[1], b[2]]
    _, ok = _broadcast([out, bias])
    ctx.check(ok, lambda i: f"bias {_fmt(bias, i)} does not fit {_fmt(out, i)}")
    return [out]


@_rule("mv")
def _mv(ctx: _Ctx) -> list:
    a = ctx.tensor("self")
    v = ctx.tensor("vec")
    _inner(ctx, a, v, 1, 0)
    return [[a[0]]]


@_rule("addmv")
def _addmv(ctx: _Ctx) -> list:
    ctx.tensor("self")
    a = ctx.tensor("mat")
    v = ctx.tensor("vec")
    ctx.raw("beta")
    ctx.raw("alpha")
    _inner(ctx, a, v, 1, 0)
    return [[a[0]]]


# normalisation


def _batch_norm(ctx: _Ctx) -> list:
    x = ctx.tensor("input")
    outs_n = len(ctx.op.out_shapes[0])
    training = False
    for name in list(ctx.op.values[0]):
        if name == "input":
            continue
        if name in ctx.op.keys:
            ctx.tensor(name)
        else:
            value = ctx.raw(name)
            if name == "training":
                training = bool(value)
    if training:
        per_channel = _prod([x[0], *x[2:]]) if len(x) > 1 else x[0]
        ctx.check(
            per_channel > 1,
            lambda i: f"gets {_at(per_channel, i)} value per channel in training"
            " (batch x spatial size must be more than 1)",
        )
    outs = [list(x)]
    for j in range(1, outs_n):
        shape = ctx.op.out_shapes[0][j]
        outs.append(list(shape) if shape is not None else None)
    return outs


for _name in ("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
              "_native_batch_norm_legit_functional", "cudnn_batch_norm", "miopen_batch_norm",
              "_batch_norm_with_update", "_batch_norm_no_update", "_batch_norm_with_update_functional"):
    _rule(_name)(_batch_norm)


@_rule("native_group_norm")
def _group_norm(ctx: _Ctx) -> list:
    x = ctx.tensor("input")
    ctx.tensor("weight")
    ctx.tensor("bias")
    ctx.raw("eps")
    n = ctx.int("N")
    c = ctx.int("C")
    groups = ctx.raw("group")
    ctx.consumed.add("HxW")
    hxw = _prod(x[2:])
    size_prods = (n * c // groups) * hxw
    ctx.check(size_prods != 1, lambda i: "gets 1 value per group (batch x channels/groups x spatial must be more than 1)")
    return [list(x), [n, groups], [n, groups]]


@_rule("native_layer_norm")
def _layer_norm(ctx: _Ctx) -> list:
    x = ctx.tensor("input")
    shape = ctx.ints("normalized_shape")
    ctx.tensor("weight")
    ctx.tensor("bias")
    ctx.raw("eps")
    k = len(shape)
    ok: Any = True
    for a, b in zip(x[len(x) - k:], shape):
        ok = _and(ok, _eq(a, b))
    ctx.check(ok, lambda i: f"normalised shape {_fmt(shape, i)} does not match {_fmt(x, i)}")
    stats = [*x[: len(x) - k], *([1] * k)]
    return [list(x), stats, list(stats)]


# resampling and padding


def _upsample(ctx: _Ctx) -> list:
    """``F.interpolate``: with scale factors the output is ``floor(in * scale)`` (as
    ``F.interpolate`` computes it); otherwise the output size (bound to a tensor if it varies)."""
    x = ctx.tensor("input") if "input" in ctx.op.keys else ctx.tensor("self")
    name = ctx.op.name
    nsp = 3 if "3d" in name else 1 if "1d" in name else 2
    values = ctx.op.values[0]
    if "align_corners" in values:
        ctx.raw("align_corners")
    if "scale_factors" in values:
        scales = ctx.raw("scale_factors")
    else:
        scales = [ctx.raw(n) for n in values if n.startswith("scales")] or None
        if scales is not None and any(v is None for v in scales):
            scales = None
    spatial = x[len(x) - nsp:]
    if scales is not None:
        ctx.consumed.add("output_size")
        if len(scales) == 1:
            scales = list(scales) * nsp
        size = []
        for n, factor in zip(spatial, scales):
            if _is_arr(n):
                size.append(np.floor(n.astype(np.float64) * float(factor)).astype(np.int64))
            else:
                size.append(int(np.floor(float(n) * float(factor))))
    else:
        size = ctx.ints("output_size", nsp)
        if size is None:
            raise Unsupported(f"{ctx.op}: neither an output size nor scale factors")
    ok: Any = True
    for n, o in zip(spatial, size):
        ok = _and(ok, _and(n >= 1, o >= 1))
    ctx.check(ok, lambda i: f"output would be {_fmt(size, i, clip=True)}")
    return [[*x[: len(x) - nsp], *size]]


for _name in ("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
              "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d",
              "upsample_bilinear2d", "upsample_bicubic2d", "upsample_trilinear3d", "_upsample_bilinear2d_aa",
              "_upsample_bicubic2d_aa"):
    _rule(_name)(_upsample)


@_rule("constant_pad_nd")
def _constant_pad(ctx: _Ctx) -> list:
    x = list(ctx.tensor("self"))
    pad = ctx.ints("pad")
    ctx.raw("value")
    ok: Any = True
    for j in range(len(pad) // 2):
        p = len(x) - 1 - j
        x[p] = x[p] + pad[2 * j] + pad[2 * j + 1]
        ok = _and(ok, x[p] >= 0)
    ctx.check(ok, lambda i: f"output would be {_fmt(x, i, clip=True)}")
    return [x]


def _pad(ctx: _Ctx, reflect: bool) -> list:
    x = list(ctx.tensor("self"))
    pad = ctx.ints("padding")
    ok: Any = True
    for j in range(len(pad) // 2):
        p = len(x) - 1 - j
        n = x[p]
        left, right = pad[2 * j], pad[2 * j + 1]
        if reflect:
            ok = _and(ok, _and(left < n, right < n))
        x[p] = n + left + right
        ok = _and(ok, _and(n >= 1, x[p] >= 1))
    ctx.check(ok, lambda i: "padding is too large for the input" if reflect else f"output would be {_fmt(x, i, clip=True)}")
    return [x]


for _nsp in (1, 2, 3):
    _rule(f"reflection_pad{_nsp}d")(lambda ctx: _pad(ctx, True))
    _rule(f"replication_pad{_nsp}d")(lambda ctx: _pad(ctx, False))


@_rule("pixel_shuffle")
def _pixel_shuffle(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    r = ctx.raw("upscale_factor")
    return [[*x[:-3], x[-3] // (r * r), x[-2] * r, x[-1] * r]]


@_rule("pixel_unshuffle")
def _pixel_unshuffle(ctx: _Ctx) -> list:
    x = ctx.tensor("self")
    r = ctx.raw("downscale_factor")
    ctx.check(_and(x[-2] % r == 0, x[-1] % r == 0), lambda i: f"{_fmt(x[-2:], i)} is not divisible by {r}")
    return [[*x[:-3], x[-3] * r * r, x[-2] // r, x[-1] // r]]


# factories


def _factory(ctx: _Ctx) -> list:
    for name in list(ctx.op.values[0]):
        if name in ctx.op.keys:
            ctx.tensor(name)
        elif name == "stride":
            ctx.consumed.add(name)
        elif name != "size":
            ctx.raw(name)
    return [ctx.ints("size")]


for _name in ("empty", "zeros", "ones", "full", "empty_strided", "rand", "randn", "new_empty", "new_zeros",
              "new_ones", "new_full", "new_empty_strided", "empty_permuted"):
    _rule(_name)(_factory)


@_rule("arange")
def _arange(ctx: _Ctx) -> list:
    values = ctx.op.values[0]
    start = ctx.int("start") if "start" in values else 0
    end = ctx.int("end")
    step = ctx.int("step") if "step" in values else 1
    for name in values:
        if name not in ("start", "end", "step"):
            ctx.raw(name)
    if not any(_is_arr(v) for v in (start, end, step)):
        return [list(ctx.op.out_shapes[0][0])]
    if any(isinstance(v, float) for v in (start, end, step)):
        raise Unsupported(f"{ctx.op}: floating-point ranges that change with the input size")
    n = (end - start + step - 1) // step if step > 0 else (start - end - step - 1) // (-step)
    return [[_max(n, 0)]]
