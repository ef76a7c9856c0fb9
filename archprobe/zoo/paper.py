"""Zoo entries implemented here from their papers: ImageNet models neither torchvision nor timm has.

The networks live in :mod:`archprobe.zoo._paper_nets`, imported only when a builder runs, so
importing this module (``archprobe list``) does not import torch. Parameter counts are checked
in ``tests/test_zoo.py`` against hand calculations from the papers' tables.
"""

from __future__ import annotations

from archprobe.zoo import papers
from archprobe.zoo.registry import ModelInfo, register


def _build_nin(in_channels: int = 3, num_classes: int = 1000):
    from archprobe.zoo._paper_nets import nin_imagenet

    return nin_imagenet(in_channels, num_classes)


def _build_bn_inception(in_channels: int = 3, num_classes: int = 1000):
    from archprobe.zoo._paper_nets import BNInception

    return BNInception(in_channels, num_classes)


def _build_inception_resnet_v1(in_channels: int = 3, num_classes: int = 1000):
    from archprobe.zoo._paper_nets import InceptionResNetV1

    return InceptionResNetV1(in_channels, num_classes)


def _paper(name, family, paper, size, builder, notes) -> None:
    register(
        ModelInfo(
            name=name,
            family=family,
            variant="imagenet",
            input_shape=(3, size, size),
            num_classes=1000,
            paper=paper[0],
            year=paper[1],
            source="archprobe",
            builder=builder,
            notes=notes,
        )
    )


_paper(
    "nin",
    "nin",
    papers.NIN,
    224,
    _build_nin,
    "the Caffe model-zoo NIN ImageNet model: 4 mlpconv layers, global average pooling, no FC",
)
_paper(
    "bn-inception",
    "inception",
    papers.BN_INCEPTION,
    224,
    _build_bn_inception,
    "Inception v2 (paper Figure 5); branch widths as listed, so 4c/4d output 608, not 576",
)
_paper(
    "inception-resnet-v1",
    "inception-resnet",
    papers.INCEPTION_V4,
    299,
    _build_inception_resnet_v1,
    "paper Figures 10-15, Table 1 (k=192, l=192, m=256, n=384); residual scales 0.17/0.10/0.20",
)
