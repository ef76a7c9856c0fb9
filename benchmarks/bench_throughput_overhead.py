"""Does the throughput harness add measurable overhead? resnet18, batch 8, CPU, one process.

Three measurements of the same workload, interleaved round by round so machine drift hits all
of them alike:

* ``archprobe``: ``ThroughputRunner.measure`` (warm-up, per-iteration timing, median);
* ``tight loop``: a hand-written loop under ``torch.inference_mode`` timed as a whole
  (``n * batch / elapsed``), the lowest-overhead timing there is;
* ``blocked_autorange``: ``torch.utils.benchmark.Timer(...).blocked_autorange`` (median).

Targets: archprobe within 3% of both (ratio of medians over rounds), and repeat runs of
archprobe within 5% of each other (max/min of its per-round examples/sec). archprobe's
examples/sec is batch / median; its batch / mean is printed too, since the tight loop can only
give a mean: on a noisy machine (skewed times) the two differ for reasons unrelated to overhead.

Each measurement builds its model afresh, as archprobe does for every row: on this kind of
VM a model instance that has lived for a while can run up to ~10% faster than a fresh one
(seen with a hand loop alone), which would be a difference between model instances, not
between timers.

A round is left out when other processes used the CPUs (read from /proc/stat against this
process's own CPU time) or when archprobe flagged its own row as noisy (IQR/median > 10%, the
warning users see; a VM's neighbours slow all three alike without showing in /proc/stat): the
targets are for a quiet machine. Leaving out a whole round affects the three methods equally.
The agreement checks use the median over rounds of the per-round ratio (a paired comparison:
drift between rounds cancels); the ratio of pooled medians is printed as well.

    .venv/bin/python benchmarks/bench_throughput_overhead.py [--rounds 6] [--min-time 2] [--mode both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from archprobe.bench.throughput import ThroughputConfig, ThroughputRunner
from archprobe.report.notes import SPREAD_WARNING
from archprobe.runtime.environment import collect_environment, physical_cores
from archprobe.zoo.spec import resolve


def hand_written(mode: str, batch: int):
    """The model, data and step as one would write them by hand (same seed as the harness)."""
    spec = resolve("resnet18")
    torch.manual_seed(0)
    model = spec.build("cpu")
    x = torch.randn(batch, *spec.input_shape)
    if mode == "inference":
        model.eval()

        def step():
            model(x)

        return step, torch.inference_mode
    model.train()
    y = torch.randint(0, 1000, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step, torch.enable_grad


def tight_loop(mode: str, batch: int, threads: int, min_time: float) -> float:
    step, context = hand_written(mode, batch)
    torch.set_num_threads(threads)
    with context():
        for _ in range(3):
            step()
        t0 = time.perf_counter()  # a short probe to size the loop, then the timed loop
        step()
        per = time.perf_counter() - t0
        n = max(10, int(min_time / per) + 1)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        elapsed = time.perf_counter() - t0
    return n * batch / elapsed


def autorange(mode: str, batch: int, threads: int, min_time: float) -> float:
    step, context = hand_written(mode, batch)
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=threads)
    with context():
        timer.timeit(3)  # warm-up
        measurement = timer.blocked_autorange(min_run_time=min_time)
    return batch / measurement.median


class CpuMeter:
    """CPU time used by *other* processes: system busy jiffies minus this process's own."""

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.cpus = os.cpu_count() or 1

    @staticmethod
    def _busy() -> int:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait

    @staticmethod
    def _own() -> int:
        with open("/proc/self/stat") as fh:
            v = fh.read().rpartition(")")[2].split()
        return int(v[11]) + int(v[12])  # utime + stime, all threads

    def start(self):
        return time.perf_counter(), self._busy(), self._own()

    def others(self, start) -> float:
        """Average number of CPUs busy with other processes since ``start``."""
        t0, busy0, own0 = start
        elapsed = max(time.perf_counter() - t0, 1e-3)
        return max(0.0, (self._busy() - busy0) - (self._own() - own0)) / self.hz / elapsed

    def wait_quiet(self, limit: float = 0.05, timeout: float = 120.0) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            mark = self.start()
            time.sleep(1.0)
            if self.others(mark) < limit:
                return True
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mode", choices=["inference", "train", "both"], default="inference")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--noise-limit", type=float, default=0.05,
                        help="a round is noisy when other processes used more CPUs than this on average")
    args = parser.parse_args()

    threads = args.threads or physical_cores()
    env = collect_environment("cpu")
    print(f"resnet18, batch {args.batch_size}, CPU ({env.device_name}), {threads} threads, "
          f"torch {env.torch_version}; {args.rounds} rounds, {args.min_time:g} s per measurement")
    spec = resolve("resnet18")
    runner = ThroughputRunner()
    meter = CpuMeter()
    modes = ("inference", "train") if args.mode == "both" else (args.mode,)
    all_ok = True
    for mode in modes:
        config = ThroughputConfig(mode=mode, batch_size=args.batch_size, threads=threads, warmup=3,
                                  warmup_time=1.0, min_time=args.min_time, min_iters=10, utilisation=False)
        def archprobe():
            r = runner.measure(spec, "cpu", config)
            if not r.ok:
                raise SystemExit(f"archprobe failed: {r.status}: {r.error}")
            return r

        methods = {
            "archprobe": lambda: archprobe(),
            "tight loop": lambda: tight_loop(mode, args.batch_size, threads, args.min_time),
            "blocked_autorange": lambda: autorange(mode, args.batch_size, threads, args.min_time),
        }
        rounds = []  # quiet rounds only: {method: examples/sec}, plus archprobe's mean-based figure
        for i in range(args.rounds):
            quiet_before = meter.wait_quiet(args.noise_limit)
            order = list(methods)[i % 3:] + list(methods)[: i % 3]  # rotate: no method always first
            mark = meter.start()
            got = {}
            for name in order:
                value = methods[name]()
                if name == "archprobe":
                    got["archprobe (mean)"] = args.batch_size / (value.mean_ms / 1e3)
                    spread = value.spread
                    value = value.examples_per_sec
                got[name] = value
            others = meter.others(mark)
            why = []
            if not (quiet_before and others < args.noise_limit):
                why.append("other processes")
            if spread > SPREAD_WARNING:
                why.append("archprobe flagged a large spread")
            quiet = not why
            print(f"  {mode} round {i + 1}: " + ", ".join(f"{k} {got[k]:.2f}" for k in methods)
                  + f" examples/s; archprobe IQR/median {100 * spread:.1f}%; other processes "
                  f"{others:.2f} CPUs{'' if quiet else ' -> noisy (' + ', '.join(why) + '), left out'}")
            if quiet:
                rounds.append(got)
        if not rounds:
            print(f"\n{mode}: no quiet round (other processes kept the CPUs busy); nothing to compare\n")
            all_ok = False
            continue
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        ratio = {k: statistics.median(r["archprobe"] / r[k] for r in rounds) for k in ("tight loop", "blocked_autorange")}
        ours = med["archprobe"]
        print(f"\n{mode}: {len(rounds)} quiet rounds of {args.rounds}; median examples/sec")
        for name in methods:
            extra = f"   archprobe / this: {ours / med[name]:.3f} (per-round median {ratio[name]:.3f})" \
                if name in ratio else ""
            print(f"  {name:18s} {med[name]:9.2f}{extra}")
        print(f"  {'archprobe (mean)':18s} {med['archprobe (mean)']:9.2f}   / tight loop: "
              f"{med['archprobe (mean)'] / med['tight loop']:.3f} (the loop's own statistic: batch / mean)")
        spreads = {k: max(r[k] for r in rounds) / min(r[k] for r in rounds) for k in methods}
        print("  repeat spread over quiet rounds (max/min): "
              + ", ".join(f"{k} {v:.3f}" for k, v in spreads.items())
              + "  (a machine-wide slowdown moves all three alike)")
        repeat = spreads["archprobe"]
        checks = {
            f"archprobe vs tight loop within 3% (paired: {ratio['tight loop']:.3f})":
                abs(ratio["tight loop"] - 1) <= 0.03,
            f"archprobe vs blocked_autorange within 3% (paired: {ratio['blocked_autorange']:.3f})":
                abs(ratio["blocked_autorange"] - 1) <= 0.03,
        }
        if len(rounds) >= 2:
            checks[f"repeat runs within 5% median-to-median (max/min = {repeat:.3f})"] = repeat <= 1.05
        else:
            print("  [n/a] repeat runs: fewer than 2 quiet rounds")
        for name, ok in checks.items():
            print(f"  [{'ok' if ok else 'FAIL'}] {name}")
            all_ok &= ok
        print()
    raise SystemExit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
