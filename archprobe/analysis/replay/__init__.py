"""Replaying a traced forward pass's shape arithmetic over many input sizes at once.

Two or more dispatch-level traces of the same model at different input sizes
(:func:`archprobe.analysis.trace.trace`) are aligned op by op. Every tensor dimension then
becomes a value over all candidate input sizes: a Python ``int`` where it does not depend on
the input's height and width (batch, channels, parameters, adaptive-pool outputs), else an
``int64`` numpy array with one entry per candidate ``(H, W)``. Each aten op has a *transfer
function* (a rule) computing its output dimensions and a validity mask from its input dimensions
and arguments; validity is AND-ed over the whole pass and the first op to rule a candidate out
is remembered (that is the limiting layer).

Arguments that change between the traces (``F.avg_pool2d(x, x.size()[2:])``, a
``view(b, c, h * w)``, ``interpolate(size=skip.shape[2:])``) are *size-dependent*: each such
integer is bound to a tensor dimension that took the same values in every trace (the op's own
inputs first, at the same position where possible, then any earlier tensor). What cannot be
bound, an op whose outputs no rule explains, or traces that do not align (control flow that
depends on the input) raise :class:`Unsupported`; the caller then falls back to forward passes.

Every rule is checked against the traces themselves: at the traced sizes the replayed shapes
must equal the recorded ones and every op must be valid. Ops without a rule follow generic
rules: broadcasting (elementwise ops, activations, dropout, copies) or "each output dimension
follows the same input dimension, or is constant".

Layout: :mod:`.align` (aligning the traces), :mod:`.dims` (arithmetic on int-or-array
dimensions), :mod:`.engine` (the program, its result, the context rules see, the registry and
the generic rule) and :mod:`.rules` (the rules, by family).

    program = Program([trace_a, trace_b])
    result = program.replay(heights, widths)  # result.valid, result.first_bad, result.reason(i)

:data:`RULES` is the registry (read-only) and :func:`rule` registers a rule; a second rule for
the same op name is refused.
"""

from archprobe.analysis.replay import rules  # noqa: F401 - imported to register the rules
from archprobe.analysis.replay.align import Unsupported
from archprobe.analysis.replay.engine import RULES, Ambiguity, Program, ReplayResult, rule

__all__ = ["RULES", "Ambiguity", "Program", "ReplayResult", "Unsupported", "rule"]
