"""Static analysis: closed-form counts on tiny nets, torchvision's references, per-layer sums."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archprobe.api import count, layers
from archprobe.zoo.registry import list_models
from archprobe.zoo.spec import ModelSpec, resolve


def spec_of(factory, shape, name="tiny") -> ModelSpec:
    return ModelSpec(name=name, kind="user", input_shape=shape, num_classes=None, factory=factory)


def conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


GRID = [
    (cin, cout, k, s, p, d, g, bias)
    for (cin, cout, g), k, s, p, d, bias in itertools.product(
        [(4, 8, 1), (4, 8, 2), (8, 8, 8)], [1, 3, 5], [1, 2], [0, 2], [1, 2], [True, False]
    )
]


@pytest.mark.parametrize("cin,cout,k,s,p,d,g,bias", GRID)
def test_conv_macs_closed_form(cin, cout, k, s, p, d, g, bias):
    size, batch = 17, 3
    spec = spec_of(lambda: nn.Conv2d(cin, cout, k, s, p, d, g, bias=bias), (cin, size, size))
    out = conv_out(size, k, s, p, d)
    macs = batch * cout * out * out * (cin // g) * k * k
    result = count(spec, batch_size=batch)
    assert result.macs == macs
    assert result.flops == 2 * macs + (batch * cout * out * out if bias else 0)
    assert result.params == cout * (cin // g) * k * k + (cout if bias else 0)


@pytest.mark.parametrize("fin,fout,batch", [(1, 1, 1), (7, 5, 3), (128, 10, 4)])
def test_linear_closed_form(fin, fout, batch):
    spec = ModelSpec("lin", "user", (fin, 1, 1), None, lambda: nn.Sequential(nn.Flatten(), nn.Linear(fin, fout)))
    result = count(spec, batch_size=batch)
    assert result.macs == batch * fin * fout
    assert result.flops == 2 * batch * fin * fout + batch * fout
    assert result.linear_params == fin * fout + fout and result.linear_share == 1.0


@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
@pytest.mark.parametrize("k,s,p,ceil", [(2, 2, 0, False), (3, 2, 1, False), (3, 2, 0, True), (3, 1, 1, False)])
def test_pool_flops_closed_form(pool, k, s, p, ceil):
    size, channels = 13, 4
    module = pool(k, s, p, ceil_mode=ceil)
    out = torch.empty(1, channels, size, size, device="meta")
    out = module(out).shape[-1]
    spec = spec_of(lambda: pool(k, s, p, ceil_mode=ceil), (channels, size, size))
    result = count(spec)
    assert result.macs == 0
    assert result.flops == channels * out * out * k * k


class Functional(nn.Module):
    """Functional ops in forward: pooling, concatenation, a residual add, global pooling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv(x)
        y = y + x  # residual add: 1 FLOP per element
        y = F.max_pool2d(y, 2)  # 4 comparisons per output element
        y = torch.cat([y, y], dim=1)  # free
        return F.avg_pool2d(y, y.size()[2:])  # global pool: kernel area per output


def test_functional_ops_are_counted_and_attributed():
    spec = spec_of(Functional, (2, 8, 8))
    result = count(spec)
    conv_macs = 2 * 8 * 8 * 2 * 9
    expected = 2 * conv_macs + 2 * 8 * 8 + 2 * 4 * 4 * 4 + 4 * 1 * 16
    assert result.macs == conv_macs
    assert result.flops == expected
    table = layers(spec)
    root, conv = table.rows
    assert conv.flops == 2 * conv_macs
    assert root.flops == expected - 2 * conv_macs  # the functional ops, at the enclosing module


def test_training_step_counted_through_backward():
    """Linear(4,3) -> ReLU -> Linear(3,2), batch 2, cross-entropy; by hand."""
    spec = ModelSpec("mlp", "user", (4, 1, 1), None,
                     lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    r = count(spec, batch_size=2, mode="train")
    fwd_macs = 2 * 4 * 3 + 2 * 3 * 2
    fwd_flops = 2 * fwd_macs + 2 * 3 + 2 * 2 + 2 * 3  # + bias adds + relu
    assert (r.macs, r.flops) == (fwd_macs, fwd_flops)
    loss = 5 * 4 + 2  # log-softmax on 2x2, nll over 2 samples
    # backward: layer 2 grad-input and grad-weight matmuls; layer 1 grad-weight only
    # (its input needs no gradient); bias grads are sums; relu backward 1 per element.
    bwd_macs = 2 * 2 * 3 + 2 * 2 * 3 + 3 * 2 * 4
    bwd_flops = 2 + 3 * 4 + 2 * bwd_macs + 2 * 2 + 2 * 3 + 2 * 3
    assert r.train_macs == fwd_macs + bwd_macs
    assert r.train_flops == fwd_flops + loss + bwd_flops


def test_unsupported_ops_are_listed_not_hidden():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.erfinv(x)

    result = count(spec_of(Odd, (3, 4, 4)))
    assert any(op.startswith("erfinv") for op in result.unsupported_ops)


# torchvision's published numbers: weights.meta["num_params"] and ["_ops"] (GMACs, 3 decimals)
TV_ZOO = [info.name for info in list_models() if info.source == "torchvision"]


@pytest.mark.parametrize("name", TV_ZOO)
def test_torchvision_references(name):
    from torchvision.models import get_model_weights

    meta = get_model_weights(name.replace("-", "_")).DEFAULT.meta
    spec = resolve(name)
    result = count(spec)
    assert result.params == meta["num_params"]
    assert round(result.macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)


def test_aux_heads_excluded_from_forward_params():
    result = count(resolve("tv:inception_v3"))
    assert result.params == 27_161_264
    assert result.params_forward == 23_834_568


@pytest.mark.parametrize("name", ["googlenet", "googlenet-d2l", "resnet18-d2l", "densenet-d2l", "lenet", "bn-inception"])
@pytest.mark.parametrize("depth", [0, 1, 2, None])
def test_layer_rows_sum_to_totals(name, depth):
    spec = resolve(name)
    table = layers(spec, depth=depth)
    totals = count(spec)
    assert sum(r.macs for r in table.rows) == totals.macs == table.macs
    assert sum(r.flops for r in table.rows) == totals.flops == table.flops
    assert sum(r.params for r in table.rows) == totals.params_forward
    if depth is not None:
        assert max(r.depth for r in table.rows) <= depth


def test_layer_shapes_follow_the_network():
    table = layers(resolve("googlenet-d2l"), depth=1)
    shapes = {r.path: r.output_shape for r in table.rows}
    assert shapes["b1"] == (1, 64, 24, 24)
    assert shapes["b3"] == (1, 480, 6, 6)
    assert shapes["b5"] == (1, 1024)
    assert shapes["fc"] == (1, 10)


def test_counts_scale_with_batch():
    one, four = count(resolve("lenet")), count(resolve("lenet"), batch_size=4)
    assert four.macs == 4 * one.macs and four.flops == 4 * one.flops


def test_fvcore_cross_check_agrees_on_a_plain_net():
    result = count(resolve("lenet"), counter="fvcore")
    assert result.fvcore_macs == result.macs == result.fvcore_total  # no BN/adaptive pools: same convention


def test_fvcore_column_is_its_conv_linear_matmul_part_and_the_total_is_named():
    # tv:mnasnet0_5: fvcore's total() adds its BatchNorm count (110.59M next to 104.46M at 224x224)
    from fvcore.nn import FlopCountAnalysis

    spec = resolve("tv:mnasnet0_5", input_size=(3, 64, 64))
    result = count(spec, counter="fvcore")
    analysis = FlopCountAnalysis(spec.build("cpu"), torch.randn(1, 3, 64, 64))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_operator = analysis.by_operator()
    assert set(by_operator) == {"conv", "batch_norm", "linear"}
    assert result.fvcore_macs == result.macs == by_operator["conv"] + by_operator["linear"]
    assert result.fvcore_total == analysis.total() == result.fvcore_macs + by_operator["batch_norm"]


def test_fvcore_columns_are_explained(invoke):
    code, out, _ = invoke("params", "lenet", "--counter", "fvcore")
    assert code == 0 and "fvcore MACs" in out and "fvcore total" in out
    assert "fvcore MACs: fvcore's conv/linear/matmul count, comparable with MACs" in out


def test_whole_zoo_has_no_unsupported_ops_in_train_step():
    for info in list_models("*-d2l") + list_models("lenet"):
        result = count(resolve(info.name), mode="train", batch_size=2)
        assert result.unsupported_ops == ()
        assert result.train_flops > 2 * result.flops


def test_json_records_are_integers():
    from archprobe.report.frames import render

    data = json.loads(render([count(resolve("alexnet"))], "json"))
    row = data[0]
    for key in ("model", "input_shape", "params", "params_forward", "trainable", "macs", "flops", "unsupported_ops"):
        assert key in row
    assert row["macs"] == 714_188_480 and isinstance(row["flops"], int)
