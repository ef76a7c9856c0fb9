"""The obvious peer script: build the seed models on CPU and count them with fvcore.

Used by bench_params.py as the baseline for `archprobe params alexnet vgg16 nin googlenet`.
NiN has no torchvision/fvcore builder, so the peer builds the same NiN layers by hand.
"""

import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn


def nin(num_classes=1000):
    def block(cin, cout, k, s, p):
        return [nn.Conv2d(cin, cout, k, s, p), nn.ReLU(), nn.Conv2d(cout, cout, 1), nn.ReLU(),
                nn.Conv2d(cout, cout, 1), nn.ReLU()]

    return nn.Sequential(
        *block(3, 96, 11, 4, 0), nn.MaxPool2d(3, 2, ceil_mode=True),
        *block(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2, ceil_mode=True),
        *block(256, 384, 3, 1, 1), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
        *block(384, 1024, 3, 1, 1)[:-2], nn.Conv2d(1024, num_classes, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


models = {
    "alexnet": torchvision.models.alexnet(),
    "vgg16": torchvision.models.vgg16(),
    "nin": nin(),
    "googlenet": torchvision.models.googlenet(aux_logits=False, init_weights=True),
}
x = torch.randn(1, 3, 224, 224)
for name, model in models.items():
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    flops = FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    print(f"{name}\t{params}\t{flops.total()}")
