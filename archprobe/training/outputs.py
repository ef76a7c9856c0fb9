"""The run directory of ``train -o DIR``: every finished epoch is on disk as it finishes.

  train.csv         one row per epoch, appended and flushed to disk as each ends
  train.json        every run: recipe, environment, per-epoch rows, final figures (rewritten
                    atomically after each epoch)
  train.png         the curves: loss and accuracies per epoch, one colour per model
  checkpoints/      MODEL-HASH@DEVICE.pt after each epoch (model, optimizer, epochs, random states)
  .train.lock       locked (``flock``) by the run writing the directory, for the whole run

A directory that holds a run is continued (``resume``) or replaced (``force``), never mixed;
``force`` replaces only the files the new run writes (another file, in ``checkpoints/`` too,
is left alone). A second run into a directory in use is refused before it touches anything.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from archprobe.errors import UsageError
from archprobe.plumbing.files import lock_directory, write_atomic
from archprobe.results import EpochRow, TrainRun, plain
from archprobe.runtime.sink import CsvSink

EPOCH_FIELDS = tuple(f.name for f in fields(EpochRow))
CSV, JSON, PNG, CHECKPOINTS, LOCK = "train.csv", "train.json", "train.png", "checkpoints", ".train.lock"
HASH_CHARS = 10  # of the spec's SHA-256 in a checkpoint's name


def file_label(text: str) -> str:
    """A model or device name as part of a file name (``tv:resnet18`` -> ``tv_resnet18``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def checkpoint_name(model: str, device: str) -> str:
    """The checkpoint file of ``model`` (its spec string) on ``device``: a readable label and a
    hash of the whole spec, since labels alone collide (``m/x_y.py:build``, ``m/x/y.py:build``)."""
    digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:HASH_CHARS]
    return f"{file_label(model)}-{digest}@{file_label(device)}.pt"


# train.csv as written before the epochs carried the machine's load (#23.6): resumed as it is
PREVIOUS_EPOCH_FIELDS = EPOCH_FIELDS[:EPOCH_FIELDS.index("other_cpu_cores")]


def _columns_of(path: Path) -> tuple[str, ...]:
    """The columns to write ``train.csv`` with: every epoch field, or, in a file written before
    the load fields were added (:data:`PREVIOUS_EPOCH_FIELDS`), that file's own header, so that
    a resumed run appends rows the file can hold."""
    try:
        if not path.is_file():
            return EPOCH_FIELDS
        with open(path, newline="", encoding="utf-8") as fh:
            header = tuple(next(csv.reader([fh.readline(65536)]), ()))
    except (OSError, UnicodeDecodeError, csv.Error):
        return EPOCH_FIELDS
    return PREVIOUS_EPOCH_FIELDS if header == PREVIOUS_EPOCH_FIELDS else EPOCH_FIELDS


class RunDirectory:
    """The files of one training directory (see the module docstring), locked while it is open."""

    def __init__(self, path: str | Path, *, runs: Iterable[tuple[str, str]] = (), resume: bool = False,
                 force: bool = False, draw_curves: Callable[[Sequence[EpochRow]], bytes] | None = None,
                 record: Callable[[TrainRun], dict[str, Any]] = plain):
        """``runs``: the (model, device) pairs the sweep trains, whose checkpoints ``force``
        replaces; ``draw_curves``: the PNG of the epochs' curves (the report's plot), or None
        for no plot; ``record``: a run as its ``train.json`` entry (the report's machine record).

        Raises:
            UsageError: ``path`` is not a directory, is in use by another run, holds a run
                neither resumed nor forced, or its ``train.csv`` cannot be appended to.
        """
        self.path = Path(path).expanduser()
        self.draw_curves = draw_curves
        self.record = record
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path} exists and is not a directory", param="output")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {self.path}: {exc.strerror}", param="output") from exc
        self._lock: int | None = lock_directory(self.path, LOCK, param="output")
        self._records: list[dict[str, Any]] = []  # what train.json holds, once this sweep wrote it
        self._sink: CsvSink | None = None
        try:
            for name in (CSV, JSON, PNG):
                if (self.path / name).is_dir():
                    raise UsageError(f"{self.path / name} is a directory, where the run writes a file",
                                     param="output")
            previous = [name for name in (JSON, CSV, CHECKPOINTS) if (self.path / name).exists()]
            if previous and not resume:
                if not force:
                    raise UsageError(f"{self.path} already holds a training run ({', '.join(previous)}); "
                                     "resume it, or choose to overwrite it", param="output")
                self._remove([self.path / CSV, self.path / JSON, self.path / PNG,
                              *(self.checkpoint(model, device) for model, device in runs)])
            self._earlier = self._read_earlier() if resume else []
            self._sink = self._open_csv()
            self._rows_written = self._rows_on_disk()
        except BaseException:
            self.close()
            raise

    def checkpoint(self, model: str, device: str) -> Path:
        return self.path / CHECKPOINTS / checkpoint_name(model, device)

    def write_epochs(self, rows: Iterable[EpochRow]) -> None:
        """Append to ``train.csv`` each of ``rows`` it lacks, each flushed to disk before the next.

        A run passes all its rows: the checkpoint is written before an epoch's row, so a kill
        between the two leaves a row that only the checkpoint holds, and the resumed run's rows
        (the checkpoint's first) bring it back.
        """
        for row in rows:
            key = (row.model, row.device, str(row.epoch))
            if key not in self._rows_written:
                self._sink.write(row)
                self._rows_written.add(key)

    def write_summary(self, runs: Sequence[TrainRun]) -> None:
        """``train.json``: these runs, after any earlier run of the directory they do not replace."""
        current = {(r.model, r.device) for r in runs}
        kept = [entry for entry in self._earlier if (entry.get("model"), entry.get("device")) not in current]
        records = kept + [self.record(r) for r in runs]
        write_atomic(self.path / JSON, json.dumps(records, indent=2) + "\n")
        self._records = records

    def write_curves(self) -> Path | None:
        """``train.png`` drawn from the records ``train.json`` holds: every run of the directory,
        those of earlier sweeps a resumed one did not train included (None: nothing to draw)."""
        rows = [EpochRow(**{name: epoch.get(name) for name in EPOCH_FIELDS})
                for entry in self._records for epoch in entry.get("epochs") or ()]
        if self.draw_curves is None or not rows:
            return None
        return write_atomic(self.path / PNG, self.draw_curves(rows))

    def close(self) -> None:
        """Close ``train.csv`` and release the directory (a second call does nothing)."""
        if self._sink is not None:
            self._sink.close()
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def _open_csv(self) -> CsvSink:
        # opened before anything trains: a train.csv that cannot take rows (not writable,
        # another header, a cut last row) is refused now, not after an epoch's work
        path = self.path / CSV
        try:
            return CsvSink(path, _columns_of(path))
        except OSError as exc:
            raise UsageError(f"cannot append to {path}: {exc.strerror or exc}", param="output") from exc

    def _rows_on_disk(self) -> set[tuple[str, str, str]]:
        """(model, device, epoch) of every row ``train.csv`` holds (its header checked by the sink)."""
        with open(self.path / CSV, newline="", encoding="utf-8") as fh:
            return {(row["model"], row["device"], row["epoch"]) for row in csv.DictReader(fh)}

    def _read_earlier(self) -> list[dict[str, Any]]:
        try:
            entries = json.loads((self.path / JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    @staticmethod
    def _remove(paths: Iterable[Path]) -> None:
        """Remove the files a forced run replaces, and no other."""
        for target in paths:
            try:
                target.unlink(missing_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot replace {target}: {exc.strerror}", param="output") from exc
