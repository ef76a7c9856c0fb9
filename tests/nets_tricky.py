"""Purpose-built networks whose valid input sizes are tricky, with their answers worked out by hand.

Each entry of ``TRICKY`` is a :class:`TrickyNet`: a factory, the default input ``(C, H, W)``
and the expected answer (square sides as ``[lo, hi | None]`` intervals up to ``cap``; ``None``:
runs on to the cap). ``spec(name)`` gives an ``archprobe`` ``ModelSpec`` for one, so any test
can feed them to the analysers. The modules touch no tensor data, so they build on ``meta``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class FixedLinear(nn.Module):
    """conv3 -> maxpool2 -> flatten -> Linear(4*6*6): ``floor((s-2)/2) == 6``, so sides 14-15."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class TutorialNet(nn.Module):
    """The PyTorch CIFAR-10 tutorial's net: ``x.view(-1, 16 * 5 * 5)`` moves surplus features
    into the batch, so any size whose last map holds a multiple of 400 values runs: the final
    side must be a multiple of 5, giving sides 32-35, 52-55, 72-75, ... (runs of 4 every 20)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        return self.fc2(F.relu(self.fc1(x)))


class EvenOnly(nn.Module):
    """Two branches that agree only on even sizes: maxpool2 gives floor(n/2), conv3/2 pad 1 ceil(n/2)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)
        self.conv = nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))

    def forward(self, x):
        return self.head(self.pool(x) + self.conv(x))


class NonSquareKernel(nn.Module):
    """A 3x9 kernel: min height 3, min width 9, min square 9."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, (3, 9))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        return self.head(self.conv(x))


class FunctionalPool(nn.Module):
    """``F.max_pool2d`` and a global ``F.avg_pool2d(x, x.size()[2:])`` inside ``forward`` (the
    seeds' ``GlobalAvgPool2d``): conv3 then maxpool 3/2 needs side >= 5; any larger works."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 3, 2)
        x = F.avg_pool2d(x, kernel_size=x.size()[2:])
        return self.fc(x.view(x.shape[0], -1))


class CeilMode(nn.Module):
    """``ceil_mode=True`` pools (max 3/2, max 3/2 pad 1, avg 2/2) before Linear(4*2*2): sides 8-15.
    Sizes follow PyTorch's ceil rule (round up, unless the last window would start in the padding)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(3, 4, 1),
            nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
            nn.AvgPool2d(2, 2, ceil_mode=True),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 2 * 2, 10))

    def forward(self, x):
        return self.head(self.features(x))


class Dilated(nn.Module):
    """A 3x3 conv with dilation 2 (spans 5) and a 3x3 max pool with dilation 2, stride 1 (spans 5):
    min side 9."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, dilation=2)
        self.pool = nn.MaxPool2d(3, stride=1, dilation=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def forward(self, x):
        return self.head(self.pool(self.conv(x)))


class StridedGlobalPool(nn.Module):
    """A 1x1 conv with stride 80 then the seeds' global ``F.avg_pool2d(x, x.size()[2:])``: at the
    default 32 and at 32+37 the map is 1 high, so one trace pair cannot tell a window of 1 from
    a window following the height; the solver traces a third size to settle it. Every side runs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, stride=80)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.conv(x)
        x = F.avg_pool2d(x, kernel_size=x.size()[2:])
        return self.fc(x.view(x.shape[0], -1))


class ViewHW(nn.Module):
    """``x.view(b, c, h * w)``: a size-dependent entry inferred from the element count."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        return self.fc(x.view(b, c, h * w).mean(-1))


class Divisible4(nn.Module):
    """A small U-Net: two stride-2 convs down, two nearest x2 upsamples back, each concatenated
    with the skip: valid iff the side is a multiple of 4."""

    def __init__(self):
        super().__init__()
        self.down1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.up1 = nn.Conv2d(8, 4, 3, padding=1)
        self.up2 = nn.Conv2d(7, 4, 3, padding=1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(d1)
        u1 = self.up1(torch.cat([F.interpolate(d2, scale_factor=2), d1], 1))
        return self.up2(torch.cat([F.interpolate(u1, scale_factor=2), x], 1))


class ResizeToSkip(nn.Module):
    """``F.interpolate(y, size=x.shape[2:])`` (an argument bound to another tensor's dims) then
    ``cat`` with ``x``: every side >= 1 works."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.mix = nn.Conv2d(7, 4, 1)

    def forward(self, x):
        y = F.interpolate(self.down(x), size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.mix(torch.cat([y, x], 1))


class PoolUntilSmall(nn.Module):
    """Control flow on the size (``while w > 4: pool``): the op sequence changes with the input,
    so the analysis must fall back to a scan. Every square side runs; at width 32 the three
    pools need height >= 8."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        x = self.conv(x)
        while x.shape[-1] > 4:
            x = F.max_pool2d(x, 2)
        return x


class HalfWindow(nn.Module):
    """``F.max_pool2d(x, max(1, x.size(2) // 2))``: a window derived from the size in a way that
    matches no tensor dimension, so the analysis falls back to a scan. Every side runs (the
    window is at most the height); at width 32 heights from 1 run, at height 32 widths from 16."""

    def forward(self, x):
        k = max(1, x.size(2) // 2)
        return F.max_pool2d(x, k)


class BNTrainHead(nn.Module):
    """BatchNorm after the conv and BatchNorm1d after global pooling: in training mode with
    batch 1 the 1-d BatchNorm sees one value per channel at every size (nothing runs)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.bn1 = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        return self.fc(self.bn1(torch.flatten(x, 1)))


class TrickyNet:
    """A net, its default input ``(C, H, W)`` and the expected answer up to ``cap``.

    (A plain class, not a dataclass: ``archprobe`` loads this file as a user model file, e.g.
    ``archprobe min-input tests/nets_tricky.py:TutorialNet``.)
    """

    def __init__(self, factory: Callable[[], nn.Module], input_shape, valid, cap: int = 64,
                 method: str = "analytic", per_dim_min=None, train_valid=None):
        self.factory = factory
        self.input_shape = tuple(input_shape)
        self.valid = valid  # expected square sides up to ``cap`` as [lo, hi | None]
        self.cap = cap
        self.method = method
        self.per_dim_min = per_dim_min  # expected (min H, min W) at the default size
        self.train_valid = train_valid or {}  # batch size -> expected valid in training mode


TRICKY: dict[str, TrickyNet] = {
    "fixed-linear": TrickyNet(FixedLinear, (1, 14, 14), [[14, 15]], per_dim_min=(14, 14)),
    "tutorial-view": TrickyNet(TutorialNet, (3, 32, 32), [[32, 35], [52, 55], [72, 75], [92, 95]], cap=96,
                               per_dim_min=(32, 32)),
    # 3 runs too: maxpool gives 1, the strided conv 2, and 1 broadcasts against 2
    "even-only": TrickyNet(EvenOnly, (3, 32, 32), [[2, 4]] + [[s, s] for s in range(6, 63, 2)] + [[64, None]],
                           per_dim_min=(2, 2)),
    "non-square-kernel": TrickyNet(NonSquareKernel, (3, 32, 32), [[9, None]], per_dim_min=(3, 9)),
    "functional-pool": TrickyNet(FunctionalPool, (3, 32, 32), [[5, None]], per_dim_min=(5, 5)),
    # the default 32 gives a 5x5 map (100 features): it does not run, the analysis finds 8x8
    "ceil-mode": TrickyNet(CeilMode, (3, 32, 32), [[8, 15]], per_dim_min=(8, 8)),
    "dilated": TrickyNet(Dilated, (3, 32, 32), [[9, None]], per_dim_min=(9, 9)),
    "strided-global-pool": TrickyNet(StridedGlobalPool, (3, 32, 32), [[1, None]], cap=128, per_dim_min=(1, 1)),
    "view-hw": TrickyNet(ViewHW, (3, 32, 32), [[3, None]], per_dim_min=(3, 3)),
    "divisible-4": TrickyNet(Divisible4, (3, 32, 32), [[s, s] for s in range(4, 61, 4)] + [[64, None]],
                             per_dim_min=(4, 4)),
    "resize-to-skip": TrickyNet(ResizeToSkip, (3, 32, 32), [[1, None]], per_dim_min=(1, 1)),
    "pool-until-small": TrickyNet(PoolUntilSmall, (3, 32, 32), [[1, None]], method="scan", per_dim_min=(8, 1)),
    "half-window": TrickyNet(HalfWindow, (3, 32, 32), [[1, None]], method="scan", per_dim_min=(1, 16)),
    "bn-train-head": TrickyNet(BNTrainHead, (3, 32, 32), [[3, None]], per_dim_min=(3, 3),
                               train_valid={1: [], 2: [[3, None]]}),
}


def spec(name: str):
    """An archprobe ``ModelSpec`` for ``TRICKY[name]``."""
    from archprobe.zoo.spec import ModelSpec

    net = TRICKY[name]
    return ModelSpec(
        name=name, kind="user", input_shape=net.input_shape, num_classes=None, factory=net.factory
    )


# --- random conv/pool stacks (for property-based tests) ---------------------------------------


class Stack(nn.Module):
    """A conv/pool stack from a list of layer tuples, optionally with a head:

    * ``("conv", kh, kw, stride, padding, dilation)``
    * ``("max", k, stride, padding, dilation, ceil_mode)``
    * ``("avg", k, stride, padding, ceil_mode)``
    * ``("fmax", k, stride)``: ``F.max_pool2d`` called in ``forward``
    * ``("branch", k, stride, padding)``: ``x + conv(x)`` where the conv keeps channels, so the
      two must agree (or broadcast)
    * ``("bn",)``: BatchNorm2d (more than one value per channel needed in training mode)

    ``head``: ``None``; ``"global"`` (the seeds' ``F.avg_pool2d(x, x.size()[2:])`` + Linear); or
    an int ``n``: flatten + ``Linear(n)`` (a fixed feature count).
    """

    def __init__(self, layers, head=None, channels: int = 2):
        super().__init__()
        self.spec = list(layers)
        self.layers = nn.ModuleList()
        for layer in self.spec:
            kind = layer[0]
            if kind == "conv":
                _, kh, kw, s, p, d = layer
                self.layers.append(nn.Conv2d(channels, channels, (kh, kw), s, p, d))
            elif kind == "max":
                _, k, s, p, d, ceil = layer
                self.layers.append(nn.MaxPool2d(k, s, p, d, ceil_mode=ceil))
            elif kind == "avg":
                _, k, s, p, ceil = layer
                self.layers.append(nn.AvgPool2d(k, s, p, ceil_mode=ceil))
            elif kind == "branch":
                _, k, s, p = layer
                self.layers.append(nn.Conv2d(channels, channels, k, s, p))
            elif kind == "bn":
                self.layers.append(nn.BatchNorm2d(channels))
            else:
                self.layers.append(nn.Identity())
        self.head_kind = head
        if head == "global":
            self.fc = nn.Linear(channels, 3)
        elif isinstance(head, int):
            self.fc = nn.Linear(head, 3)

    def forward(self, x):
        for layer, module in zip(self.spec, self.layers):
            if layer[0] == "fmax":
                x = F.max_pool2d(x, layer[1], layer[2])
            elif layer[0] == "branch":
                x = x + module(x)
            else:
                x = module(x)
        if self.head_kind == "global":
            x = F.avg_pool2d(x, kernel_size=x.size()[2:])
            return self.fc(x.view(x.shape[0], -1))
        if isinstance(self.head_kind, int):
            return self.fc(torch.flatten(x, 1))
        return x
