"""Per-layer trace: every module call with its output shape, parameters, MACs and FLOPs.

Ops are attributed to the innermost module call that ran them, so functional ops inside
``forward`` (``torch.cat``, ``F.max_pool2d``, residual adds) count for the enclosing
module. Each row's numbers are its *own* (ops and parameters not in any child row), so the
rows of a table always sum to the model's totals; folding rows deeper than ``depth`` adds
their numbers to the ancestor at that depth. A module called twice has two rows; its
parameters are counted at its first call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from archprobe.report.columns import column

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from archprobe.zoo.spec import ModelSpec


@dataclass(frozen=True)
class LayerRow:
    layer: str = column("Layer")  # indented by depth, for display
    type: str = column("Type")
    output_shape: tuple[int, ...] = column("Output shape", "shape")
    params: int = column("Params", "count")
    macs: int = column("MACs", "ops")
    flops: int = column("FLOPs", "ops")
    model: str = ""
    path: str = ""
    depth: int = 0
    output_shapes: tuple[tuple[int, ...], ...] = field(default=())


@dataclass(frozen=True)
class LayerTable:
    model: str
    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]
    params: int
    params_forward: int
    macs: int
    flops: int
    unsupported_ops: tuple[str, ...]


def layer_table(
    spec: "ModelSpec",
    *,
    batch_size: int = 1,
    depth: int | None = None,
    model: "nn.Module | None" = None,
) -> LayerTable:
    """The eval-mode per-layer table of ``spec``; ``depth`` folds deeper rows (None: all)."""
    from archprobe.analysis.costs import op_cost
    from archprobe.analysis.counting import traced
    from archprobe.analysis.trace import FORWARD

    model = model if model is not None else spec.build("meta")
    t = traced(spec, model, batch_size)
    n = len(t.calls)
    macs, flops = [0] * n, [0] * n
    params = [c.own_params for c in t.calls]
    unsupported: dict[str, None] = {}
    for op in t.ops:
        if op.phase != FORWARD or op.call < 0:
            continue
        cost = op_cost(op)
        if cost is None:
            unsupported[op.overload] = None
            continue
        macs[op.call] += cost[0]
        flops[op.call] += cost[1]

    limit = depth if depth is not None else max((c.depth for c in t.calls), default=0)
    # Calls are recorded in pre-order, so children come after their parent: walk backwards
    # and push every row deeper than the limit into its parent.
    for call in reversed(t.calls):
        if call.depth > limit and call.parent >= 0:
            macs[call.parent] += macs[call.index]
            flops[call.parent] += flops[call.index]
            params[call.parent] += params[call.index]

    rows = tuple(
        LayerRow(
            layer="  " * c.depth + (c.path.rsplit(".", 1)[-1] if c.path else spec.name),
            type=c.type_name,
            output_shape=c.output_shapes[0] if c.output_shapes else (),
            params=params[c.index],
            macs=macs[c.index],
            flops=flops[c.index],
            model=spec.name,
            path=c.path,
            depth=c.depth,
            output_shapes=tuple(c.output_shapes),
        )
        for c in t.calls
        if c.depth <= limit
    )
    return LayerTable(
        model=spec.name,
        input_shape=(batch_size, *spec.input_shape),
        rows=rows,
        params=sum(p.numel() for p in model.parameters()),
        params_forward=t.params_used,
        macs=sum(r.macs for r in rows),
        flops=sum(r.flops for r in rows),
        unsupported_ops=tuple(unsupported),
    )
