"""The replay engine: running aligned ops' rules over all candidate sizes.

Owns :class:`Program` (aligned traces, replayed with :meth:`Program.replay`), its result
(:class:`ReplayResult`, with the :class:`Ambiguity` list), the :class:`Context` a rule sees (its
op's input tensors as Dims, its arguments resolved, ``check`` to rule candidates out), the rule
registry (:func:`rule`, and :data:`RULES` to read it) and the generic rule for ops without an entry.

A rule is a function ``Context -> list`` of output Dims lists (``None`` for an output that is not
a tensor). The context checks every rule against the traces themselves: at the traced sizes the
replayed shapes must equal the recorded ones and every op must be valid, else the op raises
:class:`~archprobe.analysis.replay.align.Unsupported`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from archprobe.analysis.replay.align import INPUT, AlignedOp, Unsupported, align
from archprobe.analysis.replay.dims import Dim, at, broadcast, equal, fmt, is_array, logical_and
from archprobe.analysis.trace import Trace


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
    outputs: dict[tuple[int, int], list] = field(default_factory=dict, repr=False)  # with keep_outputs

    def output_shape(self, op: int, i: int, output: int = 0) -> tuple[int, ...]:
        """Output ``output`` of op ``op`` at candidate ``i``, as replayed (``replay(...,
        keep_outputs=True)``; meaningful where the candidate is valid)."""
        return tuple(at(d, i) for d in self.outputs[(op, output)])

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

    def replay(self, heights, widths, *, keep_outputs: bool = False) -> ReplayResult:
        """Replay over candidates ``(heights[i], widths[i])``; ``keep_outputs`` keeps every op's
        replayed output Dims in the result (:meth:`ReplayResult.output_shape`)."""
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
                ctx = Context(self, op, env, sig, state)
                rule_fn = _RULES.get(op.overload) or _RULES.get(op.name) or generic_rule
                outs = rule_fn(ctx)
                ctx.finish(outs)
        outputs = {}
        if keep_outputs:
            outputs = {key: dims for key, dims in env.items() if len(key) == 2 and isinstance(key[0], int)}
        return ReplayResult(
            valid=state.valid[:n_user],
            first_bad=state.first_bad[:n_user],
            ambiguities=state.ambiguities,
            failures=state.failures,
            outputs=outputs,
        )


def _register(sig: dict, key, dims: list, shapes_per_trace: list) -> None:
    """Index input-derived dims by their values across the traces (for binding arguments)."""
    for p, d in enumerate(dims):
        if is_array(d):
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


class Context:
    """What a rule sees: its op's inputs as Dims and its arguments resolved."""

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
        """Tensor argument ``name`` as Dims (``None`` if the argument is not a tensor)."""
        self.consumed.add(name)
        key = self.op.keys.get(name)
        if key is None:
            return None
        return self._dims(key, self.op.shapes[name])

    def tensors(self, name: str) -> list[list]:
        """Tensor-list argument ``name``, one Dims list (or ``None``) per entry."""
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
        """``(name, dims, per-trace shapes)`` for every tensor argument, lists flattened; all of
        them count as consumed."""
        self.consumed.update(self.op.keys)
        return self._inputs_for_binding()

    # arguments
    def raw(self, name: str):
        """An argument that must not change with the input size."""
        self.consumed.add(name)
        if name in self.op.varying:
            raise Unsupported(f"{self.op}: argument {name!r} changes with the input size")
        return self.op.values[0].get(name)

    def int(self, name: str) -> Dim:
        """An int argument, bound to a tensor dimension where it changes with the input size."""
        self.consumed.add(name)
        vals = [v.get(name) for v in self.op.values]
        if vals[0] is None:
            return None
        if isinstance(vals[0], (list, tuple)):
            if len(vals[0]) != 1:
                raise Unsupported(f"{self.op}: argument {name!r} is a list")
            vals = [v[0] for v in vals]
        return self.resolve(name, vals, None, None)

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
        out = [self.resolve(name, [v[j] for v in lists], j, length) for j in range(length)]
        if n is not None and length == 1 and n > 1:
            out = out * n
        return out

    def resolve(self, name: str, vals: list, j: int | None, length: int | None) -> Dim:
        """The Dim behind an integer argument with per-trace values ``vals`` (entry ``j`` of a
        list of ``length``): the value itself where it is constant, else the tensor dimension
        that took the same values in every trace."""
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
                if other is chosen or not is_array(other) or not is_array(chosen):
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

    def _inputs_for_binding(self) -> list[tuple[str, list, list]]:
        """``(name, dims, per-trace shapes)`` for every tensor argument, lists flattened."""
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
                if 0 <= p < rank and is_array(dims[p]) and all(s[p] == v for s in shapes):
                    arr = dims[p]
                    if np.any(arr[self.state.valid] != v):
                        self.state.ambiguities.append(
                            Ambiguity(arr, (v,), f"{self.op}: {name}={v} equals an input dimension", self.op.index)
                        )
                        return

    # validity
    def check(self, cond, reason: Callable[[int], str] | str) -> None:
        """Rule out the candidates where ``cond`` is false; ``reason(i)`` says why for candidate ``i``."""
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
            if is_array(d):
                self.state.positive.add(id(d))
                self.state.keep.append(d)

    def memo(self, key, compute):
        """The same arithmetic on the same arrays gives the same array objects (so later
        agreement checks in ``cat``/``add`` are identity checks, and validity is applied once)."""
        memo = self.state.memo
        k = _memo_key(key)
        hit = memo.get(k)
        if hit is None:
            hit = compute()
            memo[k] = hit
            self.state.keep.append(key)
        return hit

    def finish(self, outs: list) -> None:
        """Check the rule's outputs against the traces and bind them for later ops."""
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
                    got = int(d[tix[t]]) if is_array(d) else d
                    if got != traced[p]:
                        raise Unsupported(
                            f"{op}: replayed shape disagrees with the trace at "
                            f"{'x'.join(map(str, self.program.sizes[t]))} (dim {p}: {got} vs {traced[p]})"
                        )
            key = (op.index, j)
            self.env[key] = list(dims)
            _register(self.sig, key, dims, [s[j] for s in op.out_shapes])


def _memo_key(v):
    if is_array(v):
        return ("#", id(v))
    if isinstance(v, (list, tuple)):
        return tuple(_memo_key(x) for x in v)
    return v


# --- the rule registry --------------------------------------------------------------------------

Rule = Callable[[Context], list]

_RULES: dict[str, Rule] = {}

RULES: Mapping[str, Rule] = MappingProxyType(_RULES)
"""The registered rules by op name (read-only; register with :func:`rule`)."""


def rule(*names: str):
    """Register the decorated function as the rule for aten ops ``names`` (an overload packet,
    ``"max_pool2d_with_indices"``, or one overload, ``"max.dim"``; an overload's entry wins).

    A name that already has a rule raises ``ValueError`` (and none of ``names`` is registered).
    """

    def deco(fn: Rule) -> Rule:
        for name in names:
            if name in _RULES:
                raise ValueError(f"a replay rule for aten.{name} is already registered ({_RULES[name].__qualname__})")
        if len(set(names)) != len(names):
            raise ValueError(f"rule names given twice: {names}")
        for name in names:
            _RULES[name] = fn
        return fn

    return deco


# --- ops without a rule -------------------------------------------------------------------------


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


def generic_rule(ctx: Context) -> list:
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
                dims, ok = broadcast([d for _, d, _ in inputs])
                alias = op.aliases.get(j)
                if alias is not None:
                    self_dims = ctx.tensor(alias)
                    for a, b in zip(dims, self_dims):
                        ok = logical_and(ok, equal(a, b))
                shapes_text = [d for _, d, _ in inputs]
                ctx.check(ok, lambda i, s=shapes_text: "operands disagree: " + " vs ".join(fmt(d, i) for d in s))
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
                if is_array(d) and len(set(values)) == 1 and np.any(d[ctx.state.valid] != values[0]):
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
