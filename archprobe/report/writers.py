"""Where output goes: one rule for every command and format, decided by what the path points at.

* ``-`` (or no path): stdout.
* A regular file or a new path: replaced atomically. The text goes to a temp file in the same
  directory, which is fsynced and renamed over the target, and the directory is fsynced; an
  interrupt or a crash leaves the old file or the new one, never half of one.
* A symlink: followed; its target is replaced atomically and the link stays.
* A character device, a FIFO, or an open descriptor (``/dev/stdout``, ``/proc/self/fd/N``):
  written in place as a stream, never replaced (``-o /dev/null`` stays ``/dev/null``).
* A directory, a socket or a block device: refused.

:func:`check_output` applies the rule and checks that the target can be written, so a command
fails before its long work rather than after it.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import stat
import sys
from dataclasses import dataclass
from typing import Iterator, TextIO

from archprobe.errors import UsageError
from archprobe.plumbing.files import check_directory_writable, write_atomic

STDOUT, FILE, STREAM = "stdout", "file", "stream"
# /proc/<pid>/fd, /proc/self/fd (and /dev/fd, a link to it): entries are open descriptors.
_FD_DIR = re.compile(r"/proc/(\d+|self|thread-self)(/task/\d+)?/fd")
_MAX_LINKS = 40  # the kernel's own limit on nested symlinks


@dataclass(frozen=True)
class Target:
    """An output destination: ``kind`` is ``"stdout"``, ``"file"`` (atomic replace of ``path``,
    symlinks already followed) or ``"stream"`` (``path`` opened and written in place)."""

    kind: str
    path: str | None = None

    @property
    def is_file(self) -> bool:
        return self.kind == FILE


def resolve_output(output: str | os.PathLike | None) -> Target:
    """Apply the output rule (module docstring) to ``output``; no file is touched."""
    if output is None or os.fspath(output) == "-":
        return Target(STDOUT)
    text = os.fspath(output)
    if not text:
        raise UsageError("give a file name, or - for stdout", param="output")
    path, descriptor = _follow_links(text)
    if descriptor:
        return Target(STREAM, text)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return Target(FILE, path)
    except OSError as exc:
        raise UsageError(f"cannot use {text}: {exc.strerror}", param="output") from exc
    if stat.S_ISREG(mode):
        return Target(FILE, path)
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return Target(STREAM, path)
    what = "a directory" if stat.S_ISDIR(mode) else "a block device" if stat.S_ISBLK(mode) else "a socket"
    raise UsageError(f"{text} is {what}; give a file, a character device or a FIFO", param="output")


def _follow_links(text: str) -> tuple[str, bool]:
    """The path ``text`` names once every symlink is followed, and whether it is an open
    descriptor (a link chain through ``/proc/*/fd``), which must be written in place."""
    path = os.path.abspath(text)
    for _ in range(_MAX_LINKS):
        parent = os.path.realpath(os.path.dirname(path))
        if _FD_DIR.fullmatch(parent):
            return path, True
        path = os.path.join(parent, os.path.basename(path))
        if not os.path.islink(path):
            return path, False
        path = os.path.join(parent, os.readlink(path))  # an absolute link target replaces parent
    raise UsageError(f"{text}: too many levels of symbolic links", param="output")


def check_output(output: str | os.PathLike | None) -> Target:
    """:func:`resolve_output`, then check that the target can be written (before any work).

    Raises:
        UsageError: (``param="output"``) the path is refused by the rule, its directory cannot
            be created in or written to, the file or device is not writable, or stdout is closed.
    """
    target = resolve_output(output)
    if target.kind == STDOUT:
        if sys.stdout is None:
            raise UsageError("stdout is closed; give a file to write to", param="output")
        return target
    if target.kind == STREAM:
        if not os.access(target.path, os.W_OK):
            raise UsageError(f"{target.path} is not writable", param="output")
        return target
    if os.path.exists(target.path) and not os.access(target.path, os.W_OK):
        raise UsageError(f"{target.path} is not writable", param="output")
    check_directory_writable(os.path.dirname(target.path), param="output")
    return target


@contextlib.contextmanager
def streaming(target: Target) -> Iterator[TextIO]:
    """A text stream writing ``target`` in place: stdout, or the device, FIFO or descriptor,
    opened for the block and closed after it."""
    if target.kind == STDOUT:
        yield sys.stdout
        return
    if target.kind != STREAM:
        raise ValueError(f"{target.path} is a file: it is replaced, not streamed to")
    with open(target.path, "w", encoding="utf-8", newline="") as stream:
        yield stream


def write_output(target: Target, text: str) -> None:
    """Write ``text`` to ``target`` by the output rule: atomically for a file, in place for a
    stream, to stdout for ``-``."""
    if target.is_file:
        write_atomic(target.path, text)
        return
    with streaming(target) as stream:
        stream.write(text)
        stream.flush()


def emit(text: str, output: str | os.PathLike | None) -> None:
    """Print ``text`` to stdout, or write it to ``output`` by the output rule."""
    write_output(check_output(output), text)


# --- streams that cannot encode every character ---------------------------------------------------

# What archprobe's own text uses beyond ASCII, as ASCII; anything else becomes a \x/\u escape.
ASCII_LOOKALIKES = {"\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00d7": "x", "\u2264": "<=",
                    "\u2265": ">=", "\u2192": "->", "\u00b1": "+/-", "\u2018": "'", "\u2019": "'",
                    "\u201c": '"', "\u201d": '"', "\u00b5": "u"}
_FALLBACK = "archprobe-ascii"


def _ascii_lookalike(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    chars = error.object[error.start:error.end]
    return "".join(ASCII_LOOKALIKES.get(ch) or ch.encode("ascii", "backslashreplace").decode() for ch in chars), error.end


codecs.register_error(_FALLBACK, _ascii_lookalike)


@contextlib.contextmanager
def ascii_fallback(*streams: TextIO | None) -> Iterator[None]:
    """For the block, characters a stream's encoding lacks (``PYTHONIOENCODING=ascii``, a C
    locale) are written as ASCII look-alikes (the en dash of ``15–4096+`` as ``-``) instead of
    raising ``UnicodeEncodeError``."""
    changed = []
    for stream in streams:
        if stream is not None and callable(getattr(stream, "reconfigure", None)):
            try:
                previous = stream.errors
                stream.reconfigure(errors=_FALLBACK)
            except (AttributeError, ValueError, OSError):
                continue
            changed.append((stream, previous))
    try:
        yield
    finally:
        for stream, previous in changed:
            try:
                stream.reconfigure(errors=previous)
            except (ValueError, OSError):  # closed meanwhile
                pass
