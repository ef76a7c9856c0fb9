"""The transfer functions ("rules") of the replay, one module per family of aten ops.

Each module registers its rules with :func:`archprobe.analysis.replay.engine.rule` on import:

* :mod:`.windows`: convolutions, pools, adaptive pools;
* :mod:`.reductions`: sums, means, maxima, norms, variances;
* :mod:`.views`: views, expand, permute/transpose, (un)squeeze, cat/stack, slicing, splitting;
* :mod:`.matmul`: matrix products (``Linear``);
* :mod:`.normalisation`: batch, group and layer norm;
* :mod:`.resampling`: interpolation, padding, pixel (un)shuffle;
* :mod:`.factories`: tensors created inside the forward (``zeros``, ``arange``...).

Ops without a rule follow :func:`archprobe.analysis.replay.engine.generic_rule`.
"""

from archprobe.analysis.replay.rules import (  # noqa: F401 - imported to register their rules
    factories,
    matmul,
    normalisation,
    reductions,
    resampling,
    views,
    windows,
)
