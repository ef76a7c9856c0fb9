"""A model's own dtype: read off its tensors, the input made in it, shown in every row, and byte
counts in it (``model.double()`` is float64 everywhere, not "float32" with float32 bytes)."""

from __future__ import annotations

import torch
from torch import nn

import archprobe as ap
from archprobe.probe import Probe
from archprobe.runtime.memory import measure_step_peak
from archprobe.zoo import resolve


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def real_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_counts_take_the_models_dtype():
    model = small_net().double()
    counts = ap.count(model, input_size=(3, 16, 16))  # the input is made in float64: the pass runs
    assert counts.dtype == "float64"
    assert counts.param_bytes == real_bytes(model) == 8 * counts.params
    assert ap.count(small_net(), input_size=(3, 16, 16)).param_bytes == real_bytes(small_net())
    half = ap.count(small_net().half(), input_size=(3, 16, 16))
    assert (half.dtype, half.param_bytes) == ("float16", 2 * half.params)


def test_layers_and_min_input_run_a_float64_model():
    model = small_net().double()
    assert ap.layers(model, input_size=(3, 16, 16)).rows
    assert ap.min_input(model, input_size=(3, 16, 16)).min_height == 3


def test_memory_of_a_float64_step_equals_the_real_cpu_step(tmp_path):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)).double()\n")
    spec = resolve(f"{tmp_path / 'net.py'}:build", input_size=(3, 16, 16))
    for mode in ("eval", "train"):
        predicted = ap.memory(spec, batch_size=4, mode=mode, device="cpu")
        assert predicted.dtype == "float64"
        with torch.random.fork_rng():
            measured = measure_step_peak(Probe.build(spec, batch_size=4, mode=mode, device="cpu"))
        assert predicted.peak_bytes == measured, (mode, predicted.peak_bytes, measured)
        assert predicted.param_bytes == real_bytes(spec.build("cpu"))


def test_throughput_runs_and_names_float64():
    row = ap.throughput(small_net().double(), input_size=(3, 16, 16), batch_size=2, mode="train", min_time=0.02,
                        warmup_time=0, utilisation=False)
    assert (row.status, row.dtype) == ("ok", "float64"), row.error
    autocast = ap.throughput(small_net(), input_size=(3, 16, 16), batch_size=2, dtype="bfloat16", min_time=0.02,
                             warmup_time=0, utilisation=False)
    assert autocast.dtype == "bfloat16"


def test_a_float64_model_trains_on_batches_in_float64():
    def net():
        return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 10)).double()

    [run] = ap.train(net(), dataset="fake", device="cpu", epochs=1, limit_train=256, limit_test=128)
    assert run.status == "ok", run.error
    assert run.epochs_done == 1
