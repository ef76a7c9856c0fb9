"""Throughput engine and ``archprobe throughput``: statistics on a fake clock, both modes on a tiny
net, faults (OOM, errors, Ctrl-C) recorded in rows, the CSV/JSON schema, and the CUDA paths
(with fakes on CPU; for real where a GPU exists)."""

from __future__ import annotations

import csv
import json
import textwrap
import time
from dataclasses import replace

import pytest
import torch
from torch import nn

from archprobe.bench import throughput as tp
from archprobe.bench.ceiling import measure_ceiling
from archprobe.bench.throughput import ThroughputConfig, ThroughputRunner, build_workload, sweep, with_speedup
from archprobe.cli import cli, main
from archprobe.errors import ExitCode, UsageError
from archprobe.probe import Probe
from archprobe.report.frames import render
from archprobe.report.notes import throughput_notes
from archprobe.results import Ceiling, Environment, ThroughputResult
from archprobe.runtime import backends
from archprobe.runtime.backends import CudaBackend, is_oom, resolve_devices
from archprobe.runtime.environment import physical_cores
from archprobe.runtime.sink import CsvSink
from archprobe.runtime.timing import CudaEventTimer, HostTimer, run_timed, summarize
from archprobe.zoo.spec import ModelSpec, resolve
from fakes import FakeCuda, FakeCudnn

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")

REQUIRED_KEYS = {"model", "device", "mode", "batch_size", "examples_per_sec", "median_ms", "iqr_ms",
                 "dtype", "threads", "status"}

FAST = dict(warmup=1, warmup_time=0.0, min_iters=3, min_time=0.02, utilisation=False)
FAST_ARGS = ["--warmup", "1", "--warmup-time", "0", "--min-iters", "3", "--min-time", "0.02",
             "--no-utilisation", "--quiet"]


class TinyNet(nn.Module):
    """Conv-BN-ReLU-pool-linear; raises the configured error at batch >= ``fail_at``."""

    def __init__(self, num_classes=10, fail_at=None, error=None, aux=False):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, num_classes)
        self.aux = nn.Linear(4, num_classes) if aux else None
        self.fail_at, self.error = fail_at, error

    def forward(self, x):
        if self.fail_at is not None and x.shape[0] >= self.fail_at:
            raise self.error
        h = self.features(x)
        if self.aux is not None and self.training:
            return self.fc(h), self.aux(h)  # like torchvision GoogLeNet's training outputs
        return self.fc(h)


def tiny_spec(name="tiny", **kwargs) -> ModelSpec:
    return ModelSpec(name, "user", (3, 8, 8), 10, lambda: TinyNet(**kwargs))


class FakeClock:
    """Deterministic time: advances by ``tick`` on every read, and by ``advance`` explicitly."""

    def __init__(self, tick=0.0):
        self.t = 0.0
        self.tick = tick
        self.reads = 0

    def __call__(self):
        self.reads += 1
        self.t += self.tick
        return self.t

    def advance(self, dt):
        self.t += dt


FAKE_ENV = Environment("2.x", None, None, "Fake Device", "Fake CPU", "3.x")


# --- statistics -------------------------------------------------------------------------------
def test_summarize_median_iqr_percentiles():
    stats = summarize([0.010, 0.012, 0.011, 0.013, 0.030])
    assert stats.samples == 5
    assert stats.median_s == pytest.approx(0.012)
    assert stats.iqr_s == pytest.approx(0.013 - 0.011)  # linear interpolation: p25=.011, p75=.013
    assert stats.p10_s == pytest.approx(0.0104)
    assert stats.p90_s == pytest.approx(0.0232)
    assert stats.spread == pytest.approx(0.002 / 0.012)
    with pytest.raises(ValueError):
        summarize([])


def test_run_timed_on_fake_clock_respects_counts_and_times():
    clock = FakeClock()
    durations = iter([0.5] * 3 + [0.010, 0.020, 0.030, 0.040] * 100)  # 3 slow warm-up calls first
    calls = []

    def step():
        calls.append(1)
        clock.advance(next(durations))

    times, warm = run_timed(step, HostTimer(clock), warmup=2, warmup_time=1.2, min_iters=5,
                            min_time=0.15, clock=clock)
    assert warm == 3  # 2 calls reach the count but only 1.0 s: a third reaches the time
    assert times[:4] == pytest.approx([0.010, 0.020, 0.030, 0.040])
    assert len(times) == 7  # 5 iterations reach the count (0.11 s), 7 reach min_time (0.16 s)
    assert len(times) == len(calls) - warm

    clock2 = FakeClock()
    times, warm = run_timed(lambda: clock2.advance(1.0), HostTimer(clock2), warmup=0, warmup_time=0.0,
                            min_iters=4, min_time=0.0, clock=clock2)
    assert warm == 0 and times == [1.0] * 4  # min_iters rules when min_time is short


def test_runner_statistics_with_injected_clock():
    clock = FakeClock(tick=0.001)  # every read costs 1 ms: one read (the mark) per iteration
    runner = ThroughputRunner(clock=clock)
    config = ThroughputConfig(batch_size=4, warmup=1, warmup_time=0.0, min_iters=7, min_time=0.0,
                              utilisation=False)
    r = runner.measure(tiny_spec(), "cpu", config)
    assert r.status == "ok", r.error
    assert r.samples == 7
    assert r.median_ms == pytest.approx(1.0) and r.iqr_ms == pytest.approx(0.0)
    assert r.examples_per_sec == pytest.approx(4 / 0.001)
    assert r.spread == pytest.approx(0.0)
    assert r.warmup_iters == 1


def test_large_spread_is_flagged():
    r = ThroughputResult("m", "cpu", "train", 8, "float32", "ok", examples_per_sec=80.0, median_ms=100.0,
                         iqr_ms=15.0, spread=0.15, samples=10)
    r = replace(r, warnings=tp.row_warnings({"spread": r.spread}))
    assert r.warnings == ("spread",)
    notes = throughput_notes([r])
    assert any("large spread" in n and "15%" in n for n in notes)
    quiet = replace(r, iqr_ms=5.0, spread=0.05, warnings=tp.row_warnings({"spread": 0.05}))
    assert not any("large spread" in n for n in throughput_notes([quiet]))
    # the codes travel in JSON and CSV, not only in the notes under a table
    assert json.loads(render([r], "json"))[0]["warnings"] == ["spread"]
    assert "spread" in render([r], "csv").splitlines()[1]


# --- workloads: both modes on a tiny net --------------------------------------------------------
def test_inference_and_train_steps_on_tiny_net():
    device = torch.device("cpu")
    work = build_workload(tiny_spec(), device, ThroughputConfig(mode="inference", batch_size=3))
    with work.context():
        out = work.step()
        assert torch.is_inference_mode_enabled()
    assert out.shape == (3, 10) and not out.requires_grad

    work = build_workload(tiny_spec(aux=True), device, ThroughputConfig(mode="train", batch_size=3))
    assert isinstance(work.train_step.optimizer, torch.optim.SGD)
    params = [p for g in work.train_step.optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    with work.context():
        loss = work.step()
        work.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in params)  # aux head included in the loss
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, params))  # SGD stepped


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_measure_both_modes_real_clock(mode):
    runner = ThroughputRunner()
    r = runner.measure(tiny_spec(), "cpu", ThroughputConfig(mode=mode, batch_size=4, **FAST))
    assert r.status == "ok", r.error
    assert r.examples_per_sec > 0 and r.samples >= 3
    assert r.examples_per_sec == pytest.approx(4 / (r.median_ms / 1e3))
    assert r.threads == physical_cores() and r.device_name and r.torch_version == torch.__version__
    assert r.optimizer == (tp.OPTIMIZER if mode == "train" else None)
    assert r.input_shape == (3, 8, 8)
    assert r.peak_live_tensor_bytes > 0 and r.peak_memory_bytes == r.peak_live_tensor_bytes


def test_cpu_peak_memory_is_the_steps_own_and_never_below_weights_and_gradients():
    # the peak of live tensor bytes of one step: a training row holds at least the weights, their
    # gradients and SGD's momentum buffers, and the figure does not depend on what ran before
    spec = resolve("resnet18-d2l", input_size="1x32x32")
    param_bytes = 4 * sum(p.numel() for p in spec.build("cpu").parameters())
    config = dict(warmup=1, warmup_time=0.0, min_iters=2, min_time=0.0, utilisation=False)
    alone = list(sweep([spec], ["cpu"], ["eval", "train"], [4], ThroughputConfig(**config)))
    after = list(sweep([resolve("alexnet-d2l"), spec], ["cpu"], ["eval", "train"], [4],
                       ThroughputConfig(**config)))[2:]
    for first, second in zip(alone, after):
        assert first.peak_memory_bytes == second.peak_memory_bytes  # byte for byte, whatever ran before
    eval_row, train_row = alone
    assert eval_row.peak_memory_bytes > param_bytes
    assert train_row.peak_memory_bytes >= 3 * param_bytes  # weights + gradients + momentum
    assert train_row.peak_memory_bytes > eval_row.peak_memory_bytes
    # the same figure the memory analysis checks its predictions against
    from archprobe.runtime.memory import measure_step_peak

    probe = Probe.build(spec, batch_size=4, mode="train", device="cpu")
    assert measure_step_peak(probe) == train_row.peak_memory_bytes


def test_threads_set_and_restored():
    previous = torch.get_num_threads()
    r = ThroughputRunner().measure(tiny_spec(), "cpu", ThroughputConfig(threads=1, **FAST))
    assert r.threads == 1
    assert torch.get_num_threads() == previous


def test_bfloat16_channels_last_and_compile_flag(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m: compiled.append(m) or m)  # no real compile here
    config = ThroughputConfig(mode="train", batch_size=2, dtype="bfloat16", channels_last=True, compile=True,
                              **FAST)
    r = ThroughputRunner().measure(tiny_spec(), "cpu", config)
    assert r.status == "ok", r.error
    assert (r.dtype, r.channels_last, r.compile) == ("bfloat16", True, True)
    assert compiled and r.compile_s is not None and r.compile_s >= 0
    assert r.warmup_iters == 2  # the compile call + 1 warm-up


def test_utilisation_and_ceiling_cached_per_device_dtype_threads():
    calls = []

    def ceiling_fn(device, dtype, threads):
        calls.append((device, dtype, threads))
        return Ceiling(1e10, "mm 64x64x64", "float32")

    runner = ThroughputRunner(ceiling_fn=ceiling_fn, macs_fn=lambda p: 500 * p.batch_size * (3 if p.train else 1))
    config = ThroughputConfig(batch_size=2, **{**FAST, "utilisation": True})
    rows = list(sweep([tiny_spec()], ["cpu"], ["eval", "train"], [2, 4], config, runner=runner))
    assert calls == [("cpu", "float32", physical_cores())]
    for r in rows:
        assert r.matmul_flops_per_iter == 1000 * r.batch_size * (3 if r.mode == "train" else 1)
        assert r.achieved_flops_per_sec == pytest.approx(r.matmul_flops_per_iter / (r.median_ms / 1e3))
        assert r.utilisation == pytest.approx(r.achieved_flops_per_sec / 1e10)
        assert (r.ceiling_shape, r.ceiling_precision) == ("mm 64x64x64", "float32")
    assert any("float32 ceiling 10.0 GFLOP/s (mm 64x64x64" in n for n in throughput_notes(rows))


def test_a_row_above_the_ceiling_shows_no_utilisation_and_says_why():
    runner = ThroughputRunner(ceiling_fn=lambda *_: Ceiling(1.0, "mm 1x1x1", "float32"), macs_fn=lambda p: 10**9)
    (r,) = sweep([tiny_spec()], ["cpu"], ["eval"], [2], ThroughputConfig(**{**FAST, "utilisation": True}),
                 runner=runner)
    assert r.achieved_flops_per_sec > r.ceiling_flops_per_sec
    assert r.utilisation is None and "ceiling_low" in r.warnings
    assert any("beats the measured ceiling" in n for n in throughput_notes([r]))
    assert "Util." not in render([r], "table")


def test_ceiling_is_measured_in_a_child_process():
    ceiling = measure_ceiling("cpu", "float32", 1, quick=True)
    assert ceiling.precision == "float32" and ceiling.flops_per_sec > 1e6
    assert ceiling.shape.startswith(("mm ", "conv "))


@pytest.mark.timed
def test_utilisation_of_a_conv_net_stays_below_100_percent_on_cpu():
    # the achieved rate counts matmul-class work only and the ceiling is the best of several GEMMs
    # and convolutions: a real conv net cannot beat it, in either mode
    spec = resolve("resnet18-d2l", input_size="1x64x64")
    config = ThroughputConfig(warmup=2, warmup_time=0.0, min_iters=3, min_time=0.1, threads=1)
    rows = list(sweep([spec], ["cpu"], ["eval", "train"], [4], config))
    for r in rows:
        assert r.ok and r.ceiling_flops_per_sec and r.achieved_flops_per_sec
        assert 0 < r.utilisation <= 1.0, (r.mode, r.utilisation)


def test_model_macs_come_from_the_counter():
    from archprobe.api import count

    spec = tiny_spec()
    counts = count(spec, batch_size=2, mode="train")
    probe = Probe.build(spec, batch_size=2)
    assert tp._model_macs(probe) == counts.macs > 0
    assert tp._model_macs(probe.with_setting(mode="train")) == counts.train_macs > counts.macs


def test_busy_machine_is_flagged_in_the_row():
    quiet = {"spread": 0.02, "other_cpu_cores": 0.05, "cpu_steal": 0.0}
    assert tp.row_warnings(quiet) == ()
    assert tp.row_warnings({**quiet, "other_cpu_cores": 1.6}) == ("busy",)
    assert tp.row_warnings({**quiet, "cpu_steal": 0.2, "spread": 0.3}) == ("spread", "steal")


def test_the_codes_are_decided_once_for_every_measurement():
    from archprobe.runtime.load import BUSY_CORES, SPREAD_WARNING, STEAL_WARNING, machine_warnings

    assert machine_warnings() == ()  # nothing measured, nothing flagged
    assert machine_warnings(spread=SPREAD_WARNING, other_cores=BUSY_CORES, steal=STEAL_WARNING) == ()
    assert machine_warnings(spread=0.11, other_cores=0.26, steal=0.06) == ("spread", "busy", "steal")
    # a row's ceiling is judged by the same rule, its codes prefixed; none without a ceiling
    unsteady = {"ceiling_spread": 0.3, "ceiling_other_cpu_cores": 1.0, "ceiling_cpu_steal": 0.0}
    assert tp.row_warnings(unsteady) == ()
    assert tp.row_warnings({**unsteady, "ceiling_flops_per_sec": 1e9}) == ("ceiling_spread", "ceiling_busy")


def _fake_load(other_cores: float, process_cores: float = 1.0, steal: float = 0.0):
    from archprobe.runtime.load import Load

    return lambda start, end: Load(other_cores=other_cores, process_cores=process_cores, steal_share=steal,
                                   load_average=3.0)


def test_a_busy_sample_flags_the_row_and_its_notes(monkeypatch):
    monkeypatch.setattr(tp, "load_between", _fake_load(1.5, 0.98))
    (r,) = sweep([tiny_spec()], ["cpu"], ["eval"], [2], ThroughputConfig(**FAST))
    assert r.ok and "busy" in r.warnings and r.other_cpu_cores == 1.5
    assert any("other processes kept 1.50 cores busy while it ran (this process used 0.98)" in n
               for n in throughput_notes([r]))
    assert "busy" in json.loads(render([r], "json"))[0]["warnings"]


def unsteady_ceiling(**overrides) -> Ceiling:
    values = dict(spread=0.3, samples=3, other_cpu_cores=1.2, cpu_steal=0.0)
    return Ceiling(1e10, "mm 64x64x64", "float32", **{**values, **overrides})


def test_an_unsteady_ceiling_flags_every_row_that_uses_it():
    runner = ThroughputRunner(ceiling_fn=lambda *_: unsteady_ceiling(), macs_fn=lambda p: 500 * p.batch_size)
    rows = list(sweep([tiny_spec()], ["cpu"], ["eval", "train"], [2], ThroughputConfig(**{**FAST, "utilisation": True}),
                      runner=runner))
    for r in rows:
        assert r.utilisation is not None and 0 < r.utilisation <= 1
        assert {"ceiling_spread", "ceiling_busy"} <= set(r.warnings) and "ceiling_steal" not in r.warnings
        assert (r.ceiling_spread, r.ceiling_samples, r.ceiling_other_cpu_cores) == (0.3, 3, 1.2)
    notes = throughput_notes(rows)
    flagged = [n for n in notes if "ceiling behind Util. is unsteady" in n]
    assert len(flagged) == 1  # one ceiling, said once
    assert "IQR 30% of the median over 3 calls" in flagged[0] and "kept 1.20 cores busy" in flagged[0]
    assert "Util. is uncertain (likely too high" in flagged[0]
    # machine-readable: the codes and the ceiling's own figures
    record = json.loads(render(rows, "json"))[0]
    assert "ceiling_busy" in record["warnings"] and record["ceiling_spread"] == 0.3
    header, first = list(csv.reader(render(rows, "csv").splitlines()))[:2]
    assert "ceiling_spread;ceiling_busy" in first[header.index("warnings")]
    assert first[header.index("ceiling_other_cpu_cores")] == "1.2"

    steady = ThroughputRunner(ceiling_fn=lambda *_: unsteady_ceiling(spread=0.01, other_cpu_cores=0.0),
                              macs_fn=lambda p: 500 * p.batch_size)
    (r,) = sweep([tiny_spec()], ["cpu"], ["eval"], [2], ThroughputConfig(**{**FAST, "utilisation": True}),
                 runner=steady)
    assert not any(code.startswith("ceiling_") for code in r.warnings)
    assert not any("unsteady" in n for n in throughput_notes([r]))


def test_the_ceiling_records_its_spread_and_the_load_while_it_was_measured(monkeypatch):
    from archprobe.bench import ceiling as bc

    quiet = measure_ceiling("cpu", "float32", 1, quick=True)
    assert quiet.samples >= 3 and quiet.spread is not None and quiet.spread >= 0
    monkeypatch.setattr(bc, "load_between", _fake_load(2.0, 1.0, steal=0.1))
    busy = measure_ceiling("cpu", "float32", 1, quick=True)
    assert (busy.other_cpu_cores, busy.cpu_steal) == (2.0, 0.1)
    runner = ThroughputRunner(ceiling_fn=lambda *_: busy, macs_fn=lambda p: 10)
    (r,) = sweep([tiny_spec()], ["cpu"], ["eval"], [2], ThroughputConfig(**{**FAST, "utilisation": True}),
                 runner=runner)
    assert {"ceiling_busy", "ceiling_steal"} <= set(r.warnings)


def test_group_load_leaves_every_rank_of_a_host_out():
    from archprobe.runtime.load import CpuSample, group_load, load_between

    def pair(busy, own, steal=0.0, wall=1.0):
        return (CpuSample(0.0, 0.0, 0.0, 0.0, 0.0),
                CpuSample(wall, own, busy, steal, 2.0 * wall, load_average=1.0))

    # two ranks on one host: the host's CPUs did 3.0 s in 1 s, the ranks 1.0 + 0.9 of it
    a, b = pair(3.0, 1.0), pair(3.0, 0.9)
    load = group_load([("h", *a), ("h", *b)])
    assert load.other_cores == pytest.approx(1.1) and load.process_cores == pytest.approx(1.9)
    assert load.load_average == 1.0  # at the end of the first window
    # one rank alone would count the other as "another process"
    assert load_between(*a).other_cores == pytest.approx(2.0)
    # two hosts: the busiest host's figures, every rank's own cores
    load = group_load([("h", *a), ("h", *b), ("g", *pair(1.0, 1.0, steal=0.2))])
    assert load.other_cores == pytest.approx(1.1) and load.steal_share == pytest.approx(0.1)
    assert load.process_cores == pytest.approx(2.9)
    # where /proc/stat cannot be read: no figures, no codes
    blind = CpuSample(0.0, 0.0, None, None, None), CpuSample(1.0, 0.5, None, None, None)
    assert group_load([("h", *blind)]).other_cores is None


SPIN = "import time\nt = time.time()\nwhile time.time() - t < 3: pass"


@pytest.mark.timed
def test_load_sampling_sees_another_busy_process():
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    from archprobe.runtime.load import load_between, sample

    # started by a process that ends at once, so the spinner is not this process's descendant
    start_detached = ("import subprocess, sys\n"
                      f"print(subprocess.Popen([sys.executable, '-c', {SPIN!r}], stdout=subprocess.DEVNULL,"
                      " stderr=subprocess.DEVNULL).pid)")
    starter = subprocess.run([sys.executable, "-c", start_detached], capture_output=True, text=True, check=True)
    spinner = int(starter.stdout)
    try:
        time.sleep(0.3)
        start = sample()
        time.sleep(1.0)
        load = load_between(start, sample())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(spinner, signal.SIGKILL)
    assert load.other_cores is not None and load.other_cores > 0.5
    assert load.process_cores < 0.2  # this process slept


@pytest.mark.timed
def test_load_sampling_counts_a_live_child_as_this_run():
    # DataLoader workers and compile workers run while the row does: their CPU time is the run's
    import subprocess
    import sys

    from archprobe.runtime.load import load_between, sample

    child = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.3)
        start = sample()
        time.sleep(1.0)
        load = load_between(start, sample())
    finally:
        child.kill()
        child.wait()
    assert load.process_cores > 0.3  # the spinner's share of a core, however busy the machine


def test_load_sampling_counts_a_finished_child_as_this_run():
    # the ceiling runs in a child process during a row: its CPU time is the run's, not another's
    import subprocess
    import sys

    from archprobe.runtime.load import sample

    start = sample()
    spin = "import time\nwhile time.process_time() < 0.5: pass"  # 0.5 s of CPU, however busy the machine
    subprocess.run([sys.executable, "-c", spin], check=True)
    end = sample()
    assert round(end.process_s - start.process_s, 9) >= 0.5  # /proc's ticks as floats: 21.82 - 21.32 < 0.5


# --- faults -----------------------------------------------------------------------------------
def test_oom_recorded_and_sweep_continues_without_changing_batch():
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    specs = [tiny_spec("oomy", fail_at=4, error=oom), tiny_spec("broken", fail_at=1, error=ValueError("bad")),
             tiny_spec("fine")]
    rows = list(sweep(specs, ["cpu"], ["train"], [2, 4, 8], ThroughputConfig(**FAST)))
    got = [(r.model, r.batch_size, r.status) for r in rows]
    assert got == [("oomy", 2, "ok"), ("oomy", 4, "oom"), ("oomy", 8, "oom"),
                   ("broken", 2, "error"), ("broken", 4, "error"), ("broken", 8, "error"),
                   ("fine", 2, "ok"), ("fine", 4, "ok"), ("fine", 8, "ok")]
    assert "out of memory" in rows[1].error and rows[1].examples_per_sec is None
    assert rows[3].error == "ValueError: bad"
    assert any(n.startswith("oom: oomy cpu train b=4") for n in throughput_notes(rows))


def test_oom_classification():
    assert is_oom(torch.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate"))
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("shape mismatch"))


def test_resolve_devices_without_and_with_cuda():
    with pytest.raises(UsageError, match="no usable CUDA device"):
        resolve_devices(["cuda"], cuda_available=False)
    devices, notes = resolve_devices(["all"], cuda_available=False)
    from archprobe.report.notes import note_text

    assert devices == ["cpu"] and "CUDA rows skipped" in note_text(notes[0])
    assert resolve_devices(["cuda", "cpu"], cuda_available=True) == (["cpu", "cuda"], [])
    assert resolve_devices(["all", "cpu"], cuda_available=True)[0] == ["cpu", "cuda"]


# --- CUDA code paths through fakes (run everywhere) --------------------------------------------
def test_cuda_event_timer_synchronizes_once_after_the_loop():
    clock = FakeClock()
    cuda = FakeCuda(clock)
    timer = CudaEventTimer(lambda: cuda.Event(enable_timing=True), cuda.synchronize)
    durations = iter([0.003, 0.001, 0.002, 0.004, 0.005])
    times, warm = run_timed(lambda: clock.advance(next(durations)), timer, warmup=1, warmup_time=0.0,
                            min_iters=4, min_time=0.0, clock=clock)
    assert warm == 1
    assert times == pytest.approx([0.001, 0.002, 0.004, 0.005])
    # one sync after warm-up, then only event records, then one sync before reading them
    assert cuda.log == ["sync"] + ["record"] * 5 + ["sync"]


def test_cuda_backend_full_row_with_fakes():
    clock = FakeClock(tick=0.0005)
    cuda, cudnn = FakeCuda(clock), FakeCudnn()

    def factory(device):
        backend = CudaBackend(device, cuda=cuda, cudnn=cudnn, tensor_device="cpu", clock=clock)
        backend.environment = lambda: FAKE_ENV
        return backend

    runner = ThroughputRunner(clock=clock, backend_factory=factory)
    config = ThroughputConfig(mode="train", batch_size=2, warmup=2, warmup_time=0.0, min_iters=5,
                              min_time=0.0, utilisation=False)
    r = runner.measure(tiny_spec(), "cuda", config)
    assert r.status == "ok", r.error
    assert (r.device, r.device_name, r.cudnn_benchmark) == ("cuda", "Fake Device", True)
    assert cudnn.benchmark is False  # restored
    assert r.samples == 5 and r.median_ms == pytest.approx(0.5)  # one clock read per event record
    assert (r.peak_cuda_allocated_bytes, r.peak_cuda_reserved_bytes, r.peak_memory_bytes) == (123_000, 456_000, 123_000)
    assert r.peak_live_tensor_bytes is None
    timed = cuda.log[cuda.log.index("reset_peak"):]
    assert timed.count("sync") == 2  # after warm-up and before reading the events: none per step
    assert timed[-1] == "empty_cache"  # memory released after the row


def test_speedup_cuda_over_cpu():
    base = dict(mode="train", batch_size=8, dtype="float32", status="ok", median_ms=1.0)
    cpu = ThroughputResult("m", "cpu", examples_per_sec=100.0, **base)
    gpu = ThroughputResult("m", "cuda", examples_per_sec=2500.0, **base)
    other = ThroughputResult("m", "cuda", **{**base, "batch_size": 16}, examples_per_sec=3000.0)
    rows = [with_speedup(r, [cpu, gpu, other]) for r in (cpu, gpu, other)]
    assert rows[0].speedup is None and rows[1].speedup == pytest.approx(25.0) and rows[2].speedup is None
    assert tp.with_speedup(gpu, [replace(cpu, status="oom", examples_per_sec=None)]).speedup is None


def test_physical_cores_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    blocks = [f"processor\t: {i}\nphysical id\t: {i // 4}\ncore id\t\t: {(i % 4) // 2}\n" for i in range(8)]
    info.write_text("\n".join(blocks))  # 2 sockets x 2 cores x 2 hyper-threads
    import os

    allowed = os.sched_getaffinity(0)
    expected = len({(i // 4, (i % 4) // 2) for i in range(8) if i in allowed})
    assert physical_cores(str(info)) == expected
    assert physical_cores(str(tmp_path / "missing")) >= 1


# --- output: incremental CSV, schema -----------------------------------------------------------
def _row(model="m", batch=8, **kw):
    return ThroughputResult(model, "cpu", "inference", batch, "float32", "ok", examples_per_sec=10.0,
                            median_ms=800.0, iqr_ms=1.0, threads=2, **kw)


def test_csv_sink_appends_with_one_header_and_refuses_other_columns(tmp_path):
    path = tmp_path / "out.csv"
    with CsvSink(path, tp.RESULT_FIELDS) as sink:
        sink.write(_row(batch=1))
    with CsvSink(path, tp.RESULT_FIELDS) as sink:
        sink.write(_row(batch=2))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["batch_size"] for r in rows] == ["1", "2"]
    assert REQUIRED_KEYS <= set(rows[0])
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="different CSV columns"):
        CsvSink(other, tp.RESULT_FIELDS)


TINY_FILE = textwrap.dedent(
    """
    import os
    import signal
    import time

    import torch
    from torch import nn

    def ctrl_c():  # a real SIGINT: a KeyboardInterrupt raised by model code is the model's error
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    class Net(nn.Module):
        def __init__(self, fail_at=None, error=None):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 10)
            self.fail_at, self.error = fail_at, error

        def forward(self, x):
            if self.fail_at is not None and x.shape[0] >= self.fail_at:
                raise self.error()
            return self.fc(self.conv(x).mean((2, 3)))

    def tiny():
        return Net()

    def interrupts_at_4():
        return Net(4, ctrl_c)

    def ooms_at_4():
        return Net(4, lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB"))
    """
)


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY_FILE)
    return path


def test_cli_json_schema(invoke, tiny_file):
    code, out, err = invoke("throughput", f"{tiny_file}:tiny", "--input-size", "8", "--device", "cpu",
                            "-b", "2,4", *FAST_ARGS, "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["mode"], r["batch_size"]) for r in rows] == [("eval", 2), ("eval", 4),
                                                            ("train", 2), ("train", 4)]
    for r in rows:
        assert REQUIRED_KEYS <= set(r) and r["status"] == "ok" and r["device"] == "cpu"
        assert set(r) == set(tp.RESULT_FIELDS)


def test_cli_csv_interrupt_keeps_rows_and_exits_130(invoke, tiny_file, tmp_path):
    out_csv = tmp_path / "results.csv"
    code, out, err = invoke("throughput", f"{tiny_file}:interrupts_at_4", "--input-size", "8", "-d", "cpu",
                            "-m", "inference", "-b", "2", "-b", "4", "-b", "8", *FAST_ARGS, "-o", str(out_csv))
    assert code == ExitCode.INTERRUPTED
    assert "interrupted after 1 of 3 rows" in err
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["batch_size"], r["status"]) for r in rows] == [("2", "ok")]
    assert REQUIRED_KEYS <= set(rows[0])
    # a second run appends to the same file, header once
    code, _, err = invoke("throughput", f"{tiny_file}:tiny", "--input-size", "8", "-d", "cpu", "-m", "train",
                          "-b", "2", *FAST_ARGS, "-o", str(out_csv))
    assert code == 0, err
    lines = out_csv.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("model,device,mode,batch_size")


def test_cli_interrupt_with_table_output_prints_partial(invoke, tiny_file):
    code, out, err = invoke("throughput", f"{tiny_file}:interrupts_at_4", "--input-size", "8", "-d", "cpu",
                            "-m", "train", "-b", "2,4", *FAST_ARGS)
    assert code == ExitCode.INTERRUPTED
    assert "interrupted: 1 of 2 rows measured" in out and "Examples/s" in out


def test_cli_oom_row(invoke, tiny_file):
    code, out, err = invoke("throughput", f"{tiny_file}:ooms_at_4", "--input-size", "8", "-d", "cpu",
                            "-m", "train", "-b", "2,4,8", *FAST_ARGS, "-f", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(out.splitlines()))
    assert [(r["batch_size"], r["status"]) for r in rows] == [("2", "ok"), ("4", "oom"), ("8", "oom")]
    assert "out of memory" in rows[1]["error"]


def test_cli_cuda_without_gpu_is_a_usage_error(invoke, monkeypatch, tiny_file):
    monkeypatch.setattr(backends, "cuda_usable", lambda: False)
    code, out, err = invoke("throughput", "lenet", "--device", "cuda", *FAST_ARGS)
    assert code == ExitCode.USAGE
    assert err.startswith("error: --device: no usable CUDA device for 'cuda'") and len(err.strip().splitlines()) == 1

    code, out, err = invoke("throughput", f"{tiny_file}:tiny", "--input-size", "8", "--device", "all",
                            "-m", "inference", "-b", "2", *FAST_ARGS)
    assert code == 0, err
    assert "CUDA rows skipped" in err and "CUDA rows skipped" in out
    assert "Speedup" not in out  # one device: no speedup column


def test_cli_bad_batch_size(invoke):
    code, out, err = invoke("throughput", "lenet", "-b", "0", *FAST_ARGS)
    assert code == ExitCode.USAGE


def test_cli_help_mentions_examples():
    assert "Examples:" in cli.commands["throughput"].help


# --- real CUDA (skipped without a GPU) ---------------------------------------------------------
@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["inference", "train"])
def test_cuda_both_modes_real(mode):
    runner = ThroughputRunner()
    r = runner.measure(tiny_spec(), "cuda", ThroughputConfig(mode=mode, batch_size=8, **{**FAST, "utilisation": True}))
    assert r.status == "ok", r.error
    assert r.examples_per_sec > 0 and r.samples >= 3
    assert r.peak_cuda_allocated_bytes > 0 and r.peak_cuda_reserved_bytes >= r.peak_cuda_allocated_bytes
    assert r.cudnn_benchmark is True and r.device_name == torch.cuda.get_device_name()
    assert r.ceiling_flops_per_sec and r.ceiling_flops_per_sec > 1e11


@needs_cuda
@pytest.mark.cuda
def test_cuda_event_timer_real():
    timer = CudaBackend("cuda").timer()
    a = torch.randn(1024, 1024, device="cuda")
    times, _ = run_timed(lambda: a @ a, timer, warmup=2, warmup_time=0.0, min_iters=5, min_time=0.0)
    assert len(times) == 5 and all(t > 0 for t in times)


@needs_cuda
@pytest.mark.cuda
def test_cuda_oom_then_sweep_continues():
    class Allocates(nn.Module):
        def forward(self, x):
            if x.shape[0] >= 16:
                torch.empty(1 << 50, device=x.device)  # a real CUDA OOM
            return x.flatten(1)[:, :10]

    spec = ModelSpec("alloc", "user", (3, 8, 8), 10, Allocates)
    rows = list(sweep([spec, tiny_spec()], ["cuda"], ["inference"], [2, 16], ThroughputConfig(**FAST)))
    assert [r.status for r in rows] == ["ok", "oom", "ok", "ok"]
    assert [r.batch_size for r in rows] == [2, 16, 2, 16]


@needs_cuda
@pytest.mark.cuda
def test_cuda_and_cpu_speedup_column(invoke, tiny_file):
    code, out, err = invoke("throughput", f"{tiny_file}:tiny", "--input-size", "8", "-d", "all", "-m", "train",
                            "-b", "4", *FAST_ARGS, "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["device"] for r in rows] == ["cpu", "cuda"]
    assert rows[0]["speedup"] is None and rows[1]["speedup"] > 0


def test_table_shows_speedup_column_only_with_a_cuda_cpu_pair():
    from archprobe.report.frames import render

    base = dict(mode="train", batch_size=8, dtype="float32", status="ok", median_ms=1.0, threads=2)
    cpu = ThroughputResult("m", "cpu", examples_per_sec=100.0, **base)
    gpu = ThroughputResult("m", "cuda", examples_per_sec=2500.0, **base)
    assert "Speedup" not in render([cpu], "table")  # an all-None column is not shown
    table = render([cpu, with_speedup(gpu, [cpu])], "md")
    assert "Speedup" in table and "25.00x" in table
    assert json.loads(render([cpu], "json"))[0]["speedup"] is None  # data keeps the key


def test_input_size_the_model_cannot_take_is_a_usage_error(capsys):

    with pytest.raises(SystemExit) as exit_info:
        main(["throughput", "alexnet", "--input-size", "32", "--device", "cpu", "--mode", "inference"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "features.12 (MaxPool2d)" in err and "63–4096+" in err and err.count("\n") == 1


def test_every_row_says_which_input_it_was_measured_at(invoke):
    """A user file given no size is measured at 224x224 beside a zoo model at its own size: the
    Input column shows both, and the notes say 224x224 was assumed (the JSON rows carry it too)."""
    args = ("throughput", "examples/tiny_net.py:build", "lenet", "--device", "cpu", "-b", "2", "--mode", "eval",
            *FAST_ARGS)
    code, out, err = invoke(*args)
    assert code == 0, err
    header, _rule, tiny, lenet = out.splitlines()[:4]
    assert "Input" in header.split()
    assert "3x224x224" in tiny.split() and "1x28x28" in lenet.split()
    assert "examples/tiny_net.py:build: input size not given: 224x224 assumed" in out
    code, out, err = invoke(*args, "-f", "json")
    rows = json.loads(out)
    assert [r["input_shape"] for r in rows] == [[3, 224, 224], [1, 28, 28]]
    assert any("224x224 assumed" in note for note in rows[0]["notes"]) and rows[1]["notes"] == []
