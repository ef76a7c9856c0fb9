"""Rows appended to a CSV file as they arrive, so an interrupt or a crash keeps every row so far."""

from __future__ import annotations

import os
from typing import Any, Sequence, TextIO

from archprobe.errors import UsageError
from archprobe.results import flat_record


class CsvSink:
    """Appends one CSV row per result as it arrives (flush + fsync), so an interrupt or a crash
    keeps every row measured so far.

    A file that exists with the same header is appended to; one with another header is refused
    before anything is measured. ``target`` may also be an open text stream (stdout).
    """

    def __init__(self, target: "str | os.PathLike | TextIO", fieldnames: Sequence[str]):
        import csv

        self.fieldnames = list(fieldnames)
        self.rows = 0
        if hasattr(target, "write"):
            self._fh, self._owned = target, False
            write_header = True
        else:
            path = os.fspath(target)
            write_header = True
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, newline="", encoding="utf-8") as fh:
                    existing = next(csv.reader(fh), [])
                if existing != self.fieldnames:
                    raise UsageError(f"{path} exists with different CSV columns; remove it or write to another file")
                write_header = False
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            self._fh, self._owned = open(path, "a", newline="", encoding="utf-8"), True
        self._writer = csv.DictWriter(self._fh, fieldnames=self.fieldnames, extrasaction="ignore",
                                      lineterminator="\n")
        if write_header:
            self._writer.writeheader()
            self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        if self._owned:
            os.fsync(self._fh.fileno())

    def write(self, result: Any) -> None:
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
