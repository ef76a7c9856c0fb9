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
from archprobe.zoo.registry import ModelInfo, register


def _build_lenet(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import LeNet

    return LeNet(in_channels, num_classes)


def _build_alexnet(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import AlexNet

    return AlexNet(in_channels, num_classes)


def _build_vgg11(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import vgg11

    return vgg11(in_channels, num_classes)


def _build_nin(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import nin

    return nin(in_channels, num_classes)


def _build_googlenet(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import GoogLeNet

    return GoogLeNet(in_channels, num_classes, batch_norm=False)


def _build_googlenet_bn(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import GoogLeNet

    return GoogLeNet(in_channels, num_classes, batch_norm=True)


def _build_resnet18(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import resnet18

    return resnet18(in_channels, num_classes)


def _build_densenet(in_channels: int = 1, num_classes: int = 10):
    from archprobe.zoo._d2l_nets import densenet

    return densenet(in_channels, num_classes)


def _d2l(name, family, paper, size, builder, notes) -> None:
    register(
        ModelInfo(
            name=name,
            family=family,
            variant="d2l",
            input_shape=(1, size, size),
            num_classes=10,
            paper=paper[0],
            year=paper[1],
            source="archprobe",
            builder=builder,
            notes=notes,
        )
    )


_d2l(
    "lenet",
    "lenet",
    papers.LENET,
    28,
    _build_lenet,
    "d2l 5.5: sigmoid + max-pool LeNet; Linear(16*4*4) fixes the input at 28x28",
)
_d2l(
    "alexnet-d2l",
    "alexnet",
    papers.ALEXNET,
    224,
    _build_alexnet,
    "d2l 5.6: one tower, 96-256-384-384-256, unpadded 11x11/4 stem; Linear(256*5*5) fixes the input",
)
_d2l(
    "vgg11-d2l",
    "vgg",
    papers.VGG,
    224,
    _build_vgg11,
    "d2l 5.7: vgg(conv_arch, 512*7*7); Linear(512*7*7) fixes the input at 224x224",
)
_d2l(
    "nin-d2l",
    "nin",
    papers.NIN,
    224,
    _build_nin,
    "d2l 5.8: last nin_block has num_classes channels; functional global average pooling",
)
_d2l(
    "googlenet-d2l",
    "googlenet",
    papers.GOOGLENET,
    96,
    _build_googlenet,
    "d2l 5.9: Inception v1 without BatchNorm; functional global average pooling",
)
_d2l(
    "googlenet-bn-d2l",
    "googlenet",
    papers.GOOGLENET,
    96,
    _build_googlenet_bn,
    "d2l GoogLeNet exercise: BatchNorm after every conv (Ioffe & Szegedy 2015)",
)
_d2l(
    "resnet18-d2l",
    "resnet",
    papers.RESNET,
    96,
    _build_resnet18,
    "d2l 5.11: Residual blocks with biased convs; functional global average pooling",
)
_d2l(
    "densenet-d2l",
    "densenet",
    papers.DENSENET,
    96,
    _build_densenet,
    "d2l 5.12: 4 dense blocks x 4 convs, growth rate 32; functional global average pooling",
)
