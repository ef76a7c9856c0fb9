"""The setup a measurement ran under: a number without its setup is not a result.

``collect_environment(device)`` records library versions, the device and CPU names (an
:class:`archprobe.results.Environment`); the runners add the per-row settings (threads, dtype,
memory format, compile flag).
``physical_cores()`` is the default CPU thread count.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

from archprobe.results import Environment


def _cpuinfo(path: str = "/proc/cpuinfo") -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per logical processor (empty where it is unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def physical_cores(cpuinfo_path: str = "/proc/cpuinfo") -> int:
    """Physical cores this process may use: distinct ("physical id", "core id") pairs among the
    logical CPUs in its affinity mask; ``os.cpu_count()`` where that cannot be read."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    cores = set()
    for entry in _cpuinfo(cpuinfo_path):
        if "core id" not in entry:
            continue
        try:
            processor = int(entry.get("processor", "-1"))
        except ValueError:
            processor = -1
        if allowed is not None and processor >= 0 and processor not in allowed:
            continue
        cores.add((entry.get("physical id", "0"), entry["core id"]))
    if cores:
        return len(cores)
    fallback = len(allowed) if allowed else os.cpu_count()
    return max(1, fallback or 1)


@lru_cache(maxsize=None)
def cpu_model() -> str:
    for entry in _cpuinfo():
        for key in ("model name", "Processor", "cpu model", "uarch"):
            if entry.get(key):
                return entry[key]
    return platform.processor() or platform.machine() or "unknown CPU"


def collect_environment(device: str = "cpu") -> Environment:
    import torch

    dev = torch.device(device)
    cudnn = None
    try:
        if torch.backends.cudnn.is_available():
            cudnn = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - a broken cuDNN install must not stop the record
        cudnn = None
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
    else:
        name = cpu_model()
    return Environment(
        torch_version=torch.__version__,
        cuda_version=torch.version.cuda,
        cudnn_version=cudnn,
        device_name=name,
        cpu_model=cpu_model(),
        python_version=platform.python_version(),
    )
