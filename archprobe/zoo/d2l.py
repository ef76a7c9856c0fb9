"""Zoo entries from Dive into Deep Learning (PyTorch edition): 1 input channel, 10 classes.

The networks of Dive-into-DL-PyTorch chapter 5 (seed 002) and the D2L "GoogLeNet with batch
normalisation" exercise (seed 000), built for Fashion-MNIST at the book's input sizes.
Their code lives in :mod:`archprobe.zoo._d2l_nets`, imported only when a builder runs, so
importing this module (``archprobe list``) does not import torch.

Parameter counts at the defaults equal those of the seeds' code (checked in
``tests/test_zoo.py`` against ``tests/seed_models.py``).
"""

from __future__ import annotations

from archprobe.zoo import papers
from archprobe.zoo.registry import lazy_builder, register_model

NETS = "archprobe.zoo._d2l_nets"

# name, family, paper, input side, (attribute in _d2l_nets, fixed kwargs), notes
_ENTRIES = (
    ("lenet", "lenet", papers.LENET, 28, ("LeNet", {}),
     "d2l 5.5: sigmoid + max-pool LeNet; Linear(16*4*4) fixes the input at 28x28"),
    ("alexnet-d2l", "alexnet", papers.ALEXNET, 224, ("AlexNet", {}),
     "d2l 5.6: one tower, 96-256-384-384-256, unpadded 11x11/4 stem; Linear(256*5*5) fixes the input"),
    ("vgg11-d2l", "vgg", papers.VGG, 224, ("vgg11", {}),
     "d2l 5.7: vgg(conv_arch, 512*7*7); Linear(512*7*7) fixes the input at 224x224"),
    ("nin-d2l", "nin", papers.NIN, 224, ("nin", {}),
     "d2l 5.8: last nin_block has num_classes channels; functional global average pooling"),
    ("googlenet-d2l", "googlenet", papers.GOOGLENET, 96, ("GoogLeNet", {"batch_norm": False}),
     "d2l 5.9: Inception v1 without BatchNorm; functional global average pooling"),
    ("googlenet-bn-d2l", "googlenet", papers.GOOGLENET, 96, ("GoogLeNet", {"batch_norm": True}),
     "d2l GoogLeNet exercise: BatchNorm after every conv (Ioffe & Szegedy 2015)"),
    ("resnet18-d2l", "resnet", papers.RESNET, 96, ("resnet18", {}),
     "d2l 5.11: Residual blocks with biased convs; functional global average pooling"),
    ("densenet-d2l", "densenet", papers.DENSENET, 96, ("densenet", {}),
     "d2l 5.12: 4 dense blocks x 4 convs, growth rate 32; functional global average pooling"),
)

for _name, _family, _paper, _size, (_attr, _fixed), _notes in _ENTRIES:
    register_model(
        _name,
        family=_family,
        variant="d2l",
        paper=_paper,
        input_shape=(1, _size, _size),
        num_classes=10,
        source="archprobe",
        builder=lazy_builder(f"{NETS}:{_attr}", **_fixed),
        notes=_notes,
    )
