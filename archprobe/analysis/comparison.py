"""The whole comparison ``archprobe report`` lays out: every analysis of every model, in one pass.

Each model is built once on meta for its zoo entry, its counts and its valid input sizes, the
predicted peak memory of inference and training at the report's batch sizes and over
:data:`archprobe.analysis.memory.MEMORY_CURVE`, and the ImageNet models paired with their
variants; throughput comes from the caller's ``measure`` (the runtime's), when given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from archprobe.errors import ArchprobeError
from archprobe.results import ModelFailure, Report, ThroughputResult

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.zoo.spec import ModelSpec


def compare(
    specs: Sequence["ModelSpec"],
    *,
    measure: Callable[[Sequence["ModelSpec"]], Sequence[ThroughputResult]] | None = None,
    on_progress: Callable[[str], None] | None = None,
    memory: bool = True,
    memory_batch_sizes: Sequence[int] = (32,),
) -> Report:
    """Everything ``archprobe report`` shows (see the module's docstring). A model whose step
    cannot be predicted is listed in ``memory_failures`` and the others go on."""
    from archprobe.analysis.counting import count
    from archprobe.analysis.memory import report_memory
    from archprobe.analysis.min_input import solve_min_input
    from archprobe.analysis.variants import variant_pairs
    from archprobe.probe import Probe
    from archprobe.runtime.environment import collect_environment
    from archprobe.zoo.resolution import describe

    zoo, counts, min_inputs, settled = [], [], [], []
    memory_table, memory_curve, memory_failures = [], [], []
    for spec in specs:
        if on_progress:
            on_progress(spec.name)
        p = Probe.build(spec)
        settled.append(p.spec)
        zoo.append(describe(p.spec))
        counts.append(count(p))
        min_inputs.append(solve_min_input(p))
        if memory:
            try:
                table, curve = report_memory(p, memory_batch_sizes)
            except ArchprobeError as exc:
                memory_failures.append(ModelFailure(p.name, str(exc)))
            else:
                memory_table += table
                memory_curve += curve
    families = {e.name: e.family for e in zoo if e.family != "-"}
    return Report(
        models=tuple(s.name for s in specs),
        zoo=tuple(zoo),
        counts=tuple(counts),
        min_inputs=tuple(min_inputs),
        variants=tuple(variant_pairs(counts, families)),
        throughput=tuple(measure(settled)) if measure is not None else (),
        environment=collect_environment("cpu"),
        memory=tuple(memory_table),
        memory_curve=tuple(memory_curve),
        memory_failures=tuple(memory_failures),
    )
