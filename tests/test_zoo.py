"""The model zoo: every registered model builds on meta, runs, and has the reference parameter count.

Parametrised over the registry (cf. torchvision ``test/test_models.py``): a model registered
later without an entry in the reference tables below fails ``test_param_count``.

References:
  * torchvision entries: ``get_model_weights(name).DEFAULT.meta["num_params"]``;
  * timm entries: timm's published counts (:data:`TIMM_PARAMS`);
  * d2l entries: the seeds' own code, copied verbatim into ``tests/seed_models.py``;
  * our paper implementations: hand calculations from the papers' layer tables, written
    here independently of the module code (:data:`HAND_COUNTS`).

Everything is built on the meta device (no weights allocated), so the file stays fast.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from archprobe.zoo import list_models, resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_models  # noqa: E402

ALL = [info.name for info in list_models()]
D2L = [info.name for info in list_models() if info.variant == "d2l"]
INFO = {info.name: info for info in list_models()}


# --- helpers --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def built(name: str, in_channels: int | None = None, num_classes: int | None = None):
    """(spec, model) built on meta; cached because several tests look at the same model."""
    spec = resolve(name, in_channels=in_channels, num_classes=num_classes)
    return spec, spec.build("meta")


def forward_meta(model: nn.Module, shape) -> torch.Tensor:
    with torch.no_grad():
        out = model(torch.empty(1, *shape, device="meta"))
    if isinstance(out, torch.Tensor):
        return out
    return out.logits if hasattr(out, "logits") else out[0]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def alternative(info) -> tuple[int, int]:
    """In-channels and classes other than the defaults: 3 <-> 1 channels, 1000 <-> 10/100."""
    channels = 1 if info.in_channels == 3 else 3
    classes = 10 if info.num_classes == 1000 else 100
    return channels, classes


# --- hand calculations from the papers (independent of archprobe.zoo._paper_nets) -----------


def conv_bias(cin: int, cout: int, k: int) -> int:
    """A k x k conv with bias."""
    return cin * cout * k * k + cout


def conv_bn(cin: int, cout: int, kh: int, kw: int | None = None) -> int:
    """A bias-free kh x kw conv followed by BatchNorm (gamma and beta)."""
    return cin * cout * kh * (kw or kh) + 2 * cout


def alexnet_paper_params(classes: int = 1000) -> int:
    # Krizhevsky et al. 2012, section 3.5: (in channels per kernel, kernels, kernel size); the
    # kernels of conv2, conv4 and conv5 see only their own GPU's half of the previous layer.
    convs = [(3, 96, 11), (96 // 2, 256, 5), (256, 384, 3), (384 // 2, 384, 3), (384 // 2, 256, 3)]
    fcs = [(256 * 6 * 6, 4096), (4096, 4096), (4096, classes)]
    return sum(conv_bias(cin, cout, k) for cin, cout, k in convs) + sum(i * o + o for i, o in fcs)


def nin_params(classes: int = 1000) -> int:
    # Caffe "NIN ImageNet" (train_val.prototxt): conv1, cccp1, cccp2, conv2, cccp3, cccp4,
    # conv3, cccp5, cccp6, conv4-1024, cccp7-1024, cccp8-1024; (in, out, kernel).
    layers = [
        (3, 96, 11), (96, 96, 1), (96, 96, 1),
        (96, 256, 5), (256, 256, 1), (256, 256, 1),
        (256, 384, 3), (384, 384, 1), (384, 384, 1),
        (384, 1024, 3), (1024, 1024, 1), (1024, classes, 1),
    ]  # fmt: skip
    return sum(conv_bias(cin, cout, k) for cin, cout, k in layers)


def bn_inception_params(classes: int = 1000) -> int:
    # Ioffe & Szegedy 2015, Figure 5. Columns: #1x1, #3x3 reduce, #3x3, double #3x3 reduce,
    # double #3x3, pool projection (None: pass-through max pool in the stride-2 modules).
    rows = [
        (64, 64, 64, 64, 96, 32),  # 3a
        (64, 64, 96, 64, 96, 64),  # 3b
        (0, 128, 160, 64, 96, None),  # 3c
        (224, 64, 96, 96, 128, 128),  # 4a
        (192, 96, 128, 96, 128, 128),  # 4b
        (160, 128, 160, 128, 160, 128),  # 4c
        (96, 128, 192, 160, 192, 128),  # 4d
        (0, 128, 192, 192, 256, None),  # 4e
        (352, 192, 320, 160, 224, 128),  # 5a
        (352, 192, 320, 192, 224, 128),  # 5b
    ]
    total = conv_bn(3, 64, 7) + conv_bn(64, 64, 1) + conv_bn(64, 192, 3)
    depth = 192
    outputs = []
    for ones, r3, c3, rd, d3, proj in rows:
        total += conv_bn(depth, ones, 1) if ones else 0
        total += conv_bn(depth, r3, 1) + conv_bn(r3, c3, 3)
        total += conv_bn(depth, rd, 1) + conv_bn(rd, d3, 3) + conv_bn(d3, d3, 3)
        total += conv_bn(depth, proj, 1) if proj else 0
        depth = ones + c3 + d3 + (proj if proj else depth)
        outputs.append(depth)
    # the branches of 4c/4d sum to 608 (the table's "output size" column says 576)
    assert outputs == [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    return total + depth * classes + classes


def inception_resnet_v1_params(classes: int = 1000) -> int:
    # Szegedy et al. 2016. Basic conv = conv (no bias) + BN; the residual "1x1 Conv (Linear)"
    # has a bias and no BN.
    stem = (  # Figure 14
        conv_bn(3, 32, 3) + conv_bn(32, 32, 3) + conv_bn(32, 64, 3)
        + conv_bn(64, 80, 1) + conv_bn(80, 192, 3) + conv_bn(192, 256, 3)
    )  # fmt: skip
    block_a = (  # Figure 10
        conv_bn(256, 32, 1)
        + conv_bn(256, 32, 1) + conv_bn(32, 32, 3)
        + conv_bn(256, 32, 1) + conv_bn(32, 32, 3) + conv_bn(32, 32, 3)
        + conv_bias(96, 256, 1)
    )  # fmt: skip
    k, l, m, n = 192, 192, 256, 384  # Table 1, Inception-ResNet-v1  # noqa: E741
    reduction_a = conv_bn(256, n, 3) + conv_bn(256, k, 1) + conv_bn(k, l, 3) + conv_bn(l, m, 3)  # Figure 7
    block_b = (  # Figure 11
        conv_bn(896, 128, 1)
        + conv_bn(896, 128, 1) + conv_bn(128, 128, 1, 7) + conv_bn(128, 128, 7, 1)
        + conv_bias(256, 896, 1)
    )  # fmt: skip
    reduction_b = (  # Figure 12
        conv_bn(896, 256, 1) + conv_bn(256, 384, 3)
        + conv_bn(896, 256, 1) + conv_bn(256, 256, 3)
        + conv_bn(896, 256, 1) + conv_bn(256, 256, 3) + conv_bn(256, 256, 3)
    )  # fmt: skip
    block_c = (  # Figure 13
        conv_bn(1792, 192, 1)
        + conv_bn(1792, 192, 1) + conv_bn(192, 192, 1, 3) + conv_bn(192, 192, 3, 1)
        + conv_bias(384, 1792, 1)
    )  # fmt: skip
    head = 1792 * classes + classes
    return stem + 5 * block_a + reduction_a + 10 * block_b + reduction_b + 5 * block_c + head


HAND_COUNTS = {
    "alexnet-paper": alexnet_paper_params,
    "nin": nin_params,
    "bn-inception": bn_inception_params,
    "inception-resnet-v1": inception_resnet_v1_params,
}

# The same numbers written out, so a change to a hand calculation is noticed too.
PAPER_PARAMS = {"alexnet-paper": 60_965_224, "nin": 7_595_176, "bn-inception": 11_285_224, "inception-resnet-v1": 22_756_328}

TIMM_PARAMS = {"inception-v4": 42_679_816, "inception-resnet-v2": 55_843_464}

# torchvision's weights.meta, pinned where the aux heads make the convention matter
TORCHVISION_PINNED = {"googlenet": 6_624_904, "inception-v3": 27_161_264}


def reference_params(info) -> int:
    if info.source == "torchvision":
        import torchvision

        count = torchvision.models.get_model_weights(info.name.replace("-", "_")).DEFAULT.meta["num_params"]
        if info.name in TORCHVISION_PINNED:
            assert count == TORCHVISION_PINNED[info.name]
        return count
    if info.source == "timm" and info.name in TIMM_PARAMS:
        return TIMM_PARAMS[info.name]
    if info.variant == "d2l" and info.name in seed_models.SEED_FACTORIES:
        with torch.device("meta"):
            return n_params(seed_models.SEED_FACTORIES[info.name]())
    if info.name in HAND_COUNTS:
        assert HAND_COUNTS[info.name]() == PAPER_PARAMS[info.name]
        return HAND_COUNTS[info.name]()
    pytest.fail(f"{info.name}: no reference parameter count; add one to tests/test_zoo.py")


# --- the registry ---------------------------------------------------------------------------


def test_registry_metadata():
    assert len(ALL) == len(set(ALL))
    for info in list_models():
        assert info.name == info.name.lower().replace("_", "-"), info.name
        assert info.variant in ("imagenet", "d2l"), info.name
        assert info.source in ("archprobe", "torchvision", "timm"), info.name
        assert len(info.input_shape) == 3 and info.num_classes > 0 and info.paper and info.year
        if info.variant == "d2l":
            assert (info.in_channels, info.num_classes, info.source) == (1, 10, "archprobe"), info.name
        else:
            assert (info.in_channels, info.num_classes) == (3, 1000), info.name
    ours = {i.name for i in list_models() if i.source == "archprobe"}
    assert ours == set(seed_models.SEED_FACTORIES) | set(HAND_COUNTS)


def test_listing_does_not_import_torch():
    code = "import sys, archprobe.zoo.registry as r; r.list_models(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- every model ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_builds_on_meta_and_forwards(name):
    spec, model = built(name)
    assert not model.training
    tensors = list(model.parameters()) + list(model.buffers())
    assert tensors and all(t.device.type == "meta" for t in tensors)
    out = forward_meta(model, spec.input_shape)
    assert tuple(out.shape) == (1, INFO[name].num_classes)


@pytest.mark.parametrize("name", ALL)
def test_param_count(name):
    _, model = built(name)
    assert n_params(model) == reference_params(INFO[name])


@pytest.mark.parametrize("name", ALL)
def test_in_channels_and_num_classes_honoured(name):
    info = INFO[name]
    channels, classes = alternative(info)
    spec, model = built(name, channels, classes)
    assert spec.input_shape == (channels, *info.input_shape[1:])
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == channels
    assert all(p.device.type == "meta" for p in model.parameters())
    assert tuple(forward_meta(model, spec.input_shape).shape) == (1, classes)


@pytest.mark.parametrize(
    "name, channels, classes, size",
    [("alexnet", 1, 10, 224), ("lenet", 3, 100, 28), ("nin", 1, 10, 224), ("googlenet-bn-d2l", 3, 1000, 96)],
)
def test_examples_with_other_channels_and_classes(name, channels, classes, size):
    spec, model = built(name, channels, classes)
    assert spec.input_shape == (channels, size, size)
    assert tuple(forward_meta(model, spec.input_shape).shape) == (1, classes)


# --- d2l models against the seeds' code ----------------------------------------------------


def leaves(model: nn.Module) -> list[tuple[str, str]]:
    """(qualified name, repr) of every leaf module: types and hyper-parameters, in order."""
    return [(name, repr(m)) for name, m in model.named_modules() if not list(m.children())]


def graph(model: nn.Module, shape) -> list[tuple]:
    """The forward pass as the dispatcher sees it, one meta pass at ``shape`` (C, H, W): every
    module call (path, type) and every aten op with the module it ran in, in order. (torch.fx
    cannot trace ``F.avg_pool2d(x, x.size()[2:])`` on every torch release; a real pass can.)"""
    from archprobe.analysis.trace import make_input, trace

    record = trace(model, make_input((1, *shape)))
    calls = [(c.path, c.type_name) for c in record.calls]
    ops = [(record.calls[op.call].path if op.call >= 0 else None, op.overload) for op in record.ops]
    return calls + ops


def test_every_d2l_model_has_a_seed():
    assert set(D2L) == set(seed_models.SEED_FACTORIES)


@pytest.mark.parametrize("name", D2L)
def test_d2l_model_equals_seed_code(name):
    spec, ours = built(name)
    with torch.device("meta"):
        seed = seed_models.SEED_FACTORIES[name]().eval()
    assert n_params(ours) == n_params(seed)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in seed.named_parameters()
    ]
    assert leaves(ours) == leaves(seed)
    # functional ops (F.relu, F.avg_pool2d(x, x.size()[2:]), .view, torch.cat) are the seed's
    assert graph(ours, spec.input_shape) == graph(seed, spec.input_shape)


def test_d2l_known_counts():
    # numbers quoted in the brief / computed by hand from the seed code
    assert n_params(built("lenet")[1]) == 44_426  # 156 + 2416 + 30840 + 10164 + 850
    assert n_params(built("alexnet-d2l")[1]) == 46_764_746


def test_d2l_global_pool_is_functional():
    from archprobe.zoo._d2l_nets import GlobalAvgPool2d

    for name in ("nin-d2l", "googlenet-d2l", "resnet18-d2l", "densenet-d2l"):
        spec, model = built(name)
        assert any(isinstance(m, GlobalAvgPool2d) for m in model.modules()), name
        assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules()), name
        pools = {path for path, _ in model.named_modules() if isinstance(model.get_submodule(path), GlobalAvgPool2d)}
        # the pool is a function called in the module's forward, with a window as large as the map
        assert any(where in pools and op == "avg_pool2d.default" for where, op in graph(model, spec.input_shape)), name


# --- our paper models -------------------------------------------------------------------------


def grid_sizes(model: nn.Module, shape, names: list[str]) -> dict[str, tuple]:
    """Output shapes (C, H, W) of the named submodules in a meta forward pass."""
    seen: dict[str, tuple] = {}
    handles = [
        model.get_submodule(n).register_forward_hook(
            lambda _m, _i, out, n=n: seen.__setitem__(n, tuple(out.shape[1:]))
        )
        for n in names
    ]
    try:
        forward_meta(model, shape)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_alexnet_paper_layout():
    spec, model = built("alexnet-paper")
    assert spec.input_shape == (3, 227, 227)
    names = ["features.conv1", "features.pool1", "features.conv2", "features.pool2", "features.conv5",
             "features.pool5"]
    assert grid_sizes(model, spec.input_shape, names) == {
        "features.conv1": (96, 55, 55),
        "features.pool1": (96, 27, 27),
        "features.conv2": (256, 27, 27),
        "features.pool2": (256, 13, 13),
        "features.conv5": (256, 13, 13),
        "features.pool5": (256, 6, 6),
    }
    groups = {n: m.groups for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert groups == {"features.conv1": 1, "features.conv2": 2, "features.conv3": 1, "features.conv4": 2,
                      "features.conv5": 2}
    # LRN after the ReLUs of conv1 and conv2, overlapping 3x3/2 pools after both and after conv5
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:4] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"] == kinds[4:8]
    assert all((p.kernel_size, p.stride) == (3, 2) for p in model.modules() if isinstance(p, nn.MaxPool2d))
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2


def test_alexnet_paper_lrn_is_the_papers_formula():
    from archprobe.zoo._paper_nets import AlexNetPaper

    lrn = AlexNetPaper().features.norm1
    a = torch.randn(2, 9, 4, 4) * 30  # large activations, where the normalisation matters
    # b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2) ** beta, k=2, n=5, alpha=1e-4, beta=0.75
    squares = torch.nn.functional.pad(a.square(), (0, 0, 0, 0, 2, 2))
    window = sum(squares[:, j : j + 9] for j in range(5))
    expected = a / (2 + 1e-4 * window) ** 0.75
    torch.testing.assert_close(lrn(a), expected)


def test_alexnet_paper_macs_by_hand():
    from archprobe.api import count

    # output positions x kernels x (in channels per kernel x kernel area), then the FC layers
    convs = 55 * 55 * 96 * 3 * 121 + 27 * 27 * 256 * 48 * 25 + 13 * 13 * (384 * 256 + 384 * 192 + 256 * 192) * 9
    assert count("alexnet-paper").macs == convs + 9216 * 4096 + 4096 * 4096 + 4096 * 1000 == 724_406_816


def test_alexnet_paper_valid_sizes():
    from archprobe.api import min_input

    result = min_input("alexnet-paper")  # conv1 11/4 and three 3/2 pools must leave 6x6 for fc6
    assert result.min_size == (227, 227) and result.valid == ((227, 258),) and result.verified


def test_nin_layout():
    spec, model = built("nin")
    # Caffe rounds pooling up: 224 -> 54 -> 27 -> 13 -> 6 (the released model's 6x6 final pool)
    assert grid_sizes(model, spec.input_shape, ["0", "1", "3", "5", "7"]) == {
        "0": (96, 54, 54),
        "1": (96, 27, 27),
        "3": (256, 13, 13),
        "5": (384, 6, 6),
        "7": (1000, 6, 6),
    }
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


def test_bn_inception_layout():
    spec, model = built("bn-inception")
    sizes = grid_sizes(
        model, spec.input_shape, ["stem", "blocks.inception_3b", "blocks.inception_3c", "blocks.inception_4d",
                                  "blocks.inception_4e", "blocks.inception_5b"]
    )  # fmt: skip
    assert sizes == {
        "stem": (192, 28, 28),
        "blocks.inception_3b": (320, 28, 28),
        "blocks.inception_3c": (576, 14, 14),
        "blocks.inception_4d": (608, 14, 14),
        "blocks.inception_4e": (1056, 7, 7),
        "blocks.inception_5b": (1024, 7, 7),
    }
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 2 * 10 + 3 * 10 + 8 + 8  # stem, 3x3, double 3x3, 1x1s, projections
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)


def test_inception_resnet_v1_layout():
    spec, model = built("inception-resnet-v1")
    sizes = grid_sizes(
        model, spec.input_shape, ["stem", "blocks_a", "reduction_a", "blocks_b", "reduction_b", "blocks_c"]
    )
    assert sizes == {
        "stem": (256, 35, 35),
        "blocks_a": (256, 35, 35),
        "reduction_a": (896, 17, 17),
        "blocks_b": (896, 17, 17),
        "reduction_b": (1792, 8, 8),
        "blocks_c": (1792, 8, 8),
    }
    assert (len(model.blocks_a), len(model.blocks_b), len(model.blocks_c)) == (5, 10, 5)
    assert {b.scale for b in model.blocks_a} == {0.17}
    assert {b.scale for b in model.blocks_b} == {0.10}
    assert {b.scale for b in model.blocks_c} == {0.20}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and {bn.eps for bn in bns} == {1e-3}
    assert model.dropout.p == pytest.approx(0.2)


# --- library specs build the library's own default head -------------------------------------


@pytest.mark.parametrize("name", ["tiny_vit_5m_224", "resnet18", "vit_small_patch14_dinov2"])
def test_timm_spec_builds_timms_default_head(name):
    """timm builds the head its pretrained config names (tiny_vit_5m_224: 21,841 classes; a DINOv2
    backbone: none), and so does ``timm:NAME`` unless ``num_classes`` is given."""
    import timm

    # on the CPU: timm 0.9's TinyViT and ViT call .item() in __init__, which meta tensors refuse
    reference = timm.create_model(name, pretrained=False)
    spec = resolve(f"timm:{name}")
    assert spec.num_classes == reference.num_classes
    assert n_params(spec.build("meta")) == n_params(reference)
    assert spec.notes == ()


def test_a_head_other_than_the_librarys_is_noted():
    from archprobe.report.sentences import notes_text

    timm_spec = resolve("timm:tiny_vit_5m_224", num_classes=10, input_size=(64, 64))
    assert timm_spec.build("meta").num_classes == 10
    assert notes_text(timm_spec.notes) == ["head built for 10 classes; timm's default is 21,841"]
    tv_spec = resolve("tv:resnet18", num_classes=10)
    assert notes_text(tv_spec.notes) == ["head built for 10 classes; torchvision's default is 1,000"]
    assert resolve("tv:resnet18", num_classes=1000).notes == ()
