"""Static analyses: pure functions from a run context to frozen results in base units, on meta
(or fake) tensors, allocating no weights.

  trace          one guarded pass recorded at dispatch level, module by module
  device_checks  the size checks real kernels make that some meta kernels skip
  geometry       the one reader of op arguments (kernels, strides, paddings, dilations)
  guarded        the pass every analysis takes, and the one explanation of a pass that fails
  costs          MACs and FLOPs per op (one formula per op family)
  counting       parameters, MACs and FLOPs of a model;  breakdown  the same by operator or by module
  shapes         the per-layer table; receptive  receptive fields per layer
  min_input      the exact set of valid input sizes (+ replay/, the shape arithmetic replayed)
  memory         peak memory of a step on meta/fake tensors, the batch that fits
  variants       ImageNet models next to their book and paper variants
  comparison     everything ``archprobe report`` lays out, in one pass

May import: errors, units, results, plumbing, user_code, zoo, probe, runtime.
"""
