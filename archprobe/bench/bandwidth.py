"""The memory-bandwidth ceiling of a device: the rate of device-to-device copies.

The roofline of ``archprobe profile`` has two roofs: the matmul-class ceiling
(:mod:`archprobe.bench.ceiling`) and this one. A copy of ``nbytes`` reads ``nbytes`` and writes
``nbytes``, so its rate is ``2 * nbytes / median time`` in bytes/s. The largest copy (256 MiB
buffers on a CPU, 2 GiB on a GPU) is far beyond any cache: its rate is the device memory's
bandwidth (``large_bytes_per_sec``). That alone is no ceiling for a layer whose tensors stay in
cache (a LeNet's sigmoid backward moved 20 GB/s against a 7.6 GB/s large copy, one CPU thread),
so the roof is the best rate over copies from cache-sized to the large one (``bytes_per_sec``,
with the copy that set it), each copy's rate from its fastest call: a roof is the best the
device does, and on a busy machine the median of small multi-threaded copies collapses (each
call waits for a descheduled thread). Bytes are bytes: measured once per device and thread count, for any
dtype, in a child process (``python -m archprobe.bench.bandwidth``) as the matmul ceiling is,
with the spread of the winning copy's calls and the machine's load meanwhile.
"""

from __future__ import annotations

import argparse
import json
import math

from archprobe.results import Bandwidth
from archprobe.bench.ceiling import measure_in_child

CPU_BYTES = (256 << 10, 4 << 20, 32 << 20, 256 << 20)  # L2, L3, beyond, far beyond
CUDA_BYTES = (8 << 20, 64 << 20, 2 << 30)
QUICK_BYTES = (256 << 10, 8 << 20)


def describe(nbytes: int) -> str:
    if nbytes >= 1 << 20:
        return f"copy {nbytes >> 20} MiB"
    return f"copy {nbytes >> 10} KiB" if nbytes >= 1 << 10 else f"copy {nbytes} B"


def measure_copy(device: str, threads: int | None, nbytes: int, min_time: float = 0.5) -> dict:
    """The rate of ``dst.copy_(src)`` for two ``nbytes`` buffers on ``device`` (in this process)."""
    import torch

    from archprobe.runtime.backends import make_backend
    from archprobe.runtime.timing import run_timed, summarize

    backend = make_backend(device)
    with backend.settings(threads=threads):
        src = torch.ones(nbytes // 4, device=backend.device, dtype=torch.float32)
        dst = torch.empty_like(src)

        def step():
            dst.copy_(src)

        times, _ = run_timed(step, backend.timer(), warmup=3, warmup_time=0.2, min_iters=5, min_time=min_time)
        stats = summarize(times)
        nbytes = src.numel() * src.element_size()
        backend.cleanup()
    # a roof is the best the device does: the fastest call (on a busy machine a median of small
    # multi-threaded copies collapses as each waits for a descheduled thread)
    return {"shape": describe(nbytes), "bytes_per_sec": 2.0 * nbytes / stats.min_s, "spread": stats.spread,
            "samples": stats.samples, "median_bytes_per_sec": 2.0 * nbytes / stats.median_s}


def measure_bandwidth(device: str, threads: int | None = None, *, quick: bool = False,
                      timeout: float = 300.0) -> Bandwidth:
    """The copy rate of ``device`` measured in a child process, with how steady it was."""
    rates, load = measure_in_child("archprobe.bench.bandwidth", "bandwidth", device, threads, quick, timeout)
    best = max(rates, key=lambda r: r["bytes_per_sec"])
    if not all(math.isfinite(r["bytes_per_sec"]) and r["bytes_per_sec"] > 0 for r in rates):
        raise RuntimeError("the bandwidth measurement gave no finite rate")
    spread = best.get("spread")
    return Bandwidth(best["bytes_per_sec"], best["shape"], large_bytes_per_sec=rates[-1]["bytes_per_sec"],
                     large_shape=rates[-1]["shape"], spread=spread if spread is None or math.isfinite(spread) else None,
                     samples=best.get("samples"), other_cpu_cores=load.other_cores, cpu_steal=load.steal_share)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--quick", action="store_true", help="a small copy (tests)")
    args = parser.parse_args(argv)
    nbytes = QUICK_BYTES if args.quick else CUDA_BYTES if args.device.startswith("cuda") else CPU_BYTES
    print(json.dumps([measure_copy(args.device, args.threads, n, min_time=0.05 if args.quick else 0.3)
                      for n in nbytes]))


if __name__ == "__main__":
    _main()
