"""The Python API: live modules are analysed without being touched, results match the command line,
and user models keep their own channel counts."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import archprobe as ap
from archprobe.errors import ExitCode

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import seed_models  # noqa: E402


def test_import_does_not_import_torch():
    code = "import sys, archprobe; assert 'torch' not in sys.modules; print(sorted(archprobe.__all__))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("count", "layers", "min_input", "throughput", "list_models", "to_frame", "Probe", "Mode"):
        assert name in result.stdout


def test_live_module_in_train_mode_is_counted_and_left_untouched():
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    model = torchvision.models.resnet18()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first_param = next(model.parameters())

    result = ap.count(model, input_size=(3, 224, 224))

    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model.eval()
            model(torch.randn(1, 3, 224, 224))
            model.train()
    assert result.macs == counter.get_total_flops() // 2
    assert result.params == 11_689_512
    assert model.training and all(m.training for m in model.modules())
    assert next(model.parameters()) is first_param and first_param.device.type == "cpu"
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # byte-identical weights and stats
    assert not model._forward_hooks and not model._forward_pre_hooks


def test_zoo_and_library_answers():
    import torchvision

    assert ap.count("googlenet").params == 6_624_904
    assert ap.min_input(torchvision.models.alexnet()).min_size == (63, 63)


def test_to_frame_has_the_csv_columns():
    rows = [ap.count("lenet"), ap.count("alexnet-d2l")]
    frame = ap.to_frame(rows)
    assert len(frame) == 2 and "macs" in frame.columns
    assert list(frame["model"]) == ["lenet", "alexnet-d2l"]
    table = ap.layers("lenet", depth=1)
    assert len(ap.to_frame(table)) == len(table.rows)
    assert len(ap.to_frame(ap.list_models("vgg*"))) == 9  # 4 depths x (plain, bn) + vgg11-d2l


def test_module_without_input_size_reads_its_channels_and_says_so():
    net = nn.Sequential(nn.Conv2d(5, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    result = ap.count(net)
    assert result.input_shape == (1, 5, 224, 224)
    from archprobe.report.notes import notes_text

    assert [n.code for n in result.notes] == ["input_size_assumed", "channels_read"]  # facts, not prose
    assert any("224x224 assumed" in n and "5 input channels read from 0 (Conv2d)" in n
               for n in notes_text(result.notes))


def test_module_channels_come_from_the_first_layer_called_not_registered():
    class Reordered(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(16, 4, 1)  # registered first, runs second
            self.stem = nn.Conv2d(2, 16, 3)

        def forward(self, x):
            return self.head(self.stem(x))

    assert ap.count(Reordered()).input_shape[1] == 2


def test_probe_is_built_once_and_reused():
    probe = ap.probe("lenet", batch_size=4, mode="train")
    assert probe.shape == (4, 1, 28, 28) and probe.mode is ap.Mode.TRAIN and probe.device == "meta"
    other = probe.with_setting(batch_size=8, mode="eval")
    assert other.model is probe.model and other.shape == (8, 1, 28, 28) and not other.train
    assert probe.at_size(30, 29).shape == (4, 1, 30, 29)


def test_bad_api_arguments_name_the_python_argument():
    with pytest.raises(ap.UsageError, match="^batch_size: "):
        ap.count("lenet", batch_size=0)
    with pytest.raises(ap.UsageError, match="^input_size: "):
        ap.count("lenet", input_size=(1, 2, 3, 4))
    with pytest.raises(ap.UsageError, match="^mode: "):
        ap.probe("lenet", mode="sometimes")


# --- user models with their own channel counts ---------------------------------------------------


def _seed_googlenet_bn_source() -> str:
    """Seed 000's GoogLeNet (with BatchNorm) classes as a user would save them, plus a plain factory."""
    body = inspect.getsource(seed_models.googlenet_bn).split("\n", 1)[1]
    body = textwrap.dedent(body).replace("net = GoogLeNet()\nreturn net\n", "")
    header = "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
    return header + body + "\n\ndef build():\n    return GoogLeNet()\n"


@pytest.fixture
def seed_googlenet_files(tmp_path):
    bn = tmp_path / "googlenet_bn.py"
    bn.write_text(_seed_googlenet_bn_source())
    plain = tmp_path / "googlenet_plain.py"
    plain.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom seed_models import GoogLeNet\n\n"
                     "def build():\n    return GoogLeNet()\n")
    return {"googlenet-bn-d2l": bn, "googlenet-d2l": plain}


@pytest.mark.parametrize("zoo_name", ["googlenet-bn-d2l", "googlenet-d2l"])
def test_seed_googlenet_as_a_user_file(invoke, seed_googlenet_files, zoo_name):
    spec = f"{seed_googlenet_files[zoo_name]}:build"
    code, out, err = invoke("params", spec, "-f", "json")  # no options at all
    assert code == 0, err
    (plain,) = json.loads(out)
    assert plain["input_shape"] == [1, 1, 224, 224]  # 1 channel, read from the seed's first conv
    assert any("1 input channel read from b1.0 (Conv2d)" in n for n in plain["notes"])  # one channel: singular

    code, out, err = invoke("params", spec, zoo_name, "--input-size", "1x96x96", "-f", "json")
    assert code == 0, err
    user, zoo = json.loads(out)
    assert plain["params"] == zoo["params"]
    numbers = ("input_shape", "params", "params_forward", "macs", "flops", "conv_params", "linear_params")
    assert {k: user[k] for k in numbers} == {k: zoo[k] for k in numbers}

    code, out, err = invoke("min-input", spec, zoo_name, "--input-size", "1x96x96", "-f", "json")
    assert code == 0, err
    user, zoo = json.loads(out)
    assert (user["valid"], user["min_size"], user["anchor"]) == (zoo["valid"], zoo["min_size"], zoo["anchor"])


def test_in_channels_reaches_the_factory_only_when_typed(invoke, tmp_path):
    path = tmp_path / "fixed.py"
    path.write_text("from torch import nn\n\ndef build():\n"
                    "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n")
    code, out, err = invoke("params", f"{path}:build", "--input-size", "1x96x96", "-f", "json")
    assert code == 0, err
    assert json.loads(out)[0]["input_shape"] == [1, 1, 96, 96]
    code, out, err = invoke("params", f"{path}:build", "--in-channels", "3")
    assert code == ExitCode.USAGE
    assert err.strip() == f"error: --in-channels: {path}:build does not take this argument"
    # three channels fed to a one-channel model: the error names the layer that refused them
    code, out, err = invoke("params", f"{path}:build", "--input-size", "3x96x96")
    assert code != 0 and "0 (Conv2d)" in err and len(err.strip().splitlines()) == 1


def test_report_keeps_every_model_whatever_its_source(invoke, tmp_path):
    user = tmp_path / "net.py"
    user.write_text("import torchvision\n\ndef build():\n    return torchvision.models.resnet18(num_classes=7)\n")
    out_dir = tmp_path / "r"
    code, _, err = invoke("report", "tv:resnet18", "timm:resnet18", f"{user}:build",
                          "--input-size", "3x160x160", "-o", str(out_dir))
    assert code == 0, err
    document = json.loads((out_dir / "report.json").read_text())
    names = ["tv:resnet18", "timm:resnet18", f"{user}:build"]
    for table in ("zoo", "counts", "min_inputs"):
        assert [row.get("model", row.get("name")) for row in document[table]] == names, table
        csv_text = (out_dir / f"{table}.csv").read_text()
        assert all(name in csv_text for name in names)
    assert all(row["input_shape"] == [1, 3, 160, 160] for row in document["counts"])
    assert [row["source"] for row in document["zoo"]] == ["torchvision", "timm", "user"]


def test_report_batch_lists_set_the_memory_table(invoke, tmp_path):
    code, _, err = invoke("report", "lenet", "-b", "8,16", "-o", str(tmp_path / "r"))
    assert code == 0, err
    memory = json.loads((tmp_path / "r" / "report.json").read_text())["memory"]
    assert [(r["mode"], r["batch_size"]) for r in memory] == [("eval", 8), ("eval", 16), ("train", 8), ("train", 16)]
    code, _, err = invoke("report", "lenet", "-b", "8", "--no-memory", "-o", str(tmp_path / "s"))
    assert code == ExitCode.USAGE and "--batch-size only applies with --memory or --throughput" in err
    code, _, err = invoke("report", "lenet", "--mode", "train", "-o", str(tmp_path / "t"))
    assert code == ExitCode.USAGE and "--mode only apply with --throughput" in err
