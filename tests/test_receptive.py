"""Receptive fields: closed-form recurrences on chains, published values for ImageNet networks,
and the field a unit really has, read off the gradient of a real backward pass."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from archprobe.api import layers
from archprobe.zoo.spec import ModelSpec


def spec_of(factory, shape, name="tiny") -> ModelSpec:
    return ModelSpec(name=name, kind="user", input_shape=shape, num_classes=None, factory=factory)


def rows_by_path(model, **options):
    return {r.path: r for r in layers(model, rf=True, **options).rows}


def recurrence(chain):
    """size, jump and first centre after ``chain`` of (kernel, stride, padding, dilation), one
    spatial dimension: size' = size + (k' - 1) jump, jump' = jump s, start' = start + ((k' - 1)/2 - p) jump."""
    size, jump, start = 1, 1, 0.0
    for k, s, p, d in chain:
        span = d * (k - 1) + 1
        size, start, jump = size + (span - 1) * jump, start + ((span - 1) / 2 - p) * jump, jump * s
    return size, jump, start


# --- chains -------------------------------------------------------------------------------------


def test_alexnet_features():
    rows = rows_by_path("alexnet")
    last = rows["features.12"]  # the last pool
    assert (last.receptive_field, last.effective_stride, last.rf_offset) == ((195, 195), (32, 32), (31.0, 31.0))
    chain = [(11, 4, 2, 1), (3, 2, 0, 1), (5, 1, 2, 1), (3, 2, 0, 1), (3, 1, 1, 1), (3, 1, 1, 1), (3, 1, 1, 1),
             (3, 2, 0, 1)]
    assert recurrence(chain) == (195, 32, 31.0)
    assert rows["features.0"].receptive_field == (11, 11) and rows["features.1"].receptive_field == (11, 11)
    assert rows["avgpool"].receptive_field == (195, 195)  # adaptive 6x6 over a 6x6 map: one unit each
    assert rows["classifier.1"].rf_global and rows["classifier.1"].receptive_field is None
    assert rows[""].rf_global and rows["features"].rf_global is False


def test_vgg16_features():
    rows = rows_by_path("vgg16")
    convs = [(3, 1, 1, 1)]
    pool = [(2, 2, 0, 1)]
    chain = (convs * 2 + pool) * 2 + (convs * 3 + pool) * 3
    size, jump, start = recurrence(chain)
    assert (size, jump) == (212, 32)
    assert rows["features.30"].receptive_field == (212, 212)
    assert rows["features.30"].effective_stride == (32, 32)
    assert rows["features.30"].rf_offset == (start, start) == (15.5, 15.5)


# Published: google-research/receptive_field (Araujo, Norris, Sim, "Computing receptive fields of
# convolutional neural networks", Distill 2019): receptive field, effective stride, and the
# effective padding (how far the first unit's field reaches into the padding) where the
# TF-slim network pads as the PyTorch one does.
PUBLISHED = [
    ("alexnet", 195, 32, None),
    ("vgg16", 212, 32, 90),
    ("bn-inception", 699, 32, None),  # inception_v2
    ("inception-v3", 1311, 32, 618),
    ("inception-v4", 2071, 32, 998),
    ("inception-resnet-v2", 3039, 32, 1482),
]


@pytest.mark.parametrize("name,size,stride,padding", PUBLISHED)
def test_published_receptive_fields(name, size, stride, padding):
    rows = [r for r in layers(name, rf=True).rows if r.receptive_field is not None]
    last = max(rows, key=lambda r: r.receptive_field[0])
    assert last.receptive_field == (size, size) and last.effective_stride == (stride, stride)
    if padding is not None:
        assert (size - 1) / 2 - last.rf_offset[0] == padding


chains = st.lists(
    st.tuples(st.sampled_from(["conv", "max", "avg"]), st.integers(1, 5), st.integers(1, 5),
              st.integers(1, 3), st.integers(1, 3), st.integers(0, 2), st.integers(0, 2),
              st.integers(1, 3), st.integers(1, 2)),
    min_size=1, max_size=5,
)


@settings(max_examples=40, deadline=None)
@given(chain=chains)
def test_chains_with_non_square_kernels_and_dilation(chain):
    modules, rows_h, rows_w = [], [], []
    size = [400, 400]
    for kind, kh, kw, sh, sw, ph, pw, dh, dw in chain:
        if kind == "conv":
            modules.append(nn.Conv2d(2, 2, (kh, kw), (sh, sw), (ph, pw), (dh, dw)))
        else:
            ph, pw, dh, dw = min(ph, kh // 2), min(pw, kw // 2), 1, 1  # pools pad at most half the kernel
            modules.append(nn.MaxPool2d((kh, kw), (sh, sw), (ph, pw)) if kind == "max"
                           else nn.AvgPool2d((kh, kw), (sh, sw), (ph, pw)))
        rows_h.append((kh, sh, ph, dh))
        rows_w.append((kw, sw, pw, dw))
        size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                zip(size, (kh, kw), (sh, sw), (ph, pw), (dh, dw))]
        assume(min(size) >= 2)  # a map of one unit may be 'global'; none is an invalid net
    rows = rows_by_path(spec_of(lambda: nn.Sequential(*modules), (2, 400, 400)))
    for i in range(len(chain)):
        (hs, hj, hc), (ws, wj, wc) = recurrence(rows_h[: i + 1]), recurrence(rows_w[: i + 1])
        row = rows[str(i)]
        assert (row.receptive_field, row.effective_stride, row.rf_offset) == ((hs, ws), (hj, wj), (hc, wc))


# --- measured: the nonzero gradient of one output unit -------------------------------------------


class Branches(nn.Module):
    """Inception-style: 1x1, 5x5 and pool->1x1 branches concatenated, then pooled and convolved."""

    def __init__(self):
        super().__init__()
        self.one = nn.Conv2d(1, 1, 1)
        self.five = nn.Conv2d(1, 1, 5, padding=2)
        self.pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(1, 1, 1))
        self.head = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(3, 1, (3, 1), dilation=(2, 1)))

    def forward(self, x):
        return self.head(torch.cat([self.one(x), self.five(x), self.pool(x)], 1))


class Residual(nn.Module):
    """Two 3x3 convolutions plus a strided 1x1 shortcut, added; then pooled."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.Conv2d(1, 1, 3, 1, 1))
        self.shortcut = nn.Conv2d(1, 1, 1, 2)
        self.pool = nn.AvgPool2d((3, 2), (1, 2), (1, 0))

    def forward(self, x):
        return self.pool(self.body(x) + self.shortcut(x))


TINY = {
    "chain": lambda: nn.Sequential(
        nn.Conv2d(1, 1, (3, 5), padding=(2, 2), dilation=(2, 1)), nn.ReLU(),
        nn.AvgPool2d((2, 3), stride=(2, 1)),
        nn.Conv2d(1, 1, 3, stride=2, padding=1),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.Conv2d(1, 1, (1, 3), dilation=(1, 3)),
    ),
    "branches": Branches,
    "residual": Residual,
}


def measured(model: nn.Module, size: int, unit: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
    """The extent and centre of the input pixels whose gradient for output unit ``unit`` is not
    zero (all weights 1, so no contributions cancel)."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    model(x)[0, 0, unit[0], unit[1]].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < size - 1 and cols.max() < size - 1  # not clipped
    extent = (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    centre = (float(rows.max() + rows.min()) / 2, float(cols.max() + cols.min()) / 2)
    return extent, centre


@pytest.mark.parametrize("name", sorted(TINY))
def test_field_equals_the_extent_of_the_nonzero_input_gradient(name):
    size = 64
    row = layers(spec_of(TINY[name], (1, size, size)), rf=True).rows[0]
    (out_h, out_w) = row.output_shape[2:]
    for unit in [(out_h // 2, out_w // 2), (out_h // 2 + 1, out_w // 2 - 1)]:
        extent, centre = measured(TINY[name](), size, unit)
        assert extent == row.receptive_field
        assert centre == tuple(c + u * j for c, u, j in zip(row.rf_offset, unit, row.effective_stride))


# --- global ---------------------------------------------------------------------------------------


class MeanHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("factory", [
    lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
    lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2)),
    MeanHead,
])
def test_global_after_global_pooling_or_a_linear_over_the_map(factory):
    rows = layers(spec_of(factory, (1, 16, 16)), rf=True).rows
    conv = next(r for r in rows if r.type == "Conv2d")
    assert conv.receptive_field == (3, 3) and conv.rf_global is False
    head = rows[-1]
    assert head.rf_global and head.receptive_field is None and head.effective_stride is None


def test_layers_without_rf_have_no_fields():
    row = layers("lenet").rows[1]
    assert (row.receptive_field, row.effective_stride, row.rf_offset, row.rf_global) == (None, None, None, None)


# --- the command line ----------------------------------------------------------------------------


def test_shapes_rf_table_and_json(invoke):
    code, out, _ = invoke("shapes", "alexnet", "--rf")
    assert code == 0
    assert "Receptive field" in out and "Eff. stride" in out
    pool = next(line for line in out.splitlines() if line.split()[:2] == ["12", "MaxPool2d"])
    assert "195x195" in pool and "32x32" in pool
    assert any(line.split()[0] == "classifier" and "global" in line for line in out.splitlines())
    code, out, _ = invoke("shapes", "alexnet", "--rf", "-f", "json")
    rows = {r["path"]: r for r in json.loads(out)}
    assert rows["features.12"]["receptive_field"] == [195, 195]
    assert rows["features.12"]["effective_stride"] == [32, 32]
    assert rows["classifier.6"]["receptive_field"] is None and rows["classifier.6"]["rf_global"] is True
    code, out, _ = invoke("shapes", "alexnet")
    assert "Receptive field" not in out
