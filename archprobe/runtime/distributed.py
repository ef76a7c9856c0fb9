"""Rank-side plumbing of data-parallel runs: who this process is, its device and threads, the
process group, the collectives of the timing rule, and how a failure reaches rank 0.

A rank learns its place from the variables torch.distributed's launchers set (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_WORLD_SIZE``) and where the group
meets: ``torchrun``'s TCP store at ``MASTER_ADDR:MASTER_PORT``, or, for archprobe's own local
launch, a file store at :data:`FILE_STORE_VARIABLE` (torch's TCP store looks up the host name of
every address it connects to, which sends DNS queries for 127.0.0.1; a file store uses no
socket), with gloo bound to the loopback interface.

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
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from archprobe.errors import UsageError, first_line
from archprobe.runtime.environment import physical_cores
from archprobe.runtime.timing import Clock

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_TIMEOUT_S = 300.0  # the process-group timeout: the longest a rank waits for its peers
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TCP_STORE_VARIABLES = ("MASTER_ADDR", "MASTER_PORT")  # torchrun's rendezvous
FILE_STORE_VARIABLE = "ARCHPROBE_FILE_STORE"  # the file store of a local launch
LAUNCH_VARIABLES = (*RANK_VARIABLES, *TCP_STORE_VARIABLES, FILE_STORE_VARIABLE)
# Where the transports pick their network interface: the loopback one for local ranks.
INTERFACE_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
FAILURE_KEY = "archprobe/failed/"  # + rank: the one-line message of a rank's own failure
PEER_GRACE_S = 1.0  # a rank failing because a peer failed waits this long, so the first one is named


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
        needed = RANK_VARIABLES + (() if FILE_STORE_VARIABLE in env else TCP_STORE_VARIABLES)
        missing = [name for name in needed if name not in env]
        if missing:
            raise UsageError(f"no process group to join: {', '.join(missing)} not set (start archprobe under "
                             "torchrun, which sets them)", param="distributed")
        world_size = int(env["WORLD_SIZE"])
        local_world_size = int(env.get("LOCAL_WORLD_SIZE", world_size))
        nnodes = int(env.get("GROUP_WORLD_SIZE", max(1, world_size // max(1, local_world_size))))
        return cls(rank=int(env["RANK"]), world_size=world_size, local_rank=int(env["LOCAL_RANK"]),
                   local_world_size=local_world_size, nnodes=nnodes)


def loopback_interface() -> str | None:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS), if any."""
    import socket

    with contextlib.suppress(OSError):
        names = {name for _, name in socket.if_nameindex()}
        return next((name for name in ("lo", "lo0") if name in names), None)
    return None


def loopback_problem(timeout_s: float = 2.0) -> str | None:
    """Why local ranks could not talk over the loopback interface (``None``: they can): a
    connection to a listening socket on 127.0.0.1 must go through. Without it gloo fails only
    after a stack of C++ frames, or waits for its timeout."""
    import socket

    name = loopback_interface() or "lo"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=timeout_s):
                pass
    except OSError as exc:
        return (f"the loopback interface is not usable ({exc.strerror or exc}): local ranks talk over 127.0.0.1;"
                f" bring {name} up (ip link set {name} up)")
    return None


def local_rank_environments(nproc: int, store_path: str, run_id: str) -> dict[int, dict[str, str]]:
    """The variables of each of ``nproc`` ranks on this machine alone (the launcher's names):
    they meet at the file store ``store_path``, and gloo and NCCL keep to the loopback interface
    unless the user named another."""
    shared = {"WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_WORLD_SIZE": "1", "GROUP_RANK": "0",
              "TORCHELASTIC_RUN_ID": run_id, FILE_STORE_VARIABLE: store_path}
    loopback = loopback_interface()
    if loopback is not None:
        shared.update({name: loopback for name in INTERFACE_VARIABLES if name not in os.environ})
    return {rank: {**shared, "RANK": str(rank), "LOCAL_RANK": str(rank), "ROLE_RANK": str(rank)}
            for rank in range(nproc)}


def backend_for(device_kind: str) -> str:
    """The collective backend of a device kind: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device_kind == "cuda" else "gloo"


def rank_device(device_kind: str, local_rank: int) -> str:
    """The device a rank computes on: ``cuda:LOCAL_RANK`` (one GPU per rank) or ``cpu``."""
    return f"cuda:{local_rank}" if device_kind == "cuda" else "cpu"


def threads_per_rank(local_world_size: int, cores: int | None = None) -> int:
    """The node's physical cores split evenly between its ranks (at least one thread each)."""
    return max(1, (cores or physical_cores()) // max(1, local_world_size))


def rank_threads(device_kind: str, threads: int | None, local_world_size: int) -> int | None:
    """Threads per rank: as asked, else the node's physical cores split between its CPU ranks
    (CUDA ranks keep torch's default)."""
    if threads is not None or device_kind != "cpu":
        return threads
    return threads_per_rank(local_world_size)


def check_nprocs(nprocs: Sequence[int], device_kind: str, gpus: int | None = None, *, threads: int | None = None,
                 cpus: int | None = None) -> None:
    """Usage errors before anything starts: world sizes below 1, more CUDA ranks than GPUs, a
    backend this build of torch lacks, more ranks x threads per rank than the machine's logical
    CPUs (``cpus``, default ``os.cpu_count()``)."""
    import torch
    import torch.distributed as dist

    for n in nprocs:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UsageError(f"must be a positive number of processes, not {n!r}", param="nproc")
    if not dist.is_available():
        raise UsageError("this build of torch has no torch.distributed", param="nproc")
    if device_kind == "cuda":
        count = torch.cuda.device_count() if gpus is None else gpus
        if max(nprocs) > count:
            raise UsageError(f"{max(nprocs)} CUDA ranks need {max(nprocs)} GPUs (one per rank); "
                             f"{count} {'is' if count == 1 else 'are'} visible", param="nproc")
        if not dist.is_nccl_available():
            raise UsageError("CUDA ranks need NCCL, which this build of torch lacks", param="nproc")
    elif not dist.is_gloo_available():
        raise UsageError("CPU ranks need gloo, which this build of torch lacks", param="nproc")
    cpus = cpus or os.cpu_count() or 1
    per_rank = threads or 1
    if max(nprocs) * per_rank > cpus:  # every rank is a process with its own threads, GPU or not
        raise UsageError(f"{max(nprocs)} ranks x {per_rank} thread{'s' if per_rank != 1 else ''} need "
                         f"{max(nprocs) * per_rank} CPUs; this machine has {cpus}", param="nproc")


def rank_device_kind(devices: Sequence[str]) -> str:
    """The one device kind data-parallel ranks run on, ``cpu`` or ``cuda`` (a ``UsageError`` for
    none, several, ``all``, or cuda without a usable GPU)."""
    from archprobe.runtime.backends import resolve_devices

    kinds = [str(d).strip().lower() for d in devices]
    if len(kinds) != 1 or kinds[0] not in ("cpu", "cuda"):
        raise UsageError(f"data-parallel ranks need one device kind, cpu or cuda, not {', '.join(kinds) or 'none'}",
                         param="device")
    resolve_devices(kinds)  # cuda without a usable GPU is a usage error
    return kinds[0]


def writes_output(joined: bool) -> bool:
    """Whether this process writes results: always, except the ranks of a joined group other than 0."""
    return not joined or os.environ.get("RANK", "0") == "0"


def join_group(backend: str, device: str, timeout_s: float) -> None:
    """Join the default process group from ``device``: at the local launch's file store, else
    ``env://`` (torchrun's TCP store).

    ``timeout_s`` bounds every collective: a rank waiting longer for its peers raises.
    """
    import torch
    import torch.distributed as dist

    kwargs: dict[str, Any] = {}
    if FILE_STORE_VARIABLE in os.environ:  # a local launch: no rendezvous over TCP
        store = _store(timeout_s)
        store.set_timeout(timedelta(seconds=timeout_s))
        kwargs.update(store=store, rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        kwargs["device_id"] = dev  # NCCL binds the communicator to this rank's GPU
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **kwargs)


GLOO_DRAIN_S = 0.1  # how long gloo's worker threads get to free the last collective's tensors


def leave_group() -> None:
    """Destroy the default process group. Only after a clean run: after a failure the process
    ends and takes the group along (tearing down a broken NCCL communicator can block).

    Before torch 2.8, gloo's group is destroyed holding the GIL while it joins its worker
    threads, and a worker still freeing the last collective's tensors needs the GIL: both wait
    for ever (pytorch#154976; seen on torch 2.5.1). A barrier, then a short sleep with the GIL
    released, lets the workers finish first.
    """
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        dist.barrier()
        time.sleep(GLOO_DRAIN_S)
    dist.destroy_process_group()


@contextlib.contextmanager
def process_group(backend: str, device: str, timeout_s: float) -> Iterator[None]:
    """:func:`join_group` for the block; :func:`leave_group` if the block ends cleanly."""
    join_group(backend, device, timeout_s)
    yield
    leave_group()


class Collectives:
    """The few collectives the data-parallel runners need, on the device the backend
    communicates from (the rank's GPU for NCCL, the CPU for gloo)."""

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

    def sum(self, tensor: "torch.Tensor") -> "torch.Tensor":
        """The element-wise sum over ranks of ``tensor`` (on this device), as a new tensor."""
        import torch.distributed as dist

        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def broadcast(self, tensors: Iterable["torch.Tensor"], src: int = 0) -> None:
        """Overwrite ``tensors`` (on this device) with rank ``src``'s, in place."""
        import torch.distributed as dist

        for tensor in tensors:
            dist.broadcast(tensor, src)

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


_FILE_STORES: dict[str, Any] = {}  # one per path and process: the group and the failures share it


def _store(timeout_s: float):
    """The launch's store: the local launch's file store, else a client of torchrun's TCP store."""
    import torch.distributed as dist

    path = os.environ.get(FILE_STORE_VARIABLE)
    if path is None:
        return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                             timeout=timedelta(seconds=timeout_s), wait_for_workers=False)
    if path not in _FILE_STORES:  # -1: no rank deletes the file (the launch removes it)
        _FILE_STORES[path] = store = dist.FileStore(path, -1)
        store.set_timeout(timedelta(seconds=timeout_s))  # the first use's: the group's, when it is joined
    return _FILE_STORES[path]


def publish_failure(rank: int, message: str, timeout_s: float = 5.0) -> None:
    """Leave this rank's own failure in the launcher's store, where rank 0 finds it when its
    collectives fail in turn (best effort: a store that cannot be reached is skipped)."""
    try:
        _store(timeout_s).set(f"{FAILURE_KEY}{rank}", message)
    except Exception:  # noqa: BLE001 - the failure itself is reported by the process's exit
        pass


def published_failure(world_size: int, wait_s: float, clock: Clock = time.monotonic) -> tuple[int, str] | None:
    """The lowest rank that published its own failure, with the message; ``None`` if none did
    within ``wait_s`` seconds."""
    try:
        store = _store(max(1.0, wait_s))
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


def follows_a_peer(exc: BaseException, info: RankInfo) -> bool:
    """Whether this rank's failure only follows another's: an error of the collective layer,
    or any error after a peer has already published its own."""
    return is_collective_error(exc) or published_failure(info.world_size, wait_s=0) is not None


def rank_failed(exc: BaseException, info: RankInfo) -> bool:
    """Before a failing rank ends: its own failure is left in the store for rank 0 to find; a
    failure that only follows a peer's waits, so that the launcher sees the rank that failed
    first end first (and names it). Returns whether the failure followed a peer's."""
    if follows_a_peer(exc, info):
        time.sleep(PEER_GRACE_S)
        return True
    publish_failure(info.rank, first_line(exc))
    return False
