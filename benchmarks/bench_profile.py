"""What does ``archprobe profile`` cost, and how much of the step does it attribute? One run.

For the seed four (alexnet, vgg16, nin, googlenet) and resnet50, at their default inputs, each
profiled once (:class:`archprobe.bench.profile.ProfileRunner`, which first measures
throughput's own step for the same setup in the same process, then the profiled steps):

* **overhead** = profiled step / plain step - 1 (the issue's target: within 10%);
* **sum** = the rows' medians added up / the profiled step (target: within 5% of 100%);
* **coverage** = the share of the profiled step that layers, the loss and the optimizer own
  (the rest is ``(unattributed)``, or ``(device idle)`` on a GPU);
* the largest row, the number of rows, the machine's load while it ran.

    .venv/bin/python benchmarks/bench_profile.py [--device cpu] [--mode eval] [-b 4] [--depth 1] \
        [--threads N] [--min-time 2] [--models alexnet,vgg16,nin,googlenet,resnet50]

Run it on a quiet machine: other processes' CPU use shows in every figure (the ``load`` column
is the cores they kept busy).
"""

from __future__ import annotations

import argparse
import time

from archprobe.bench.profile import ProfileRunner
from archprobe.bench.throughput import ThroughputConfig
from archprobe.zoo.resolution import resolve_all

MODELS = "alexnet,vgg16,nin,googlenet,resnet50"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="eval", choices=("eval", "train"))
    parser.add_argument("-b", "--batch-size", type=int, default=4)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--min-iters", type=int, default=5)
    parser.add_argument("--models", default=MODELS)
    args = parser.parse_args(argv)

    runner = ProfileRunner()
    config = ThroughputConfig(mode=args.mode, batch_size=args.batch_size, threads=args.threads,
                              min_time=args.min_time, min_iters=args.min_iters)
    print(f"device {args.device}, {args.mode}, batch {args.batch_size}, depth {args.depth}, threads "
          f"{args.threads or 'default'}")
    header = (f"{'model':12} {'plain ms':>10} {'profiled ms':>12} {'overhead':>9} {'sum':>7} {'coverage':>9} "
              f"{'rows':>5} {'load':>5}  largest row")
    print(header)
    print("-" * len(header))
    for spec in resolve_all(args.models.split(",")):
        start = time.perf_counter()
        r = runner.profile(spec, args.device, config, args.depth)
        if not r.ok:
            print(f"{spec.name:12} {r.status}: {r.error}")
            continue
        largest = max(r.rows, key=lambda row: row.time_s)
        print(f"{r.model:12} {r.throughput_step_s * 1e3:10.1f} {r.step_s * 1e3:12.1f} {100 * r.profiler_overhead:+8.1f}% "
              f"{100 * r.attributed_s / r.step_s:6.1f}% {100 * r.coverage:8.1f}% {len(r.rows):5d} "
              f"{r.other_cpu_cores or 0:5.2f}  {largest.layer or '(model)'} {largest.phase} "
              f"{100 * largest.share:.1f}%  ({time.perf_counter() - start:.0f} s, {r.repeats} repeats"
              f"{', ' + ', '.join(r.warnings) if r.warnings else ''})")


if __name__ == "__main__":
    main()
