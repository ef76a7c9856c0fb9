"""Minimum input size: the analytic solver (solve + verification) vs a brute-force forward scan.

For each model: build it on the meta device once (not timed), warm up, then time
``solve_min_input`` (traces, replay over 3 x 4096 candidate sizes, boundary verification by
forward passes; median of ``--repeats``) and a brute-force scan of every square side
``1..--max-side`` by forward passes on meta (``FastMeta``, ``no_grad``: the cheapest pass there
is). The scan runs in full unless ``--scan-every N`` is given, in which case every N-th side is
timed and the total is extrapolated, and the output says so. The scan's answer on
``1..--max-side`` is also compared with the solver's.

    .venv/bin/python benchmarks/bench_min_input.py [MODEL ...] [--max-side 320] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from archprobe.analysis.min_input import solve_min_input
from archprobe.analysis.trace import forward_runs, make_input
from archprobe.zoo.spec import resolve

DEFAULT_MODELS = ["googlenet", "inception-v3", "densenet201"]


def in_valid(valid, side: int, cap: int) -> bool:
    return any(lo <= side <= (cap if hi is None else hi) for lo, hi in valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--max-side", type=int, default=320, help="scan square sides 1..N (default 320)")
    parser.add_argument("--repeats", type=int, default=3, help="solver runs per model (median)")
    parser.add_argument("--scan-every", type=int, default=1,
                        help="time only every N-th side of the scan and extrapolate (default 1: full scan)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    warm = resolve("lenet")
    solve_min_input(warm)  # first meta ops import torch._dynamo (~2 s, once per process)

    print(f"torch {torch.__version__}; scan: square sides 1..{args.max_side} on meta;"
          f" solver: median of {args.repeats}, max_size 4096")
    header = (f"{'model':14s} {'ops':>5s} {'solve+verify s':>15s} {'passes':>7s} {'scan s':>9s}"
              f" {'per pass ms':>12s} {'ratio':>8s}  {'answer':22s} agree")
    print(header)
    print("-" * len(header))
    ratios = []
    for name in args.models:
        spec = resolve(name)
        model = spec.build("meta")
        times = []
        result = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = solve_min_input(spec, model=model)
            times.append(time.perf_counter() - start)
        solve_s = statistics.median(times)

        channels = spec.in_channels
        sides = list(range(1, args.max_side + 1, args.scan_every))
        start = time.perf_counter()
        scanned = {s: forward_runs(model, (1, channels, s, s)) for s in sides}
        scan_s = time.perf_counter() - start
        if args.scan_every > 1:
            scan_s *= args.max_side / len(sides)  # extrapolated
        agree = all(ok == in_valid(result.valid, s, result.max_size) for s, ok in scanned.items())

        from archprobe.analysis.trace import trace

        ops = len(trace(model, make_input((1, *spec.input_shape))).ops)
        ratio = scan_s / solve_s
        ratios.append(ratio)
        passes = len(result.traced) + len(result.checks)  # traces + verification passes
        answer = f"{result.valid_sides} ({result.method})"
        print(f"{name:14s} {ops:5d} {solve_s:15.3f} {passes:7d} {scan_s:9.2f}"
              f" {1000 * scan_s / args.max_side:12.1f} {ratio:7.0f}x  {answer:22s} {'yes' if agree else 'NO'}")
    print()
    if args.scan_every > 1:
        print(f"NOTE: the scan times are EXTRAPOLATED from every {args.scan_every}th side"
              f" ({len(range(1, args.max_side + 1, args.scan_every))} passes per model), not a full scan.")
    else:
        print("The scans ran in full (every side 1..%d)." % args.max_side)
    print(f"scan / solver time: median {statistics.median(ratios):.0f}x (min {min(ratios):.0f}x)")
    print("The solver also covers sides up to 4096 and the H and W lines; the scan only 1..%d squares." % args.max_side)


if __name__ == "__main__":
    main()
