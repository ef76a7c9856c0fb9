"""Receptive fields: closed-form recurrences on chains, published values for ImageNet networks,
and the field a unit really has, read off the gradient of a real backward pass."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from archprobe.analysis.guarded import traced
from archprobe.analysis.receptive import GLOBAL, Field, State, Unknown, layer_fields
from archprobe.api import layers, probe
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



# --- every path: upsampled branches, fusion, U-Nets, against the gradient of real passes ----------


def unit_fields(model, shape=None) -> dict[str, State]:
    """Each module's receptive-field state at its first call, as ``shapes --rf`` computes it (on meta)."""
    t = traced(probe(model, shape))
    states = layer_fields(t)
    found: dict[str, State] = {}
    for call in t.calls:
        found.setdefault(call.path, states[call.index])
    return found


def positive(model: nn.Module) -> nn.Module:
    """Positive weights (each kernel summing to 1), so that no contributions to a gradient cancel."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0 / p[0].numel() if p.dim() > 1 else 0.5)
    return model.eval()


def gradient_support(model: nn.Module, shape, units, paths=None) -> dict[str, dict[tuple, tuple]]:
    """``{path: {unit: ((first row, last row), (first column, last column))}}``: the input pixels
    with a nonzero gradient of each of ``units(h, w)`` (all channels summed) of each module's
    first 4-d output."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(path: str):
        def hook(module, args, out) -> None:
            outputs.setdefault(path, out)  # a module called twice: its first call
        return hook

    for path, module in model.named_modules():
        if paths is None or path in paths:
            module.register_forward_hook(keep(path))
    x = torch.ones(1, *shape, requires_grad=True)
    model(x)
    found = {}
    for path, y in outputs.items():
        if isinstance(y, torch.Tensor) and y.dim() == 4:
            found[path] = {}
            for unit in units(*y.shape[2:]):
                grad, = torch.autograd.grad(y[0, :, unit[0], unit[1]].sum(), x, retain_graph=True)
                rows, cols = torch.nonzero(grad[0].abs().sum(0), as_tuple=True)
                found[path][unit] = ((int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max())))
    return found


def central(h: int, w: int) -> list[tuple[int, int]]:
    """Four neighbouring units at the centre: after upsampling by up to 4, each residue once."""
    return [(h // 2 + i, w // 2 + j) for i, j in [(0, 0), (1, 1), (2, 1), (3, 2)]]


class Fusion(nn.Module):
    """HRNet-like: branches at strides 1 and 2, each fused into the other twice (the low one
    resampled by ``mode``, added or concatenated; the high one by a strided convolution)."""

    def __init__(self, mode: str = "nearest", align_corners: bool | None = None, join: str = "add"):
        super().__init__()
        self.join = join
        self.stem = nn.Conv2d(1, 1, 3, padding=1)
        self.high = nn.ModuleList([nn.Conv2d(1, 1, 3, padding=1) for _ in range(2)])
        self.low = nn.ModuleList([nn.Conv2d(1, 1, (3, 5), stride=2, padding=(1, 2)), nn.Conv2d(1, 1, 3, padding=1)])
        self.up = nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)
        self.down = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.fuse = nn.ModuleList([nn.Conv2d(2 if join == "cat" else 1, 1, 1) for _ in range(2)])

    def merge(self, i: int, high, low):
        up = self.up(low)
        return self.fuse[i](torch.cat([high, up], 1) if self.join == "cat" else high + up)

    def forward(self, x):
        x = self.stem(x)
        high, low = self.high[0](x), self.low[0](x)
        high, low = self.merge(0, high, low), low + self.down(high)
        return self.merge(1, self.high[1](high), self.low[1](low))


def _crop(x, h: int, w: int):
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, top:top + h, left:left + w]


class UNet(nn.Module):
    """U-Net-like: down by a pool and a strided convolution, up by a transposed convolution (or
    nearest interpolation to a size) and bilinear interpolation, skips concatenated; ``valid``:
    unpadded convolutions, centre-cropped skips and a reflect pad, as in the original U-Net."""

    def __init__(self, up: str = "transposed", valid: bool = False, pool=nn.MaxPool2d):
        super().__init__()
        p = 0 if valid else 1
        self.valid, self.transposed = valid, up == "transposed"
        self.enc1 = nn.Sequential(nn.Conv2d(1, 1, 3, padding=p), nn.ReLU())
        self.pool = pool(2)
        self.enc2 = nn.Conv2d(1, 1, 3, padding=p)
        self.down = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(1, 1, (3, 5), padding=(p, 2 * p))
        self.up = nn.ConvTranspose2d(1, 1, 2, stride=2)
        self.dec2 = nn.Conv2d(2, 1, 3, padding=p)
        self.dec1 = nn.Conv2d(2, 1, 3, padding=p)

    def skip(self, up, skip):
        h, w = min(up.shape[2], skip.shape[2]), min(up.shape[3], skip.shape[3])
        return torch.cat([_crop(up, h, w), _crop(skip, h, w)], 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.down(e2)
        m = self.mid(F.pad(m, (2, 2, 1, 1), mode="reflect") if self.valid else m)
        u2 = self.up(m) if self.transposed else F.interpolate(m, size=(2 * m.shape[2], 2 * m.shape[3]))
        d2 = self.dec2(self.skip(u2, e2))
        u1 = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        return self.dec1(self.skip(u1, e1))


def assert_fields_equal_gradient_support(predicted: dict[str, State], measured, shape) -> None:
    """Every measured unit's field is exactly its gradient support, which the input does not clip."""
    for path, units in measured.items():
        field = predicted[path]
        assert isinstance(field, Field), (path, field)
        for unit, support in units.items():
            assert all(0 < lo and hi < n - 1 for (lo, hi), n in zip(support, shape[1:])), (path, unit)  # not clipped
            assert field.unit(unit) == support, (path, unit)


FUSIONS = {
    "nearest-add": ("nearest", None, "add"),
    "bilinear-add": ("bilinear", False, "add"),
    "bilinear-corners-cat": ("bilinear", True, "cat"),
    "bicubic-cat": ("bicubic", False, "cat"),
    "nearest-exact-add": ("nearest-exact", None, "add"),
}


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_fusion_of_upsampled_branches_equals_the_gradient_support(name):
    shape = (1, 64, 64)
    predicted = unit_fields(spec_of(lambda: Fusion(*FUSIONS[name]), shape))
    measured = gradient_support(positive(Fusion(*FUSIONS[name])), shape, central)
    assert len(measured) == 10  # every module's output
    assert_fields_equal_gradient_support(predicted, measured, shape)
    root = layers(spec_of(lambda: Fusion(*FUSIONS[name]), shape), rf=True).rows[0]
    if max(a.period for a in predicted[""].axes) <= 4:  # every kind of unit measured: the largest is shown
        extents = [tuple(hi - lo + 1 for lo, hi in support) for support in measured[""].values()]
        assert root.receptive_field == tuple(max(e[i] for e in extents) for i in range(2))


def test_nearest_fusion_is_larger_than_the_high_branch_alone():
    fields = unit_fields(spec_of(Fusion, (1, 64, 64)))
    assert fields["fuse.0"].size > fields["high.0"].size  # the upsampled branch's field counts
    assert fields["fuse.0"].jump == (1, 1) and fields["fuse.0"].axes[0].period == 2  # units 2m, 2m+1 differ


@pytest.mark.parametrize("up", ["transposed", "interpolate"])
@pytest.mark.parametrize("valid", [False, True], ids=["padded", "valid"])
def test_unet_equals_the_gradient_support(up, valid):
    shape = (1, 72, 72)
    predicted = unit_fields(spec_of(lambda: UNet(up, valid), shape))
    # max pooling routes the gradient to one input of its window: measure with the average pool
    # of the same geometry, which has the same field
    measured = gradient_support(positive(UNet(up, valid, pool=nn.AvgPool2d)), shape, central)
    assert len(measured) >= 10  # every module's output
    assert_fields_equal_gradient_support(predicted, measured, shape)


def test_hrnet_w18_small_after_upsampled_branches():
    timm = pytest.importorskip("timm")
    fields = unit_fields("timm:hrnet_w18_small")  # 224x224
    assert fields["stage3.0.branches.0"].size == (119, 119)  # was 87: only the stride-4 branch
    assert fields["stage4.0.branches.0"].size == (263, 263)
    shape = (3, 320, 320)  # large enough that the input clips neither field
    predicted = unit_fields("timm:hrnet_w18_small", shape)
    paths = ["stage3.0.branches.0", "stage4.0.branches.0"]
    with torch.device("cpu"):
        model = positive(timm.create_model("hrnet_w18_small"))
    measured = gradient_support(model, shape, lambda h, w: [(h // 2, w // 2), (h // 2 + 2, w // 2 + 3)], paths)
    assert sorted(measured) == paths
    assert_fields_equal_gradient_support(predicted, measured, shape)


# --- ops whose dependence is spatial: the whole input, '-', or exact; never too small ------------


class Around(nn.Module):
    """A convolution, then ``op`` (channels summed, so any channel count follows), then another."""

    def __init__(self, op):
        super().__init__()
        self.op = op
        self.pre = nn.Conv2d(1, 2, 3, padding=1)
        self.post = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.post(self.op(self.pre(x)).sum(1, keepdim=True))


def _shifted_copy(x):
    out = x.new_zeros(x.shape)  # depends on nothing, until a view of it is written
    out[:, :, 2:] = x[:, :, :-2]
    return out


SPATIAL_OPS = {
    "group_norm": (lambda x: F.group_norm(x, 1), "global"),
    "instance_norm": (F.instance_norm, "global"),
    "squeeze_excite": (lambda x: x * x.mean((2, 3), keepdim=True).sigmoid(), "global"),
    "softmax_w": (lambda x: x.softmax(-1), "field"),
    "mean_h_broadcast": (lambda x: x + x.mean(2, keepdim=True), "field"),
    "layer_norm_w": (lambda x: F.layer_norm(x, x.shape[-1:]), "field"),
    "channel_shuffle": (lambda x: x.view(1, 2, 1, 40, 40).transpose(1, 2).reshape(1, 2, 40, 40), "field"),
    "pixel_shuffle": (lambda x: F.pixel_shuffle(x.repeat(1, 2, 1, 1), 2), "field"),
    "pixel_unshuffle": (lambda x: F.pixel_unshuffle(x, 2), "field"),
    "crop_and_pad": (lambda x: F.pad(x[:, :, 3:-1, ::2], (1, 2, 0, 3), mode="replicate"), "field"),
    "cumsum_h": (lambda x: x.cumsum(2), "-"),
    "flip_w": (lambda x: x.flip(3), "-"),
    "roll_w": (lambda x: x.roll(1, 3), "-"),
    "transpose_hw": (lambda x: x.transpose(2, 3), "-"),
    "antialiased_resize": (lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True), "-"),
    "write_into_a_view": (_shifted_copy, "-"),
}


@pytest.mark.parametrize("name", sorted(SPATIAL_OPS))
def test_spatial_ops_give_the_whole_input_a_dash_or_the_exact_field(name):
    op, expected = SPATIAL_OPS[name]
    shape = (1, 40, 40)
    state = unit_fields(spec_of(lambda: Around(op), shape))[""]
    measured = gradient_support(positive(Around(op)), shape, central)[""]
    if expected == "global":
        assert state is GLOBAL
        assert all(support == ((0, 39), (0, 39)) for support in measured.values())
    elif expected == "-":
        assert isinstance(state, Unknown)
        row = layers(spec_of(lambda: Around(op), shape), rf=True).rows[0]
        assert row.receptive_field is None and row.rf_global is None
    else:
        for unit, support in measured.items():  # clipped: whole lines reach into the padding
            assert tuple((max(lo, 0), min(hi, 39)) for lo, hi in state.unit(unit)) == support, unit
