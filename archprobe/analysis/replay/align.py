"""Aligning two or more traces of the same model op by op.

Owns :class:`AlignedOp` (one op as seen in every trace: its arguments by schema name, which
tensors it reads, their shapes per trace, the non-tensor arguments that changed between the
traces, its output shapes per trace) and :func:`align`, which builds them. Traces that differ in
structure (a different number of ops, a different op at the same position, a tensor read from
elsewhere) mean the forward's control or data flow depends on the input size: they raise
:class:`Unsupported`, the one error of the whole replay package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from archprobe.analysis.geometry import named_args
from archprobe.analysis.trace import TensorRef, Trace

# The key of the model's input in the replay's environment (outputs are keyed ``(op, output)``,
# tensors from outside the forward ``("ext", op, argument[, position])``).
INPUT = ("input",)


class Unsupported(Exception):
    """The traced arithmetic cannot be replayed over other input sizes."""


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


def _size_text(t: Trace) -> str:
    shape = t.input.shape
    return "x".join(str(s) for s in shape[2:])


def _is_tensor_list(value) -> bool:
    return isinstance(value, (list, tuple)) and any(isinstance(v, TensorRef) for v in value)


def _same_value(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN
    return type(a) is type(b) and a == b
