"""The one guarded pass every analysis takes, and the one explanation of a pass that fails.

Counting, shapes, receptive fields and memory trace a model at its input size through
:func:`traced`. A failing pass is classified by cause, once, here: where another input size
runs (the min-input solver finds them), a one-line ``InputSizeError`` naming the layer and the
valid sizes; otherwise the model's own failure, a one-line ``ModelCodeError`` naming the
exception type, the layer and the first line of its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archprobe.errors import InputSizeError, ModelCodeError

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.analysis.trace import Trace
    from archprobe.probe import Probe


def traced(probe: "Probe", *, train: bool = False, backward: bool = False, track_modules: bool = True) -> "Trace":
    """Trace the probe's model at its input shape; a failure raises :func:`explain_failure`'s error."""
    from archprobe.analysis.trace import TraceFailure, trace

    try:
        return trace(probe.model, probe.input(), train=train, backward=backward, track_modules=track_modules)
    except TraceFailure as failure:
        if not track_modules:  # trace again with module hooks to name the failing layer
            return traced(probe, train=train, backward=backward, track_modules=True)
        raise explain_failure(probe.with_setting(mode=train), failure) from failure


def explain_failure(probe: "Probe", failure: Exception) -> Exception:
    """The error to raise for a pass of ``probe`` that failed with ``failure``: the
    ``InputSizeError`` stating the valid sizes where the input size is the cause, else a
    ``ModelCodeError`` naming the model's own failure."""
    from archprobe.analysis.min_input import check_input_size

    try:
        check_input_size(probe)
    except (InputSizeError, ModelCodeError) as error:
        return error
    except Exception:  # noqa: BLE001 - the solver could not decide; the original error stands
        pass
    shape = "x".join(map(str, probe.shape))
    return ModelCodeError(f"{probe.name} failed on input {shape}: {failure}")
