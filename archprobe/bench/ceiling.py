"""The matmul ceiling: the best matmul rate measured on a device, for utilisation figures."""

from __future__ import annotations

import time

from archprobe.results import Ceiling
from archprobe.runtime.precision import torch_dtype
from archprobe.runtime.timing import Clock, run_timed, summarize


def measure_matmul_ceiling(backend, dtype: str, *, clock: Clock = time.perf_counter,
                           max_n: int | None = None, probe_limit_s: float = 0.1,
                           min_time: float = 0.3, min_iters: int = 3) -> Ceiling:
    """Achieved FLOP/s of an ``n x n`` matmul in ``dtype`` on the backend's device (2n^3 FLOPs).

    ``n`` doubles from 256 (1024 on CUDA) while one product takes under ``probe_limit_s``, up
    to 2048 on CPU / 8192 on CUDA, so a dtype without fast kernels does not take minutes.
    float32 on CUDA: convolutions run in TF32 by default (``cudnn.allow_tf32``), so the matmul
    ceiling is measured with the same setting; otherwise Util. could exceed 100%.
    """
    import torch

    is_cuda = backend.kind == "cuda"
    precision = dtype
    if is_cuda and dtype == "float32" and torch.backends.cudnn.allow_tf32:
        precision = "tf32"
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = previous or precision == "tf32"
    try:
        flops, n = _matmul_ceiling(backend, dtype, clock, max_n, probe_limit_s, min_time, min_iters)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return Ceiling(flops, n, precision)


def _matmul_ceiling(backend, dtype, clock, max_n, probe_limit_s, min_time, min_iters) -> tuple[float, int]:
    import torch

    device = backend.device
    is_cuda = backend.kind == "cuda"
    n = 1024 if is_cuda else 256
    max_n = max_n or (8192 if is_cuda else 2048)
    n = min(n, max_n)
    dt = torch_dtype(dtype)
    while True:
        a = torch.randn(n, n, device=device).to(dt)
        b = torch.randn(n, n, device=device).to(dt)
        c = torch.mm(a, b)  # first call: library initialisation
        backend.synchronize()
        t0 = clock()
        torch.mm(a, b, out=c)
        backend.synchronize()
        elapsed = clock() - t0
        if n * 2 > max_n or elapsed >= probe_limit_s:
            break
        n *= 2
        del a, b, c
    times, _ = run_timed(lambda: torch.mm(a, b, out=c), backend.timer(), warmup=1, warmup_time=0.0,
                         min_iters=min_iters, min_time=min_time, clock=clock)
    stats = summarize(times)
    del a, b, c
    return 2.0 * n**3 / stats.median_s, n
