"""Is the data path of ``archprobe train`` ever the bottleneck? Training examples/sec of the
train runner against the throughput engine's training step, same model, batch and device.

* ``train``: :class:`archprobe.training.runner.TrainRunner` on a data set written in
  Fashion-MNIST's real format (IDX files, read through the user's code path), the whole
  loader path included: the shuffle, the gather on the device, scaling to [0, 1], the
  bilinear resize, the loss and accuracy sums. Its examples/sec is the book's: training
  examples over the epoch's training time (a mean over the epoch). Each round trains two
  epochs and takes the second (the first warms up).
* ``step``: :class:`archprobe.bench.throughput.ThroughputRunner` in train mode: the same
  :class:`TrainStep` (SGD, lr 0.001, momentum 0.9, cross-entropy) on one synthetic batch
  already on the device; examples/sec = batch / median step time.

The recipe matches the throughput step (SGD lr 0.001, momentum 0.9) so only the data path
differs. Rounds alternate the two, so drift on a shared machine hits both; the ratio is the
median over rounds of the per-round ratio train/step. Target: >= 0.95. The load average is
printed per round: on a busy machine the mean-based train figure suffers more than the
median-based step figure, which pulls the ratio down for reasons unrelated to the data path.
One CPU thread by default: with as many threads as cores on a machine shared with other jobs,
OpenMP's spinning threads make both figures swing tenfold from round to round (seen here);
give ``--threads N`` on a quiet machine.

    .venv/bin/python benchmarks/bench_train.py [--device cpu] [--threads 1] [--rounds 7]
        [--case lenet:256:none:5120] [--case googlenet-d2l:16:96:128]

``--scaling``: data-parallel training on the CPU instead. Each round trains the case three
ways through ``archprobe.api.train`` on the same IDX data: one plain process, ``nproc=1`` (one
rank through the launcher and DDP) and ``nproc=2`` (two ranks, gloo), each with ``--threads``
per process and the same per-rank batch (the global batch doubles with two ranks). Each run
trains two epochs; the second's examples/sec is taken (global training examples / the slowest
rank's training time). Printed per round and as medians: the overhead of the distributed
path at one rank (1 - x1 / plain) and the scaling efficiency of two ranks (x2 / (2 x plain)).
Rounds start when the machine is quiet (``bench_distributed.wait_quiet``): two ranks need both
of this machine's cores, so any other load lowers the x2 figure first.

    .venv/bin/python benchmarks/bench_train.py --scaling [--rounds 3] [--threads 1]
        [--case lenet:64:none:10240] [--case resnet18-d2l:16:96:256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import archprobe as ap
from archprobe.training.plan import plan_training
from archprobe.bench.throughput import ThroughputConfig, ThroughputRunner
from archprobe.probe import Mode
from archprobe.training.datasets import load_dataset, write_structured_dataset
from archprobe.training.runner import TrainRunner

CASES = ("lenet:256:none:5120", "googlenet-d2l:16:96:128")
SCALING_CASES = ("lenet:64:none:10240", "resnet18-d2l:16:96:256")


def measure(model: str, batch: int, resize: int | None, examples: int, device: str, threads: int | None,
            rounds: int, root: str) -> list[tuple[float, float, float]]:
    data = load_dataset("fashion-mnist", root, limit_train=examples, limit_test=batch)
    plan = plan_training([model], dataset="fashion-mnist", data_root=root, device=device,
                             limit_train=examples, limit_test=batch, optimizer="sgd", lr=0.001, momentum=0.9,
                             weight_decay=0.0, batch_size=batch, epochs=2, resize=resize)
    (job,) = plan.jobs
    trainer = TrainRunner(threads=threads)
    stepper = ThroughputRunner()
    results = []
    for _ in range(rounds):
        load = os.getloadavg()[0]
        run = trainer.run(job.spec, device, data, job.recipe)
        assert run.ok, run.error
        epoch = run.epochs[-1]
        config = ThroughputConfig(mode=Mode.TRAIN, batch_size=batch, threads=threads, warmup=2, warmup_time=0.5,
                                  min_time=epoch.train_seconds, min_iters=5, utilisation=False)
        row = stepper.measure(job.spec, device, config)
        assert row.ok, row.error
        results.append((epoch.examples_per_sec, row.examples_per_sec, load))
    return results


def measure_scaling(model: str, batch: int, resize: int | None, examples: int, threads: int, rounds: int,
                    root: str, quiet: float) -> list[dict[str, float]]:
    from bench_distributed import wait_quiet

    options = dict(dataset="fashion-mnist", data_root=root, device="cpu", threads=threads, limit_train=examples,
                   limit_test=batch, epochs=2, batch_size=batch, resize=resize, optimizer="sgd", lr=0.001,
                   momentum=0.9, weight_decay=0.0)
    results = []
    for _ in range(rounds):
        busy = wait_quiet(quiet)
        load = os.getloadavg()[0]
        rates = {}
        for nproc in (None, 1, 2):
            (run,) = ap.train(model, nproc=nproc, **options)
            assert run.ok, run.error
            rates[nproc] = run.epochs[-1].examples_per_sec
        results.append({"plain": rates[None], "x1": rates[1], "x2": rates[2], "busy": busy, "load": load})
    return results


def scaling(args, root: str) -> None:
    cases = [c.split(":") for c in (args.case or SCALING_CASES)]
    print(f"cpu, {args.threads} thread(s) per process, gloo, {args.rounds} rounds; data: synthetic images in "
          "Fashion-MNIST's IDX format; examples/sec of each run's second epoch\n")
    summary = []
    for model, batch, resize, examples in cases:
        size = None if resize == "none" else int(resize)
        rounds = measure_scaling(model, int(batch), size, int(examples), args.threads, args.rounds, root, args.quiet)
        for r in rounds:
            print(f"{model} b={batch}/rank: plain {r['plain']:,.1f} ex/s, x1 {r['x1']:,.1f}, x2 {r['x2']:,.1f}; "
                  f"x1 overhead {100 * (1 - r['x1'] / r['plain']):+.1f}%, "
                  f"x2 efficiency {100 * r['x2'] / (2 * r['plain']):.1f}% "
                  f"[{r['busy']:.2f} CPUs busy before, load {r['load']:.1f}]", flush=True)
        summary.append((model, batch, size or 28, rounds))
    print("\n| model | batch/rank | input | plain ex/s | x1 ex/s | x2 ex/s | x1 overhead | x2 scaling efficiency |")
    print("|---|---|---|---|---|---|---|---|")
    for model, batch, side, rounds in summary:
        overhead = [100 * (1 - r["x1"] / r["plain"]) for r in rounds]
        efficiency = [100 * r["x2"] / (2 * r["plain"]) for r in rounds]
        m = {key: statistics.median(r[key] for r in rounds) for key in ("plain", "x1", "x2")}
        print(f"| {model} | {batch} | {side} | {m['plain']:,.1f} | {m['x1']:,.1f} | {m['x2']:,.1f} | "
              f"{statistics.median(overhead):+.1f}% ({min(overhead):+.1f} to {max(overhead):+.1f}) | "
              f"{statistics.median(efficiency):.1f}% ({min(efficiency):.1f} to {max(efficiency):.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--case", action="append", help="MODEL:BATCH:RESIZE|none:EXAMPLES (repeatable)")
    parser.add_argument("--scaling", action="store_true",
                        help="data-parallel: one process vs nproc 1 vs nproc 2 on the CPU (see above)")
    parser.add_argument("--quiet", type=float, default=0.3,
                        help="with --scaling: start a round below this many busy CPUs (waits up to a minute)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        if args.scaling:
            cases = [c.split(":") for c in (args.case or SCALING_CASES)]
            write_structured_dataset(root, "fashion-mnist", train=max(int(c[3]) for c in cases),
                                     test=max(int(c[1]) for c in cases))
            scaling(args, root)
            return
        cases = [c.split(":") for c in (args.case or CASES)]
        largest = max(int(c[3]) for c in cases)
        write_structured_dataset(root, "fashion-mnist", train=largest, test=max(int(c[1]) for c in cases))
        print(f"device {args.device}, threads {args.threads}, {args.rounds} rounds; "
              "data: synthetic images in Fashion-MNIST's IDX format\n")
        print(f"{'model':<16} {'batch':>5} {'input':>6} {'train ex/s':>11} {'step ex/s':>10} {'ratio':>6} {'load':>5}")
        for model, batch, resize, examples in cases:
            size = None if resize == "none" else int(resize)
            rows = measure(model, int(batch), size, int(examples), args.device, args.threads, args.rounds, root)
            for train, step, load in rows:
                print(f"{model:<16} {batch:>5} {size or 28:>6} {train:>11,.1f} {step:>10,.1f} {train / step:>6.3f} "
                      f"{load:>5.1f}")
            ratio = statistics.median(t / s for t, s, _ in rows)
            verdict = "meets" if ratio >= 0.95 else "MISSES"
            print(f"{model}: median ratio train/step = {ratio:.3f} ({verdict} the 0.95 target)\n")


if __name__ == "__main__":
    main()
