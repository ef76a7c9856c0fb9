"""The error contract: every expected failure is an ``ArchprobeError`` with an exit code.

The CLI prints ``error: <message>`` on one line and exits with ``exit_code``; a traceback
is shown only with ``--debug``.
"""

from __future__ import annotations

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2  # bad input: unknown model, bad size, bad option value
    INTERRUPTED = 130  # Ctrl-C, after writing what was measured
    TERMINATED = 143  # SIGTERM, handled like Ctrl-C


# What to do next, as the library says it and as the command line says it: an error names the
# hint by key, so no library message names a command or a flag.
HINTS = {
    "list": ("archprobe.list_models() lists the zoo", "see 'archprobe list'"),
    "force": ("force=True replaces it", "use --force to overwrite it"),
    "scan": ("archprobe.min_input({model!r}) scans for the sizes it takes",
             "run 'archprobe min-input {model}' to scan for the sizes it takes"),
}


class ArchprobeError(Exception):
    """An expected failure with a one-line message meant for the user.

    ``hint``: a key of :data:`HINTS` (with ``hint_values`` to fill it in), what to do next;
    ``str()`` gives the library's wording, :meth:`for_command_line` the command line's.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, exit_code: ExitCode | None = None, *, hint: str | None = None,
                 hint_values: dict | None = None):
        self.message = message
        self.hint = hint
        self.hint_values = dict(hint_values or {})
        super().__init__(self._with_hint(message, 0))
        if exit_code is not None:
            self.exit_code = exit_code

    def _with_hint(self, message: str, face: int) -> str:
        if self.hint is None:
            return message
        return f"{message}; {HINTS[self.hint][face].format(**self.hint_values)}"

    def for_command_line(self) -> str:
        """The message as the command line shows it: the hint in its words."""
        return self._with_hint(self.message, 1)


class UsageError(ArchprobeError):
    """Bad input from the user (exit code 2).

    ``param`` names the offending argument as the Python API spells it (``in_channels``) and
    prefixes the message with it; the command line shows it as its flag (``--in-channels: ...``).
    Library messages never name flags.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, exit_code: ExitCode | None = None, *, param: str | None = None,
                 hint: str | None = None, hint_values: dict | None = None):
        self.param = param
        super().__init__(message, exit_code, hint=hint, hint_values=hint_values)

    def _with_hint(self, message: str, face: int) -> str:
        text = super()._with_hint(message, face)
        if not self.param:
            return text
        return f"--{self.param.replace('_', '-')}: {text}" if face else f"{self.param}: {text}"


class SpecError(UsageError):
    """A model spec that cannot be resolved or built."""


class InputSizeError(UsageError):
    """An input size the model cannot take."""


class ModelCodeError(ArchprobeError):
    """The model's own code failed: importing its file or module, its factory, or its forward
    raised (or called ``sys.exit``). A bug to fix in that code, not in how archprobe was called."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """``Type: first line of the message`` (the type alone for an empty message): one line,
    whatever the exception holds, cut to ``limit`` characters (ending in ``...``) if given."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0].strip()}" if lines else type(error).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM arrived while archprobe was working.

    Raised by the command line's signal handlers (:mod:`archprobe.plumbing.signals`). A
    ``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` that keeps the rows measured so
    far handles SIGTERM the same way. ``exit_code`` is 128 + the signal number (130, 143);
    ``message`` is the one line to show, set by whoever saved the work.
    """

    def __init__(self, signum: int = signal.SIGINT, message: str | None = None):
        super().__init__(message)
        self.signum = int(signum)
        self.message = message or ("interrupted" if self.signum == signal.SIGINT else "terminated")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def with_message(self, message: str) -> "Interrupted":
        return Interrupted(self.signum, message)

    def __str__(self) -> str:
        return self.message


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """``exc`` as an :class:`Interrupted`: one that carries a ``signum`` (a run's own interrupt
    that wraps the signal) keeps it; a plain ``KeyboardInterrupt`` is Ctrl-C."""
    return exc if isinstance(exc, Interrupted) else Interrupted(getattr(exc, "signum", signal.SIGINT))
