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
    with contextlib.redirect_stdout(stderr if stderr is not None else io.StringIO()):
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
