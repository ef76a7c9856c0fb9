"""The book's training recipes and results for the Dive-into-DL zoo entries (data only).

Where each value comes from is in :mod:`archprobe.training.recipes` (which applies them) and
``docs/training.md``; the report quotes the results next to the runs.
"""

from __future__ import annotations

TANGSHUSEN = "Dive-into-DL-PyTorch §{section}, train_ch5"
D2L_GOOGLENET = "d2l.ai 2nd ed. §8.4, train_ch6 (seed 000)"
ARCHPROBE_DEFAULT = "archprobe default, not from the book"

# model: (optimizer, lr, batch size, epochs, resize, init, source)
BOOK_RECIPES: dict[str, tuple] = {
    "lenet": ("adam", 0.001, 256, 5, None, "default", TANGSHUSEN.format(section="5.5")),
    "alexnet-d2l": ("adam", 0.001, 128, 5, 224, "default", TANGSHUSEN.format(section="5.6")),
    "vgg11-d2l": ("adam", 0.001, 64, 5, 224, "default", TANGSHUSEN.format(section="5.7")),
    "nin-d2l": ("adam", 0.002, 128, 5, 224, "default", TANGSHUSEN.format(section="5.8")),
    "googlenet-d2l": ("sgd", 0.1, 128, 10, 96, "xavier", D2L_GOOGLENET),
    "googlenet-bn-d2l": ("sgd", 0.1, 128, 10, 96, "xavier", D2L_GOOGLENET),
    "resnet18-d2l": ("adam", 0.001, 256, 5, 96, "default", TANGSHUSEN.format(section="5.11")),
    "densenet-d2l": ("adam", 0.001, 256, 5, 96, "default", TANGSHUSEN.format(section="5.12")),
}

# What the book reached after the last epoch of each recipe on Fashion-MNIST (one GPU), to
# compare with: (train acc, test acc, where it was printed).
BOOK_RESULTS: dict[str, tuple[float, float, str]] = {
    "lenet": (0.759, 0.759, "Dive-into-DL-PyTorch §5.5, epoch 5"),
    "alexnet-d2l": (0.913, 0.902, "Dive-into-DL-PyTorch §5.6, epoch 5"),
    "vgg11-d2l": (0.919, 0.918, "Dive-into-DL-PyTorch §5.7, epoch 5"),
    "nin-d2l": (0.839, 0.831, "Dive-into-DL-PyTorch §5.8, epoch 5"),
    "googlenet-d2l": (0.896, 0.888, "seed 000, epoch 10, 5732.2 examples/sec on cuda:0"),
    "googlenet-bn-d2l": (0.965, 0.904, "seed 000, epoch 10, 5100.7 examples/sec on cuda:0"),
    "resnet18-d2l": (0.944, 0.926, "Dive-into-DL-PyTorch §5.11, epoch 5"),
    "densenet-d2l": (0.929, 0.884, "Dive-into-DL-PyTorch §5.12, epoch 5"),
}
