"""The training directory and the files training reads: ``--force`` replacing only the run's own
files, resuming without losing the record, the checkpoint and ``train.csv`` agreeing after any
kill, checkpoints tied to their model, one run per directory at a time, and compressed data
inflated checked (#22, items 3-8).

No network: data sets are written into temporary directories in their real formats. Runs are
LeNet-sized, one CPU thread, a few hundred examples, one or two epochs.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archprobe import api
from archprobe.errors import ExitCode, UsageError
from archprobe.training import datasets as ds
from archprobe.training.formats import CorruptDataError
from archprobe.training.outputs import checkpoint_name
from archprobe.training.runner import TrainingInterrupted, TrainRunner

TINY = dict(dataset="fake", device="cpu", threads=1, limit_train=128, limit_test=64, batch_size=64, seed=3)
TINY_CLI = ["--dataset", "fake", "-d", "cpu", "--threads", "1", "--limit-train", "128", "--limit-test", "64",
            "-b", "64", "--seed", "3"]


def _records(directory: Path) -> list[dict]:
    return json.loads((directory / "train.json").read_text())


def _csv_epochs(directory: Path) -> list[str]:
    return [line.split(",")[3] for line in (directory / "train.csv").read_text().splitlines()[1:]]


def _interrupt_epochs(monkeypatch) -> None:
    """Ctrl-C as the first epoch starts."""
    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainRunner, "_epoch", interrupted)


# --- 3: --force replaces only the run's own files -------------------------------------------------


def test_force_replaces_only_the_files_the_run_writes(invoke, tmp_path, monkeypatch):
    out = tmp_path / "run"
    api.train("lenet", epochs=1, output=out, **TINY)
    mine = out / "checkpoints" / "mine.pt"
    mine.write_bytes(b"the user's own weights")
    (out / "notes.txt").write_text("mine too")
    ours = out / "checkpoints" / checkpoint_name("lenet", "cpu")
    assert ours.is_file()

    code, _, err = invoke("train", "lenet", "--epochs", "1", "-o", out, "--force", *TINY_CLI)
    assert code == 0, err
    assert mine.read_bytes() == b"the user's own weights" and (out / "notes.txt").read_text() == "mine too"
    assert _csv_epochs(out) == ["1"] and [r["model"] for r in _records(out)] == ["lenet"]

    # the run's own checkpoint goes before training starts: a forced run stopped before its first
    # epoch must not leave the old run's weights to be resumed as its own
    _interrupt_epochs(monkeypatch)
    with pytest.raises(TrainingInterrupted):
        api.train("lenet", epochs=1, output=out, force=True, **TINY)
    assert not ours.exists() and mine.exists()
    (record,) = _records(out)
    assert record["status"] == "interrupted" and record["epochs"] == []


# --- 4: a failed or interrupted resume keeps the record -------------------------------------------


@pytest.fixture
def one_epoch(tmp_path) -> Path:
    """A directory holding one finished epoch of LeNet."""
    out = tmp_path / "run"
    api.train("lenet", epochs=1, output=out, **TINY)
    return out


def test_a_damaged_checkpoint_is_an_error_naming_it_and_the_record_stays(invoke, one_epoch):
    checkpoint = one_epoch / "checkpoints" / checkpoint_name("lenet", "cpu")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    before = (one_epoch / "train.json").read_text()
    code, out, err = invoke("train", "lenet", "--epochs", "2", "-o", one_epoch, "--resume", "-q", *TINY_CLI)
    assert code == ExitCode.FAILURE, err
    assert err.startswith(f"error: cannot read checkpoint {checkpoint}: ") and "Traceback" not in err, err
    assert err.count("\n") == 1 and out == ""
    assert (one_epoch / "train.json").read_text() == before and _csv_epochs(one_epoch) == ["1"]


def test_a_checkpoint_that_is_a_fifo_is_refused_not_waited_on(invoke, one_epoch):
    checkpoint = one_epoch / "checkpoints" / checkpoint_name("lenet", "cpu")
    checkpoint.unlink()
    os.mkfifo(checkpoint)
    code, _, err = invoke("train", "lenet", "--epochs", "2", "-o", one_epoch, "--resume", "-q", *TINY_CLI)
    assert code == ExitCode.FAILURE and err == f"error: cannot read checkpoint {checkpoint}: not a regular file\n"


def test_ctrl_c_before_the_restore_keeps_the_finished_epochs(invoke, one_epoch, monkeypatch):
    before = (one_epoch / "train.json").read_text()

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    # while the checkpoint is read: nothing of this run exists yet, and nothing is rewritten
    monkeypatch.setattr("archprobe.training.runner.load_checkpoint", interrupted)
    code, _, err = invoke("train", "lenet", "--epochs", "2", "-o", one_epoch, "--resume", *TINY_CLI)
    assert code == ExitCode.INTERRUPTED, err
    assert (one_epoch / "train.json").read_text() == before
    monkeypatch.undo()

    # after it is read, before the weights are restored: the run is interrupted with its epoch
    monkeypatch.setattr(TrainRunner, "_restore", interrupted)
    code, _, err = invoke("train", "lenet", "--epochs", "2", "-o", one_epoch, "--resume", *TINY_CLI)
    assert code == ExitCode.INTERRUPTED and "1 finished epoch kept" in err, err
    (record,) = _records(one_epoch)
    assert record["status"] == "interrupted" and [e["epoch"] for e in record["epochs"]] == [1]
    assert record["resumed_from"] == 1 and _csv_epochs(one_epoch) == ["1"]


# --- 5: train.csv and the checkpoint agree after any kill ------------------------------------------


class Killed(BaseException):
    """The process dying: nothing after it runs but ``finally`` blocks."""


def test_an_epoch_only_the_checkpoint_holds_is_written_on_resume(tmp_path, monkeypatch):
    from archprobe.training import runner

    out = tmp_path / "run"
    saves = []
    original = runner.save_checkpoint

    def save_then_die(path, payload):
        original(path, payload)
        saves.append(payload["epoch"])
        if payload["epoch"] == 2:
            raise Killed  # after the checkpoint's rename, before the row's append

    monkeypatch.setattr(runner, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        api.train("lenet", epochs=3, output=out, **TINY)
    assert saves == [1, 2] and _csv_epochs(out) == ["1"]
    monkeypatch.undo()

    (run,) = api.train("lenet", epochs=3, output=out, resume=True, **TINY)
    assert run.resumed_from == 2 and [r.epoch for r in run.epochs] == [1, 2, 3]
    assert _csv_epochs(out) == ["1", "2", "3"]
    csv_losses = [float(line.split(",")[4]) for line in (out / "train.csv").read_text().splitlines()[1:]]
    assert csv_losses == [r.train_loss for r in run.epochs]
    # resuming a finished run trains nothing and writes no row twice
    api.train("lenet", epochs=3, output=out, resume=True, **TINY)
    assert _csv_epochs(out) == ["1", "2", "3"]


def test_a_train_csv_that_cannot_take_rows_is_refused_before_training(invoke, tmp_path, monkeypatch):
    out = tmp_path / "run"
    (out / "train.csv").mkdir(parents=True)
    epochs = []
    monkeypatch.setattr(TrainRunner, "_epoch", lambda *args: epochs.append(1))
    code, _, err = invoke("train", "lenet", "--epochs", "1", "-o", out, "--force", "-q", *TINY_CLI)
    assert code == ExitCode.USAGE and epochs == [], err
    assert err == f"error: --output: {out / 'train.csv'} is a directory, where the run writes a file\n"

    # a train.csv that cannot take rows: refused before training, naming it
    (out / "train.csv").rmdir()
    (out / "train.csv").write_text("model,device\nlenet,cpu\n")
    code, _, err = invoke("train", "lenet", "--epochs", "1", "-o", out, "--resume", "-q", *TINY_CLI)
    assert code == ExitCode.USAGE and epochs == [] and err.count("\n") == 1, err
    assert f"{out / 'train.csv'} exists with different CSV columns" in err


# --- 6: a checkpoint is tied to its model ----------------------------------------------------------

SMALL_NET = """
from torch import nn

def build(in_channels=1, num_classes=10):
    return nn.Sequential(nn.Conv2d(in_channels, {width}, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear({width}, num_classes))
"""


def _user_model(path: Path, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SMALL_NET.format(width=width))


def test_checkpoints_are_unique_per_spec_and_hold_their_own_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _user_model(tmp_path / "m" / "x_y.py", 4)
    _user_model(tmp_path / "m" / "x" / "y.py", 6)
    flat, nested = "m/x_y.py:build", "m/x/y.py:build"
    assert checkpoint_name(flat, "cpu") != checkpoint_name(nested, "cpu")
    assert checkpoint_name(flat, "cpu").startswith("m_x_y.py_build-")  # still readable

    out = tmp_path / "run"
    api.train([flat, nested], epochs=1, output=out, **TINY)
    assert len(list((out / "checkpoints").iterdir())) == 2
    runs = api.train([flat, nested], epochs=2, output=out, resume=True, **TINY)
    assert [(r.model, r.resumed_from, r.epochs_done, r.status) for r in runs] == [(flat, 1, 2, "ok"),
                                                                                   (nested, 1, 2, "ok")]

    # another model's checkpoint in its place is refused, in one line naming both
    flat_file, nested_file = (out / "checkpoints" / checkpoint_name(m, "cpu") for m in (flat, nested))
    flat_file.write_bytes(nested_file.read_bytes())
    with pytest.raises(UsageError, match=f"{flat_file} holds a run of '{nested}', not '{flat}'"):
        api.train(flat, epochs=3, output=out, resume=True, **TINY)

    # the same spec string naming other code now: the names and shapes are checked
    _user_model(tmp_path / "m" / "x" / "y.py", 8)
    with pytest.raises(UsageError) as refused:
        api.train(nested, epochs=3, output=out, resume=True, **TINY)
    message = str(refused.value)
    assert message.count("\n") == 0 and str(nested_file) in message
    assert "0.weight 6x1x3x3 (now 8x1x3x3), 0.bias 6 (now 8), 3.weight 10x6 (now 10x8);" in message


def test_the_command_line_refuses_another_model_s_checkpoint(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _user_model(tmp_path / "net.py", 4)
    out = tmp_path / "run"
    code, _, err = invoke("train", "net.py:build", "--epochs", "1", "-o", out, "-q", *TINY_CLI)
    assert code == 0, err
    _user_model(tmp_path / "net.py", 5)
    code, _, err = invoke("train", "net.py:build", "--epochs", "2", "-o", out, "--resume", "-q", *TINY_CLI)
    assert code == ExitCode.USAGE and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: --resume: ") and "holds weights of another model than 'net.py:build'" in err
    assert [len(r["epochs"]) for r in _records(out)] == [1]


# --- 7: one run at a time in a directory ----------------------------------------------------------


def test_a_directory_in_use_is_refused_and_left_alone(invoke, one_epoch):
    from archprobe.training.outputs import RunDirectory

    running = RunDirectory(one_epoch, resume=True)  # as a run under way holds it
    before = {p.name: p.read_bytes() for p in one_epoch.iterdir() if p.is_file()}
    try:
        for flag in ("--resume", "--force"):
            code, out, err = invoke("train", "lenet", "--epochs", "2", "-o", one_epoch, flag, "-q", *TINY_CLI)
            assert code == ExitCode.USAGE and out == "" and err.count("\n") == 1, err
            assert err.startswith(f"error: --output: {one_epoch} is in use by another process")
        with pytest.raises(UsageError, match="is in use by another process"):
            api.train("lenet", epochs=2, output=one_epoch, resume=True, **TINY)
        assert {p.name: p.read_bytes() for p in one_epoch.iterdir() if p.is_file()} == before
        assert (one_epoch / "checkpoints" / checkpoint_name("lenet", "cpu")).is_file()
        other_process = subprocess.run(
            [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
                                   "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", one_epoch / ".train.lock"],
            capture_output=True, text=True)
        assert other_process.returncode != 0 and "BlockingIOError" in other_process.stderr
    finally:
        running.close()
    (run,) = api.train("lenet", epochs=2, output=one_epoch, resume=True, **TINY)  # free again
    assert run.epochs_done == 2


# --- 8: compressed data is inflated checked -------------------------------------------------------


@pytest.fixture
def packed_data(tmp_path) -> Path:
    """Fashion-MNIST-shaped IDX files, gzipped only: the raw directory."""
    ds.write_structured_dataset(tmp_path, "fashion-mnist", train=40, test=20, gzip=True)
    return tmp_path / "FashionMNIST" / "raw"


def _leftovers(raw: Path) -> list[str]:
    """Everything in ``raw`` but the .gz files."""
    return sorted(p.name for p in raw.iterdir() if not p.name.endswith(".gz"))


def test_a_gzip_bomb_stops_at_the_size_its_header_implies(packed_data):
    packed = packed_data / "train-images-idx3-ubyte.gz"
    whole = gzip.decompress(packed.read_bytes())
    packed.write_bytes(gzip.compress(whole + bytes(20 * 2**20), mtime=0))  # 20 MiB of zeros after the images
    with pytest.raises(CorruptDataError, match=f"{packed}: more than the 31,376 bytes its header "
                                               r"\(40x28x28\) needs, uncompressed"):
        ds.load_dataset("fashion-mnist", packed_data.parents[1])
    assert _leftovers(packed_data) == []

    packed.write_bytes(gzip.compress(bytes(20 * 2**20), mtime=0))  # no IDX header at all: nothing inflated
    with pytest.raises(CorruptDataError, match="not an IDX file of unsigned bytes"):
        ds.load_dataset("fashion-mnist", packed_data.parents[1])
    assert _leftovers(packed_data) == []


def test_a_corrupt_gzip_is_named_in_one_line_and_leaves_no_temp_file(invoke, packed_data):
    packed = packed_data / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(packed.read_bytes())
    data[12:18] = b"\xff" * 6  # the deflate stream
    packed.write_bytes(bytes(data))
    for _ in range(2):
        code, out, err = invoke("train", "lenet", "--data-root", packed_data.parents[1], "-d", "cpu", "-q",
                                "--epochs", "1")
        assert code == ExitCode.FAILURE and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"error: corrupt or truncated data file {packed}: not a valid gzip file (")
        assert "error: error" not in err
    assert _leftovers(packed_data) == ["t10k-images-idx3-ubyte", "train-images-idx3-ubyte",
                                       "train-labels-idx1-ubyte"]  # the good ones, extracted whole


def test_an_empty_gzip_extracts_nothing_and_a_repaired_one_is_read(packed_data):
    packed = packed_data / "train-labels-idx1-ubyte.gz"
    good = packed.read_bytes()
    packed.write_bytes(gzip.compress(b"", mtime=0))
    with pytest.raises(CorruptDataError, match=f"{packed}: 0 bytes uncompressed, shorter than an IDX header"):
        ds.load_dataset("fashion-mnist", packed_data.parents[1])
    assert "train-labels-idx1-ubyte" not in _leftovers(packed_data)

    # an extraction older than its .gz (made from an earlier, empty one) does not hide it
    stale = packed_data / "train-labels-idx1-ubyte"
    stale.write_bytes(b"")
    os.utime(stale, (1_000_000, 1_000_000))
    packed.write_bytes(good)
    data = ds.load_dataset("fashion-mnist", packed_data.parents[1])
    assert len(data.train_labels) == 40 and stale.stat().st_size == 8 + 40
    assert stale.stat().st_mtime_ns == packed.stat().st_mtime_ns  # the .gz's time, as gunzip keeps it

    # an uncompressed file newer than the .gz is the one read (the user's own, or a download's)
    ds.write_structured_dataset(packed_data.parents[1], "fashion-mnist", train=30, test=20)
    assert len(ds.load_dataset("fashion-mnist", packed_data.parents[1]).train_labels) == 30


def test_a_truncated_stream_is_refused_before_the_file_appears(packed_data):
    packed = packed_data / "train-images-idx3-ubyte.gz"
    whole = gzip.decompress(packed.read_bytes())
    packed.write_bytes(gzip.compress(whole[:-100], mtime=0))  # a complete gzip of too few values
    with pytest.raises(CorruptDataError, match=r"31,276 bytes uncompressed, but its header \(40x28x28\) "
                                               "needs 31,376"):
        ds.load_dataset("fashion-mnist", packed_data.parents[1])
    assert "train-images-idx3-ubyte" not in _leftovers(packed_data)


# --- #23.8: the curves are drawn from the records -----------------------------------------------


def test_resuming_part_of_a_sweep_draws_every_model_s_curves(tmp_path, monkeypatch):
    from archprobe.report import plots

    monkeypatch.chdir(tmp_path)
    _user_model(tmp_path / "net.py", 4)
    out = tmp_path / "run"
    api.train(["lenet", "net.py:build"], epochs=1, output=out, **TINY)
    drawn = []
    real_png = plots.training_curves

    def recording(rows):
        drawn.append(sorted((row.model, row.epoch) for row in rows))
        return real_png(rows)

    monkeypatch.setattr(plots, "training_curves", recording)
    api.train("lenet", epochs=2, output=out, resume=True, **TINY)  # net.py:build is not trained again
    assert drawn == [[("lenet", 1), ("lenet", 2), ("net.py:build", 1)]]
    assert [(r["model"], len(r["epochs"])) for r in _records(out)] == [("net.py:build", 1), ("lenet", 2)]
    assert (out / "train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
