"""Adapting library models to another number of input channels."""

from __future__ import annotations

from torch import nn


def replace_first_conv(model: nn.Module, in_channels: int) -> nn.Module:
    """Swap the first ``Conv2d`` (in module order) for one taking ``in_channels`` inputs.

    torchvision builders take ``num_classes`` but not the input channel count; the stem
    conv is the only layer that depends on it. The new conv is created on the same device
    as the old one (the meta device during static analysis).
    """
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels == in_channels:
                    return model
                if child.groups != 1:
                    raise ValueError("the first convolution is grouped; cannot change its inputs")
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    kernel_size=child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    dilation=child.dilation,
                    bias=child.bias is not None,
                    padding_mode=child.padding_mode,
                    device=child.weight.device,
                    dtype=child.weight.dtype,
                )
                setattr(parent, child_name, new)
                return model
    raise ValueError("the model has no Conv2d whose input channels could be changed")
