"""Run a command in a fresh process and measure wall time and peak memory.

Peak RSS comes from the kernel (``wait4`` rusage, exact). The peak *anonymous* RSS (heap:
tensors, Python objects; excluding file-backed pages of shared libraries such as torch's
CUDA libraries) is sampled from /proc every few milliseconds.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessStats:
    wall_s: float
    peak_rss_mb: float
    peak_anon_mb: float
    returncode: int


def _anon_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str], env: dict | None = None) -> ProcessStats:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak_anon = 0
    done = threading.Event()

    def sample():
        nonlocal peak_anon
        while not done.is_set():
            peak_anon = max(peak_anon, _anon_kb(proc.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return ProcessStats(wall, usage.ru_maxrss / 1024, peak_anon / 1024, proc.returncode)
