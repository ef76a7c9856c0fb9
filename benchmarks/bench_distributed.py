"""Data-parallel throughput on this machine: how well do 2 ranks scale, and what does the
distributed path itself cost? CPU, gloo, one thread per rank, train mode (DDP).

Per model, each round runs ``archprobe.bench.sweeps.distributed_sweep`` with ``nprocs=(1, 2)`` and one
thread per rank, which measures in one run:

* ``plain``: one process through the plain runner (``ThroughputRunner``), the baseline every
  data-parallel row is compared with (``single_process_examples_per_sec``);
* ``dist x1``: one rank through the launcher and DistributedDataParallel; its
  ``scaling_efficiency`` is dist x1 / plain, so ``1 - efficiency`` is the overhead of the
  distributed path (launching aside: the ranks time their own steps);
* ``dist x2``: two ranks; ``scaling_efficiency`` = dist x2 / (2 x plain).

Rounds repeat the three so drift on a shared machine shows; the summary is the median over
rounds of each round's ratios (paired: drift between rounds cancels). Each round starts when
the machine is quiet (other processes busy on less than ``--quiet`` CPUs for a second, read from
/proc/stat; it waits up to a minute), and prints the load average: on a 2-core machine two ranks
need both cores, so any other load lowers the x2 figure first. Next to the medians (the rows'
own figures), the same ratios from the 10th percentile of step times (p10) are printed: a
step that ran while nothing else did, the better estimate on a busy machine.

    .venv/bin/python benchmarks/bench_distributed.py [--rounds 3] [--min-time 3] [--models lenet resnet18-d2l]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from archprobe.bench.sweeps import distributed_sweep
from archprobe.bench.throughput import ThroughputConfig, ThroughputRunner
from archprobe.probe import Mode
from archprobe.runtime.environment import collect_environment, physical_cores

BATCH = {"lenet": 64, "resnet18-d2l": 16}  # per rank; resnet18-d2l: 11.2 M parameters to all-reduce per step


class RecordingRunner(ThroughputRunner):
    """The plain runner, keeping the baseline rows the sweep measures (for their p10)."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def measure(self, *args, **kwargs):
        self.rows.append(super().measure(*args, **kwargs))
        return self.rows[-1]


def busy_cpus(seconds: float = 1.0) -> float:
    """CPUs busy (all processes) on average over ``seconds``, from /proc/stat."""

    def busy() -> int:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait

    before = busy()
    time.sleep(seconds)
    return (busy() - before) / os.sysconf("SC_CLK_TCK") / seconds


def wait_quiet(limit: float, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        others = busy_cpus()
        if others < limit or time.monotonic() > deadline:
            return others


def one_round(model: str, batch: int, mode: Mode, min_time: float, warmup_time: float) -> dict[str, float]:
    config = ThroughputConfig(threads=1, min_time=min_time, warmup_time=warmup_time, utilisation=False)
    runner = RecordingRunner()
    rows = list(distributed_sweep([model], ["cpu"], [mode], [batch], config, nprocs=(1, 2), runner=runner))
    for row in rows:
        if not row.ok:
            raise SystemExit(f"{row.label}: {row.error}")
    one, two = rows
    (plain,) = runner.rows  # one baseline: both world sizes run one thread per rank
    assert plain.examples_per_sec == one.single_process_examples_per_sec == two.single_process_examples_per_sec
    return {
        "plain": plain.examples_per_sec,
        "x1": one.examples_per_sec,
        "x2": two.examples_per_sec,
        "overhead": 1 - one.scaling_efficiency,
        "efficiency": two.scaling_efficiency,
        "overhead_p10": 1 - plain.p10_ms / one.p10_ms,
        "efficiency_p10": plain.p10_ms / two.p10_ms,  # (2 b / p10 x2) / (2 x b / p10 plain)
        "rank_ms": max(two.rank_median_ms),
        "step_ms": two.median_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(BATCH))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--warmup-time", type=float, default=1.0)
    parser.add_argument("--mode", choices=("train", "eval"), default="train")
    parser.add_argument("--quiet", type=float, default=0.3, help="start a round below this many busy CPUs")
    args = parser.parse_args()

    env = collect_environment("cpu")
    print(f"{env.cpu_model}, {physical_cores()} physical cores, torch {env.torch_version}; "
          f"{args.mode}, 1 thread per rank, gloo; {args.rounds} rounds of {args.min_time:g} s timed phases")
    summary = []
    for model in args.models:
        batch = BATCH.get(model, 32)
        rounds = []
        for index in range(args.rounds):
            busy = wait_quiet(args.quiet)
            load = os.getloadavg()[0]
            began = time.monotonic()
            r = one_round(model, batch, Mode.of(args.mode), args.min_time, args.warmup_time)
            rounds.append(r)
            print(f"{model} b={batch} round {index + 1}: plain {r['plain']:,.1f} ex/s, dist x1 {r['x1']:,.1f}, "
                  f"dist x2 {r['x2']:,.1f} (step {r['step_ms']:.1f} ms, slowest rank's median {r['rank_ms']:.1f} ms); "
                  f"x1 overhead {100 * r['overhead']:+.1f}% (p10 {100 * r['overhead_p10']:+.1f}%), "
                  f"x2 efficiency {100 * r['efficiency']:.1f}% (p10 {100 * r['efficiency_p10']:.1f}%) "
                  f"[{busy:.2f} CPUs busy before, load {load:.1f}, {time.monotonic() - began:.0f} s]", flush=True)
        summary.append((model, batch, rounds))

    def spread(rounds, key, sign=""):
        values = [100 * r[key] for r in rounds]
        return (f"{statistics.median(values):{sign}.1f}% ({min(values):{sign}.1f} to {max(values):{sign}.1f})")

    print("\n| model | batch/rank | plain ex/s | dist x1 ex/s | dist x2 ex/s | x1 overhead (p10) | "
          "x2 scaling efficiency (p10) |")
    print("|---|---|---|---|---|---|---|")
    for model, batch, rounds in summary:
        m = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        print(f"| {model} | {batch} | {m['plain']:,.1f} | {m['x1']:,.1f} | {m['x2']:,.1f} | "
              f"{spread(rounds, 'overhead', '+')} ({spread(rounds, 'overhead_p10', '+')}) | "
              f"{spread(rounds, 'efficiency')} ({spread(rounds, 'efficiency_p10')}) |")


if __name__ == "__main__":
    main()
