"""Data-parallel training (``archprobe train --nproc N``): real launches of two CPU ranks (gloo)
on a tiny data set in Fashion-MNIST's IDX format, read through the users' code path.

Every training image carries its own index in its first two pixels (``i // 256``, ``i % 256``;
the rest is archprobe's structured stand-in), so a model can report which examples each rank
trained on, and the tests check those against ``DistributedSampler``'s indices.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

import archprobe as ap

from archprobe.errors import ExitCode, UsageError
from archprobe.runtime import backends
from archprobe.runtime import distributed as rd
from archprobe.training import datasets as ds
from archprobe.training.distributed import DataParallel, EpochMailbox, rank_share
from archprobe.training.formats import write_idx
from archprobe.training.outputs import checkpoint_name
from archprobe.training.plan import training_recipes
from archprobe.training.runner import TrainRunner
from archprobe.zoo import resolve
from archprobe.zoo.resolution import data_spec
from processes import alive, interrupt_when_ready

ROOT = Path(__file__).resolve().parents[1]
TRAIN, TEST, BATCH = 512, 128, 64  # per-rank batch: 4 steps per rank and epoch with two ranks
RANKS = dict(device="cpu", nproc=2, threads=1, batch_size=BATCH, optimizer="adam", lr=0.003, seed=5)


def lenet() -> torch.nn.Module:
    """The zoo's LeNet for Fashion-MNIST, with real weights on the CPU."""
    return resolve("lenet", in_channels=1, num_classes=10).build("cpu")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Fashion-MNIST's four IDX files; training image i starts with the pixels i // 256, i % 256."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "FashionMNIST" / "raw"
    for prefix, count, seed in (("train", TRAIN, 0), ("t10k", TEST, 1)):
        images, labels = ds.structured_images(count, seed=seed)
        images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(count) // 256, np.arange(count) % 256
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


MODELS = textwrap.dedent(
    """
    import os
    import time

    import torch
    from torch import nn

    LOG = {log!r}


    class Net(nn.Module):
        '''A linear classifier that, in training, appends the indices of its batch (from the first
        two pixels) to LOG/rankR.txt, one line per batch; ``fault`` breaks rank 1 in epoch 2.'''

        def __init__(self, in_channels=1, num_classes=10, fault=None):
            super().__init__()
            self.fc = nn.Linear(in_channels * 28 * 28, num_classes)
            self.fault, self.steps = fault, 0

        def forward(self, x):
            rank = os.environ.get("RANK")
            if self.training and rank is not None:
                self.steps += 1
                pixels = (x[:, 0, 0, :2] * 255).round().long()
                with open(os.path.join(LOG, f"rank{{rank}}.txt"), "a") as fh:
                    fh.write(" ".join(str(i) for i in (pixels[:, 0] * 256 + pixels[:, 1]).tolist()) + "\\n")
                if self.fault and self.steps > 4:  # in epoch 2
                    if self.fault == "raise" and rank == "1":
                        raise ValueError("rank one broke")
                    if self.fault == "sleep":  # every rank, until Ctrl-C
                        open(os.path.join(LOG, f"asleep-{{rank}}-{{os.getpid()}}"), "w").close()
                        time.sleep(3600)
            return self.fc(torch.flatten(x, 1))


    def recorder(in_channels=1, num_classes=10):
        return Net(in_channels, num_classes)


    def raises_on_rank_1(in_channels=1, num_classes=10):
        return Net(in_channels, num_classes, "raise")


    def sleeps_in_epoch_2(in_channels=1, num_classes=10):
        return Net(in_channels, num_classes, "sleep")
    """
)


@pytest.fixture
def models(tmp_path) -> tuple[Path, Path]:
    """(the models file, the directory its ranks log to)."""
    log = tmp_path / "log"
    log.mkdir()
    path = tmp_path / "nets.py"
    path.write_text(MODELS.format(log=str(log)))
    return path, log


def logged_epochs(log: Path, rank: int) -> list[list[int]]:
    """The indices rank ``rank`` trained on, one list per epoch (4 batches each)."""
    batches = [list(map(int, line.split())) for line in (log / f"rank{rank}.txt").read_text().splitlines()]
    steps = -(-TRAIN // 2 // BATCH)
    return [sum(batches[i:i + steps], []) for i in range(0, len(batches), steps)]


def sampler_indices(rank: int, epoch: int, seed: int = RANKS["seed"]) -> list[int]:
    sampler = DistributedSampler(range(TRAIN), num_replicas=2, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch - 1)
    return list(sampler)


def weights(directory: Path, model: str) -> dict:
    return torch.load(directory / "checkpoints" / checkpoint_name(model, "cpu"), weights_only=True)["model_state"]


# --- the sampler's share, the mailbox, one rank in this process ----------------------------------


@pytest.mark.parametrize("examples, ranks", [(512, 2), (10, 3), (7, 4)])
def test_rank_shares_cover_every_example_and_are_torch_s(examples, ranks):
    for epoch in (1, 2):
        shares = [rank_share(examples, ranks, r, seed=3, epoch=epoch).tolist() for r in range(ranks)]
        assert len({len(s) for s in shares}) == 1  # every rank runs as many steps
        together = sum(shares, [])
        assert sorted(set(together)) == list(range(examples))  # every example, in some rank
        assert len(together) - examples == -examples % ranks  # repeated only to even out the shares
        for r, share in enumerate(shares):
            sampler = DistributedSampler(range(examples), num_replicas=ranks, rank=r, seed=3)
            sampler.set_epoch(epoch - 1)
            assert share == list(sampler)
    assert rank_share(512, 2, 0, seed=3, epoch=1).tolist() != rank_share(512, 2, 0, seed=3, epoch=2).tolist()


def test_mailbox_hands_over_each_epoch_once_in_order(tmp_path):
    from archprobe.results import EpochRow, Recipe, TrainRun

    mailbox = EpochMailbox(tmp_path)
    run = TrainRun("m", "cpu", "fake", "ok", Recipe("m", "sgd", 0.1, 8, 3), (1, 28, 28), world_size=2)
    rows = [EpochRow("m", "cpu", "fake", e, 1.0 / e, 0.5, 0.5, 100.0, 1.0, 1.0, 10, world_size=2) for e in (2, 1, 3)]
    for row in rows[:2]:
        mailbox.post(row, run)
    assert [row.epoch for row, _ in mailbox.collect()] == [1, 2]
    mailbox.post(rows[2], run)
    (got,) = mailbox.collect()
    assert got == (rows[2], run) and mailbox.collect() == []


@pytest.fixture
def one_rank_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield rd.RankInfo(rank=0, world_size=1, local_rank=0, local_world_size=1, nnodes=1)
    dist.destroy_process_group()


def test_one_rank_in_this_process_trains_on_its_share(one_rank_group, data_root, monkeypatch, tmp_path):
    """The rank-side loop in this process (a gloo group of one): the DDP-wrapped model trains on
    the sampler's order, the figures are the group's, the checkpoint holds the plain module and
    every rank's random states, and a resumed rank continues."""
    from archprobe.training.loader import DeviceData

    orders = []
    serve = DeviceData.train
    monkeypatch.setattr(DeviceData, "train", lambda self, batch, order: orders.append(order.tolist()) or
                        serve(self, batch, order))
    data = ds.load_dataset("fashion-mnist", data_root)
    spec = data_spec("lenet", 1, 10)
    recipe = training_recipes(["lenet"], epochs=2, batch_size=BATCH, seed=5)[0]

    def runner():
        return TrainRunner(threads=1, replicas=DataParallel(one_rank_group, "cpu", seed=5))

    checkpoint = tmp_path / "lenet.pt"
    run = runner().run(spec, "cpu", data, replace(recipe, epochs=1), checkpoint=checkpoint)
    assert run.ok and (run.world_size, run.global_batch_size, run.backend) == (1, BATCH, "gloo")
    assert len(run.rank_hosts) == len(run.rank_device_names) == 1 and run.epochs[0].world_size == 1 and run.epochs[0].train_examples == TRAIN
    saved = torch.load(checkpoint, weights_only=True)
    lenet().load_state_dict(saved["model_state"])  # no "module." prefix
    assert saved["world_size"] == 1 and len(saved["rank_rng"]) == 1
    resumed = runner().run(spec, "cpu", data, recipe, checkpoint=checkpoint, resume=True)
    assert resumed.ok and resumed.resumed_from == 1 and [r.epoch for r in resumed.epochs] == [1, 2]
    one_rank = [DistributedSampler(range(TRAIN), num_replicas=1, rank=0, seed=5) for _ in (1, 2)]
    for epoch, sampler in enumerate(one_rank):
        sampler.set_epoch(epoch)
    assert orders == [list(one_rank[0]), list(one_rank[1])]


def test_a_busy_sample_flags_a_rank_s_epoch(one_rank_group, data_root, monkeypatch):
    """A rank's epoch gathers every rank's load window (a collective) and is flagged as one
    process's is."""
    from archprobe.runtime.load import CpuSample
    from archprobe.training import runner as training_runner

    ticks = iter(range(100))

    def busy_sample():  # each sample a second later: the rank used 1 core, the machine 2
        t = next(ticks)
        return CpuSample(float(t), 1.0 * t, 2.0 * t, 0.1 * t, 4.0 * t)

    monkeypatch.setattr(training_runner, "sample", busy_sample)
    data = ds.load_dataset("fashion-mnist", data_root)
    recipe = training_recipes(["lenet"], epochs=1, batch_size=BATCH, seed=5)[0]
    run = TrainRunner(threads=1, replicas=DataParallel(one_rank_group, "cpu", seed=5)).run(
        data_spec("lenet", 1, 10), "cpu", data, recipe)
    (epoch,) = run.epochs
    assert (epoch.other_cpu_cores, epoch.process_cpu_cores, epoch.cpu_steal) == (1.0, 1.0, 0.025)
    assert epoch.warnings == run.warnings == ("busy",)
    from archprobe.report.notes import epoch_line

    assert epoch_line(epoch, 1).endswith("; warning: other processes kept 1.00 cores busy (its 1 rank used 1.00)")


def test_ddp_wraps_with_the_rank_s_gpu(monkeypatch):
    """On CUDA, DDP is given the rank's GPU (one per rank); on the CPU, no device ids."""
    wrapped = []
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel",
                        lambda model, **kw: wrapped.append(kw) or model)
    info = rd.RankInfo(rank=1, world_size=2, local_rank=1, local_world_size=2, nnodes=1)
    for device in (rd.rank_device("cuda", 1), "cpu"):
        DataParallel(info, device, seed=0).wrap(torch.nn.Linear(2, 2))
    assert wrapped == [{"device_ids": [1]}, {"device_ids": None}]


# --- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "'--nproc': 0 is not in the range x>=1"),
    (["--nproc", "2", "--device", "all"], "--device: data-parallel ranks need one device kind, cpu or cuda, not all"),
    (["--nproc", "2", "-d", "cpu", "-d", "cuda"], "--device: data-parallel ranks need one device kind"),
    (["--nproc", "2", "--device", "cuda"], "--nproc: 2 CUDA ranks need 2 GPUs (one per rank); 1 is visible"),
])
def test_usage_errors(invoke, monkeypatch, args, message):
    monkeypatch.setattr(backends, "cuda_usable", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, out, err = invoke("train", "lenet", "--dataset", "fake", *args)
    assert code == ExitCode.USAGE and message in err and out == "", err


def test_a_live_module_cannot_be_sent_to_ranks():
    with pytest.raises(UsageError, match="cannot be sent to other processes") as exc:
        ap.train(lenet(), dataset="fake", device="cpu", nproc=2)
    assert exc.value.param == "model"


# --- real launches: two ranks on the CPU --------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_of_lenet_write_once_and_resume_without_ranks(invoke, data_root, tmp_path):
    out_dir = tmp_path / "run"
    options = ["--data-root", str(data_root), "-d", "cpu", "-b", str(BATCH), "--threads", "1", "--optimizer", "adam",
               "--lr", "0.003", "-o", str(out_dir)]
    code, out, err = invoke("train", "lenet", "--nproc", "2", "--epochs", "2", *options, "-f", "json")
    assert code == 0, err
    (run,) = json.loads(out)
    assert run["status"] == "ok", run["error"]
    assert (run["world_size"], run["global_batch_size"], run["backend"], run["threads"]) == (2, 2 * BATCH, "gloo", 1)
    assert len(run["rank_hosts"]) == len(run["rank_device_names"]) == 2  # two ranks ran
    assert [e["epoch"] for e in run["epochs"]] == [1, 2] and all(e["world_size"] == 2 for e in run["epochs"])
    for e in run["epochs"]:  # global figures: all 512 examples, over the slowest rank's time
        assert e["train_examples"] == TRAIN
        assert e["examples_per_sec"] == pytest.approx(TRAIN / e["train_seconds"])
    assert "lenet on cpu x2, epoch 2/2: loss " in err

    # written once, by one writer: two CSV rows, one run, one checkpoint, of the unwrapped module
    assert len((out_dir / "train.csv").read_text().splitlines()) == 1 + 2
    assert [r["model"] for r in json.loads((out_dir / "train.json").read_text())] == ["lenet"]
    assert [p.name for p in (out_dir / "checkpoints").iterdir()] == [checkpoint_name("lenet", "cpu")]
    state = weights(out_dir, "lenet")
    net = lenet()
    net.load_state_dict(state)  # the plain module's keys, no "module." prefix

    # the test accuracy (sharded over the ranks, counts summed) is the whole test set's
    data = ds.load_dataset("fashion-mnist", data_root)
    net.eval()
    with torch.no_grad():
        predicted = net(data.test_images.float() / 255).argmax(1)
    assert run["test_acc"] == (predicted == data.test_labels).sum().item() / TEST

    # a checkpoint made with other settings is refused before any rank starts
    code, _, err = invoke("train", "lenet", "--nproc", "2", "--epochs", "3", *options[:-4], "--lr", "0.01",
                          "-o", str(out_dir), "--resume")
    assert code == ExitCode.USAGE and "--resume: " in err and "lr 0.003 (now 0.01)" in err

    # and the run goes on in one process
    code, out, err = invoke("train", "lenet", "--epochs", "3", *options, "--resume", "-f", "json")
    assert code == 0, err
    (resumed,) = json.loads(out)
    assert [(e["epoch"], e["world_size"]) for e in resumed["epochs"]] == [(1, 2), (2, 2), (3, None)]
    assert resumed["resumed_from"] == 2 and resumed["world_size"] is None
    assert "resumed a checkpoint of 2 ranks on one process" in resumed["notes"][0]
    assert len((out_dir / "train.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.slow
def test_ranks_train_on_their_sampler_share_and_resume_exactly(data_root, models, tmp_path):
    path, log = models
    model = f"{path}:recorder"
    options = dict(dataset="fashion-mnist", data_root=data_root, **RANKS)
    (whole,) = ap.train(model, epochs=3, output=tmp_path / "whole", **options)
    assert whole.ok, whole.error
    trained = {rank: logged_epochs(log, rank) for rank in (0, 1)}
    for rank in (0, 1):
        assert trained[rank] == [sampler_indices(rank, e) for e in (1, 2, 3)]  # what each rank trained on
        (log / f"rank{rank}.txt").unlink()
    for epoch in range(3):  # each epoch: every example exactly once over the two ranks
        assert sorted(trained[0][epoch] + trained[1][epoch]) == list(range(TRAIN))
    assert trained[0][0] != trained[0][1]  # the shuffle differs by epoch

    (cut,) = ap.train(model, epochs=2, output=tmp_path / "cut", **options)
    (resumed,) = ap.train(model, epochs=3, output=tmp_path / "cut", resume=True, **options)
    assert resumed.ok and resumed.resumed_from == 2 and resumed.epochs_done == 3
    assert [logged_epochs(log, r)[2] for r in (0, 1)] == [sampler_indices(r, 3) for r in (0, 1)]
    assert [e.train_loss for e in resumed.epochs] == [e.train_loss for e in whole.epochs]
    final, expected = weights(tmp_path / "cut", model), weights(tmp_path / "whole", model)
    assert all(torch.equal(final[k], expected[k]) for k in expected)


@pytest.mark.slow
def test_a_rank_that_raises_ends_the_run_with_its_name(data_root, models, tmp_path):
    path, _ = models
    began = time.monotonic()
    failed, after = ap.train([f"{path}:raises_on_rank_1", "lenet"], dataset="fashion-mnist", data_root=data_root,
                             epochs=2, output=tmp_path, timeout=10, **RANKS)
    assert time.monotonic() - began < 60  # the launcher stops the peer at once: no wait for a timeout
    assert (failed.status, failed.error) == ("error", "rank 1: ValueError: rank one broke")
    assert failed.epochs_done == 1 and failed.world_size == 2  # the epoch before the failure is kept
    assert after.ok and after.epochs_done == 2  # the next run goes on
    rows = (tmp_path / "train.csv").read_text().splitlines()[1:]
    assert [row.split(",")[3] for row in rows] == ["1", "1", "2"]
    saved = {r["model"]: r for r in json.loads((tmp_path / "train.json").read_text())}
    assert saved[failed.model]["status"] == "error" and len(saved[failed.model]["epochs"]) == 1


@pytest.mark.slow
def test_ddp_first_step_equals_one_process_with_the_global_batch(data_root, tmp_path):
    """Two ranks of batch 16 and one process of batch 32 take one SGD step on the same 32
    examples from the same initial weights: DDP averages the ranks' mean gradients, which is
    the mean gradient over the 32, so both give the weights of one hand-written step."""
    options = dict(dataset="fashion-mnist", data_root=data_root, device="cpu", threads=1, epochs=1,
                   limit_train=32, limit_test=32, optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, seed=1)
    (single,) = ap.train("lenet", batch_size=32, output=tmp_path / "one", **options)
    (pair,) = ap.train("lenet", batch_size=16, nproc=2, output=tmp_path / "two", **options)
    assert single.ok and pair.ok and pair.global_batch_size == 32

    torch.manual_seed(1)  # the recipe's seed, before the model is built
    net = lenet()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    data = ds.load_dataset("fashion-mnist", data_root, limit_train=32)
    loss = torch.nn.functional.cross_entropy(net(data.train_images.float() / 255), data.train_labels)
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.5 * p.grad
    expected = net.state_dict()
    one, two = weights(tmp_path / "one", "lenet"), weights(tmp_path / "two", "lenet")
    for key in expected:  # the updates agree (LeNet's sigmoids make its first layers' small)
        update = expected[key] - initial[key]
        assert update.abs().max() > 1e-6
        torch.testing.assert_close(one[key] - initial[key], update, rtol=1e-3, atol=1e-8)
        torch.testing.assert_close(two[key] - initial[key], update, rtol=1e-3, atol=1e-8)
    assert single.epochs[0].train_loss == pytest.approx(loss.item(), rel=1e-6)
    assert pair.epochs[0].train_loss == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_keeps_the_finished_epoch(data_root, models, tmp_path):
    path, log = models
    out_dir = tmp_path / "run"
    command = [sys.executable, "-m", "archprobe", "train", f"{path}:sleeps_in_epoch_2", "--nproc", "2", "-d", "cpu",
               "--data-root", str(data_root), "-b", str(BATCH), "--epochs", "3", "--threads", "1", "-o", str(out_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in rd.LAUNCH_VARIABLES:
        env.pop(name, None)
    # once both ranks are in epoch 2
    code, out, err = interrupt_when_ready(command, lambda: len(list(log.glob("asleep-*"))) >= 2, env=env, cwd=ROOT)
    assert code == ExitCode.INTERRUPTED, err
    assert "interrupted: 1 finished epoch kept" in err and "interrupted" in out
    assert len((out_dir / "train.csv").read_text().splitlines()) == 1 + 1
    (saved,) = json.loads((out_dir / "train.json").read_text())
    assert saved["status"] == "interrupted" and [e["epoch"] for e in saved["epochs"]] == [1]
    assert torch.load(next((out_dir / "checkpoints").iterdir()), weights_only=True)["epoch"] == 1
    pids = [int(p.name.rsplit("-", 1)[1]) for p in log.glob("asleep-*")]
    assert len(set(pids)) == 2 and not any(alive(pid) for pid in pids)
