"""The Dive-into-Deep-Learning (PyTorch edition) networks, as ``nn.Module`` code.

Imported lazily by the builders in :mod:`archprobe.zoo.d2l` (this module imports torch).

Sources, in ``/work/shared/seeds/`` (Chinese; the code is what counts):

* ``002_*``: Dive-into-DL-PyTorch chapter 5 (tangshusen.me): LeNet (5.5), AlexNet (5.6),
  ``vgg_block``/``vgg`` (5.7), ``nin_block``/``GlobalAvgPool2d`` (5.8), the Inception block
  (5.9), ``Residual`` (5.11), ``conv_block``/``DenseBlock``/``transition_block`` (5.12);
* ``000_*``: the D2L exercise "GoogLeNet with batch normalisation" (the ``GoogLeNet`` class with
  ``b1``..``b5`` and ``fc``, the Inception block with ``p*_bn``).

The module structure (attribute names, layer order and types) is the seeds' own, so parameter
names, counts and leaf-module sequences equal those of the seed code; ``tests/seed_models.py``
holds the seed code verbatim and the tests compare the two. What the seeds hard-code (1 input
channel, 10 classes) is a parameter here: ``in_channels`` replaces the first convolution's
input channels and ``num_classes`` the last layer's outputs; nothing else changes.

Functional operations are kept where the seeds use them (``F.relu`` in the Inception and
Residual blocks, ``F.avg_pool2d(x, kernel_size=x.size()[2:])`` in ``GlobalAvgPool2d``, the
``.view`` flattening): module hooks do not see them, and the analysers must cope with that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --- shared layers (d2lzh_pytorch) -----------------------------------------------------------


class FlattenLayer(nn.Module):
    """``d2l.FlattenLayer``: ``x.view(x.shape[0], -1)`` (the book's flatten, before ``nn.Flatten``)."""

    def forward(self, x):
        return x.view(x.shape[0], -1)


class GlobalAvgPool2d(nn.Module):
    """Seed 002 §5.8 ``GlobalAvgPool2d``: an average pool whose window is the whole input.

    Deliberately functional (``F.avg_pool2d(x, kernel_size=x.size()[2:])``) as in the book:
    the window depends on the input, which hook-based analysers cannot see.
    """

    def forward(self, x):
        return F.avg_pool2d(x, kernel_size=x.size()[2:])


# --- 5.5 LeNet ------------------------------------------------------------------------------


class LeNet(nn.Module):
    """Seed 002 §5.5 ``LeNet``: two conv(5x5)-sigmoid-maxpool(2,2) units and three linear layers.

    ``Linear(16*4*4, 120)`` fixes the input at 28x28 (Fashion-MNIST). 44,426 parameters.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),  # in_channels, out_channels, kernel_size
            nn.Sigmoid(),
            nn.MaxPool2d(2, 2),  # kernel_size, stride
            nn.Conv2d(6, 16, 5),
            nn.Sigmoid(),
            nn.MaxPool2d(2, 2),
        )
        self.fc = nn.Sequential(
            nn.Linear(16 * 4 * 4, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )

    def forward(self, img):
        feature = self.conv(img)
        output = self.fc(feature.view(img.shape[0], -1))
        return output


# --- 5.6 AlexNet ----------------------------------------------------------------------------


class AlexNet(nn.Module):
    """Seed 002 §5.6 ``AlexNet`` ("slightly simplified"): one tower, 96-256-384-384-256 channels.

    The first conv has no padding; ``Linear(256*5*5, 4096)`` fixes the input at 224x224.
    46,764,746 parameters.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 96, 11, 4),  # in_channels, out_channels, kernel_size, stride
            nn.ReLU(),
            nn.MaxPool2d(3, 2),  # kernel_size, stride
            nn.Conv2d(96, 256, 5, 1, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(384, 384, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        self.fc = nn.Sequential(
            nn.Linear(256 * 5 * 5, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, img):
        feature = self.conv(img)
        output = self.fc(feature.view(img.shape[0], -1))
        return output


# --- 5.7 VGG --------------------------------------------------------------------------------


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """Seed 002 §5.7: ``num_convs`` conv3x3(pad 1)-ReLU pairs, then MaxPool2d(2, 2)."""
    blk = []
    for i in range(num_convs):
        if i == 0:
            blk.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        else:
            blk.append(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))
        blk.append(nn.ReLU())
    blk.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*blk)


def vgg(conv_arch, fc_features: int, fc_hidden_units: int = 4096, num_classes: int = 10) -> nn.Sequential:
    """Seed 002 §5.7 ``vgg``: modules ``vgg_block_1``.. then ``fc`` (FlattenLayer + 3 linear).

    ``num_classes`` (the seed's literal 10) is the only addition.
    """
    net = nn.Sequential()
    for i, (num_convs, in_channels, out_channels) in enumerate(conv_arch):
        net.add_module("vgg_block_" + str(i + 1), vgg_block(num_convs, in_channels, out_channels))
    net.add_module(
        "fc",
        nn.Sequential(
            FlattenLayer(),
            nn.Linear(fc_features, fc_hidden_units),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(fc_hidden_units, fc_hidden_units),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(fc_hidden_units, num_classes),
        ),
    )
    return net


def vgg11(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Seed 002 §5.7 VGG-11: conv_arch ((1,1,64),(1,64,128),(2,128,256),(2,256,512),(2,512,512)),
    ``fc_features = 512*7*7`` (so 224x224 input), ``fc_hidden_units = 4096``."""
    conv_arch = ((1, in_channels, 64), (1, 64, 128), (2, 128, 256), (2, 256, 512), (2, 512, 512))
    return vgg(conv_arch, 512 * 7 * 7, 4096, num_classes=num_classes)


# --- 5.8 NiN --------------------------------------------------------------------------------


def nin_block(in_channels: int, out_channels: int, kernel_size, stride, padding) -> nn.Sequential:
    """Seed 002 §5.8: a conv then two 1x1 convs, each followed by ReLU."""
    blk = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )
    return blk


def nin(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Seed 002 §5.8 NiN: the last nin_block outputs ``num_classes`` channels, then the
    functional ``GlobalAvgPool2d`` and ``FlattenLayer`` (no linear layer)."""
    return nn.Sequential(
        nin_block(in_channels, 96, kernel_size=11, stride=4, padding=0),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nin_block(96, 256, kernel_size=5, stride=1, padding=2),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nin_block(256, 384, kernel_size=3, stride=1, padding=1),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, num_classes, kernel_size=3, stride=1, padding=1),
        GlobalAvgPool2d(),
        FlattenLayer(),
    )


# --- 5.9 GoogLeNet (and the seed-000 BatchNorm variant) -------------------------------------


class Inception(nn.Module):
    """The Inception block of seed 002 §5.9; with ``batch_norm=True`` the one of seed 000.

    Four branches: 1x1 conv (``p1_1``); 1x1 then 3x3 pad 1 (``p2_1``, ``p2_2``); 1x1 then 5x5
    pad 2 (``p3_1``, ``p3_2``); maxpool 3x3/1 pad 1 then 1x1 (``p4_1``, ``p4_2``); concatenated
    on channels. ``batch_norm`` adds seed 000's ``p1_bn``..``p4_bn`` after each branch's last
    conv, registered in seed 000's order (so parameter names and leaf order equal the seed's).
    ReLUs are functional (``F.relu``) as in both seeds.
    """

    def __init__(self, in_c: int, c1: int, c2, c3, c4: int, batch_norm: bool = False):
        super().__init__()
        self.batch_norm = batch_norm
        self.p1_1 = nn.Conv2d(in_c, c1, kernel_size=1)
        if batch_norm:
            self.p1_bn = nn.BatchNorm2d(c1)
        self.p2_1 = nn.Conv2d(in_c, c2[0], kernel_size=1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        if batch_norm:
            self.p2_bn = nn.BatchNorm2d(c2[1])
        self.p3_1 = nn.Conv2d(in_c, c3[0], kernel_size=1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        if batch_norm:
            self.p3_bn = nn.BatchNorm2d(c3[1])
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_c, c4, kernel_size=1)
        if batch_norm:
            self.p4_bn = nn.BatchNorm2d(c4)
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def _bn(self, name: str, x):
        return getattr(self, name)(x) if self.batch_norm else x

    def forward(self, x):
        p1 = F.relu(self._bn("p1_bn", self.p1_1(x)))
        p2 = F.relu(self._bn("p2_bn", self.p2_2(F.relu(self.p2_1(x)))))
        p3 = F.relu(self._bn("p3_bn", self.p3_2(F.relu(self.p3_1(x)))))
        p4 = F.relu(self._bn("p4_bn", self.p4_2(self.p4_1(x))))
        return torch.cat((p1, p2, p3, p4), dim=1)


class GoogLeNet(nn.Module):
    """The D2L GoogLeNet body ``b1``..``b5`` + ``fc``, for 96x96 Fashion-MNIST.

    ``batch_norm=True``: exactly seed 000's ``GoogLeNet`` (BatchNorm2d after every conv of
    ``b1``/``b2`` and in every Inception; ``b5`` ends with ``AdaptiveAvgPool2d((1, 1))`` and
    ``nn.Flatten()``).

    ``batch_norm=False``: the same body without BatchNorm, with the seed-002 §5.9 Inception
    block; ``b5`` ends with the functional ``GlobalAvgPool2d`` and ``FlattenLayer`` as in
    Dive-into-DL-PyTorch. Choice: ``b2`` has a ReLU after each of its two convs (seed 000 with
    its BatchNorms removed, as our brief specifies); the Dive-into-DL-PyTorch listing itself
    omits them, which changes no parameter.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, batch_norm: bool = False):
        super().__init__()
        bn = batch_norm

        def conv_bn_relu(*conv_args, **conv_kwargs):
            conv = nn.Conv2d(*conv_args, **conv_kwargs)
            return [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU()] if bn else [conv, nn.ReLU()]

        self.b1 = nn.Sequential(
            *conv_bn_relu(in_channels, 64, kernel_size=7, stride=2, padding=3),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.b2 = nn.Sequential(
            *conv_bn_relu(64, 64, kernel_size=1),
            *conv_bn_relu(64, 192, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.b3 = nn.Sequential(
            Inception(192, 64, (96, 128), (16, 32), 32, batch_norm=bn),
            Inception(256, 128, (128, 192), (32, 96), 64, batch_norm=bn),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.b4 = nn.Sequential(
            Inception(480, 192, (96, 208), (16, 48), 64, batch_norm=bn),
            Inception(512, 160, (112, 224), (24, 64), 64, batch_norm=bn),
            Inception(512, 128, (128, 256), (24, 64), 64, batch_norm=bn),
            Inception(512, 112, (144, 288), (32, 64), 64, batch_norm=bn),
            Inception(528, 256, (160, 320), (32, 128), 128, batch_norm=bn),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        head = [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()] if bn else [GlobalAvgPool2d(), FlattenLayer()]
        self.b5 = nn.Sequential(
            Inception(832, 256, (160, 320), (32, 128), 128, batch_norm=bn),
            Inception(832, 384, (192, 384), (48, 128), 128, batch_norm=bn),
            *head,
        )
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.b1(x)
        x = self.b2(x)
        x = self.b3(x)
        x = self.b4(x)
        x = self.b5(x)
        x = self.fc(x)
        return x


# --- 5.11 ResNet ----------------------------------------------------------------------------


class Residual(nn.Module):
    """Seed 002 §5.11 ``Residual``: conv3x3-BN-ReLU, conv3x3-BN, optional 1x1 ``conv3`` on the
    shortcut, then ReLU of the sum (ReLUs functional, as in the seed)."""

    def __init__(self, in_channels: int, out_channels: int, use_1x1conv: bool = False, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(in_channels: int, out_channels: int, num_residuals: int, first_block: bool = False) -> nn.Sequential:
    """Dive-into-DL-PyTorch §5.11.2: the first Residual halves H/W and changes channels
    (1x1 shortcut) unless ``first_block``."""
    if first_block:
        assert in_channels == out_channels
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(in_channels, out_channels, use_1x1conv=True, stride=2))
        else:
            blk.append(Residual(out_channels, out_channels))
    return nn.Sequential(*blk)


def resnet18(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Dive-into-DL-PyTorch §5.11.2 ResNet-18 assembly (stem conv7x7/2-BN-ReLU-maxpool,
    ``resnet_block1``..``resnet_block4`` of two Residuals each, ``global_avg_pool``, ``fc``)."""
    net = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    net.add_module("resnet_block1", resnet_block(64, 64, 2, first_block=True))
    net.add_module("resnet_block2", resnet_block(64, 128, 2))
    net.add_module("resnet_block3", resnet_block(128, 256, 2))
    net.add_module("resnet_block4", resnet_block(256, 512, 2))
    net.add_module("global_avg_pool", GlobalAvgPool2d())
    net.add_module("fc", nn.Sequential(FlattenLayer(), nn.Linear(512, num_classes)))
    return net


# --- 5.12 DenseNet --------------------------------------------------------------------------


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Seed 002 §5.12: BN-ReLU-conv3x3 (pad 1)."""
    blk = nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
    )
    return blk


class DenseBlock(nn.Module):
    """Seed 002 §5.12 ``DenseBlock``: ``num_convs`` conv_blocks in a ModuleList ``net``, each
    one's output concatenated to its input (``torch.cat`` on channels)."""

    def __init__(self, num_convs: int, in_channels: int, out_channels: int):
        super().__init__()
        net = []
        for i in range(num_convs):
            in_c = in_channels + i * out_channels
            net.append(conv_block(in_c, out_channels))
        self.net = nn.ModuleList(net)
        self.out_channels = in_channels + num_convs * out_channels

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            X = torch.cat((X, Y), dim=1)
        return X


def transition_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Seed 002 §5.12: BN-ReLU-conv1x1, AvgPool2d(2, 2)."""
    blk = nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )
    return blk


def densenet(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Dive-into-DL-PyTorch §5.12.3 DenseNet: 4 dense blocks of 4 convs, growth rate 32,
    transitions halving channels. Module names keep the book's typo ``DenseBlosk_%d``."""
    net = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    num_channels, growth_rate = 64, 32
    num_convs_in_dense_blocks = [4, 4, 4, 4]
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        DB = DenseBlock(num_convs, num_channels, growth_rate)
        net.add_module("DenseBlosk_%d" % i, DB)
        num_channels = DB.out_channels
        if i != len(num_convs_in_dense_blocks) - 1:
            net.add_module("transition_block_%d" % i, transition_block(num_channels, num_channels // 2))
            num_channels = num_channels // 2
    net.add_module("BN", nn.BatchNorm2d(num_channels))
    net.add_module("relu", nn.ReLU())
    net.add_module("global_avg_pool", GlobalAvgPool2d())
    net.add_module("fc", nn.Sequential(FlattenLayer(), nn.Linear(num_channels, num_classes)))
    return net
