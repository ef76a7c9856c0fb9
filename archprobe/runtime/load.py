"""How busy the machine was while a row was measured: other processes' CPU use, CPU steal, load.

A run slowed by other work can still show a tight spread, so the spread alone does not reveal a
busy machine. Sampling ``/proc/stat`` (the CPUs this process may run on) and this process's CPU
time before and after a row tells how many of those cores other processes kept busy meanwhile,
and how much time the hypervisor stole. This process's own time includes its finished child
processes (the ceiling's GEMMs run in one), which are the run's work, not another's. Where
``/proc`` cannot be read (not Linux) the figures are ``None``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    wall_s: float
    process_s: float  # CPU time of this process (all threads) and its finished children, user + system
    busy_s: float | None  # CPU time of every process on every CPU (not idle, not iowait, not steal)
    steal_s: float | None
    total_s: float | None  # every state of every CPU


@dataclass(frozen=True)
class Load:
    """CPU use between two samples; cores are averages over the wall time."""

    other_cores: float | None  # cores kept busy by other processes
    process_cores: float  # cores this process (and its finished children) used
    steal_share: float | None  # share of all CPU time stolen by the hypervisor
    load_average: float | None  # the 1-minute load average at the end


def _proc_stat() -> tuple[float, float, float] | None:
    """``(busy, steal, total)`` seconds summed over the CPUs this process may run on."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            lines = [line.split() for line in fh if line.startswith("cpu") and line[3:4].isdigit()]
    except OSError:
        return None
    busy = steal = total = 0
    for fields in lines:
        if allowed is not None and int(fields[0][3:]) not in allowed:
            continue
        values = [int(v) for v in fields[1:]] + [0] * 8
        user, nice, system, idle, iowait, irq, softirq, stolen = values[:8]
        cpu_busy = user + nice + system + irq + softirq  # guest time is already inside user
        busy += cpu_busy
        steal += stolen
        total += cpu_busy + idle + iowait + stolen
    if not total:
        return None
    return busy / _TICKS, steal / _TICKS, total / _TICKS


def sample() -> CpuSample:
    times = os.times()
    stat = _proc_stat()
    return CpuSample(
        wall_s=time.perf_counter(),
        process_s=times.user + times.system + times.children_user + times.children_system,
        busy_s=stat[0] if stat else None,
        steal_s=stat[1] if stat else None,
        total_s=stat[2] if stat else None,
    )


def load_between(start: CpuSample, end: CpuSample) -> Load:
    wall = max(end.wall_s - start.wall_s, 1e-9)
    process = end.process_s - start.process_s
    other = steal = None
    if start.busy_s is not None and end.busy_s is not None:
        other = max(0.0, (end.busy_s - start.busy_s - process) / wall)
        total = end.total_s - start.total_s
        steal = (end.steal_s - start.steal_s) / total if total > 0 else 0.0
    try:
        average = os.getloadavg()[0]
    except OSError:
        average = None
    return Load(other_cores=other, process_cores=process / wall, steal_share=steal, load_average=average)
