"""The run directory of ``train -o DIR``: every finished epoch is on disk as it finishes.

  train.csv         one row per epoch, appended and flushed to disk as each ends
  train.json        every run: recipe, environment, per-epoch rows, final figures (rewritten
                    atomically after each epoch)
  train.png         the curves: loss and accuracies per epoch, one colour per model
  checkpoints/      MODEL@DEVICE.pt after each epoch (model, optimizer, epoch, random states)

A directory that holds a run is continued (``resume``) or replaced (``force``), never mixed.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

from archprobe.errors import UsageError
from archprobe.plumbing.files import write_atomic
from archprobe.results import EpochRow, TrainRun, plain
from archprobe.runtime.sink import CsvSink

EPOCH_FIELDS = tuple(f.name for f in fields(EpochRow))
CSV, JSON, PNG, CHECKPOINTS = "train.csv", "train.json", "train.png", "checkpoints"


def file_label(text: str) -> str:
    """A model or device name as part of a file name (``tv:resnet18`` -> ``tv_resnet18``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


class RunDirectory:
    """The files of one training directory (see the module docstring)."""

    def __init__(self, path: str | Path, *, resume: bool = False, force: bool = False,
                 draw_curves: Callable[[Sequence[TrainRun]], bytes] | None = None,
                 record: Callable[[TrainRun], dict[str, Any]] = plain):
        """``draw_curves``: the PNG of the runs' curves (the report's plot), or None for no plot;
        ``record``: a run as its ``train.json`` entry (the report's machine record)."""
        self.path = Path(path).expanduser()
        self.draw_curves = draw_curves
        self.record = record
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path} exists and is not a directory", param="output")
        previous = [name for name in (JSON, CSV, CHECKPOINTS) if (self.path / name).exists()]
        if previous and not resume:
            if not force:
                raise UsageError(f"{self.path} already holds a training run ({', '.join(previous)}); "
                                 "resume it, or choose to overwrite it", param="output")
            self._remove_run()
        self.path.mkdir(parents=True, exist_ok=True)
        self._earlier = self._read_earlier() if resume else []
        self._sink: CsvSink | None = None

    def checkpoint(self, model: str, device: str) -> Path:
        return self.path / CHECKPOINTS / f"{file_label(model)}@{file_label(device)}.pt"

    def write_epoch(self, row: EpochRow) -> None:
        """Append the row to ``train.csv`` (flushed to disk before this returns)."""
        if self._sink is None:
            self._sink = CsvSink(self.path / CSV, EPOCH_FIELDS)
        self._sink.write(row)

    def write_summary(self, runs: Sequence[TrainRun]) -> None:
        """``train.json``: these runs, after any earlier run of the directory they do not replace."""
        current = {(r.model, r.device) for r in runs}
        kept = [entry for entry in self._earlier if (entry.get("model"), entry.get("device")) not in current]
        write_atomic(self.path / JSON, json.dumps(kept + [self.record(r) for r in runs], indent=2) + "\n")

    def write_curves(self, runs: Sequence[TrainRun]) -> Path | None:
        if self.draw_curves is None or not any(r.epochs for r in runs):
            return None
        return write_atomic(self.path / PNG, self.draw_curves(runs))

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    def _read_earlier(self) -> list[dict[str, Any]]:
        try:
            entries = json.loads((self.path / JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def _remove_run(self) -> None:
        for name in (CSV, JSON, PNG):
            (self.path / name).unlink(missing_ok=True)
        if (self.path / CHECKPOINTS).is_dir():
            shutil.rmtree(self.path / CHECKPOINTS)
