"""A model's MACs and FLOPs broken down by aten operator or by module (fvcore's ``by_operator`` and
``by_module``), from the same count as the totals (:func:`archprobe.analysis.counting.op_costs`):
the rows add up to :class:`archprobe.results.ModelCounts`' ``macs`` and ``flops`` exactly.

* **By operator**: every aten operator that costs something (convolution, addmm, the batch norm,
  pools, activations, adds), with its calls; ops that cost nothing by definition (views, copies,
  ``cat``) are left out and unsupported ones are listed, as in every count. In training mode the
  rows are one training step's (forward, loss, backward: ``convolution_backward`` ...).
* **By module**: each module down to ``depth`` (the model is depth 0), in call order, with all it
  runs, the modules inside it included (what ``FlopCounterMode`` and fvcore report per module),
  and its *own* part: what no row below it holds, so the own parts add up to the total. A module
  called twice is one row (``calls`` 2). Ops outside every module call count for the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archprobe.errors import UsageError
from archprobe.results import CostBreakdown, CostRow

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.probe import Probe

BY = ("operator", "module")


def _share(part: int, total: int) -> float:
    return part / total if total else 0.0


def breakdown(probe: "Probe", *, by: str = "operator", depth: int | None = None) -> CostBreakdown:
    """The probe's MACs and FLOPs by operator or by module (see the module's docstring).

    Args:
        probe: the run context; in training mode (``by="operator"`` only) one training step.
        by: ``"operator"`` or ``"module"``.
        depth: module rows down to this depth (0: the model alone; None: every module).

    Raises:
        UsageError: an unknown ``by``, a negative ``depth``, ``depth`` by operator, or a training
            step by module (its backward runs outside the modules' calls).
    """
    from archprobe.analysis.counting import cost_totals, op_costs
    from archprobe.analysis.guarded import traced
    from archprobe.analysis.trace import BACKWARD, FORWARD, LOSS

    if by not in BY:
        raise UsageError(f"{by!r} is not one of {', '.join(BY)}", param="by")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise UsageError(f"must be a whole number from 0, not {depth!r}", param="depth")
    common = dict(model=probe.name, input_shape=probe.shape, by=by, mode=probe.mode.value)
    if by == "operator":
        if depth is not None:
            raise UsageError("applies to the breakdown by module", param="depth")
        t = traced(probe, train=probe.train, backward=probe.train, track_modules=False)
        totals = cost_totals(t, (FORWARD, LOSS, BACKWARD) if probe.train else (FORWARD,))
        rows = sorted(totals.by_operator, key=lambda e: (-e[2], -e[3]))  # MACs, then FLOPs; stable
        return CostBreakdown(
            **common, macs=totals.macs, flops=totals.flops, unsupported_ops=totals.unsupported, notes=probe.notes,
            rows=tuple(CostRow(probe.name, by, name, calls, macs, flops, _share(macs, totals.macs),
                               _share(flops, totals.flops)) for name, calls, macs, flops in rows))
    if probe.train:
        raise UsageError("a training step's backward runs outside the modules' calls: break it down by operator, "
                         "or the eval forward by module", param="by")
    t = traced(probe)
    totals = cost_totals(t, (FORWARD,))
    limit = depth if depth is not None else max((c.depth for c in t.calls), default=0)
    n = len(t.calls)
    inclusive = [[0, 0] for _ in range(n)]
    own = [[0, 0] for _ in range(n)]
    for op, cost in op_costs(t, (FORWARD,)):
        if not cost:
            continue
        call = op.call if op.call >= 0 else (0 if n else -1)  # outside every call: the model's
        holder = None
        while call >= 0:
            inclusive[call][0] += cost[0]
            inclusive[call][1] += cost[1]
            if holder is None and t.calls[call].depth <= limit:
                holder = call  # the innermost row that shows this op
            call = t.calls[call].parent
        if holder is not None:
            own[holder][0] += cost[0]
            own[holder][1] += cost[1]
    # one row per module (a module called twice adds up), in the order of first calls
    paths: dict[str, list] = {}
    for c in t.calls:
        if c.depth > limit:
            continue
        row = paths.setdefault(c.path, [c.type_name, c.depth, 0, 0, 0, 0, 0])
        row[2] += 1
        row[3] += inclusive[c.index][0]
        row[4] += inclusive[c.index][1]
        row[5] += own[c.index][0]
        row[6] += own[c.index][1]
    rows = tuple(
        CostRow(probe.name, by, path, calls, macs, flops, _share(macs, totals.macs), _share(flops, totals.flops),
                type=type_name, depth=d, own_macs=own_macs, own_flops=own_flops)
        for path, (type_name, d, calls, macs, flops, own_macs, own_flops) in paths.items()
    )
    return CostBreakdown(**common, rows=rows, macs=totals.macs, flops=totals.flops, depth=depth,
                         unsupported_ops=totals.unsupported, notes=probe.notes)
