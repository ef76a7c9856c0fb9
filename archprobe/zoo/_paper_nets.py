"""Our implementations of ImageNet models that neither torchvision nor timm provides.

Imported lazily by the builders in :mod:`archprobe.zoo.paper` (this module imports torch).

* :class:`AlexNetPaper`: AlexNet as published (Krizhevsky, Sutskever & Hinton 2012, Figure 2), its
  two-GPU layout written as grouped convolutions;
* :func:`nin_imagenet`: Network In Network (Lin, Chen & Yan 2013), the ImageNet model released
  with the paper (Caffe model zoo "NIN ImageNet");
* :class:`BNInception`: Inception v2 / BN-Inception (Ioffe & Szegedy 2015, Figure 5);
* :class:`InceptionResNetV1`: Inception-ResNet-v1 (Szegedy et al. 2016, arXiv 1602.07261,
  Figures 7, 10-15 and Table 1).

Every choice where a paper is silent is written in the docstring of the class it concerns.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

# --- AlexNet, the paper's two-GPU layout ---------------------------------------------------

LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0  # the paper's n, alpha, beta, k (section 3.3)


class AlexNetPaper(nn.Module):
    """AlexNet as trained on two GTX 580 GPUs (Krizhevsky, Sutskever & Hinton 2012, Figure 2).

    Each GPU held half of the kernels of every layer, and "the GPUs communicate only in certain
    layers" (section 3.2): the kernels of conv2, conv4 and conv5 see only the feature maps on
    their own GPU, so one device computes them as convolutions with ``groups=2``; conv1, conv3
    and the fully connected layers take input from both halves, so they are ordinary layers.

    Layers (section 3.5), input 3x227x227 (the paper's "224x224" does not give its 55x55 maps):

    ====== ================================================ ============ ==========================
    layer  kernels                                           output       parameters
    ====== ================================================ ============ ==========================
    conv1  96 of 11x11x3, stride 4                           96x55x55     96*11*11*3 + 96 = 34,944
    LRN, max pool 3x3 stride 2                                           27x27
    conv2  256 of 5x5x48 (groups 2), pad 2                    256x27x27    256*5*5*48 + 256 = 307,456
    LRN, max pool 3x3 stride 2                                           13x13
    conv3  384 of 3x3x256, pad 1                             384x13x13    384*3*3*256 + 384 = 885,120
    conv4  384 of 3x3x192 (groups 2), pad 1                  384x13x13    384*3*3*192 + 384 = 663,936
    conv5  256 of 3x3x192 (groups 2), pad 1                  256x13x13    256*3*3*192 + 256 = 442,624
    max pool 3x3 stride 2                                                 256x6x6 = 9216
    fc6    dropout 0.5, 9216 -> 4096                                      9216*4096 + 4096 = 37,752,832
    fc7    dropout 0.5, 4096 -> 4096                                      4096*4096 + 4096 = 16,781,312
    fc8    4096 -> 1000                                                   4096*1000 + 1000 = 4,097,000
    ====== ================================================ ============ ==========================

    Total: 60,965,224 parameters (the paper's "60 million"); torchvision's one-tower variant
    (64-192-384-256-256 kernels, no LRN) has 61,100,840.

    ReLU follows every convolution and the first two fully connected layers; response
    normalisation follows the ReLU of conv1 and conv2 (section 3.3), and overlapping max pooling
    (3x3, stride 2; section 3.4) follows both normalisations and conv5.

    Local response normalisation is the paper's
    ``b = a / (k + alpha * sum_{n neighbouring channels} a^2) ** beta`` with k=2, n=5, alpha=1e-4,
    beta=0.75. ``nn.LocalResponseNorm`` divides its ``alpha`` by ``n`` (Caffe's convention), so it
    is given ``alpha * n`` here to compute the paper's formula.

    Initialisation (section 5): weights from N(0, 0.01), biases 1 in conv2, conv4, conv5 and
    the fully connected layers, 0 elsewhere.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()

        def lrn() -> nn.LocalResponseNorm:
            return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)

        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 96, kernel_size=11, stride=4)),
            ("relu1", nn.ReLU()),
            ("norm1", lrn()),
            ("pool1", nn.MaxPool2d(kernel_size=3, stride=2)),
            ("conv2", nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2)),
            ("relu2", nn.ReLU()),
            ("norm2", lrn()),
            ("pool2", nn.MaxPool2d(kernel_size=3, stride=2)),
            ("conv3", nn.Conv2d(256, 384, kernel_size=3, padding=1)),
            ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2)),
            ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2)),
            ("relu5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(kernel_size=3, stride=2)),
        ]))  # fmt: skip
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(OrderedDict([
            ("drop6", nn.Dropout(0.5)),
            ("fc6", nn.Linear(256 * 6 * 6, 4096)),
            ("relu6", nn.ReLU()),
            ("drop7", nn.Dropout(0.5)),
            ("fc7", nn.Linear(4096, 4096)),
            ("relu7", nn.ReLU()),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))  # fmt: skip
        self._initialise()

    def _initialise(self) -> None:
        ones = {"features.conv2", "features.conv4", "features.conv5",
                "classifier.fc6", "classifier.fc7", "classifier.fc8"}  # fmt: skip
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                nn.init.constant_(module.bias, 1.0 if name in ones else 0.0)

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


# --- Network In Network ---------------------------------------------------------------------


def mlpconv(in_channels: int, channels: Sequence[int], kernel_size: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """An "mlpconv" layer (NiN paper Figure 2): a ``kernel_size`` conv followed by 1x1 convs
    (the paper's micro-network), ``channels`` giving each conv's outputs; ReLU after each."""
    layers: list[nn.Module] = []
    for i, out_channels in enumerate(channels):
        if i == 0:
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding))
        else:
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=1))
        layers.append(nn.ReLU())
        in_channels = out_channels
    return nn.Sequential(*layers)


def nin_imagenet(in_channels: int = 3, num_classes: int = 1000) -> nn.Sequential:
    """NiN for ImageNet as released with the paper (Caffe model zoo "NIN ImageNet").

    The paper gives no ImageNet layer table; the released model is four mlpconv layers:
    conv1 11x11/4 (no pad) 96, cccp1 96, cccp2 96, pool 3x3/2; conv2 5x5 pad 2 256, cccp3/4 256,
    pool 3x3/2; conv3 3x3 pad 1 384, cccp5/6 384, pool 3x3/2; dropout 0.5; conv4 3x3 pad 1
    1024, cccp7 1024, cccp8 ``num_classes``; global average pooling (the paper's replacement
    for fully connected layers), no linear layer. Caffe rounds pooling output sizes up, hence
    ``ceil_mode=True`` (224 -> 54 -> 27 -> 13 -> 6, as the released model's 6x6 final pool).
    Each conv has a bias and is followed by ReLU (the last one too, as in the Caffe model).
    7,595,176 parameters at 3 channels / 1000 classes.
    """
    return nn.Sequential(
        mlpconv(in_channels, (96, 96, 96), kernel_size=11, stride=4, padding=0),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        mlpconv(96, (256, 256, 256), kernel_size=5, stride=1, padding=2),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        mlpconv(256, (384, 384, 384), kernel_size=3, stride=1, padding=1),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        nn.Dropout(0.5),
        mlpconv(384, (1024, 1024, num_classes), kernel_size=3, stride=1, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


# --- shared ---------------------------------------------------------------------------------


class BasicConv2d(nn.Sequential):
    """Conv2d without bias, BatchNorm2d, ReLU: BatchNorm's shift makes a conv bias redundant
    (Ioffe & Szegedy 2015, section 3.2). ``eps`` is BatchNorm's (1e-3 in Inception-ResNet,
    following the TensorFlow reference implementations; PyTorch's 1e-5 in BN-Inception)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, eps: float = 1e-5):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels, eps=eps),
            nn.ReLU(),
        )


# --- BN-Inception (Inception v2) ------------------------------------------------------------


class BNInceptionBlock(nn.Module):
    """One row of the BN-Inception table (Ioffe & Szegedy 2015, Figure 5).

    Branches (each conv is :class:`BasicConv2d`), concatenated on channels:

    * ``branch1x1``: 1x1 ``c1`` (absent when ``c1`` is 0, as in the stride-2 modules);
    * ``branch3x3``: 1x1 ``c3_reduce`` -> 3x3 ``c3``;
    * ``branch3x3dbl``: 1x1 ``d3_reduce`` -> 3x3 ``d3`` -> 3x3 ``d3`` (both 3x3 have the
      "double #3x3" width);
    * ``branch_pool``: 3x3 pool (``"avg"`` or ``"max"``) then a 1x1 projection to ``proj``
      channels; ``proj`` 0 means pass-through (no projection).

    ``stride=2`` (modules 3c and 4e): the last 3x3 of each conv branch has stride 2 (pad 1)
    and the pool is ``MaxPool2d(3, 2, ceil_mode=True)`` without padding, as in the released
    Caffe model (and Cadene's PyTorch port). Choice inherited from it: for an odd input size
    the conv branches (``(n+1)/2``) and the pool (``(n-1)/2``) disagree and the concatenation
    fails, so the model accepts only sizes for which 3c and 4e see even inputs. Stride-1 pools
    are 3x3/1 pad 1 (``count_include_pad`` left at PyTorch's default).
    """

    def __init__(
        self,
        in_channels: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        d3_reduce: int,
        d3: int,
        pool: str,
        proj: int,
        stride: int = 1,
    ):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', not {pool!r}")
        self.branch1x1 = BasicConv2d(in_channels, c1, 1) if c1 else None
        self.branch3x3 = nn.Sequential(
            BasicConv2d(in_channels, c3_reduce, 1),
            BasicConv2d(c3_reduce, c3, 3, stride=stride, padding=1),
        )
        self.branch3x3dbl = nn.Sequential(
            BasicConv2d(in_channels, d3_reduce, 1),
            BasicConv2d(d3_reduce, d3, 3, padding=1),
            BasicConv2d(d3, d3, 3, stride=stride, padding=1),
        )
        if stride == 1:
            pool_layer = (
                nn.AvgPool2d(3, stride=1, padding=1) if pool == "avg" else nn.MaxPool2d(3, stride=1, padding=1)
            )
        else:
            pool_layer = nn.MaxPool2d(3, stride=stride, ceil_mode=True)
        if proj:
            self.branch_pool = nn.Sequential(pool_layer, BasicConv2d(in_channels, proj, 1))
        else:
            self.branch_pool = pool_layer
        self.out_channels = c1 + c3 + d3 + (proj or in_channels)

    def forward(self, x):
        outs = [] if self.branch1x1 is None else [self.branch1x1(x)]
        outs += [self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)]
        return torch.cat(outs, dim=1)


# Figure 5 of Ioffe & Szegedy 2015: (#1x1, #3x3 reduce, #3x3, double #3x3 reduce,
# double #3x3, pool, pool projection (0 = pass-through), stride).
BN_INCEPTION_TABLE: dict[str, tuple] = {
    "3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "5b": (352, 192, 320, 192, 224, "max", 128, 1),
}


class BNInception(nn.Module):
    """BN-Inception / Inception v2 (Ioffe & Szegedy 2015, Figure 5; the network of section 4.2).

    Stem: conv 7x7/2 pad 3 -> 64, maxpool 3x3/2, conv 1x1 -> 64, conv 3x3 pad 1 -> 192,
    maxpool 3x3/2 (pools ``ceil_mode=True``, Caffe's rounding: 224 -> 112 -> 56 -> 28).
    Then the ten Inception modules of :data:`BN_INCEPTION_TABLE` (see
    :class:`BNInceptionBlock`), global average pooling and ``Linear(1024, num_classes)``.

    Choices: every conv is bias-free and followed by BatchNorm and ReLU. Channel counts follow
    the per-branch columns of the table: 4c and 4d then output 160+160+160+128 = 608 and
    96+192+192+128 = 608 (the table's "output size" column says 576), so 4e outputs
    192+256+608 = 1056, as in the released model; 5a/5b output 1024. No dropout before the
    classifier (the paper removes it, section 4.2.1). No auxiliary classifiers.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            BasicConv2d(in_channels, 64, 7, stride=2, padding=3),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            BasicConv2d(64, 64, 1),
            BasicConv2d(64, 192, 3, padding=1),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        channels = 192
        blocks = []
        for name, (c1, c3r, c3, d3r, d3, pool, proj, stride) in BN_INCEPTION_TABLE.items():
            block = BNInceptionBlock(channels, c1, c3r, c3, d3r, d3, pool, proj, stride)
            blocks.append((f"inception_{name}", block))
            channels = block.out_channels
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks(x)
        x = self.flatten(self.avgpool(x))
        return self.fc(x)


# --- Inception-ResNet-v1 --------------------------------------------------------------------

_IRV1_BN_EPS = 1e-3


def _conv(in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> BasicConv2d:
    return BasicConv2d(in_channels, out_channels, kernel_size, stride, padding, eps=_IRV1_BN_EPS)


class _ResidualInception(nn.Module):
    """relu(x + scale * up(concat(branches(x)))), ``up`` a linear 1x1 conv with bias (no BN, no
    ReLU), as in the paper's Figures 10, 11 and 13 ("1x1 Conv (... Linear)")."""

    def __init__(self, branches: list[nn.Module], concat_channels: int, channels: int, scale: float):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.up = nn.Conv2d(concat_channels, channels, kernel_size=1, bias=True)
        self.scale = scale
        self.relu = nn.ReLU()

    def forward(self, x):
        mixed = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.relu(x + self.scale * self.up(mixed))


class InceptionResNetA(_ResidualInception):
    """Figure 10 (35x35 grid): 1x1 32 | 1x1 32 -> 3x3 32 | 1x1 32 -> 3x3 32 -> 3x3 32;
    concat 96 -> 1x1 256 linear; scale 0.17."""

    def __init__(self, channels: int = 256, scale: float = 0.17):
        super().__init__(
            [
                _conv(channels, 32, 1),
                nn.Sequential(_conv(channels, 32, 1), _conv(32, 32, 3, padding=1)),
                nn.Sequential(_conv(channels, 32, 1), _conv(32, 32, 3, padding=1), _conv(32, 32, 3, padding=1)),
            ],
            96,
            channels,
            scale,
        )


class InceptionResNetB(_ResidualInception):
    """Figure 11 (17x17 grid): 1x1 128 | 1x1 128 -> 1x7 128 -> 7x1 128; concat 256 -> 1x1 896
    linear; scale 0.10."""

    def __init__(self, channels: int = 896, scale: float = 0.10):
        super().__init__(
            [
                _conv(channels, 128, 1),
                nn.Sequential(
                    _conv(channels, 128, 1),
                    _conv(128, 128, (1, 7), padding=(0, 3)),
                    _conv(128, 128, (7, 1), padding=(3, 0)),
                ),
            ],
            256,
            channels,
            scale,
        )


class InceptionResNetC(_ResidualInception):
    """Figure 13 (8x8 grid): 1x1 192 | 1x1 192 -> 1x3 192 -> 3x1 192; concat 384 -> 1x1 1792
    linear; scale 0.20."""

    def __init__(self, channels: int = 1792, scale: float = 0.20):
        super().__init__(
            [
                _conv(channels, 192, 1),
                nn.Sequential(
                    _conv(channels, 192, 1),
                    _conv(192, 192, (1, 3), padding=(0, 1)),
                    _conv(192, 192, (3, 1), padding=(1, 0)),
                ),
            ],
            384,
            channels,
            scale,
        )


class _Concat(nn.Module):
    """Parallel branches concatenated on channels (the reduction modules)."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class ReductionA(_Concat):
    """Figure 7 (35x35 -> 17x17) with Table 1's Inception-ResNet-v1 k=192, l=192, m=256, n=384:
    maxpool 3x3/2 valid | 3x3/2 valid n | 1x1 k -> 3x3 l (pad 1) -> 3x3/2 valid m."""

    def __init__(self, in_channels: int = 256, k: int = 192, l: int = 192, m: int = 256, n: int = 384):  # noqa: E741
        super().__init__(
            [
                nn.MaxPool2d(3, stride=2),
                _conv(in_channels, n, 3, stride=2),
                nn.Sequential(_conv(in_channels, k, 1), _conv(k, l, 3, padding=1), _conv(l, m, 3, stride=2)),
            ]
        )
        self.out_channels = in_channels + n + m


class ReductionB(_Concat):
    """Figure 12 (17x17 -> 8x8): maxpool 3x3/2 valid | 1x1 256 -> 3x3/2 valid 384 |
    1x1 256 -> 3x3/2 valid 256 | 1x1 256 -> 3x3 256 (pad 1) -> 3x3/2 valid 256."""

    def __init__(self, in_channels: int = 896):
        super().__init__(
            [
                nn.MaxPool2d(3, stride=2),
                nn.Sequential(_conv(in_channels, 256, 1), _conv(256, 384, 3, stride=2)),
                nn.Sequential(_conv(in_channels, 256, 1), _conv(256, 256, 3, stride=2)),
                nn.Sequential(_conv(in_channels, 256, 1), _conv(256, 256, 3, padding=1), _conv(256, 256, 3, stride=2)),
            ]
        )
        self.out_channels = in_channels + 384 + 256 + 256


class InceptionResNetV1(nn.Module):
    """Inception-ResNet-v1 (Szegedy et al. 2016, Figure 15 with the v1 modules).

    Stem (Figure 14): 3x3/2 valid 32, 3x3 valid 32, 3x3 same 64, maxpool 3x3/2 valid, 1x1 80,
    3x3 valid 192, 3x3/2 valid 256 (299 -> 35x35x256); 5x Inception-ResNet-A; Reduction-A
    (896 at 17x17); 10x Inception-ResNet-B; Reduction-B (1792 at 8x8); 5x Inception-ResNet-C;
    global average pooling, dropout (keep 0.8), ``Linear(1792, num_classes)``.

    Choices where the paper is silent: a "basic conv" is bias-free Conv2d + BatchNorm2d
    (eps 1e-3) + ReLU; residual scales 0.17 / 0.10 / 0.20 (the paper says "between 0.1 and
    0.3"; these are the TF-slim / FaceNet values) with a ReLU after every residual sum,
    including the last C block (FaceNet drops it there and adds a sixth C block; we follow the
    paper's 5x). No auxiliary classifier.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            _conv(in_channels, 32, 3, stride=2),
            _conv(32, 32, 3),
            _conv(32, 64, 3, padding=1),
            nn.MaxPool2d(3, stride=2),
            _conv(64, 80, 1),
            _conv(80, 192, 3),
            _conv(192, 256, 3, stride=2),
        )
        self.blocks_a = nn.Sequential(*[InceptionResNetA(256) for _ in range(5)])
        self.reduction_a = ReductionA(256)
        self.blocks_b = nn.Sequential(*[InceptionResNetB(896) for _ in range(10)])
        self.reduction_b = ReductionB(896)
        self.blocks_c = nn.Sequential(*[InceptionResNetC(1792) for _ in range(5)])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1792, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks_a(x)
        x = self.reduction_a(x)
        x = self.blocks_b(x)
        x = self.reduction_b(x)
        x = self.blocks_c(x)
        x = self.flatten(self.avgpool(x))
        return self.fc(self.dropout(x))
