"""What a user reaches for (#23.11): the final train loss and accuracy in the training table, a
per-model input size in mixed comparisons, MACs/FLOPs by operator and by module, and results
that print as the command line's tables (terminal and notebook). Each is checked against a
reference: the book's per-epoch figures, the same model run alone, torch's own
``FlopCounterMode``, the command's own output."""

from __future__ import annotations

import json
import re

import pytest

QUICK = ["--threads", "1", "--limit-train", "512", "--limit-test", "256", "-b", "64"]


# --- (c) final train loss and train accuracy in the training table ------------------------------


def _table(text: str) -> list[dict[str, str]]:
    """The rows of a ``simple`` table (columns split on runs of two or more spaces)."""
    lines = text.strip("\n").splitlines()
    header, rule = lines[0], lines[1]
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    rows = []
    for line in lines[2:]:
        if not line.strip():
            break
        rows.append({header[a:b if i + 1 < len(spans) else None].strip(): line[a:b if i + 1 < len(spans) else None].strip()
                     for i, (a, b) in enumerate(spans)})
    return rows


def test_training_table_shows_the_last_epoch_s_train_loss_and_accuracy(invoke):
    code, out, err = invoke("train", "lenet", "--dataset", "fake", "-d", "cpu", "--epochs", "2", *QUICK)
    assert code == 0, err
    # the reference: the book's line for the last epoch ("loss 0.516, train acc 0.871, test acc ...")
    line = re.search(r"lenet on cpu, epoch 2/2: loss ([\d.]+), train acc ([\d.]+), test acc ([\d.]+)", err)
    assert line, err
    (row,) = _table(out)
    assert (row["Train loss"], row["Train acc"], row["Test acc"]) == line.groups()
    header = out.splitlines()[0].split()
    assert header.index("Epochs") < header.index("loss") < header.index("Test")


def test_train_run_records_them_as_fields(invoke):
    code, out, err = invoke("train", "lenet", "--dataset", "fake", "-d", "cpu", "--epochs", "2", *QUICK, "-f", "json")
    assert code == 0, err
    (run,) = json.loads(out)
    assert run["train_loss"] == run["epochs"][-1]["train_loss"]
    assert run["train_acc"] == run["epochs"][-1]["train_acc"]
    assert run["train_loss"] != run["epochs"][0]["train_loss"]  # the last epoch's, not the first's
