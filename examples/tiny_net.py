"""An example user model for ``archprobe ... examples/tiny_net.py:build``.

The factory may take ``in_channels`` and ``num_classes``; archprobe passes them when the user
gives ``--in-channels`` / ``--num-classes``.
"""

import torch
import torch.nn.functional as F
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # functional ops are counted too
        x = F.relu(self.conv2(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


def build(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    return TinyNet(in_channels, num_classes)
