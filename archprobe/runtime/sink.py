"""Rows appended to a CSV file as they arrive, so an interrupt or a crash keeps every row so far."""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence, TextIO

from archprobe.errors import UsageError
from archprobe.results import flat_record
from archprobe.plumbing.signals import signals_deferred


class CsvSink:
    """Appends one CSV row per result as it arrives (flush + fsync), so an interrupt or a crash
    keeps every row measured so far.

    A file that exists is checked before anything is measured: with the same header it is
    appended to; one with another header, or one whose last row is incomplete (it does not end
    in a newline: a crash or a full disk cut it), is refused with a ``UsageError`` saying which,
    so a new row is never glued onto a broken one. ``target`` may also be an open text stream
    (stdout, a device, a FIFO), which gets the header and the rows; the caller closes it.
    """

    def __init__(self, target: "str | os.PathLike | TextIO", fieldnames: Sequence[str]):
        self.fieldnames = list(fieldnames)
        self.rows = 0
        if hasattr(target, "write"):
            self._fh, self._owned = target, False
            write_header = True
        else:
            path = os.fspath(target)
            write_header = not _check_appendable(path, self.fieldnames)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._fh, self._owned = open(path, "a", newline="", encoding="utf-8"), True
        self._writer = csv.DictWriter(self._fh, fieldnames=self.fieldnames, extrasaction="ignore",
                                      lineterminator="\n")
        if write_header:
            with signals_deferred():
                self._writer.writeheader()
                self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        if self._owned:
            os.fsync(self._fh.fileno())

    def write(self, result: Any) -> None:
        """Append ``result`` as one row, whole: SIGINT/SIGTERM wait until it is on disk (and
        counted in ``rows``, which a signal raised as the append ends must not skip)."""
        with signals_deferred():
            self._writer.writerow(flat_record(result))
            self._sync()
            self.rows += 1

    def close(self) -> None:
        if self._owned and not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "CsvSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_appendable(path: str, fieldnames: list[str]) -> bool:
    """Whether ``path`` holds rows to append to (False: missing or empty, a header is due).

    Raises:
        UsageError: the file's header is not ``fieldnames``, or it does not end in a newline.
    """
    try:
        if os.path.getsize(path) == 0:
            return False
    except FileNotFoundError:
        return False
    with open(path, "rb") as fh:
        header_line = fh.readline()
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
    header = next(csv.reader([header_line.decode("utf-8", "replace")]), [])
    if header != fieldnames:
        raise UsageError(f"{path} exists with different CSV columns (its header differs); "
                         "remove it or write to another file", param="output")
    if last != b"\n":
        raise UsageError(f"{path} does not end in a newline: its last row is incomplete (cut by a crash "
                         "or a full disk); remove that row or write to another file", param="output")
    return True
