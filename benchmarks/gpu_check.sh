#!/usr/bin/env bash
# The device check on a machine with one CUDA GPU (see benchmarks/gpu_check.py): CUDA tests,
# CUDA throughput, compile, memory against max_memory_allocated, training, NCCL. Results go to
# $OUT (or --out DIR). Without a GPU, or with --dry-run, it only checks that every step parses.
#   benchmarks/gpu_check.sh [--dry-run] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
# the project's environment where there is one, else the machine's Python (a GPU machine's own torch)
if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=${PYTHON:-python3}; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
