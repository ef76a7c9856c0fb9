"""Local ranks through torch.distributed's elastic processes (what torchrun's agent starts), for every
data-parallel runner: throughput (:mod:`archprobe.bench.distributed`) and training
(:mod:`archprobe.training.distributed`).

:func:`launch_local` starts ``nproc`` ranks on this machine, each calling one module-level
entrypoint with one picklable job, and returns what every rank returned. Ranks are forked from a
fork server that has imported torch and the entrypoint's module once (a launch then costs about
a second instead of several); the ranks meet at a file store in a temporary directory and talk
over the loopback interface (no socket leaves it, no name is looked up); the ranks' output goes to log files that are removed afterwards. A rank that raises or
dies becomes a :class:`RankFailure` naming it (the others are stopped within
:data:`SHUTDOWN_TIMEOUT_S`); Ctrl-C (or SIGTERM) stops every rank and raises
``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import uuid
from typing import Any, Callable, Iterator

from archprobe.errors import Interrupted
from archprobe.runtime.distributed import local_rank_environments, loopback_problem, tidy_message

MONITOR_INTERVAL_S = 0.1  # how often the launcher looks at its ranks
SHUTDOWN_TIMEOUT_S = 5  # the launcher's grace between SIGTERM (or SIGINT) and SIGKILL
QUIET_LOGGERS = ("torch.distributed", "torch.multiprocessing")
# What the fork server imports once (with the entrypoint's module), so that each rank it forks
# starts without importing torch (and DDP's torch._dynamo) again.
FORKSERVER_PRELOAD = ("torch", "torch._dynamo")


class RankFailure(Exception):
    """A rank of a local launch raised or died (``rank`` ``None``: the ranks could not start)."""

    def __init__(self, rank: int | None, message: str):
        super().__init__(message if rank is None else f"rank {rank}: {message}")
        self.rank = rank
        self.message = message


def failure_message(failure) -> str:
    """One line from the launcher's record of a failed rank (a ``ProcessFailure``)."""
    if isinstance(failure.message, dict) and failure.message.get("message"):
        lines = tidy_message(str(failure.message["message"])).strip().splitlines()
        return lines[0] if lines else "failed"
    if failure.exitcode < 0:
        return f"killed by {failure.signal_name()}"
    return f"exited with code {failure.exitcode} without a Python error (the process died)"


@contextlib.contextmanager
def _launcher_scope() -> Iterator[None]:
    """Keep the launcher's traces out of the output and give back what it changes in this
    process: its signal handlers (SIGINT would otherwise stay a ``SignalException``) and the
    variable naming them."""
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
               if name.startswith(QUIET_LOGGERS)] + [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    handled = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)]
    handlers = {sig: signal.getsignal(sig) for sig in handled}
    variable = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    try:
        yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)
        with contextlib.suppress(ValueError):  # not the main thread: the launcher set none either
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        if variable is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = variable


def start_method(preload: tuple[str, ...] = ()) -> str:
    """``forkserver`` where the platform has it (its server imports :data:`FORKSERVER_PRELOAD`
    and ``preload`` once per process, and ranks are forked from it), else ``spawn``.

    The preload list is multiprocessing's global setting; it takes effect if this process has
    not started a fork server yet (a later launch's own module is then imported by each rank).
    Forked ranks see the environment the server started with.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    modules = list(dict.fromkeys(FORKSERVER_PRELOAD + preload))
    multiprocessing.get_context("forkserver").set_forkserver_preload(modules)
    return "forkserver"


def launch_local(entrypoint: Callable[[Any], Any], job: Any, nproc: int) -> dict[int, Any]:
    """Run ``entrypoint(job)`` on ``nproc`` local ranks; returns each rank's return value by rank.

    ``entrypoint`` must be a module-level function (the ranks look it up by name) and ``job``
    picklable. The ranks are torch.distributed.elastic's processes (``start_processes``, what
    torchrun's agent starts) without the agent's rendezvous: they meet at a file store and talk
    over the loopback interface, so nothing is looked up or sent past this machine. Raises
    :class:`RankFailure` for the first rank that failed (or, with no rank named, where the
    loopback interface cannot carry a connection) and ``KeyboardInterrupt`` on Ctrl-C or
    SIGTERM, after every rank has been stopped.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std, start_processes

    problem = loopback_problem()
    if problem is not None:  # gloo would fail only after its C++ frames, or its timeout
        raise RankFailure(None, problem)
    run_id = f"archprobe-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="archprobe-ranks-") as scratch, _launcher_scope():
        envs = local_rank_environments(nproc, os.path.join(scratch, "store"), run_id)
        context = start_processes(
            name=run_id, entrypoint=entrypoint, args={rank: (job,) for rank in range(nproc)}, envs=envs,
            logs_specs=DefaultLogsSpecs(log_dir=os.path.join(scratch, "logs"), redirects=Std.ALL),
            start_method=start_method((entrypoint.__module__,)),
        )
        stop_with = None  # the launcher's default signal (SIGTERM)
        try:
            result = context.wait(period=MONITOR_INTERVAL_S)  # until every rank ended, or one failed
        except SignalException as exc:
            stop_with = exc.sigval
            raise Interrupted(exc.sigval) from None  # "interrupted" or "terminated", as in one process
        finally:
            context.close(stop_with, timeout=SHUTDOWN_TIMEOUT_S)  # stops the ranks still running
        if result.is_failed():
            rank, failure = min(result.failures.items(), key=lambda item: item[1].timestamp)
            raise RankFailure(rank, failure_message(failure))
        return result.return_values
