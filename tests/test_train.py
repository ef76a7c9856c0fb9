"""Training experiments: real on-disk formats, learning, resuming, faults, JSON and recipes.

No network, ever: every data set is written into a temporary directory in its real format
(IDX files under ``ROOT/FashionMNIST/raw/`` and ``ROOT/MNIST/raw/``, CIFAR-10's pickled batches
under ``ROOT/cifar-10-batches-py/``) and read through the code path users take. The images are
archprobe's structured stand-in (class patterns, shifts, noise), so networks can learn them.
Runs use one CPU thread: the tests share a busy machine, and one thread keeps them fast and
their results reproducible.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import signal
import sys
import textwrap
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from archprobe import api
from archprobe.errors import ExitCode, UsageError
from archprobe.results import EpochRow, Recipe, TrainRun
from archprobe.runtime.backends import CudaBackend
from archprobe.plumbing.signals import signals_deferred
from archprobe.training import datasets as ds
from archprobe.training.formats import CorruptDataError, read_cifar_batch
from archprobe.training.loader import DeviceData, fits_on_device
from archprobe.training.outputs import checkpoint_name
from archprobe.training.recipes import default_recipe, with_overrides
from archprobe.zoo.book import BOOK_RECIPES
from archprobe.training.plan import plan_training
from archprobe.training.runner import TrainRunner, xavier_init
from archprobe.training.sweep import train_sweep
from archprobe.zoo import list_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_models  # noqa: E402  (the book's code, verbatim)
from test_throughput import FAKE_ENV, FakeClock, FakeCuda, FakeCudnn  # noqa: E402

THREADS = 1
QUICK = ["--threads", "1", "--limit-train", "512", "--limit-test", "256", "-b", "64"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Fashion-MNIST and MNIST as IDX files, CIFAR-10 as pickled batches (small, structured)."""
    root = tmp_path_factory.mktemp("data")
    ds.write_structured_dataset(root, "fashion-mnist", train=3000, test=500)
    ds.write_structured_dataset(root, "mnist", train=600, test=200, gzip=True)
    ds.write_structured_dataset(root, "cifar10", train=500, test=100)
    return root


# --- the on-disk formats, read as torchvision reads them ----------------------------------------


def test_idx_files_load_as_torchvision_loads_them(data_root):
    data = ds.load_dataset("fashion-mnist", data_root)
    reference = torchvision.datasets.FashionMNIST(str(data_root), train=True)
    assert data.shape == (1, 28, 28) and data.num_classes == 10
    assert torch.equal(data.train_images[:, 0], reference.data)
    assert torch.equal(data.train_labels, reference.targets)
    assert data.classes == tuple(reference.classes)
    assert len(data.test_labels) == 500
    sizes = {p.name: p.stat().st_size for p in (data_root / "FashionMNIST" / "raw").iterdir()}
    assert sizes["train-images-idx3-ubyte"] == 16 + 3000 * 28 * 28  # the IDX header is 16 bytes
    assert sizes["train-labels-idx1-ubyte"] == 8 + 3000


def test_gzipped_idx_files_are_extracted_next_to_them(data_root):
    raw = data_root / "MNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte").exists()
    data = ds.load_dataset("mnist", data_root, limit_train=100)
    assert (raw / "train-images-idx3-ubyte").exists() and len(data.train_labels) == 100
    reference = torchvision.datasets.MNIST(str(data_root), train=False)  # finds them now, as after a download
    assert torch.equal(data.test_images[:, 0], reference.data)


def test_cifar_batches_load_as_torchvision_reads_them(data_root, monkeypatch):
    data = ds.load_dataset("cifar10", data_root)
    assert data.shape == (3, 32, 32) and len(data.train_labels) == 500 and len(data.test_labels) == 100
    assert data.classes[0] == "pattern 0"
    # torchvision's reader only takes the official files (it checks their md5s): lift that check
    # and it must read the same pixels, in its HWC layout.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    reference = torchvision.datasets.CIFAR10(str(data_root), train=True)
    assert np.array_equal(data.train_images.permute(0, 2, 3, 1).numpy(), reference.data)
    assert data.train_labels.tolist() == reference.targets


def test_file_names_are_torchvision_s():
    assert ds.CIFAR_TRAIN == tuple(n for n, _ in torchvision.datasets.CIFAR10.train_list)
    assert ds.CIFAR_TEST == tuple(n for n, _ in torchvision.datasets.CIFAR10.test_list)
    for cls in (torchvision.datasets.FashionMNIST, torchvision.datasets.MNIST):
        assert set(ds.IDX_FILES) == {n.removesuffix(".gz") for n, _ in cls.resources}


# --- missing and corrupt data -------------------------------------------------------------------


def test_missing_data_is_one_line_naming_directory_and_files(invoke, tmp_path):
    code, out, err = invoke("train", "lenet", "--data-root", str(tmp_path))
    assert code == ExitCode.USAGE and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"no Fashion-MNIST data in {tmp_path}/FashionMNIST/raw" in err
    assert "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte" in err
    assert err.startswith("error: --data-root: ")


def test_incomplete_data_names_the_missing_files(tmp_path):
    ds.write_structured_dataset(tmp_path, "fashion-mnist", train=10, test=10)
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match="incomplete: missing t10k-labels-idx1-ubyte"):
        ds.load_dataset("fashion-mnist", tmp_path)


def _idx_copy(tmp_path: Path) -> Path:
    ds.write_structured_dataset(tmp_path, "fashion-mnist", train=50, test=20)
    return tmp_path / "FashionMNIST" / "raw"


@pytest.mark.parametrize("damage,reason", [
    (lambda b: b[:-100], "39,116 bytes, but its header (50x28x28) needs 39,216"),
    (lambda b: b"\x00\x00\x0d\x03" + b[4:], "not an IDX file of unsigned bytes"),
    (lambda b: b[:10], "shorter than its header"),
])
def test_corrupt_idx_names_the_file(invoke, tmp_path, damage, reason):
    path = _idx_copy(tmp_path) / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    code, _, err = invoke("train", "lenet", "--data-root", str(tmp_path), *QUICK)
    assert code == ExitCode.FAILURE and err.count("\n") == 1
    assert f"corrupt or truncated data file {path}" in err and reason in err


def test_truncated_gzip_and_bad_labels_name_the_file(tmp_path):
    raw = _idx_copy(tmp_path)
    packed = raw / "t10k-images-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress((raw / "t10k-images-idx3-ubyte").read_bytes())[:200])
    (raw / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(CorruptDataError, match=f"{packed}: not a complete gzip file"):
        ds.load_dataset("fashion-mnist", tmp_path)
    packed.unlink()
    ds.write_structured_dataset(tmp_path, "fashion-mnist", train=50, test=20)
    labels = raw / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1] + bytes([200]))
    with pytest.raises(CorruptDataError, match="labels range over 0..200, expected 0..9"):
        ds.load_dataset("fashion-mnist", tmp_path)


def test_cifar_garbage_and_hostile_pickles_are_refused(tmp_path):
    ds.write_structured_dataset(tmp_path, "cifar10", train=20, test=10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:300])
    with pytest.raises(CorruptDataError, match=f"{batch}: not a CIFAR batch"):
        ds.load_dataset("cifar10", tmp_path)

    class Hostile:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    batch.write_bytes(pickle.dumps({"data": Hostile(), "labels": []}, protocol=2))
    with pytest.raises(CorruptDataError, match="refusing to load posix.system|refusing to load os.system"):
        read_cifar_batch(batch)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cifar_batch_pickled_at_any_protocol_is_read(tmp_path, protocol):
    # Python 3.8+ pickles arrays at protocol 5 through numpy's _frombuffer: valid, not corrupt
    data = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": data, b"labels": [1, 2, 3]}, protocol=protocol))
    images, labels = read_cifar_batch(batch)
    assert np.array_equal(images.reshape(3, -1), data) and labels.tolist() == [1, 2, 3]


# --- learning: archprobe against the book's plain loop ------------------------------------------

LEARNING = dict(epochs=7, optimizer="adam", lr=0.003, batch_size=64, init="xavier", seed=0)


def test_lenet_learns_and_agrees_with_a_hand_written_loop(data_root):
    """LeNet on 3,000 structured images (10 classes, chance 0.1): archprobe's device-resident
    loader against the book's pipeline (torchvision's FashionMNIST + ToTensor + DataLoader,
    the seed's LeNet, d2l's Xavier init, Adam, cross-entropy), same recipe, other shuffles."""
    (run,) = api.train("lenet", dataset="fashion-mnist", data_root=data_root, device="cpu", threads=THREADS,
                       **LEARNING)
    assert run.ok and run.epochs_done == 7 and run.recipe.overrides
    assert [r.epoch for r in run.epochs] == list(range(1, 8))
    assert run.test_acc >= 0.8, [r.test_acc for r in run.epochs]
    assert run.epochs[-1].train_loss < run.epochs[0].train_loss

    with torch.random.fork_rng():
        torch.manual_seed(0)
        to_tensor = torchvision.transforms.ToTensor()
        train_set = torchvision.datasets.FashionMNIST(str(data_root), train=True, transform=to_tensor)
        test_set = torchvision.datasets.FashionMNIST(str(data_root), train=False, transform=to_tensor)
        net = seed_models.LeNet()
        for m in net.modules():
            if type(m) in (torch.nn.Linear, torch.nn.Conv2d):
                torch.nn.init.xavier_uniform_(m.weight)
        optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING["lr"])
        loss = torch.nn.CrossEntropyLoss()
        threads = torch.get_num_threads()
        torch.set_num_threads(THREADS)
        try:
            for _ in range(LEARNING["epochs"]):
                net.train()
                for X, y in torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True):
                    optimizer.zero_grad()
                    loss(net(X), y).backward()
                    optimizer.step()
            net.eval()
            with torch.no_grad():
                correct = sum(int((net(X).argmax(1) == y).sum())
                              for X, y in torch.utils.data.DataLoader(test_set, batch_size=256))
        finally:
            torch.set_num_threads(threads)
    hand = correct / len(test_set)
    assert abs(run.test_acc - hand) <= 0.05, (run.test_acc, hand)


# --- resuming -----------------------------------------------------------------------------------


def _weights(directory: Path, model: str = "lenet") -> dict:
    return torch.load(directory / "checkpoints" / checkpoint_name(model, "cpu"), weights_only=True)["model_state"]


SMALL = dict(dataset="fake", device="cpu", threads=THREADS, limit_train=512, limit_test=256, batch_size=64,
             optimizer="adam", lr=0.003, seed=3)


def test_sigterm_exits_143_keeping_the_finished_epoch(invoke, tmp_path, monkeypatch):
    calls = []
    original = TrainRunner._evaluate

    def evaluate_then_terminate(self, *args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, through archprobe's handler
        return original(self, *args)

    monkeypatch.setattr(TrainRunner, "_evaluate", evaluate_then_terminate)
    out_dir = tmp_path / "run"
    code, out, err = invoke("train", "lenet", "--epochs", "3", "-o", out_dir, "--dataset", "fake", "-d", "cpu", *QUICK)
    assert code == ExitCode.TERMINATED == 143, err
    assert "terminated: 1 finished epoch kept" in err
    (saved,) = json.loads((out_dir / "train.json").read_text())
    assert saved["status"] == "interrupted" and [e["epoch"] for e in saved["epochs"]] == [1]


def test_interrupt_then_resume_equals_an_uninterrupted_run(invoke, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    (reference,) = api.train("lenet", epochs=4, output=whole, **SMALL)

    # Ctrl-C while the third epoch is evaluated: exit 130, two epochs on disk.
    calls = []
    original = TrainRunner._evaluate

    def evaluate_then_interrupt(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(TrainRunner, "_evaluate", evaluate_then_interrupt)
    cut = tmp_path / "cut"
    options = ["--dataset", "fake", "-d", "cpu", "--optimizer", "adam", "--lr", "0.003", "--seed", "3", *QUICK]
    code, out, err = invoke("train", "lenet", "--epochs", "4", "-o", str(cut), *options)
    assert code == ExitCode.INTERRUPTED, err
    assert "interrupted: 2 finished epochs kept" in err and "interrupted" in out
    assert len((cut / "train.csv").read_text().splitlines()) == 1 + 2
    (saved,) = json.loads((cut / "train.json").read_text())
    assert saved["status"] == "interrupted" and [e["epoch"] for e in saved["epochs"]] == [1, 2]
    assert torch.load(cut / "checkpoints" / checkpoint_name("lenet", "cpu"), weights_only=True)["epoch"] == 2
    monkeypatch.setattr(TrainRunner, "_evaluate", original)

    code, out, err = invoke("train", "lenet", "--epochs", "4", "-o", str(cut), "--resume", *options,
                            "-f", "json")
    assert code == 0, err
    (resumed,) = json.loads(out)
    assert resumed["resumed_from"] == 2 and resumed["status"] == "ok"
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3, 4]
    for got, want in zip(resumed["epochs"], reference.epochs):
        assert (got["train_loss"], got["test_acc"]) == (want.train_loss, want.test_acc)
    final, expected = _weights(cut), _weights(whole)
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final)
    (on_disk,) = json.loads((cut / "train.json").read_text())
    assert on_disk["status"] == "ok" and [e["epoch"] for e in on_disk["epochs"]] == [1, 2, 3, 4]
    assert len((cut / "train.csv").read_text().splitlines()) == 1 + 4
    assert (cut / "train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_waits_until_an_epoch_s_files_are_written():
    written = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler has run by now; the block goes on
            written.append("checkpoint and row")
    assert written == ["checkpoint and row"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_refuses_another_recipe_and_extends_epochs(tmp_path):
    api.train("lenet", epochs=1, output=tmp_path, **SMALL)
    with pytest.raises(UsageError, match=r"was trained with lr 0.003 \(now 0.01\)"):
        api.train("lenet", epochs=2, output=tmp_path, resume=True, **{**SMALL, "lr": 0.01})
    (run,) = api.train("lenet", epochs=2, output=tmp_path, resume=True, **SMALL)
    assert run.resumed_from == 1 and run.epochs_done == 2


def test_output_directory_is_never_mixed(tmp_path):
    api.train("lenet", epochs=1, output=tmp_path, **SMALL)
    with pytest.raises(UsageError, match="already holds a training run"):
        api.train("lenet", epochs=1, output=tmp_path, **SMALL)
    (run,) = api.train("lenet", epochs=1, output=tmp_path, force=True, **{**SMALL, "lr": 0.01})
    assert run.recipe.lr == 0.01 and len((tmp_path / "train.csv").read_text().splitlines()) == 2


# --- faults: NaN, out of memory ------------------------------------------------------------------

NAN_MODEL = textwrap.dedent("""
    import torch
    from torch import nn

    class GoesNaN(nn.Module):
        '''A classifier whose output turns NaN after a few training steps.'''
        def __init__(self, in_channels=1, num_classes=10):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 4, 3)
            self.fc = nn.Linear(4, num_classes)
            self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        def forward(self, x):
            if self.training:
                self.steps += 1
            y = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1))
            return torch.where(self.steps > 3, y * float("nan"), y)  # no Python branch: it runs on meta

    def build(in_channels=1, num_classes=10):
        return GoesNaN(in_channels, num_classes)
""")


def test_a_diverging_run_stops_and_the_others_go_on(invoke, tmp_path):
    (tmp_path / "nan_net.py").write_text(NAN_MODEL)
    code, out, err = invoke("train", f"{tmp_path}/nan_net.py:build", "lenet", "--dataset", "fake",
                            "-d", "cpu", "--epochs", "2", *QUICK, "-f", "json")
    assert code == 0, err
    nan_run, lenet_run = json.loads(out)
    assert nan_run["status"] == "diverged" and nan_run["epochs"] == []
    assert "became nan in epoch 1" in nan_run["error"]
    assert lenet_run["status"] == "ok" and len(lenet_run["epochs"]) == 2
    code, out, _ = invoke("train", f"{tmp_path}/nan_net.py:build", "--dataset", "fake", "-d", "cpu",
                          "--epochs", "1", *QUICK)
    assert "diverged: " in out and "the run stopped after 0 finished epochs" in out


def test_out_of_memory_is_recorded_and_the_batch_size_kept(monkeypatch):
    from archprobe.runtime.step import TrainStep

    original = TrainStep.__call__

    def no_memory_for_tiny_net(self, x, targets):
        if type(self.model).__name__ == "TinyNet":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, x, targets)

    monkeypatch.setattr(TrainStep, "__call__", no_memory_for_tiny_net)
    tiny_net = f"{Path(__file__).resolve().parents[1]}/examples/tiny_net.py:build"
    oom, ok = api.train([tiny_net, "lenet"], epochs=1, **{**SMALL, "limit_train": 128})
    assert oom.status == "oom" and "out of memory" in oom.error and oom.recipe.batch_size == 64
    assert oom.epochs == () and ok.status == "ok" and ok.epochs_done == 1


def test_api_globs_and_exclude_pick_the_models_the_command_line_does():
    tiny_net = f"{Path(__file__).resolve().parents[1]}/examples/tiny_net.py:build"
    runs = api.train(["lenet", "*-d2l", tiny_net], exclude=["*-d2l"], epochs=1, **{**SMALL, "limit_train": 128})
    assert [r.model for r in runs] == ["lenet", tiny_net] and all(r.status == "ok" for r in runs)
    with pytest.raises(UsageError, match="every model of 'lenet' is excluded"):
        api.train("lenet", exclude="lenet*", epochs=1, **SMALL)


# --- the JSON, the recipes -----------------------------------------------------------------------

EPOCH_KEYS = {"epoch", "train_loss", "train_acc", "test_acc", "examples_per_sec", "epoch_seconds"}
RUN_KEYS = {"model", "device", "dataset", "params", "macs", "recipe", "environment", "test_acc", "best_test_acc",
            "train_seconds", "epochs", "status"}


def test_json_schema_and_comparison_table(invoke):
    tiny_net = f"{Path(__file__).resolve().parents[1]}/examples/tiny_net.py:build"
    code, out, err = invoke("train", "lenet", tiny_net, "--dataset", "fake", "-d", "cpu", "--epochs", "2",
                            *QUICK, "-f", "json")
    assert code == 0, err
    runs = json.loads(out)
    assert [r["model"] for r in runs] == ["lenet", tiny_net]
    for run in runs:
        assert RUN_KEYS <= run.keys()
        assert run["status"] == "ok" and run["dataset"] == "fake" and run["device"] == "cpu"
        assert EPOCH_KEYS <= run["epochs"][0].keys() and len(run["epochs"]) == 2
        assert run["test_acc"] == run["epochs"][-1]["test_acc"]
        assert run["best_test_acc"] == max(e["test_acc"] for e in run["epochs"])
        assert run["train_seconds"] == pytest.approx(sum(e["train_seconds"] for e in run["epochs"]))
        for e in run["epochs"]:
            assert e["examples_per_sec"] == pytest.approx(512 / e["train_seconds"])
            assert e["epoch_seconds"] >= e["train_seconds"]
        assert run["environment"]["torch_version"] == torch.__version__
        assert {f.name for f in fields(Recipe)} == set(run["recipe"])
    assert runs[0]["params"] == 44_426 and runs[0]["macs"] == 281_640  # LeNet: the book's counts at 28x28
    # the user factory takes in_channels/num_classes: built for the data (1 channel), at its size
    assert runs[1]["input_shape"] == [1, 28, 28] and runs[1]["recipe"]["resize"] is None
    assert runs[1]["recipe"]["source"].startswith("archprobe default")
    assert "data: synthetic from memory" in err and "lenet on cpu, epoch 2/2: loss " in err

    code, out, _ = invoke("train", "lenet", tiny_net, "--dataset", "fake", "-d", "cpu", "--epochs", "1",
                          *QUICK)
    header = out.splitlines()[0].split()
    assert header[:5] == ["Model", "Device", "Status", "Params", "MACs"] and "Speedup" not in header
    assert [line.split()[0] for line in out.splitlines()[2:4]] == ["lenet", tiny_net]


class BusyEvery:
    """``runtime.load.sample`` for the training runner: every other epoch (``busy_epochs``) the
    machine did 2.5 cores of other work beside this process's one core, the others nothing."""

    def __init__(self, busy_epochs=(2,)):
        self.calls, self.busy_epochs = 0, set(busy_epochs)
        self.t = self.own = self.busy = 0.0

    def __call__(self):
        from archprobe.runtime.load import CpuSample

        epoch = self.calls // 2 + 1
        if self.calls % 2:  # the end of an epoch's batches: one second later
            self.t, self.own = self.t + 1.0, self.own + 1.0
            self.busy += 1.0 + (2.5 if epoch in self.busy_epochs else 0.0)
        self.calls += 1
        return CpuSample(self.t, self.own, self.busy, 0.0, 16.0 * self.t, load_average=3.0)


def test_a_busy_sample_flags_the_epoch_the_run_and_the_outputs(invoke, monkeypatch, tmp_path):
    from archprobe.training import runner as training_runner

    monkeypatch.setattr(training_runner, "sample", BusyEvery(busy_epochs=(2,)))
    code, out, err = invoke("train", "lenet", "--dataset", "fake", "-d", "cpu", "--epochs", "3", *QUICK,
                            "-o", tmp_path / "run")
    assert code == 0, err
    # the live epoch line, the comparison table's Warnings column and the note under it
    assert "epoch 1/3" in err and "epoch 2/3" in err
    line = next(l for l in err.splitlines() if "epoch 2/3" in l)
    assert line.endswith("; warning: other processes kept 2.50 cores busy (this process used 1.00)")
    assert "warning" not in next(l for l in err.splitlines() if "epoch 1/3" in l)
    header = out.splitlines()[0].split()
    assert header[-1] == "Warnings" and out.splitlines()[2].split()[-1] == "busy"
    assert ("warning: lenet on cpu: other processes kept up to 2.50 cores busy while epoch 2 trained (this process"
            " used 1.00); its examples/s are likely low, measure again on a quiet machine") in out
    # machine-readable: train.json, train.csv
    (record,) = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["warnings"] == ["busy"] and [e["warnings"] for e in record["epochs"]] == [[], ["busy"], []]
    assert record["epochs"][1]["other_cpu_cores"] == pytest.approx(2.5)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "run" / "train.csv", encoding="utf-8")))
    assert [r["warnings"] for r in rows] == ["", "busy", ""] and float(rows[1]["other_cpu_cores"]) == 2.5

    monkeypatch.setattr(training_runner, "sample", BusyEvery(busy_epochs=()))
    (run,) = api.train("lenet", epochs=2, **SMALL)
    assert run.warnings == () and all(e.warnings == () and e.other_cpu_cores == 0.0 for e in run.epochs)


def test_a_train_csv_of_the_previous_columns_is_resumed_in_them(tmp_path):
    from archprobe.training.outputs import EPOCH_FIELDS, PREVIOUS_EPOCH_FIELDS

    (first,) = api.train("lenet", epochs=1, output=tmp_path, **SMALL)
    csv_path = tmp_path / "train.csv"
    lines = csv_path.read_text().splitlines()
    assert lines[0] == ",".join(EPOCH_FIELDS)
    # as written before the epochs carried the load: the same first columns, no more
    old = [",".join(PREVIOUS_EPOCH_FIELDS)] + [",".join(l.split(",")[:len(PREVIOUS_EPOCH_FIELDS)]) for l in lines[1:]]
    csv_path.write_text("\n".join(old) + "\n")
    (run,) = api.train("lenet", epochs=2, output=tmp_path, resume=True, **SMALL)
    assert run.ok and run.epochs_done == 2
    lines = csv_path.read_text().splitlines()
    assert lines[0] == ",".join(PREVIOUS_EPOCH_FIELDS) and len(lines) == 3
    assert all(len(l.split(",")) == len(PREVIOUS_EPOCH_FIELDS) for l in lines)


def test_show_recipe_for_every_zoo_model(invoke):
    code, out, _ = invoke("train", "*", "--show-recipe", "-f", "json")
    assert code == 0
    recipes = {r["model"]: r for r in json.loads(out)}
    zoo = {m.name: m for m in list_models()}
    assert set(recipes) == set(zoo)
    for name, recipe in recipes.items():
        assert recipe["source"] and recipe["overrides"] == []
        if name in BOOK_RECIPES:
            optimizer, lr, batch, epochs, resize, init, source = BOOK_RECIPES[name]
            assert (recipe["optimizer"], recipe["lr"], recipe["batch_size"], recipe["epochs"], recipe["resize"],
                    recipe["init"]) == (optimizer, lr, batch, epochs, resize, init)
        else:
            assert recipe["source"].startswith("archprobe default")
            assert recipe["resize"] == zoo[name].input_shape[1]  # the model's default side
    assert (recipes["lenet"]["optimizer"], recipes["lenet"]["lr"], recipes["lenet"]["batch_size"]) == ("adam", 0.001, 256)
    assert recipes["lenet"]["resize"] is None and "§5.5" in recipes["lenet"]["source"]
    assert (recipes["googlenet-d2l"]["optimizer"], recipes["googlenet-d2l"]["lr"],
            recipes["googlenet-d2l"]["epochs"], recipes["googlenet-d2l"]["init"]) == ("sgd", 0.1, 10, "xavier")

    code, out, _ = invoke("train", "googlenet-d2l", "googlenet-bn-d2l", "--show-recipe",
                          "--label-smoothing", "0.1")
    assert "Label smoothing" in out.splitlines()[0] and "label_smoothing" in out
    assert "googlenet-bn-d2l: the book reached train acc 0.965, test acc 0.904" in out


def test_recipe_overrides_are_checked_and_recorded():
    spec = api.as_spec("googlenet-d2l")
    recipe = with_overrides(default_recipe(spec), optimizer="adam", lr=0.001)
    assert recipe.momentum == 0.0 and recipe.overrides == ("optimizer", "lr")
    with pytest.raises(UsageError, match="momentum applies to SGD"):
        with_overrides(default_recipe(spec), optimizer="adam", momentum=0.9)
    with pytest.raises(UsageError, match="label_smoothing"):
        with_overrides(default_recipe(spec), label_smoothing=1.5)
    assert default_recipe(api.as_spec("tv:resnet18")).resize == 224


def test_input_size_a_model_cannot_take_fails_before_training(invoke):
    code, _, err = invoke("train", "alexnet-d2l", "--resize", "96", "--dataset", "fake", "-d", "cpu")
    assert code == ExitCode.USAGE and "alexnet-d2l cannot take 1x96x96" in err and "195" in err


# --- the runtime pieces: init, label smoothing, placement, CUDA timing ---------------------------


def test_xavier_init_is_the_book_s():
    net, reference = seed_models.LeNet(), seed_models.LeNet()
    reference.load_state_dict(net.state_dict())
    biases = [m.bias.clone() for m in net.modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)]
    torch.manual_seed(0)
    xavier_init(net)
    torch.manual_seed(0)
    for m in reference.modules():
        if type(m) in (torch.nn.Linear, torch.nn.Conv2d):
            torch.nn.init.xavier_uniform_(m.weight)
    layers = [m for m in net.modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)]
    expected = [m for m in reference.modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(layers, expected))
    assert all(torch.equal(m.bias, b) for m, b in zip(layers, biases))


def test_label_smoothing_changes_the_loss_only():
    plain, smooth = (api.train("lenet", epochs=1, label_smoothing=ls, **SMALL)[0] for ls in (0.0, 0.1))
    assert smooth.recipe.label_smoothing == 0.1 and "label_smoothing" in smooth.recipe.overrides
    assert smooth.epochs[0].train_loss != plain.epochs[0].train_loss


def test_host_placement_serves_the_same_batches(data_root):
    data = ds.load_dataset("fashion-mnist", data_root, limit_train=300, limit_test=100)
    device = torch.device("cpu")
    on_device = DeviceData(data, device, resize=32)
    on_host = DeviceData(data, device, resize=32, workers=0, placement="host")
    assert on_host.placement == "host" and on_device.placement == "device"
    order = torch.randperm(300, generator=torch.Generator().manual_seed(1))
    for (xa, ya), (xb, yb) in zip(on_device.train(64, order), on_host.train(64, order)):
        assert xa.shape[1:] == (1, 32, 32) and 0 <= float(xa.min()) and float(xa.max()) <= 1
        assert torch.equal(xa, xb) and torch.equal(ya, yb)

    class SmallGpu:
        def mem_get_info(self, device):
            return (100 * 2**20, 80 * 2**30)  # 100 MiB free

    assert fits_on_device(20 * 2**20, torch.device("cuda"), SmallGpu())
    assert not fits_on_device(47 * 2**20, torch.device("cuda"), SmallGpu())


def test_cuda_path_times_with_events_and_reports_speedup():
    """The CUDA backend (events, cudnn.benchmark) with fakes; tensors stay on the CPU."""
    clock = FakeClock(tick=0.001)
    cuda, cudnn = FakeCuda(clock), FakeCudnn()

    def factory(device):
        if device == "cpu":
            from archprobe.runtime.backends import CpuBackend
            return CpuBackend(device, clock)
        backend = CudaBackend(device, cuda=cuda, cudnn=cudnn, tensor_device="cpu", clock=clock)
        backend.environment = lambda: FAKE_ENV
        return backend

    runner = TrainRunner(threads=THREADS, backend_factory=factory, clock=clock)
    plan = plan_training(["lenet"], dataset="fake", device="cpu", limit_train=128, limit_test=64,
                             epochs=1, batch_size=64)
    plan = replace(plan, devices=("cpu", "cuda"))
    cpu_run, cuda_run = train_sweep(plan, runner=runner)
    assert cuda_run.ok and cuda_run.cudnn_benchmark is True and cudnn.benchmark is False  # restored
    assert cuda.log.count("record") == 2 and "sync" in cuda.log  # one event pair around the batches
    row = cuda_run.epochs[0]
    assert row.examples_per_sec == pytest.approx(128 / row.train_seconds)
    assert cuda_run.speedup == pytest.approx(cuda_run.examples_per_sec / cpu_run.examples_per_sec)
    assert cpu_run.speedup is None


def test_train_run_round_trips_through_a_frame():
    run = TrainRun(model="m", device="cpu", dataset="fake", status="ok",
                   recipe=Recipe(model="m", optimizer="sgd", lr=0.1, batch_size=8, epochs=1), input_shape=(1, 28, 28),
                   epochs=(EpochRow("m", "cpu", "fake", 1, 0.5, 0.8, 0.7, 100.0, 2.0, 1.0, 100),))
    frame = api.to_frame([run])
    assert frame.loc[0, "model"] == "m" and frame.loc[0, "status"] == "ok"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_speedup_and_resume(tmp_path):
    options = {**SMALL, "device": "all"}
    cpu_run, cuda_run = api.train("lenet", epochs=2, output=tmp_path, **options)
    assert cpu_run.device == "cpu" and cuda_run.device == "cuda" and cuda_run.ok
    assert cuda_run.speedup == pytest.approx(cuda_run.examples_per_sec / cpu_run.examples_per_sec)
    assert cuda_run.test_acc > 0.1 and cuda_run.cudnn_benchmark is True
    _, resumed = api.train("lenet", epochs=3, output=tmp_path, resume=True, **options)
    assert resumed.resumed_from == 2 and [r.epoch for r in resumed.epochs] == [1, 2, 3]


FROZEN_AND_BN1D = textwrap.dedent("""
    import torch.nn as nn

    def frozen(in_channels=1, num_classes=10):
        m = nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
        for p in m.parameters():
            p.requires_grad_(False)
        return m

    def bn1d(in_channels=1, num_classes=10):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, 16), nn.BatchNorm1d(16), nn.ReLU(),
                             nn.Linear(16, num_classes))
""")


def test_a_model_with_nothing_to_train_is_refused_before_any_model_trains(invoke, tmp_path):
    (tmp_path / "nets.py").write_text(FROZEN_AND_BN1D)
    out_dir = tmp_path / "run"
    code, out, err = invoke("train", "lenet", f"{tmp_path}/nets.py:frozen", "--dataset", "fake", "-d", "cpu",
                            "--epochs", "1", *QUICK, "-o", out_dir)
    assert code == ExitCode.USAGE and "nets.py:frozen has no trainable parameters" in err
    assert "epoch 1/1" not in out + err and not (out_dir / "train.json").exists()


def test_a_last_batch_of_one_is_left_out_under_batchnorm(invoke, tmp_path):
    # 129 examples at batch 64: the third batch would hold one example, which BatchNorm1d refuses
    (tmp_path / "nets.py").write_text(FROZEN_AND_BN1D)
    code, out, err = invoke("train", f"{tmp_path}/nets.py:bn1d", "--dataset", "fake", "-d", "cpu", "--epochs", "1",
                            "--threads", "1", "--limit-train", "129", "--limit-test", "64", "-b", "64", "-f", "json")
    assert code == 0, err
    (run,) = json.loads(out)
    assert run["status"] == "ok" and len(run["epochs"]) == 1
    assert "the last training batch of each epoch would hold 1 of 129 examples" in json.dumps(run["notes"]) + err
