"""Sweeps over whole libraries (the atlas): every model x analysis is a cell, run in a worker
process with a time limit and a memory guard, and stored as it ends (:mod:`archprobe.bench.store`).

A cell calls the same analysis functions the other commands and doors call
(:func:`archprobe.analysis.counting.count`, :func:`archprobe.analysis.min_input.solve_min_input`,
:func:`archprobe.analysis.memory.memory_rows`, :func:`archprobe.analysis.shapes.layer_table`,
:func:`archprobe.bench.sweeps.throughput_sweep`). A cell that raises, runs past its time limit,
passes its memory guard or kills its worker is stored with that status and its error, and the
sweep goes on; a cell already in the store (same spec, analysis, options and library versions)
is not computed again, so an interrupted sweep resumes where it stopped and a rerun computes
nothing. ``shard=(i, n)`` takes a deterministic share of the cells (by a hash of spec and
analysis), so the machines of a job array split a sweep between them; their stores merge.

Workers are fresh Python processes (``python -c``, so a script calling :func:`run_sweep` needs no
``__main__`` guard) talking over a socket pair; their own output (model code's prints,
warnings) goes to ``DIR/sweep.log``. The memory guard is twofold: ``RLIMIT_AS``, the worker's
address space after its imports plus the cell's allowance, so an allocation past it fails at once
(``MemoryError``, or torch's "can't allocate memory") instead of swapping the machine (left off
where cells use CUDA, whose context reserves far more address space than it uses); and a
watchdog in the sweep that stops a worker whose resident memory grows past the allowance.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from archprobe.bench.store import Store, cell_key, library_versions, now
from archprobe.errors import ArchprobeError, UsageError, first_line
from archprobe.plumbing.signals import signals_deferred
from archprobe.results import SweepCell, SweepRun

ANALYSES = ("params", "min-input", "memory", "shapes", "throughput")
STATUSES = ("ok", "error", "timeout", "oom", "crashed")
DEFAULT_TIMEOUT_S = 600.0
LOG_FILE = "sweep.log"
MODEL_OPTIONS = ("input_size", "in_channels", "num_classes")
_READY_TIMEOUT_S = 300.0  # a worker that has not imported torch by then is broken
_WATCH_S = 0.5  # how often the watchdog reads a busy worker's resident memory


@dataclass(frozen=True)
class SweepConfig:
    """The options every cell of a sweep runs with (they are part of each cell's key).

    Static analyses (params, shapes, min-input) run at batch 1; memory and throughput at
    ``batch_size``, modelled on / measured on ``device`` (cpu by default, so shards of one
    sweep on different machines key their cells alike)."""

    mode: str = "eval"
    batch_size: int = 32
    device: str = "cpu"
    input_size: Any = None
    in_channels: int | None = None
    num_classes: int | None = None
    max_size: int = 4096  # min-input
    min_time: float = 2.0  # throughput

    def options(self, analysis: str) -> dict[str, Any]:
        model = {"input_size": _size_text(self.input_size), "in_channels": self.in_channels,
                 "num_classes": self.num_classes}
        if analysis == "params":
            return {**model, "batch_size": 1, "mode": self.mode}
        if analysis == "shapes":
            return {**model, "batch_size": 1}
        if analysis == "min-input":
            return {**model, "batch_size": 1, "mode": self.mode, "max_size": self.max_size}
        if analysis == "memory":
            return {**model, "batch_size": self.batch_size, "mode": self.mode, "optimizer": "sgd",
                    "dtype": "float32", "device": self.device}
        if analysis == "throughput":
            return {**model, "batch_size": self.batch_size, "mode": self.mode, "device": self.device,
                    "dtype": "float32", "min_time": self.min_time}
        raise UsageError(f"unknown analysis {analysis!r}: use {', '.join(ANALYSES)}", param="analyses")


def _size_text(size: Any) -> str | None:
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        return "x".join(map(str, size))
    return str(size)


@dataclass(frozen=True)
class Cell:
    """One model x analysis to run: the spec as keyed, its options and its key."""

    model: str
    analysis: str
    options: dict = field(hash=False)
    key: str


def check_analyses(analyses: Sequence[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(a.strip() for a in analyses if a.strip()))
    unknown = [a for a in names if a not in ANALYSES]
    if unknown or not names:
        raise UsageError(f"unknown analysis {', '.join(unknown) or '(none)'}: use {', '.join(ANALYSES)}",
                         param="analyses")
    return names


def check_shard(shard: "tuple[int, int] | str | None") -> tuple[int, int]:
    """``"2/8"`` or ``(2, 8)`` -> ``(2, 8)``: the second of eight shares (1-based)."""
    if shard is None:
        return (1, 1)
    try:
        index, count = (map(int, shard.split("/")) if isinstance(shard, str) else shard)
    except (TypeError, ValueError):
        raise UsageError(f"{shard!r} is not a shard: use I/N, e.g. 1/4", param="shard") from None
    if count < 1 or not 1 <= index <= count:
        raise UsageError(f"{shard!r}: the shard index I must be 1 to N", param="shard")
    return (index, count)


def in_shard(model: str, analysis: str, shard: tuple[int, int]) -> bool:
    index, count = shard
    digest = hashlib.sha256(f"{model}\0{analysis}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index - 1


# --- planning -------------------------------------------------------------------------------------


def plan_cells(models: Sequence[str], analyses: Sequence[str], config: SweepConfig, store: Store, *,
               exclude: Sequence[str] = (), shard: tuple[int, int] = (1, 1),
               versions: dict[str, str] | None = None,
               lister: Callable[[str], list[str]] | None = None) -> list[Cell]:
    """Every cell of the sweep's share, in order (models as given, globs expanded, x analyses).

    Library globs expand over name lists kept in the store per library version; literal specs
    are checked (a typo fails before any work starts), user files resolved and keyed with the
    SHA-256 of their file, so an edited file is a new cell. ``lister(prefix)`` lists a library's
    names where the store has none (default: :func:`archprobe.zoo.resolution.library_names`)."""
    from archprobe.zoo.resolution import expand, library_names, spec_key

    lister = lister or library_names
    versions = versions or library_versions()
    library = {"tv": "torchvision", "timm": "timm"}

    listed: dict[str, list[str]] = {}

    def names(prefix: str) -> list[str]:
        if prefix not in listed:
            listed[prefix] = store.library_names(prefix, versions[library[prefix]], lambda: lister(prefix))
        return listed[prefix]

    specs = [spec_key(m) for m in expand(models, exclude, names=names)]
    known: dict[str, set[str]] = {}
    for spec in specs:
        _check_spec(spec, names, known, config)
    cells = []
    for spec in specs:
        extra = _file_digest(spec)
        for analysis in analyses:
            if not in_shard(spec, analysis, shard):
                continue
            options = {**config.options(analysis), **extra}
            cells.append(Cell(spec, analysis, options, cell_key(spec, analysis, options, versions)))
    return cells


def _check_spec(spec: str, names: Callable[[str], list[str]], known: dict[str, set[str]],
                config: SweepConfig) -> None:
    """A usage error for a spec that names no model; library names checked against their list
    (no import; ``known`` keeps each list as a set), other specs resolved."""
    from archprobe.zoo.resolution import as_spec, spec_key

    prefix, _, name = spec.partition(":")
    if prefix in ("tv", "timm"):
        if prefix not in known:
            known[prefix] = {spec_key(f"{prefix}:{n}") for n in names(prefix)}
        if spec in known[prefix]:
            return
    if ":" not in spec:
        from archprobe.zoo.registry import get_model_info

        get_model_info(spec)
        return
    as_spec(spec, input_size=config.input_size, in_channels=config.in_channels, num_classes=config.num_classes)


def _file_digest(spec: str) -> dict[str, str]:
    location, sep, _ = spec.rpartition(":")
    if not sep or spec.startswith(("tv:", "timm:")) or not (location.endswith(".py") or "/" in location):
        return {}
    try:
        return {"file_sha256": hashlib.sha256(Path(location).read_bytes()).hexdigest()}
    except OSError:
        return {}


# --- the sweep ------------------------------------------------------------------------------------


def run_sweep(models: Sequence[str], analyses: Sequence[str], directory: "str | os.PathLike", *,
              config: SweepConfig = SweepConfig(), exclude: Sequence[str] = (), jobs: int = 1,
              cell_timeout: float = DEFAULT_TIMEOUT_S, cell_memory: int | None = None,
              shard: "tuple[int, int] | str | None" = None, retry_failed: bool = False,
              on_plan: Callable[[int, int], None] | None = None,
              on_cell: Callable[[SweepCell], None] | None = None) -> SweepRun:
    """Run every cell of ``models`` x ``analyses`` (or of the ``shard``'s share) not yet in the
    store in ``directory``, on ``jobs`` worker processes, each cell's row written as it ends.

    ``cell_timeout``: seconds a cell may run; ``cell_memory``: bytes a cell may allocate beyond
    its worker's own (default: the machine's memory shared between the jobs). ``retry_failed``:
    compute again the stored cells that did not end "ok". ``on_plan(to_compute, cached)`` is
    called once planned, ``on_cell(cell)`` as each cell ends.

    Raises:
        UsageError: bad input (unknown models or analyses, a glob matching nothing, a bad
            shard), before anything runs.
        KeyboardInterrupt: Ctrl-C or SIGTERM; every cell finished so far is in the store.
    """
    analyses = check_analyses(analyses)
    shard = check_shard(shard)
    cpus = os.cpu_count() or 1
    if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= cpus:
        raise UsageError(f"must be 1 to {cpus} (this machine's CPUs), not {jobs!r}", param="jobs")
    if not cell_timeout > 0:
        raise UsageError(f"must be a positive number of seconds, not {cell_timeout!r}", param="cell_timeout")
    memory = cell_memory if cell_memory is not None else default_cell_memory(jobs)
    with Store(directory) as store, open(Path(directory) / LOG_FILE, "ab") as log:
        preload = sorted({LIBRARY_MODULES[m.split(":")[0]] for m in models if m.startswith(("tv:", "timm:"))})
        spawn = _Spawner(log, memory, max(1, cpus // jobs), preload,
                         address_limit=not (config.device == "cuda" and "throughput" in analyses))
        # Planning that imports a library (its names not yet stored) or user code takes seconds:
        # the workers start importing torch meanwhile; a plan with nothing to compute stops them.
        early = [spawn() for _ in range(jobs)] if _planning_imports(models, store) else []
        try:  # an early worker lists the libraries' names, which it imports anyway: the sweep need not
            lister = early[0].library_names if early else None
            cells = plan_cells(models, analyses, config, store, exclude=exclude, shard=shard, lister=lister)
            stored = store.done_keys()
            todo = [c for c in cells if c.key not in stored or (retry_failed and stored[c.key] != "ok")]
            if on_plan is not None:
                on_plan(len(todo), len(cells) - len(todo))
            if todo:  # an interrupt leaves every cell finished so far in the store
                _run_cells(todo, store, Path(directory), jobs=min(jobs, len(todo)), timeout=cell_timeout,
                           memory=memory, spawn=spawn, started=early, on_cell=on_cell)
        finally:
            for worker in early:
                worker.kill()
        wanted = {c.key for c in cells}
        found = {c.key: c for c in store.cells() if c.key in wanted}
    return SweepRun(cells=tuple(found[c.key] for c in cells if c.key in found), computed=len(todo),
                    cached=len(cells) - len(todo), shard=shard)


LIBRARY_MODULES = {"tv": "torchvision", "timm": "timm"}


def _planning_imports(models: Sequence[str], store: Store) -> bool:
    """Whether planning ``models`` will import a library (its names not stored for its installed
    version) or user code."""
    versions = library_versions()
    for model in models:
        prefix = model.split(":")[0]
        if prefix in LIBRARY_MODULES:
            if not store.has_names(prefix, versions[LIBRARY_MODULES[prefix]]):
                return True
        elif ":" in model:
            return True
    return False


class _Spawner:
    """Starts workers alike: their log, memory allowance, threads, imports and guard."""

    def __init__(self, log, memory: int, threads: int, preload: Sequence[str], address_limit: bool):
        self.args = (log, memory, threads, preload, address_limit)

    def __call__(self) -> "_Worker":
        return _Worker(*self.args)


def merge_stores(directory: "str | os.PathLike", sources: Sequence["str | os.PathLike"]) -> int:
    """Copy the cells of the stores in ``sources`` into the one in ``directory``; the number of
    cells copied (a failed cell is replaced by another store's ok one)."""
    if not sources:
        raise UsageError("give the sweep directories to merge", param="merge")
    with Store(directory) as store:
        return sum(store.merge(source) for source in sources)


def default_cell_memory(jobs: int) -> int:
    """The machine's memory shared between the jobs, less a quarter for everything else."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        total = 8 << 30
    return int(total * 0.75 / jobs)


# --- the workers ----------------------------------------------------------------------------------


class _Worker:
    """A fresh Python process running cells sent over a socket pair, one at a time."""

    def __init__(self, log, memory: int, threads: int, preload: Sequence[str] = (), address_limit: bool = True):
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from archprobe.bench.atlas import worker_main; worker_main()",
             str(theirs.fileno()), str(memory if address_limit else 0), str(threads), ",".join(preload)],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True)  # Ctrl-C at the terminal reaches the sweep, which stops the workers
        theirs.close()
        self.conn = Connection(ours.detach())
        self.ready = False
        self.started = time.monotonic()
        self.cell: Cell | None = None
        self.baseline = 0  # resident bytes when it was ready

    def resident(self) -> int:
        """The worker's resident memory in bytes (0 where it cannot be read)."""
        try:
            with open(f"/proc/{self.process.pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def library_names(self, prefix: str) -> list[str]:
        """The names library ``prefix`` lists, asked of this worker once it is ready (the sweep's
        own listing where the worker cannot answer)."""
        from archprobe.zoo.resolution import library_names

        try:
            while not self.ready:
                if not self.conn.poll(_READY_TIMEOUT_S):
                    return library_names(prefix)
                if self.conn.recv() == "ready":
                    self.ready = True
                    self.baseline = self.resident()
            self.conn.send(("names", prefix))
            return list(self.conn.recv())
        except (EOFError, OSError):  # it died: _run_cells says so
            return library_names(prefix)

    def send(self, cell: Cell) -> None:
        self.cell = cell
        self.started = time.monotonic()
        self.conn.send((cell.model, cell.analysis, cell.options))

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self.conn.close()

    def death(self) -> str:
        code = self.process.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the worker was killed by {name}"
        return f"the worker exited with status {code}"


def _run_cells(todo: list[Cell], store: Store, directory: Path, *, jobs: int, timeout: float, memory: int,
               spawn: _Spawner, started: list["_Worker"], on_cell) -> None:
    """Run ``todo`` on ``jobs`` workers (``started`` ones first: they are taken out of that list
    and stopped here), storing each cell as it ends."""
    from multiprocessing.connection import wait

    queue = list(reversed(todo))
    host = socket.gethostname()
    versions = tuple(sorted(library_versions().items()))
    workers: list[_Worker] = []

    def finish(worker: _Worker, status: str, result: Any, error: str | None, seconds: float) -> None:
        cell = worker.cell
        worker.cell = None
        record = SweepCell(key=cell.key, model=cell.model, analysis=cell.analysis,
                           options=tuple(sorted(cell.options.items())),
                           versions=versions, status=status, error=error,
                           seconds=seconds, result=result, finished_at=now())
        with signals_deferred():
            store.put(record, host)
        if on_cell is not None:
            on_cell(record)

    def replace(worker: _Worker) -> None:
        worker.kill()
        workers.remove(worker)
        if queue:
            workers.append(spawn())

    try:
        while started and len(workers) < jobs:
            workers.append(started.pop())
        workers.extend(spawn() for _ in range(jobs - len(workers)))
        while workers:
            for worker in workers:
                if worker.ready and worker.cell is None and queue:
                    worker.send(queue.pop())
            idle = [w for w in workers if w.ready and w.cell is None]
            if not queue and len(idle) == len(workers):
                break
            waits = [w.started + (timeout if w.ready else _READY_TIMEOUT_S) - time.monotonic() for w in workers]
            if any(w.cell is not None for w in workers):
                waits.append(_WATCH_S)
            ready = wait([w.conn for w in workers], timeout=max(0.0, min(waits)))
            for worker in list(workers):
                if worker.conn in ready:
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        if worker.cell is None:  # died before its first cell: it cannot start
                            raise ArchprobeError(f"a sweep worker could not start ({worker.death()}); "
                                                 f"see {directory / LOG_FILE}") from None
                        finish(worker, "crashed", None, worker.death(), time.monotonic() - worker.started)
                        replace(worker)
                        continue
                    if message == "ready":
                        worker.ready = True
                        worker.baseline = worker.resident()
                    else:
                        finish(worker, *message)
                elif worker.cell is not None and worker.resident() - worker.baseline > memory:
                    finish(worker, "oom", None, f"its resident memory grew more than {bytes_text(memory)} past its worker's own",
                           time.monotonic() - worker.started)
                    replace(worker)
                elif worker.cell is not None and time.monotonic() - worker.started >= timeout:
                    finish(worker, "timeout", None, f"ran past {timeout:g} s", time.monotonic() - worker.started)
                    replace(worker)
                elif not worker.ready and time.monotonic() - worker.started >= _READY_TIMEOUT_S:
                    raise ArchprobeError(f"a sweep worker did not start in {_READY_TIMEOUT_S:g} s; "
                                         f"see {directory / LOG_FILE}")
    finally:
        for worker in workers:
            worker.kill()


def bytes_text(count: int) -> str:
    return f"{count / 2**30:.3g} GiB" if count >= 2**30 else f"{count / 2**20:.3g} MiB"


def worker_main() -> None:
    """A worker: run cells as they come, answer each with (status, result, error, seconds)."""
    from multiprocessing.connection import Connection

    fd, memory, threads = (int(a) for a in sys.argv[1:4])
    preload = [name for name in sys.argv[4].split(",") if name]
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    import torch

    import archprobe.analysis.counting  # noqa: F401 - warm imports count as the worker's, not a cell's
    import archprobe.analysis.memory  # noqa: F401
    import archprobe.analysis.min_input  # noqa: F401

    for name in preload:
        __import__(name)

    torch.set_num_threads(threads)
    try:  # the first pass of a process pays torch's lazy set-up (~1 s): not any cell's time
        run_cell("lenet", "params", {"batch_size": 1, "mode": "eval"})
    except Exception:  # noqa: BLE001 - a warm-up only
        pass
    if memory:
        _guard_memory(memory)
    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "names":
            from archprobe.zoo.resolution import library_names

            conn.send(library_names(message[1]))
            continue
        spec, analysis, options = message
        started = time.perf_counter()
        try:
            status, result, error = "ok", run_cell(spec, analysis, options), None
        except BaseException as exc:  # noqa: BLE001 - every failure of a cell is its status
            status, result, error = ("oom" if _is_oom(exc) else "error"), None, _message(exc)
        seconds = time.perf_counter() - started
        try:
            conn.send((status, result, error, seconds))
        except Exception as exc:  # noqa: BLE001 - a result that cannot be sent back
            conn.send(("error", None, f"the result could not be sent back: {first_line(exc)}", seconds))


def run_cell(spec: str, analysis: str, options: dict) -> Any:
    """One cell's result, from the analysis functions every command and door calls."""
    from archprobe.probe import Mode, Probe
    from archprobe.zoo.resolution import as_spec

    model = as_spec(spec, **{k: options.get(k) for k in MODEL_OPTIONS})
    mode = Mode.of(options.get("mode", "eval"))
    if analysis == "params":
        from archprobe.analysis.counting import count

        return count(Probe.build(model, batch_size=options["batch_size"], mode=mode))
    if analysis == "shapes":
        from archprobe.analysis.shapes import layer_table

        return layer_table(Probe.build(model, batch_size=options["batch_size"]))
    if analysis == "min-input":
        from archprobe.analysis.min_input import solve_min_input

        return solve_min_input(Probe.build(model, batch_size=options["batch_size"], mode=mode),
                               max_size=options["max_size"])
    if analysis == "memory":
        from archprobe.analysis.memory import memory_rows

        (row,) = memory_rows([model], [mode], [options["batch_size"]], optimizer=options["optimizer"],
                             dtype=options["dtype"], device=options["device"])
        return row
    if analysis == "throughput":
        from archprobe.bench.sweeps import throughput_sweep
        from archprobe.bench.throughput import ThroughputConfig

        config = ThroughputConfig(dtype=options["dtype"], min_time=options["min_time"], utilisation=False,
                                  threads=torch_threads())
        (row,) = throughput_sweep([model], [options["device"]], [mode], [options["batch_size"]], config)
        return row
    raise UsageError(f"unknown analysis {analysis!r}", param="analyses")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ArchprobeError) and exc.hint is None else str(exc) or first_line(exc)


def _is_oom(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).lower()
        if isinstance(exc, MemoryError) or "memoryerror" in text or "out of memory" in text \
                or "can't allocate memory" in text or "cannot allocate memory" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _guard_memory(allowance: int) -> None:
    """Cap the worker's address space at what it holds now plus ``allowance`` bytes."""
    import resource

    try:
        with open("/proc/self/statm") as fh:
            held = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return
    limit = held + allowance
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _die_with_parent() -> None:
    """Linux: the worker is killed when the sweep dies (PR_SET_PDEATHSIG), even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() == 1:  # the sweep died before the call
        os._exit(1)
