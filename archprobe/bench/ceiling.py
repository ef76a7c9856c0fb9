"""The matmul-class ceiling of a device: the best rate of several GEMMs and a large convolution.

Utilisation compares a row's matmul-class FLOP/s (2 x the MACs of its convolutions, linear
layers and matmuls) with the best rate this device reaches on that kind of work in the same
dtype. The shapes are measured in a child process (``python -m archprobe.bench.ceiling``), so
their allocations (and the allocator state they leave) cannot disturb the rows measured in the
parent; the child uses the row's thread count and, on CUDA, the same TF32 setting the
convolutions run with.

The ceiling's own measurement is checked as a row's is: the spread of the winning shape's
calls, and the machine's load sampled around the child process (its CPU time is this run's),
go into the :class:`Ceiling`; a row using it turns them into ``ceiling_*`` warning codes.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time

from archprobe.results import Ceiling
from archprobe.runtime.load import Load, load_between, sample

# (kind, dims): mm (M, N, K); conv (batch, in channels, side, out channels, kernel)
CPU_SHAPES = (("mm", (1024, 1024, 1024)), ("mm", (2048, 2048, 2048)), ("mm", (4096, 1024, 1024)),
              ("conv", (16, 128, 56, 128, 3)), ("conv", (8, 256, 28, 256, 3)))
CUDA_SHAPES = (("mm", (4096, 4096, 4096)), ("mm", (8192, 8192, 8192)), ("mm", (16384, 4096, 4096)),
               ("conv", (64, 256, 56, 256, 3)), ("conv", (128, 128, 56, 128, 3)))
QUICK_SHAPES = (("mm", (256, 256, 256)), ("conv", (2, 16, 16, 16, 3)))
SLOW_CALL_S = 1.0  # a dtype without fast kernels: stop before the larger shapes


def describe(kind: str, dims: tuple[int, ...]) -> str:
    if kind == "mm":
        return "mm {}x{}x{}".format(*dims)
    n, c, side, k, kernel = dims
    return f"conv {n}x{c}x{side}x{side} -> {k} ch, {kernel}x{kernel}"


def _flops(kind: str, dims: tuple[int, ...]) -> float:
    if kind == "mm":
        m, n, k = dims
        return 2.0 * m * n * k
    n, c, side, k, kernel = dims  # "same" padding: the output is side x side
    return 2.0 * n * k * c * kernel * kernel * side * side


def measure_shapes(device: str, dtype: str, threads: int | None, shapes, min_time: float = 0.3) -> list[dict]:
    """Rates of ``shapes`` on ``device`` (run in this process; the parent calls it in a child)."""
    import torch
    import torch.nn.functional as F

    from archprobe.runtime.backends import make_backend
    from archprobe.runtime.precision import torch_dtype
    from archprobe.runtime.timing import run_timed, summarize

    backend = make_backend(device)
    dt = torch_dtype(dtype)
    results = []
    with backend.settings(threads=threads):
        for kind, dims in shapes:
            if kind == "mm":
                m, n, k = dims
                a, b = torch.randn(m, k, device=backend.device, dtype=dt), torch.randn(k, n, device=backend.device, dtype=dt)
                out = torch.empty(m, n, device=backend.device, dtype=dt)

                def step(a=a, b=b, out=out):
                    torch.mm(a, b, out=out)
            else:
                n, c, side, k, kernel = dims
                x = torch.randn(n, c, side, side, device=backend.device, dtype=dt)
                w = torch.randn(k, c, kernel, kernel, device=backend.device, dtype=dt)

                def step(x=x, w=w, pad=kernel // 2):
                    F.conv2d(x, w, padding=pad)
            start = time.perf_counter()
            step()
            backend.synchronize()
            first = time.perf_counter() - start
            times, _ = run_timed(step, backend.timer(), warmup=2, warmup_time=0.2, min_iters=3, min_time=min_time)
            stats = summarize(times)
            results.append({"shape": describe(kind, dims), "flops_per_sec": _flops(kind, dims) / stats.median_s,
                            "spread": stats.spread, "samples": stats.samples})
            backend.cleanup()
            if first > SLOW_CALL_S:
                break
    return results


def precision_of(device: str, dtype: str) -> str:
    """float32 on CUDA runs convolutions in TF32 when cuDNN allows it: the ceiling does too."""
    import torch

    if device.startswith("cuda") and dtype == "float32" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return dtype


def measure_in_child(module: str, what: str, device: str, threads: int | None, quick: bool, timeout: float,
                     *extra: str) -> tuple[list[dict], Load]:
    """Run ``python -m module --device ... [extra]`` (a roof's measurement, kept out of this
    process's allocator and threads) and return the rates its last line prints, with the
    machine's load meanwhile (the child's CPU time is this run's own)."""
    command = [sys.executable, "-m", module, "--device", device, *extra]
    if threads:
        command += ["--threads", str(threads)]
    if quick:
        command.append("--quick")
    before = sample()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    load = load_between(before, sample())
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"the {what} measurement failed: {lines[-1] if lines else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1]), load


def measure_ceiling(device: str, dtype: str, threads: int | None = None, *, quick: bool = False,
                    timeout: float = 300.0) -> Ceiling:
    """The best rate over the device's shapes, measured in a child process, with how steady
    that measurement was (the winning shape's spread, the machine's load meanwhile)."""
    rates, load = measure_in_child("archprobe.bench.ceiling", "ceiling", device, threads, quick, timeout,
                                   "--dtype", dtype)
    best = max(rates, key=lambda r: r["flops_per_sec"])
    if not math.isfinite(best["flops_per_sec"]):
        raise RuntimeError("the ceiling measurement gave no finite rate")
    spread = best.get("spread")
    return Ceiling(best["flops_per_sec"], best["shape"], precision_of(device, dtype),
                   spread=spread if spread is None or math.isfinite(spread) else None, samples=best.get("samples"),
                   other_cpu_cores=load.other_cores, cpu_steal=load.steal_share)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (tests)")
    args = parser.parse_args(argv)
    import torch

    if precision_of(args.device, args.dtype) == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    shapes = QUICK_SHAPES if args.quick else CUDA_SHAPES if args.device.startswith("cuda") else CPU_SHAPES
    print(json.dumps(measure_shapes(args.device, args.dtype, args.threads, shapes,
                                    min_time=0.05 if args.quick else 0.3)))


if __name__ == "__main__":
    _main()
