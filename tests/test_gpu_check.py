"""``benchmarks/gpu_check.sh``: without a GPU it says so, runs nothing and checks every step parses."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(_module().cuda_usable(), reason="a GPU is here: the check would run for real")
def test_without_a_gpu_it_says_so_and_exits_0_after_parsing_every_step(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin",
                                                                            "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no usable CUDA GPU" in done.stdout and "dry run only" in done.stdout
    steps = _module().STEPS
    assert f"dry run: {len(steps)} of {len(steps)} steps parse" in done.stdout
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_the_issue_s_commands_are_all_there():
    commands = [" ".join(s.args) for s in _module().STEPS]
    assert any(s.kind == "pytest" and "cuda" in s.args for s in _module().STEPS)
    for wanted in ("throughput googlenet-d2l --device all --mode both -b 128",
                   "--dtype bfloat16 --channels-last", "--compile", "throughput resnet50 --device cuda",
                   "-b 64,256", "memory resnet50 --train -b 64", "--verify --cuda",
                   "train googlenet-d2l --dataset fake --device all --epochs 1", "throughput lenet --nproc 1 --device cuda"):
        assert any(wanted in c for c in commands), wanted


def test_a_step_that_does_not_parse_fails_the_dry_run(tmp_path, capsys):
    module = _module()
    module.STEPS = module.STEPS + (module.Step("bad", "archprobe", ("throughput", "lenet", "--device", "tpu"), 10),
                                   module.Step("bad-option", "archprobe", ("memory", "lenet", "--no-such"), 10))
    assert module.dry_run(tmp_path) == 1
    out = capsys.readouterr().out
    assert "FAIL bad:" in out and "FAIL bad-option:" in out
