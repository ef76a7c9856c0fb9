"""Running code archprobe does not own: model files and modules, factories, forward passes.

``path/to/file.py:factory`` and ``package.module:factory`` import and run the user's code with
the user's rights, as ``python file.py`` would. :func:`running_user_code` keeps that code from
corrupting or silencing archprobe: what it prints goes to stderr (so ``-f json``/``-f csv`` on
stdout stay machine-readable), and a ``sys.exit`` (or a ``KeyboardInterrupt`` it raises itself)
becomes a one-line :class:`~archprobe.errors.ModelCodeError` naming where it happened.
``os._exit`` ends the process at once and cannot be caught.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import sysconfig
import traceback
from typing import Iterator

from archprobe.errors import Interrupted, ModelCodeError
from archprobe.plumbing.signals import signals_handled

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = sysconfig.get_paths()["stdlib"]


@contextlib.contextmanager
def running_user_code(what: str) -> Iterator[None]:
    """Run the block as model code: its stdout goes to stderr, and its exits become errors.

    ``sys.stdout`` and ``sys.stderr`` are what they were before once the block ends, whatever
    the code assigned to them.

    Args:
        what: what is being run, for the error message (``"building net.py:build"``).

    Raises:
        ModelCodeError: the code called ``sys.exit`` (the message names the file, the line and
            the exit code) or raised ``KeyboardInterrupt`` itself. A real Ctrl-C or SIGTERM
            (an :class:`~archprobe.errors.Interrupted`, or any ``KeyboardInterrupt`` when the
            command line's signal handlers are not installed) passes through unchanged.
    """
    stderr = sys.stderr
    with contextlib.redirect_stdout(stderr if stderr is not None else io.StringIO()), _process_state_kept():
        try:
            yield
        except SystemExit as exc:
            code = "" if exc.code is None else repr(exc.code)
            raise ModelCodeError(f"{what}: the model's code called sys.exit({code}){_where(exc)}") from exc
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted) or not signals_handled():
                raise
            raise ModelCodeError(f"{what}: the model's code raised KeyboardInterrupt{_where(exc)}") from exc
        finally:
            sys.stderr = stderr  # stdout is put back by redirect_stdout, whatever the code set


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Put back what model code may change for everything after it: the working directory (a
    relative ``-o`` must not move), torch's default dtype and grad mode (the next model must not
    be measured in float64 or without autograd), and the SIGINT/SIGTERM handlers (Ctrl-C must
    keep working)."""
    import signal
    import threading

    cwd = _cwd()
    torch = sys.modules.get("torch")  # the user's code may import it; only then can it change it
    dtype, grad = (torch.get_default_dtype(), torch.is_grad_enabled()) if torch else (None, None)
    main = threading.current_thread() is threading.main_thread()  # handlers live in the main thread
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        if cwd is not None and _cwd() != cwd:
            os.chdir(cwd)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_default_dtype(dtype if dtype is not None else torch.float32)
            torch.set_grad_enabled(grad if grad is not None else True)
        for signum, handler in handlers.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)


@contextlib.contextmanager
def stdout_kept_for_archprobe() -> Iterator[None]:
    """archprobe's own output keeps the process's stdout; whatever else writes to file descriptor
    1 meanwhile (``os.write(1, ...)`` in model code, a child process it starts, a C extension's
    ``printf``) lands on stderr, so ``-f json`` on stdout stays machine-readable.

    Only where ``sys.stdout`` is file descriptor 1 (the command line; not an in-process capture).
    """
    stream = sys.stdout
    try:
        if stream.fileno() != 1:
            raise ValueError
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        yield
        return
    stream.flush()
    own = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(io.FileIO(own, "w", closefd=False), encoding=stream.encoding,
                                  errors=stream.errors, line_buffering=stream.line_buffering)
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        finally:
            sys.stdout = stream
            os.dup2(own, 1)
            os.close(own)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed
        return None


def _where(exc: BaseException) -> str:
    """`` at file:line`` of the innermost frame that is neither archprobe's nor the standard
    library's (``exit()`` lives in ``_sitebuiltins``), or nothing if there is none."""
    for frame, line in reversed(list(traceback.walk_tb(exc.__traceback__))):
        filename = frame.f_code.co_filename
        if filename.startswith(("<", _PACKAGE_DIR)):
            continue
        if filename.startswith(_STDLIB_DIR) and "-packages" not in filename:
            continue
        return f" at {filename}:{line}"
    return ""
