"""Data-parallel throughput through torch.distributed: the timing rule and the row arithmetic on
fakes, the CUDA/NCCL path with fakes in a one-rank gloo group, usage errors, and real launches on
the CPU with gloo (two ranks of lenet training, ranks that raise, die or hang, Ctrl-C, torchrun).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch import nn

import archprobe as ap
from archprobe.bench import distributed as bd
from archprobe.bench.throughput import RESULT_FIELDS, ThroughputConfig
from archprobe.errors import ExitCode, UsageError
from archprobe.probe import Probe
from archprobe.report.frames import render
from archprobe.report.notes import throughput_notes
from archprobe.results import Environment, ThroughputResult
from archprobe.runtime import backends
from archprobe.runtime import distributed as rd
from archprobe.runtime import launch
from archprobe.runtime.backends import CudaBackend
from archprobe.zoo.spec import ModelSpec
from fakes import FakeEvent
from processes import alive, interrupt_when_ready

ROOT = Path(__file__).resolve().parents[1]
FAST_ARGS = ["--warmup", "1", "--warmup-time", "0", "--min-iters", "3", "--min-time", "0.02",
             "--no-utilisation", "--quiet"]
FAKE_ENV = Environment("2.x", "12.x", 90000, "Fake Device", "Fake CPU", "3.x")
LAUNCH_ENV = dict(RANK="1", WORLD_SIZE="4", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", GROUP_WORLD_SIZE="2",
                  MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")


# --- the rank's place, devices and threads ------------------------------------------------------
def test_rank_info_from_the_launchers_variables():
    info = rd.RankInfo.from_env(LAUNCH_ENV)
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size, info.nnodes) == (1, 4, 1, 2, 2)
    with pytest.raises(UsageError, match="no process group to join: RANK, MASTER_PORT not set") as exc:
        rd.RankInfo.from_env({k: v for k, v in LAUNCH_ENV.items() if k not in ("RANK", "MASTER_PORT")})
    assert exc.value.param == "distributed"


def test_devices_backends_and_thread_split():
    assert (rd.rank_device("cuda", 3), rd.backend_for("cuda")) == ("cuda:3", "nccl")
    assert (rd.rank_device("cpu", 3), rd.backend_for("cpu")) == ("cpu", "gloo")
    assert rd.threads_per_rank(2, cores=16) == 8 and rd.threads_per_rank(3, cores=16) == 5
    assert rd.threads_per_rank(4, cores=2) == 1  # oversubscribed: still one thread each
    assert rd.rank_threads("cpu", None, 2) == rd.threads_per_rank(2)
    assert rd.rank_threads("cpu", 3, 2) == 3 and rd.rank_threads("cuda", None, 8) is None


# --- the timing rule ----------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def advance(self, dt):
        self.t += dt


def test_agreed_warmup_waits_for_the_slowest_rank():
    clock = FakeClock()
    steps, syncs = [], []

    def step():
        steps.append(1)
        clock.advance(0.010)  # this rank: 10 ms per step

    def reduce_max(values):  # the other rank: 30 ms per step, so it decides
        elapsed, last = values
        return [max(elapsed, 0.030 * len(steps)), max(last, 0.030)]

    count, per_step = rd.agreed_warmup(step, lambda: syncs.append(1), reduce_max, warmup=2, warmup_time=0.1,
                                       clock=clock)
    assert count == 4  # 4 x 30 ms >= 0.1 s on the slow rank (this one alone would stop after 10)
    assert per_step == pytest.approx(0.030) and len(syncs) == 4
    count, _ = rd.agreed_warmup(step, lambda: None, lambda v: list(v), warmup=0, warmup_time=0.0, clock=clock)
    assert count == 1  # one step at least: its time sizes the timed phase


def test_timed_iterations_cover_min_time_within_the_bounds():
    assert rd.timed_iterations(0.030, min_iters=10, min_time=2.0, max_iters=1000) == 67  # ceil(2 / 0.03)
    assert rd.timed_iterations(0.5, min_iters=10, min_time=2.0, max_iters=1000) == 10
    assert rd.timed_iterations(1e-6, min_iters=10, min_time=2.0, max_iters=1000) == 1000
    assert rd.timed_iterations(0.0, min_iters=3, min_time=1.0, max_iters=50) == 50


def test_run_counted_times_exactly_the_agreed_steps():
    from archprobe.runtime.timing import HostTimer, run_counted

    clock = FakeClock()
    durations = iter([0.001, 0.002, 0.003, 0.004])
    times = run_counted(lambda: clock.advance(next(durations)), HostTimer(clock), 3)
    assert times == pytest.approx([0.001, 0.002, 0.003])
    with pytest.raises(ValueError):
        run_counted(lambda: None, HostTimer(clock), 0)


# --- rows ---------------------------------------------------------------------------------------
def tiny_spec() -> ModelSpec:
    return ModelSpec("tiny", "user", (3, 8, 8), 10, lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(),
                                                                          nn.Linear(144, 10)))


def timing(**overrides) -> bd.GroupTiming:
    values = dict(step_max_s=(0.010, 0.012, 0.011, 0.020), rank_median_s=(0.0105, 0.0112),
                  rank_hosts=("h", "h"), rank_device_names=("cpu Fake CPU", "cpu Fake CPU"), world_size=2, local_world_size=2, nnodes=1,
                  warmup_iters=5, threads=1, cudnn_benchmark=None,
                  memory={"peak_memory_bytes": 2_000})
    return bd.GroupTiming(**{**values, **overrides})


def test_row_arithmetic_examples_efficiency_and_utilisation():
    config = ThroughputConfig(mode="train", batch_size=8, threads=1)
    baseline = ThroughputResult("tiny", "cpu", "train", 8, "float32", "ok", examples_per_sec=1000.0,
                                matmul_flops_per_iter=1_000_000, ceiling_flops_per_sec=1e9,
                                ceiling_shape="mm 512x512x512",
                                ceiling_precision="float32")
    row = bd.distributed_row(Probe.build(tiny_spec()), "cpu", config, FAKE_ENV, timing(), baseline, world_size=2,
                             nproc_per_node=2, nnodes=1)
    median = 0.0115  # of the per-step maxima 10, 11, 12, 20 ms
    assert row.status == "ok" and row.median_ms == pytest.approx(median * 1e3)
    assert row.examples_per_sec == pytest.approx(16 / median)  # batch 8 x 2 ranks
    assert row.scaling_efficiency == pytest.approx(16 / median / (2 * 1000.0))
    assert row.single_process_examples_per_sec == 1000.0
    assert (row.world_size, row.nproc_per_node, row.nnodes, row.backend, row.global_batch_size) == (2, 2, 1, "gloo", 16)
    assert row.rank_median_ms == pytest.approx((10.5, 11.2)) and row.samples == 4
    assert row.matmul_flops_per_iter == 2_000_000 and row.achieved_flops_per_sec == pytest.approx(2e6 / median)
    assert row.utilisation == pytest.approx(2e6 / median / 2e9)  # over two ranks' ceilings
    assert row.peak_memory_bytes == 2_000 and row.threads == 1 and row.optimizer
    assert row.label == "tiny cpu train b=8 x2"
    assert any(n.startswith("Util. = matmul-class FLOP/s (2 x MACs of conv/linear/matmul) over the cpu x2 "
                            "(2 ranks of cpu, 1 thread) float32 ceiling 2.0 GFLOP/s") and n.endswith("times the ranks)")
               for n in throughput_notes([row]))

    failed = bd.distributed_row(Probe.build(tiny_spec()), "cpu", config, FAKE_ENV, None, baseline, world_size=2,
                                nproc_per_node=2, nnodes=1, error="rank 1: ValueError: bad")
    assert (failed.status, failed.error, failed.examples_per_sec, failed.scaling_efficiency) == \
        ("error", "rank 1: ValueError: bad", None, None)
    assert failed.world_size == 2 and failed.single_process_examples_per_sec == 1000.0


def test_a_busy_machine_the_baseline_and_the_ceiling_flag_a_data_parallel_row():
    config = ThroughputConfig(mode="train", batch_size=8, threads=1)
    baseline = ThroughputResult("tiny", "cpu", "train", 8, "float32", "ok", examples_per_sec=1000.0,
                                matmul_flops_per_iter=1_000_000, ceiling_flops_per_sec=1e9,
                                ceiling_shape="mm 512x512x512", ceiling_precision="float32")
    probe = Probe.build(tiny_spec())
    steady = (0.010, 0.0101, 0.0102, 0.0101)  # no spread
    quiet = bd.distributed_row(probe, "cpu", config, FAKE_ENV,
                               timing(step_max_s=steady, other_cpu_cores=0.1, process_cpu_cores=1.9, cpu_steal=0.0),
                               baseline, world_size=2, nproc_per_node=2, nnodes=1)
    assert quiet.warnings == () and quiet.other_cpu_cores == 0.1
    # the same mechanism as a single-process row: other processes' cores, steal, the ceiling's
    # own measurement and (what Scaling eff. divides by) the baseline's warnings
    busy_baseline = replace(baseline, warnings=("busy",), ceiling_spread=0.4, ceiling_samples=3,
                            ceiling_other_cpu_cores=0.0)
    row = bd.distributed_row(probe, "cpu", config, FAKE_ENV,
                             timing(step_max_s=steady, other_cpu_cores=1.2, process_cpu_cores=1.9, cpu_steal=0.08),
                             busy_baseline,
                             world_size=2, nproc_per_node=2, nnodes=1)
    assert row.warnings == ("busy", "steal", "ceiling_spread", "baseline_busy")
    assert (row.other_cpu_cores, row.process_cpu_cores, row.cpu_steal) == (1.2, 1.9, 0.08)
    assert (row.ceiling_spread, row.ceiling_samples) == (0.4, 3)
    notes = throughput_notes([row])
    assert "warning: tiny cpu train b=8 x2: other processes kept 1.20 cores busy while it ran (its 2 ranks used" \
           " 1.90); the figure is likely low, measure again on a quiet machine" in notes
    assert any(n.startswith("warning: tiny cpu train b=8 x2: the hypervisor stole 8%") for n in notes)
    assert any("1-process baseline was flagged too (busy machine)" in n for n in notes)
    assert any(n.startswith("warning: the cpu x2 (2 ranks of cpu, 1 thread) float32 ceiling behind Util. is "
                            "unsteady: its calls spread widely (IQR 40%") for n in notes)
    record = json.loads(render([row], "json"))[0]
    assert record["warnings"] == ["busy", "steal", "ceiling_spread", "baseline_busy"]
    assert record["other_cpu_cores"] == 1.2
    assert "busy;steal;ceiling_spread;baseline_busy" in render([row], "csv")


def test_every_rank_s_load_window_reaches_the_row(one_rank_group, monkeypatch):
    from archprobe.runtime.load import CpuSample

    ticks = iter(range(100))

    def busy_sample():  # each sample a second later: this rank used 1 core, the machine 3.5
        t = next(ticks)
        return CpuSample(float(t), 1.0 * t, 3.5 * t, 0.0, 16.0 * t, load_average=4.0)

    monkeypatch.setattr(bd, "sample", busy_sample)
    config = ThroughputConfig(mode="eval", batch_size=2, warmup=1, warmup_time=0.0, min_iters=3, min_time=0.0)
    got = bd.time_in_group(tiny_spec(), config, "cpu", one_rank_group)
    assert (got.other_cpu_cores, got.process_cpu_cores, got.load_average) == (2.5, 1.0, 4.0)
    row = bd.distributed_row(Probe.build(tiny_spec()), "cpu", config, FAKE_ENV, got, None, world_size=1,
                             nproc_per_node=1, nnodes=1)
    assert "busy" in row.warnings


def test_single_process_rows_keep_their_columns():
    plain = ThroughputResult("m", "cpu", "eval", 8, "float32", "ok", examples_per_sec=10.0, median_ms=800.0)
    assert plain.world_size is None and plain.label == "m cpu eval b=8"
    table = render([plain], "table")
    assert "Ranks" not in table and "Scaling eff." not in table
    assert not any("Ranks:" in n for n in throughput_notes([plain]))


def test_table_and_notes_of_data_parallel_rows():
    config = ThroughputConfig(mode="train", batch_size=8, threads=1)
    baseline = ThroughputResult("tiny", "cpu", "train", 8, "float32", "ok", examples_per_sec=1000.0)
    slow_rank = timing(rank_median_s=(0.010, 0.013))
    row = bd.distributed_row(Probe.build(tiny_spec()), "cpu", config, FAKE_ENV, slow_rank, baseline, world_size=2,
                             nproc_per_node=2, nnodes=1)
    table = render([row], "table", throughput_notes([row]))
    for header in ("Ranks", "Global batch", "1-process ex/s", "Scaling eff."):
        assert header in table
    assert "warning: tiny cpu train b=8 x2: rank medians range from 10.00 to 13.00 ms" in table
    assert "cpu x2: 2 ranks on 1 node, 1 thread per rank, gloo; 2x Fake CPU on 1 host" in table
    assert f"{100 * row.scaling_efficiency:.1f}%" in table


def test_failure_messages_from_the_launcher():
    raised = SimpleNamespace(message={"message": "ValueError: rank one broke\nmore"}, exitcode=1)
    assert launch.failure_message(raised) == "ValueError: rank one broke"
    killed = SimpleNamespace(message="Signal 9 (SIGKILL) received by PID 1", exitcode=-9, signal_name=lambda: "SIGKILL")
    assert launch.failure_message(killed) == "killed by SIGKILL"
    died = SimpleNamespace(message="To enable traceback see: ...", exitcode=7)
    assert launch.failure_message(died) == "exited with code 7 without a Python error (the process died)"
    gloo = "[/w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:1441"
    assert rd.tidy_message(gloo) == "Connection closed by peer [127.0.0.1]:1441"
    assert rd.is_collective_error(RuntimeError(gloo)) and rd.is_collective_error(dist.DistBackendError("x"))
    assert not rd.is_collective_error(RuntimeError("shape mismatch"))


# --- the CUDA/NCCL path with fakes (one rank, a gloo group in this process) ----------------------
class FakeCuda:
    """``torch.cuda`` for one GPU: events on the host clock, a logged synchronize, memory stats."""

    def __init__(self, log):
        self.log = log
        self.clock = time.perf_counter

    def Event(self, enable_timing=False):  # noqa: N802 - mirrors torch.cuda.Event
        return FakeEvent(self.clock, self.log)

    def synchronize(self, device=None):
        self.log.append("sync")

    def current_device(self):
        return 0

    def device(self, index):
        import contextlib

        return contextlib.nullcontext()

    def empty_cache(self):
        pass

    def reset_peak_memory_stats(self, device=None):
        pass

    def max_memory_allocated(self, device=None):
        return 5_000

    def max_memory_reserved(self, device=None):
        return 8_000


class LoggedCollectives(rd.Collectives):
    def __init__(self, log):
        super().__init__("cpu")
        self.log = log

    def max(self, values):
        self.log.append("all_reduce")
        return super().max(values)

    def gather(self, value):
        self.log.append("all_gather")
        return super().gather(value)


@pytest.fixture
def one_rank_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield rd.RankInfo(rank=0, world_size=1, local_rank=0, local_world_size=1, nnodes=1)
    dist.destroy_process_group()


def test_cuda_rank_with_fakes_no_sync_or_collective_inside_the_timed_steps(one_rank_group):
    log: list[str] = []
    backend = CudaBackend("cuda:0", cuda=FakeCuda(log), cudnn=SimpleNamespace(benchmark=False), tensor_device="cpu")
    backend.environment = lambda: FAKE_ENV
    config = ThroughputConfig(mode="train", batch_size=4, warmup=2, warmup_time=0.0, min_iters=5, min_time=0.0)
    got = bd.time_in_group(tiny_spec(), config, "cuda", one_rank_group, backend=backend,
                           collectives=LoggedCollectives(log))
    assert len(got.step_max_s) == 5 and all(t > 0 for t in got.step_max_s)
    assert got.warmup_iters == 2 and got.cudnn_benchmark is True
    assert got.rank_hosts == (socket.gethostname(),) and got.rank_device_names == ("cuda:0 Fake Device",)
    assert got.nccl_version == ".".join(map(str, torch.cuda.nccl.version()))
    assert got.memory == {"peak_cuda_allocated_bytes": 5_000, "peak_cuda_reserved_bytes": 8_000,
                          "peak_memory_bytes": 5_000}
    # warm-up: a synchronize and an agreement after each step; timed: only event records, then
    # one synchronize before reading them, then the reductions over ranks
    first = log.index("record")
    assert log[:first] == ["sync", "all_reduce"] * 2
    assert log[first:] == ["record"] * 6 + ["sync", "all_reduce", "all_gather"]


def test_ddp_wraps_the_model_in_train_mode_only(one_rank_group, monkeypatch):
    wrapped = []
    real = torch.nn.parallel.DistributedDataParallel
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda m, **kw: wrapped.append(kw) or real(m, **kw))
    for mode in ("eval", "train"):
        config = ThroughputConfig(mode=mode, batch_size=2, warmup=1, warmup_time=0.0, min_iters=3, min_time=0.0)
        got = bd.time_in_group(tiny_spec(), config, "cpu", one_rank_group)
        assert len(got.step_max_s) == 3 and got.threads == (config.threads or rd.threads_per_rank(1))
    assert wrapped == [{"device_ids": None}]


# --- usage errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, flag, message", [
    (["--nproc", "0"], "--nproc", "must be positive"),
    (["--nproc", "2", "--device", "all"], "--device", "one device kind, cpu or cuda, not all"),
    (["--nproc", "2", "--device", "cpu", "--device", "cuda"], "--device", "not cpu, cuda"),
    (["--distributed", "--nproc", "2", "--device", "cpu"], "--nproc", "set by the launcher"),
    (["--distributed", "--device", "cpu"], "--distributed", "no process group to join"),
])
def test_usage_errors(invoke, monkeypatch, args, flag, message):
    for name in rd.LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(backends, "cuda_usable", lambda: True)
    code, out, err = invoke("throughput", "lenet", *args, *FAST_ARGS)
    assert code == ExitCode.USAGE and flag in err and message in err, err
    assert len(err.strip().splitlines()) <= 4 and "Traceback" not in err


def test_more_cuda_ranks_than_gpus_is_a_usage_error(invoke, monkeypatch):
    monkeypatch.setattr(backends, "cuda_usable", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, out, err = invoke("throughput", "lenet", "--device", "cuda", "--nproc", "1,2", *FAST_ARGS)
    assert code == ExitCode.USAGE
    assert err.strip() == "error: --nproc: 2 CUDA ranks need 2 GPUs (one per rank); 1 is visible"
    with pytest.raises(UsageError, match="need 4 GPUs"):
        rd.check_nprocs([4], "cuda", gpus=2)
    rd.check_nprocs([2], "cuda", gpus=2)


def test_api_needs_a_spec_string_to_send_to_ranks():
    with pytest.raises(UsageError, match="cannot be sent to other processes") as exc:
        ap.throughput(nn.Linear(2, 2), input_size=(3, 8, 8), nproc=2)
    assert exc.value.param == "model"
    with pytest.raises(UsageError, match="must be a positive number"):
        ap.throughput("lenet", nproc=0)


# --- real launches on the CPU (gloo) -------------------------------------------------------------
RANKS_FILE = textwrap.dedent(
    """
    import os
    import time
    from torch import nn

    class Net(nn.Module):
        def __init__(self, fault=None, slow=False):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)  # any size: the mean below leaves 4 features
            self.fc = nn.Linear(4, 10)
            self.fault, self.slow, self.calls = fault, slow, 0

        def forward(self, x):
            self.calls += 1
            rank = os.environ.get("RANK")
            if self.slow and rank is not None:  # only in ranks, not in the single-process baseline
                open(os.path.join(os.environ["MARKERS"], f"rank{rank}-{os.getpid()}"), "w").close()
                time.sleep(3600)  # until Ctrl-C
            if self.fault and rank == "1" and self.calls > 3:
                if self.fault == "raise":
                    raise ValueError("rank one broke")
                if self.fault == "die":
                    os._exit(7)
                time.sleep(3600)  # hang
            return self.fc(self.conv(x).mean((2, 3)))

    def tiny():
        return Net()

    def slow():
        return Net(slow=True)

    def raises_on_rank_1():
        return Net("raise")

    def dies_on_rank_1():
        return Net("die")

    def hangs_on_rank_1():
        return Net("hang")
    """
)


@pytest.fixture
def ranks_file(tmp_path):
    path = tmp_path / "ranks.py"
    path.write_text(RANKS_FILE)
    return path


@pytest.mark.slow
def test_two_ranks_of_lenet_training(invoke):
    code, out, err = invoke("throughput", "lenet", "--device", "cpu", "--nproc", "2", "--mode", "train", "-b", "8",
                            *FAST_ARGS, "-f", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert set(row) == set(RESULT_FIELDS)
    assert row["status"] == "ok", row["error"]
    assert (row["world_size"], row["nproc_per_node"], row["nnodes"], row["backend"]) == (2, 2, 1, "gloo")
    assert (row["batch_size"], row["global_batch_size"], row["mode"]) == (8, 16, "train")
    assert row["threads"] == rd.threads_per_rank(2)  # the cores split between the two ranks
    assert len(row["rank_median_ms"]) == 2 and all(m > 0 for m in row["rank_median_ms"])  # two ranks ran
    assert len(row["rank_hosts"]) == len(row["rank_device_names"]) == 2
    assert row["examples_per_sec"] == pytest.approx(16 / (row["median_ms"] / 1e3))
    assert row["median_ms"] >= min(row["rank_median_ms"]) * 0.999  # a step waits for its slowest rank
    assert row["single_process_examples_per_sec"] > 0
    assert row["scaling_efficiency"] == pytest.approx(
        row["examples_per_sec"] / (2 * row["single_process_examples_per_sec"]))
    # the machine while the ranks ran: both ranks' own time left out of "other processes"
    assert row["other_cpu_cores"] is not None and row["process_cpu_cores"] > 0.5


@pytest.mark.slow
@pytest.mark.timed  # a 3 s timeout: the ranks must meet within it, which a loaded machine may not allow
def test_ranks_that_raise_die_or_hang_become_error_rows(invoke, ranks_file):
    spec = f"{ranks_file}:"
    began = time.monotonic()
    code, out, err = invoke("throughput", spec + "raises_on_rank_1", spec + "dies_on_rank_1", spec + "hangs_on_rank_1",
                            "--input-size", "1x8x8", "--device", "cpu", "--nproc", "2", "--mode", "eval", "-b", "2",
                            "--timeout", "3", *FAST_ARGS, "-f", "json")
    elapsed = time.monotonic() - began
    assert code == 0, err
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["error"] * 3
    assert rows[0]["error"] == "rank 1: ValueError: rank one broke"
    assert rows[1]["error"] == "rank 1: exited with code 7 without a Python error (the process died)"
    # the hung rank: its peer's collective times out after --timeout, then the launcher stops both
    assert rows[2]["error"].startswith("rank 0: RuntimeError: Timed out waiting 3000ms")
    assert all(r["world_size"] == 2 and r["examples_per_sec"] is None for r in rows)
    assert elapsed < 120  # bounded: a hang would take an hour


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_keeps_the_rows(ranks_file, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    command = [sys.executable, "-m", "archprobe", "throughput", f"{ranks_file}:tiny", f"{ranks_file}:slow",
               "--input-size", "1x8x8", "--device", "cpu", "--nproc", "2", "--mode", "eval", "-b", "2",
               *FAST_ARGS, "-f", "json"]
    env = {**os.environ, "MARKERS": str(markers), "PYTHONPATH": str(ROOT)}
    for name in rd.LAUNCH_VARIABLES:
        env.pop(name, None)
    # once both ranks of 'slow' are inside its forward
    code, out, err = interrupt_when_ready(command, lambda: len(list(markers.iterdir())) >= 2, env=env, cwd=ROOT)
    assert code == ExitCode.INTERRUPTED, err
    rows = json.loads(out)
    assert [(r["model"].rsplit(":", 1)[1], r["status"], r["world_size"]) for r in rows] == [("tiny", "ok", 2)]
    assert "interrupted after 1 of 2 rows" in err
    pids = [int(p.name.split("-")[1]) for p in markers.iterdir()]
    assert len(set(pids)) == 2 and not any(alive(pid) for pid in pids)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_torchrun_line() -> list[str]:
    """The README's one-node torchrun line, run with this interpreter on a free port."""
    import shlex

    (line,) = [line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("$ .venv/bin/torchrun --nproc-per-node 2")]
    args = shlex.split(line[2:])[1:]
    args[args.index("--master-port") + 1] = str(_free_port())
    return [sys.executable, "-m", "torch.distributed.run", *args]


def torchrun_logs(command: list[str], log_dir: Path) -> list[str]:
    """The command with torchrun's logs (and its error files) in ``log_dir``, not in /tmp."""
    at = command.index("torch.distributed.run") + 1
    return [*command[:at], "--log-dir", str(log_dir), *command[at:]]


@pytest.mark.slow
def test_torchrun_one_node_two_local_ranks(tmp_path, ranks_file):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in rd.LAUNCH_VARIABLES:
        env.pop(name, None)
    out_file = tmp_path / "rows.json"
    command = torchrun_logs(readme_torchrun_line(), tmp_path / "logs")
    assert "-m archprobe throughput lenet --device cpu --mode train -b 8 --distributed -f json" in " ".join(command)
    # then a model one of whose ranks raises: it breaks the group, and rank 0 writes the error row
    command += [f"{ranks_file}:raises_on_rank_1", "--input-size", "1x28x28", *FAST_ARGS, "-o", str(out_file)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode != 0  # torchrun reports the failed rank
    assert "ValueError: rank one broke" in result.stderr  # its summary names it, from the rank's error file
    rows = json.loads(out_file.read_text())  # rank 0 alone wrote it
    assert [r["status"] for r in rows] == ["ok", "error"], rows[0]["error"]
    row = rows[0]
    assert (row["model"], row["mode"], row["batch_size"], row["device"]) == ("lenet", "train", 8, "cpu")
    assert (row["world_size"], row["nproc_per_node"], row["nnodes"], row["global_batch_size"]) == (2, 2, 1, 16)
    assert len(row["rank_median_ms"]) == 2 and row["scaling_efficiency"] > 0
    assert rows[1]["error"] == "rank 1: ValueError: rank one broke"
    assert result.stdout.strip() == ""  # -o: nothing on stdout from any rank
