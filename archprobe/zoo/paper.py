"""Zoo entries implemented here from their papers: ImageNet models neither torchvision nor timm has.

The networks live in :mod:`archprobe.zoo._paper_nets`, imported only when a builder runs, so
importing this module (``archprobe list``) does not import torch. Parameter counts are checked
in ``tests/test_zoo.py`` against hand calculations from the papers' tables.
"""

from __future__ import annotations

from archprobe.zoo import papers
from archprobe.zoo.registry import lazy_builder, register_model

NETS = "archprobe.zoo._paper_nets"

# name, family, paper, input side, attribute in _paper_nets, notes
_ENTRIES = (
    ("alexnet-paper", "alexnet", papers.ALEXNET, 227, "AlexNetPaper",
     "the paper's two-GPU layout (Figure 2): groups=2 in conv2/4/5, LRN after conv1/2, 48-128-192-192-128 per GPU"),
    ("nin", "nin", papers.NIN, 224, "nin_imagenet",
     "the Caffe model-zoo NIN ImageNet model: 4 mlpconv layers, global average pooling, no FC"),
    ("bn-inception", "inception", papers.BN_INCEPTION, 224, "BNInception",
     "Inception v2 (paper Figure 5); branch widths as listed, so 4c/4d output 608, not 576"),
    ("inception-resnet-v1", "inception-resnet", papers.INCEPTION_V4, 299, "InceptionResNetV1",
     "paper Figures 10-15, Table 1 (k=192, l=192, m=256, n=384); residual scales 0.17/0.10/0.20"),
)

for _name, _family, _paper, _size, _attr, _notes in _ENTRIES:
    register_model(
        _name,
        family=_family,
        variant="imagenet",
        paper=_paper,
        input_shape=(3, _size, _size),
        num_classes=1000,
        source="archprobe",
        builder=lazy_builder(f"{NETS}:{_attr}"),
        notes=_notes,
    )
