"""Rank-side plumbing of data-parallel runs: who this process is, its device and threads, the
process group, the collectives of the timing rule, and how a failure reaches rank 0.

A rank learns its place from the variables torch.distributed's launchers set (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``): archprobe's own local launch and ``torchrun`` set the same ones.

CPU ranks talk through gloo, with the physical cores of a node split between its ranks; CUDA
ranks through NCCL, one GPU per rank (``cuda:LOCAL_RANK``).

Ranks must run the same number of steps (a rank that stopped by its own clock would leave the
others waiting in a collective), so the warm-up ends and the timed phase is sized on values all
ranks agree on (:func:`agreed_warmup`, :func:`timed_iterations`); the timed steps themselves
contain no collective beyond the model's own (DDP's gradient all-reduce).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Mapping, Sequence

from archprobe.errors import UsageError
from archprobe.runtime.environment import physical_cores
from archprobe.runtime.timing import Clock

DEFAULT_TIMEOUT_S = 300.0  # the process-group timeout: the longest a rank waits for its peers
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
FAILURE_KEY = "archprobe/failed/"  # + rank: the one-line message of a rank's own failure


@dataclass(frozen=True)
class RankInfo:
    """This process's place in the group, as the launcher described it."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int  # ranks on this node (torchrun's --nproc-per-node)
    nnodes: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RankInfo":
        """Read the launcher's variables; a ``UsageError`` where they are missing (not launched)."""
        env = os.environ if environ is None else environ
        missing = [name for name in LAUNCH_VARIABLES if name not in env]
        if missing:
            raise UsageError(f"no process group to join: {', '.join(missing)} not set (start archprobe under "
                             "torchrun, which sets them)", param="distributed")
        world_size = int(env["WORLD_SIZE"])
        local_world_size = int(env.get("LOCAL_WORLD_SIZE", world_size))
        nnodes = int(env.get("GROUP_WORLD_SIZE", max(1, world_size // max(1, local_world_size))))
        return cls(rank=int(env["RANK"]), world_size=world_size, local_rank=int(env["LOCAL_RANK"]),
                   local_world_size=local_world_size, nnodes=nnodes)


def backend_for(device_kind: str) -> str:
    """The collective backend of a device kind: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device_kind == "cuda" else "gloo"


def rank_device(device_kind: str, local_rank: int) -> str:
    """The device a rank computes on: ``cuda:LOCAL_RANK`` (one GPU per rank) or ``cpu``."""
    return f"cuda:{local_rank}" if device_kind == "cuda" else "cpu"


def threads_per_rank(local_world_size: int, cores: int | None = None) -> int:
    """The node's physical cores split evenly between its ranks (at least one thread each)."""
    return max(1, (cores or physical_cores()) // max(1, local_world_size))


def join_group(backend: str, device: str, timeout_s: float) -> None:
    """Join the default process group (``env://``: the launcher's rendezvous) from ``device``.

    ``timeout_s`` bounds every collective: a rank waiting longer for its peers raises.
    """
    import torch
    import torch.distributed as dist

    kwargs: dict[str, Any] = {}
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        kwargs["device_id"] = dev  # NCCL binds the communicator to this rank's GPU
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **kwargs)


def leave_group() -> None:
    """Destroy the default process group. Only after a clean run: after a failure the process
    ends and takes the group along (tearing down a broken NCCL communicator can block)."""
    import torch.distributed as dist

    dist.destroy_process_group()


@contextlib.contextmanager
def process_group(backend: str, device: str, timeout_s: float) -> Iterator[None]:
    """:func:`join_group` for the block; :func:`leave_group` if the block ends cleanly."""
    join_group(backend, device, timeout_s)
    yield
    leave_group()


class Collectives:
    """The few collectives the timing rule needs, on the device the backend communicates from
    (the rank's GPU for NCCL, the CPU for gloo)."""

    def __init__(self, device: str):
        import torch

        self.device = torch.device(device)

    def max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maximum over ranks (float64)."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order."""
        import torch.distributed as dist

        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()


def agreed_warmup(step: Callable[[], Any], synchronize: Callable[[], None],
                  reduce_max: Callable[[Sequence[float]], list[float]], *, warmup: int, warmup_time: float,
                  clock: Clock = time.perf_counter) -> tuple[int, float]:
    """Warm up every rank for the same number of steps; returns (steps, seconds per step).

    At least ``warmup`` steps (and at least one) and ``warmup_time`` seconds on the slowest
    rank. After each step the ranks agree (``reduce_max``) on the elapsed time and on the time
    of that step, so they stop together; the last agreed step time sizes the timed phase.
    Warm-up steps are synchronized and not timed, so the agreement costs the timed phase nothing.
    """
    start = clock()
    count = 0
    while True:
        began = clock()
        step()
        synchronize()
        count += 1
        now = clock()
        elapsed, last = reduce_max([now - start, now - began])
        if count >= warmup and elapsed >= warmup_time:
            return count, last


def timed_iterations(seconds_per_step: float, *, min_iters: int, min_time: float, max_iters: int) -> int:
    """The agreed size of the timed phase: ``min_time`` worth of steps, at least ``min_iters``
    and at most ``max_iters``."""
    wanted = math.ceil(min_time / seconds_per_step) if seconds_per_step > 0 else max_iters
    return max(min_iters, min(max_iters, wanted))


def is_collective_error(exc: BaseException) -> bool:
    """An error of the collective layer (a peer ended, the network failed, a collective timed
    out) rather than this rank's own: torch's ``DistError`` (NCCL, the store), or a gloo
    transport error, which surfaces as a plain ``RuntimeError`` naming gloo's sources."""
    import torch.distributed as dist

    return isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and "/gloo/" in str(exc))


def tidy_message(text: str) -> str:
    """A collective error's message without gloo's ``[path/to/source.cc:78] `` prefix."""
    return re.sub(r"\[[^\]]*/gloo/[^\]]*\]\s*", "", text)


def _failure_store(timeout_s: float):
    import torch.distributed as dist

    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=timedelta(seconds=timeout_s), wait_for_workers=False)


def publish_failure(rank: int, message: str, timeout_s: float = 5.0) -> None:
    """Leave this rank's own failure in the launcher's store, where rank 0 finds it when its
    collectives fail in turn (best effort: a store that cannot be reached is skipped)."""
    try:
        _failure_store(timeout_s).set(f"{FAILURE_KEY}{rank}", message)
    except Exception:  # noqa: BLE001 - the failure itself is reported by the process's exit
        pass


def published_failure(world_size: int, wait_s: float, clock: Clock = time.monotonic) -> tuple[int, str] | None:
    """The lowest rank that published its own failure, with the message; ``None`` if none did
    within ``wait_s`` seconds."""
    try:
        store = _failure_store(max(1.0, wait_s))
    except Exception:  # noqa: BLE001
        return None
    keys = [f"{FAILURE_KEY}{rank}" for rank in range(world_size)]
    deadline = clock() + wait_s
    while True:
        for rank, key in enumerate(keys):
            if store.check([key]):
                return rank, store.get(key).decode(errors="replace")
        if clock() >= deadline:
            return None
        time.sleep(0.05)
