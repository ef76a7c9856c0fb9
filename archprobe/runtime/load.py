"""How busy the machine was while something was measured: other processes' CPU use, CPU steal,
load; and the warning codes every measurement takes from it.

A run slowed by other work can still show a tight spread, so the spread alone does not reveal a
busy machine. Sampling ``/proc/stat`` (the CPUs this process may run on) and this process's CPU
time before and after a measurement tells how many of those cores other processes kept busy
meanwhile, and how much time the hypervisor stole. This process's own time includes its finished
child processes (the ceiling's GEMMs run in one) and its live descendants (DataLoader workers,
compile workers), which are the run's work, not another's. Where ``/proc`` cannot be read (not
Linux) the figures are ``None``.

A group of processes measured together (the ranks of a data-parallel run) samples each rank
around the same window; :func:`group_load` subtracts every rank of a host from that host's busy
time, so the ranks do not count as each other's "other processes".

:func:`machine_warnings` turns the figures into the codes a result carries: a throughput row, a
training epoch and the matmul ceiling all decide them here, with the same thresholds.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Sequence

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

SPREAD_WARNING = 0.10  # IQR / median above this: "spread"
BUSY_CORES = 0.25  # other processes keeping more than this many cores busy: "busy"
STEAL_WARNING = 0.05  # more than this share of CPU time stolen: "steal"
MACHINE_CODES = ("spread", "busy", "steal")  # what machine_warnings can give, in its order


@dataclass(frozen=True)
class CpuSample:
    wall_s: float
    process_s: float  # CPU time of this process (all threads), its finished children and live descendants
    busy_s: float | None  # CPU time of every process on every CPU (not idle, not iowait, not steal)
    steal_s: float | None
    total_s: float | None  # every state of every CPU
    load_average: float | None = None  # the 1-minute load average when sampled


@dataclass(frozen=True)
class Load:
    """CPU use between two samples; cores are averages over the wall time."""

    other_cores: float | None  # cores kept busy by other processes
    process_cores: float  # cores this process (and its children), or the group's ranks, used
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


def _cpu_seconds(pid: int) -> float:
    """User + system time of process ``pid`` and of its children it has reaped (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
        return sum(int(v) for v in fields[11:15]) / _TICKS  # utime, stime, cutime, cstime
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                found.extend(int(v) for v in fh.read().split())
        except (OSError, ValueError):
            continue
    return found


def _descendants_s() -> float:
    """CPU time of this process's live descendants (each with what it has reaped); 0 where
    ``/proc`` does not list children."""
    total, pending, seen = 0.0, _children(os.getpid()), set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _cpu_seconds(pid)
        pending.extend(_children(pid))
    return total


def sample() -> CpuSample:
    times = os.times()
    stat = _proc_stat()
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):
        average = None
    return CpuSample(
        wall_s=time.perf_counter(),
        process_s=times.user + times.system + times.children_user + times.children_system + _descendants_s(),
        busy_s=stat[0] if stat else None,
        steal_s=stat[1] if stat else None,
        total_s=stat[2] if stat else None,
        load_average=average,
    )


Window = tuple[str, CpuSample, CpuSample]  # (host name, sample at the start, sample at the end)


def window(start: CpuSample, end: CpuSample) -> Window:
    """This process's window, as a rank hands it to :func:`group_load`."""
    return socket.gethostname(), start, end


def group_load(windows: Sequence[Window]) -> Load:
    """The load over the windows of processes measured together (every rank of a group, or one
    process alone), each ``(host, start, end)``.

    On each host, the first window's ``/proc/stat`` figures stand for the host (its ranks share
    the CPUs they may run on, inherited from one launcher) and every window of that host is the
    group's own work; ``other_cores`` and ``steal_share`` are the busiest host's,
    ``process_cores`` the group's own cores summed over the hosts, ``load_average`` the first
    window's.
    """
    hosts: dict[str, list[tuple[CpuSample, CpuSample]]] = {}
    for host, start, end in windows:
        hosts.setdefault(host, []).append((start, end))
    other = steal = None
    process = 0.0
    for pairs in hosts.values():
        start, end = pairs[0]
        wall = max(end.wall_s - start.wall_s, 1e-9)
        own = sum(e.process_s - s.process_s for s, e in pairs)
        process += own / wall
        if start.busy_s is not None and end.busy_s is not None:
            host_other = max(0.0, (end.busy_s - start.busy_s - own) / wall)
            total = end.total_s - start.total_s
            host_steal = (end.steal_s - start.steal_s) / total if total > 0 else 0.0
            other = host_other if other is None else max(other, host_other)
            steal = host_steal if steal is None else max(steal, host_steal)
    average = windows[0][2].load_average if windows else None
    return Load(other_cores=other, process_cores=process, steal_share=steal, load_average=average)


def load_between(start: CpuSample, end: CpuSample) -> Load:
    """The load between two samples of this process."""
    return group_load([("", start, end)])


def machine_warnings(*, spread: float | None = None, other_cores: float | None = None,
                     steal: float | None = None) -> tuple[str, ...]:
    """The warning codes of a measurement: ``spread`` (IQR above :data:`SPREAD_WARNING` of the
    median), ``busy`` (other processes kept more than :data:`BUSY_CORES` cores busy), ``steal``
    (the hypervisor took more than :data:`STEAL_WARNING` of the CPU time); a figure that is
    ``None`` (not measured) gives no code."""
    codes = []
    if spread is not None and spread > SPREAD_WARNING:
        codes.append("spread")
    if other_cores is not None and other_cores > BUSY_CORES:
        codes.append("busy")
    if steal is not None and steal > STEAL_WARNING:
        codes.append("steal")
    return tuple(codes)
