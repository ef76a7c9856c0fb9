"""Per-layer trace: every module call with its output shape, parameters, MACs and FLOPs.

Ops are attributed to the innermost module call that ran them, so functional ops inside
``forward`` (``torch.cat``, ``F.max_pool2d``, residual adds) count for the enclosing
module. Each row's numbers are its *own* (ops and parameters not in any child row), so the
rows of a table always sum to the model's totals; folding rows deeper than ``depth`` adds
their numbers to the ancestor at that depth. A module called twice has two rows; its
parameters are counted at its first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archprobe.results import LayerRow, LayerTable

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.probe import Probe


def layer_table(probe: "Probe", *, depth: int | None = None, rf: bool = False) -> LayerTable:
    """The eval-mode per-layer table of the probe's model; ``depth`` folds deeper rows (None: all);
    ``rf`` adds each row's receptive field, effective stride and offset
    (:mod:`archprobe.analysis.receptive`)."""
    from archprobe.analysis.costs import op_cost
    from archprobe.analysis.guarded import traced
    from archprobe.analysis.trace import FORWARD

    t = traced(probe)
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

    fields = _field_columns(t) if rf else {}
    rows = tuple(
        LayerRow(
            type=c.type_name,
            output_shape=c.output_shapes[0] if c.output_shapes else (),
            params=params[c.index],
            macs=macs[c.index],
            flops=flops[c.index],
            model=probe.name,
            path=c.path,
            depth=c.depth,
            output_shapes=tuple(c.output_shapes),
            **fields.get(c.index, {}),
        )
        for c in t.calls
        if c.depth <= limit
    )
    return LayerTable(
        model=probe.name,
        input_shape=probe.shape,
        rows=rows,
        params=sum(p.numel() for p in probe.model.parameters()),
        params_forward=t.params_used,
        macs=sum(r.macs for r in rows),
        flops=sum(r.flops for r in rows),
        unsupported_ops=tuple(unsupported),
        notes=probe.notes,
    )


def _field_columns(t) -> dict[int, dict]:
    """Each call's receptive-field fields of :class:`LayerRow`, by call index."""
    from archprobe.analysis.receptive import GLOBAL, Field, Flat, layer_fields

    columns = {}
    for index, state in layer_fields(t).items():
        field = state.field if isinstance(state, Flat) else state
        if isinstance(field, Field):
            columns[index] = {"receptive_field": field.size, "effective_stride": field.jump,
                              "rf_offset": field.start, "rf_global": False}
        else:
            columns[index] = {"rf_global": True if state is GLOBAL else None}
    return columns
