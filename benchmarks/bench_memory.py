"""Memory prediction: time per zoo model at batch 32, ``--fit`` time, and the check against real steps.

Timing: after the start-up (importing torch, torchvision and timm, one warm-up prediction for
the first meta ops), each zoo model is resolved (not timed) and then timed, as ``archprobe memory``
runs it: the model built on meta, its twin, one inference forward (eval) or one steady-state
training step (train) at batch 32, and ``--fit 24GiB`` for training. Wall and CPU seconds are
printed (the machine is shared: CPU seconds are the steadier figure).

``--verify`` also runs the same steps on real CPU tensors (live tensor bytes counted at dispatch
level, :func:`archprobe.runtime.memory.measure_step_peak`) for one model per family and prints
predicted, measured and their ratio; ``--cuda`` measures ``torch.cuda.max_memory_allocated``
instead (a GPU machine).

    .venv/bin/python benchmarks/bench_memory.py [MODEL ...] [--repeats 3] [--verify [--batch 8] [--cuda] [--train-only]]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import archprobe as ap
from archprobe.probe import Mode, Probe

TARGET_PREDICT_S = 1.0
TARGET_FIT_S = 10.0
VERIFY = [("lenet", None), ("alexnet-d2l", None), ("nin-d2l", None), ("googlenet-bn-d2l", None),
          ("resnet18-d2l", None), ("densenet-d2l", None), ("resnet18", None), ("googlenet", None)]


def timed(fn, repeats: int):
    """The result, and the median wall and CPU seconds of ``repeats`` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, statistics.median(walls), statistics.median(cpus)


def bench_speed(models: list[str], repeats: int) -> None:
    import timm  # noqa: F401 - start-up: the model libraries' imports (timm's alone is ~0.7 s) ...
    import torchvision  # noqa: F401

    ap.memory("lenet", mode="train")  # ... and the first meta ops
    print(f"torch {torch.__version__}; batch 32, float32, SGD; --fit 24GiB for training; "
          f"median seconds wall/cpu of {repeats}")
    header = f"{'model':20s} {'eval s':>11s} {'train s':>11s} {'fit s':>11s} {'max batch':>10s} {'train peak GiB':>15s}"
    print(header)
    print("-" * len(header))
    worst = {"eval": 0.0, "train": 0.0, "fit": 0.0}
    for name in models:
        spec = ap.api.as_spec(name)
        _, eval_wall, eval_cpu = timed(lambda: ap.memory(spec, batch_size=32), repeats)
        train, train_wall, train_cpu = timed(lambda: ap.memory(spec, batch_size=32, mode="train"), repeats)
        fitted, fit_wall, fit_cpu = timed(lambda: ap.memory(spec, mode="train", fit="24GiB"), repeats)
        worst = {"eval": max(worst["eval"], eval_cpu), "train": max(worst["train"], train_cpu),
                 "fit": max(worst["fit"], fit_cpu)}
        print(f"{name:20s} {eval_wall:5.2f}/{eval_cpu:<5.2f} {train_wall:5.2f}/{train_cpu:<5.2f} "
              f"{fit_wall:5.2f}/{fit_cpu:<5.2f} {fitted.max_batch_size:>10,} {train.peak_bytes / 2**30:>15.3f}",
              flush=True)
    print(f"\nslowest (cpu s): eval {worst['eval']:.2f}, train {worst['train']:.2f} "
          f"(target <= {TARGET_PREDICT_S:g}), fit {worst['fit']:.2f} (target <= {TARGET_FIT_S:g})")


def bench_verify(batch: int, cuda: bool, models=None, modes=(Mode.EVAL, Mode.TRAIN)) -> None:
    from archprobe.analysis.memory import StepMemory
    from archprobe.runtime.memory import measure_step_peak

    device = "cuda" if cuda else "cpu"
    measured_by = "torch.cuda.max_memory_allocated" if cuda else "live tensor bytes on real CPU tensors"
    print(f"\npredicted (meta/fake, device={device}) vs measured ({measured_by}); SGD, float32, batch {batch}")
    header = f"{'model':18s} {'mode':5s} {'batch':>5s} {'predicted B':>15s} {'measured B':>15s} {'ratio':>8s}"
    print(header)
    print("-" * len(header))
    for name, size in models or VERIFY:
        spec = ap.api.as_spec(name, input_size=size)
        for mode in modes:
            predicted = StepMemory(Probe.build(spec, batch_size=batch, mode=mode), device=device).predict(batch)
            measured = measure_step_peak(Probe.build(spec, batch_size=batch, mode=mode, device=device))
            print(f"{name:18s} {mode.value:5s} {batch:>5d} {predicted.peak_bytes:>15,} {measured:>15,} "
                  f"{predicted.peak_bytes / measured:>8.4f}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="zoo models to time, and with --verify to check "
                        "(default: the whole zoo; for --verify one model per family)")
    parser.add_argument("--verify", action="store_true", help="also compare with real steps")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the real steps (default 8)")
    parser.add_argument("--cuda", action="store_true", help="real steps on CUDA (max_memory_allocated)")
    parser.add_argument("--train-only", action="store_true", help="verify training steps only")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median; default 3)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(1)
    if not args.no_speed:
        bench_speed(args.models or [entry.name for entry in ap.list_models()], args.repeats)
    if args.verify:
        modes = (Mode.TRAIN,) if args.train_only else (Mode.EVAL, Mode.TRAIN)
        bench_verify(args.batch, args.cuda, [(m, None) for m in args.models] or None, modes)


if __name__ == "__main__":
    main()
