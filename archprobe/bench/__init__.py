"""Measurements on real devices: throughput rows, their ceilings, data-parallel rows.

  throughput   the single-process runner: warm-up, timing, memory, utilisation, warnings
  ceiling      the matmul-class ceiling, measured in a child process
  distributed  data-parallel rows through torch.distributed (local ranks, or torchrun's group)
  sweeps       the sweeps the faces run: input sizes checked, rows yielded as measured
  atlas        whole libraries x analyses, each cell in a worker with a time limit and a memory guard
  store        the atlas's SQLite store: a row per cell, keyed by spec, analysis, options, versions

May import: errors, units, results, plumbing, user_code, zoo, probe, runtime, analysis (never
training, report or the API).
"""
