"""SIGINT and SIGTERM: both interrupt the work the same way, and short writes finish first.

The command line installs :func:`raise_interrupted` for both signals (:func:`handling_signals`),
so SIGTERM keeps the rows measured so far exactly as Ctrl-C does, and a real signal (an
:class:`~archprobe.errors.Interrupted`) can be told apart from a ``KeyboardInterrupt`` that
model code raised itself. :func:`signals_deferred` holds both signals back while a file is
written and renamed, or a row appended, so an interrupt never leaves half of one behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from archprobe.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def raise_interrupted(signum: int, _frame) -> None:
    """The handler for SIGINT and SIGTERM: raise :class:`Interrupted` (exit code 128 + signum)."""
    raise Interrupted(signum)


def signals_handled() -> bool:
    """Are :func:`raise_interrupted` handlers installed (so a real signal is an ``Interrupted``)?"""
    return signal.getsignal(signal.SIGINT) is raise_interrupted


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the block; the previous handlers come back
    after it. Handlers someone else installed (not Python's defaults) are left alone."""
    defaults = (signal.default_int_handler, signal.SIG_DFL)
    previous = {}
    if _main_thread():
        for signum in SIGNALS:
            if signal.getsignal(signum) in defaults:
                previous[signum] = signal.signal(signum, raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block; one that arrived meanwhile is handled (and
    raises) as the block ends. For short, local work only: a write, a rename, an fsync.

    The Python-level handlers are swapped for one that only takes note: masking the signals
    would not do, as the kernel hands a process-directed signal to any thread not masking it
    (torch starts several), and Python then runs its handler in the main thread all the same.
    """
    if not _main_thread() or any(signal.getsignal(signum) is None for signum in SIGNALS):
        yield  # signals are handled elsewhere (another thread, or a handler set from C)
        return
    pending: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: pending.append(signum))
                for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            _deliver(pending[0], previous[pending[0]])


def _deliver(signum: int, handler) -> None:
    """Handle ``signum`` as ``handler`` (what was installed before the deferral) would have."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)
