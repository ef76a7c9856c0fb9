"""The error contract: every expected failure is an ``ArchprobeError`` with an exit code.

The CLI prints ``error: <message>`` on one line and exits with ``exit_code``; a traceback
is shown only with ``--debug``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2  # bad input: unknown model, bad size, bad option value
    INTERRUPTED = 130  # Ctrl-C, after writing what was measured


class ArchprobeError(Exception):
    """An expected failure with a one-line message meant for the user."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ArchprobeError):
    """Bad input from the user (exit code 2).

    ``param`` names the offending argument as the Python API spells it (``in_channels``) and
    prefixes the message with it; the command line shows it as its flag (``--in-channels: ...``).
    Library messages never name flags.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, exit_code: ExitCode | None = None, *, param: str | None = None):
        super().__init__(f"{param}: {message}" if param else message, exit_code)
        self.message = message
        self.param = param

    def as_flag(self) -> str:
        """The message with the argument spelt as its command-line flag."""
        return f"--{self.param.replace('_', '-')}: {self.message}" if self.param else str(self)


class SpecError(UsageError):
    """A model spec that cannot be resolved or built."""


class InputSizeError(UsageError):
    """An input size the model cannot take."""
