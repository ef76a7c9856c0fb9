"""The device check: every CUDA path of archprobe, run on one machine with one CUDA GPU.

Each step runs in its own process with a time limit, writes what it printed (and its results,
where the command takes ``-o``) into the output directory, and the check goes on after a step
fails; ``summary.json`` lists every step with its status, exit code and seconds. The steps take
about 6 minutes on one GPU with 16 CPU cores (each is bounded; all of them together by 8
minutes).

Without a usable CUDA device, or with ``--dry-run``, nothing is run: every archprobe command is
parsed by the command line itself (options, choices and types, as it would parse them), the
CUDA tests are collected, and the benchmark script's arguments parsed; the check then says
there was no GPU and exits 0 (1 if a command does not parse).

    benchmarks/gpu_check.sh [--dry-run] [--out DIR]      # DIR: $OUT when set
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 8 * 60


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # "archprobe", "pytest" or "script"
    args: tuple[str, ...]  # after "archprobe", "pytest" or the script's path
    timeout_s: int
    output: str | None = None  # a results file written with -o, in the output directory

    def argv(self, out: Path) -> list[str]:
        args = list(self.args) + (["-o", str(out / self.output)] if self.output else [])
        if self.kind == "archprobe":
            return [sys.executable, "-m", "archprobe", *args]
        if self.kind == "pytest":
            return [sys.executable, "-m", "pytest", *args]
        return [sys.executable, *args]


STEPS = (
    Step("cuda-tests", "pytest", ("-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs"), 150),
    # seed 000's anchor: GoogLeNet trains at 5,732 examples/s on a GPU in the book
    Step("googlenet-d2l-all-both", "archprobe",
         ("throughput", "googlenet-d2l", "--device", "all", "--mode", "both", "-b", "128", "--min-time", "1",
          "--warmup-time", "0.5"), 75, "googlenet-d2l-all-both.csv"),
    Step("googlenet-d2l-bf16-channels-last", "archprobe",
         ("throughput", "googlenet-d2l", "--device", "all", "--mode", "both", "-b", "128", "--dtype", "bfloat16",
          "--channels-last", "--min-time", "1", "--warmup-time", "0.5"), 75, "googlenet-d2l-bf16-channels-last.csv"),
    # compiling on the CPU too would take minutes of the budget: the compiled path is CUDA's
    Step("googlenet-d2l-compile", "archprobe",
         ("throughput", "googlenet-d2l", "--device", "cuda", "--mode", "both", "-b", "128", "--compile",
          "--min-time", "1", "--warmup-time", "0.5"), 120, "googlenet-d2l-compile.csv"),
    Step("resnet50-cuda", "archprobe",
         ("throughput", "resnet50", "--device", "cuda", "--mode", "both", "-b", "64,256", "--min-time", "1",
          "--warmup-time", "0.5"), 60, "resnet50-cuda.csv"),
    Step("memory-resnet50-predicted", "archprobe",
         ("memory", "resnet50", "--train", "-b", "64", "--device", "cuda"), 30, "memory-resnet50.json"),
    Step("memory-resnet50-measured", "script",
         ("benchmarks/bench_memory.py", "resnet50", "--verify", "--cuda", "--train-only", "--batch", "64",
          "--no-speed"), 60),
    Step("train-googlenet-d2l-fake", "archprobe",
         ("train", "googlenet-d2l", "--dataset", "fake", "--device", "all", "--epochs", "1", "-f", "json"), 90),
    Step("profile-googlenet-d2l-cuda", "archprobe",
         ("profile", "googlenet-d2l", "--device", "cuda", "--mode", "train", "-b", "128", "--depth", "2",
          "--min-time", "1", "--warmup-time", "0.5", "-f", "json"), 60, "profile-googlenet-d2l-cuda.json"),
    Step("lenet-nccl", "archprobe",
         ("throughput", "lenet", "--nproc", "1", "--device", "cuda", "--mode", "both", "--min-time", "1",
          "--warmup-time", "0.5"), 60, "lenet-nccl.csv"),
)


def cuda_usable() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def parse_only(step: Step, out: Path) -> str | None:
    """Parse ``step`` without running it: the error it would stop at, or None."""
    if step.kind == "archprobe":
        import click

        from archprobe.cli import cli

        args = step.argv(out)[3:]
        try:
            with cli.make_context("archprobe", list(args), resilient_parsing=False) as ctx:
                command = cli.commands[args[0]]
                command.make_context(args[0], list(args[1:]), parent=ctx)
        except click.exceptions.Exit:
            return None
        except click.ClickException as exc:
            return exc.format_message()
        return None
    if step.kind == "pytest":
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *step.args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        if done.returncode not in (0, 5):  # 5: no test selected
            return (done.stdout + done.stderr).strip().splitlines()[-1]
        return None
    import importlib.util

    path = ROOT / step.args[0]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    try:
        module.build_parser().parse_args(list(step.args[1:]))
    except SystemExit as exc:
        return f"arguments refused (exit {exc.code})"
    return None


def dry_run(out: Path) -> int:
    failures = 0
    for step in STEPS:
        problem = parse_only(step, out)
        print(f"{'ok  ' if problem is None else 'FAIL'} {step.name}: {shlex.join(step.argv(out)[1:])}"
              + (f"\n     {problem}" if problem else ""))
        failures += problem is not None
    print(f"dry run: {len(STEPS) - failures} of {len(STEPS)} steps parse")
    return 1 if failures else 0


def run_all(out: Path) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    summary, started = [], time.monotonic()
    for step in STEPS:
        left = BUDGET_S - (time.monotonic() - started)
        if left < 10:
            summary.append({"step": step.name, "status": "skipped", "why": "the 8-minute budget is spent"})
            continue
        began = time.monotonic()
        log = out / f"{step.name}.txt"
        print(f"--- {step.name}: {shlex.join(step.argv(out)[1:])}", flush=True)
        try:
            with log.open("w") as handle:
                done = subprocess.run(step.argv(out), cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=min(step.timeout_s, left))
            status, code = ("ok" if done.returncode == 0 else "failed"), done.returncode
        except subprocess.TimeoutExpired:
            status, code = "timeout", None
        seconds = time.monotonic() - began
        summary.append({"step": step.name, "status": status, "exit_code": code, "seconds": round(seconds, 1),
                        "command": shlex.join(step.argv(out)[1:])})
        text = log.read_text(errors="replace")
        print(text[-4000:], flush=True)
        print(f"--- {step.name}: {status} ({seconds:.0f} s)", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for row in summary:
        print(f"{row['status']:8s} {row.get('seconds', '-'):>6} s  {row['step']}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="parse every step, run none")
    parser.add_argument("--out", help="where the results go (default: $OUT, else a new temporary directory)")
    args = parser.parse_args()
    out = Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="archprobe-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        return dry_run(out)
    if not cuda_usable():
        print("no usable CUDA GPU on this machine: nothing is run; checking that every step parses")
        code = dry_run(out)
        print("no GPU: the device check did not run (dry run only)")
        return code
    print(f"results in {out}")
    return run_all(out)


if __name__ == "__main__":
    sys.exit(main())
