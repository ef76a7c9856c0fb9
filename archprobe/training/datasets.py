"""The data sets the book trains on, where their files live, and loading them into memory.

``fashion-mnist`` and ``mnist`` are read from torchvision's layout,
``ROOT/FashionMNIST/raw/`` and ``ROOT/MNIST/raw/`` (IDX files, each possibly ``.gz``);
``cifar10`` from ``ROOT/cifar-10-batches-py/`` (pickled batches). Nothing is downloaded unless
asked (``download=True`` runs torchvision's downloader into ``ROOT``). ``fake`` is generated in
memory: Fashion-MNIST-shaped images whose classes differ by a fixed pattern, shifted and with
noise (:func:`structured_images`), so a model can learn it; it stands in where no data set can
be fetched and is labelled as synthetic wherever it appears.

Importing this module does not import torch (the command line lists the names).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from archprobe.errors import ArchprobeError, UsageError
from archprobe.training.formats import CorruptDataError, inflate_idx

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

DEFAULT_DATA_ROOT = "~/.cache/archprobe/data"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
CIFAR_META = "batches.meta"
FAKE_SIZES = (6000, 1000)  # train, test: a tenth of Fashion-MNIST


@dataclass(frozen=True)
class DatasetInfo:
    """A data set archprobe can train on: its layout under the data root and its shape."""

    name: str
    title: str
    channels: int
    side: int
    num_classes: int
    folder: str  # under the data root, where ``files`` are expected ("" for generated data)
    files: tuple[str, ...]
    torchvision_class: str | None  # the torchvision.datasets class that downloads it

    def directory(self, root: str | os.PathLike) -> Path:
        return Path(root).expanduser() / self.folder


DATASETS = {
    "fashion-mnist": DatasetInfo("fashion-mnist", "Fashion-MNIST", 1, 28, 10, "FashionMNIST/raw", IDX_FILES,
                                 "FashionMNIST"),
    "mnist": DatasetInfo("mnist", "MNIST", 1, 28, 10, "MNIST/raw", IDX_FILES, "MNIST"),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", 3, 32, 10, "cifar-10-batches-py", CIFAR_TRAIN + CIFAR_TEST,
                           "CIFAR10"),
    "fake": DatasetInfo("fake", "synthetic", 1, 28, 10, "", (), None),
}
DATASET_NAMES = tuple(DATASETS)


@dataclass(frozen=True)
class ImageData:
    """A data set in memory: uint8 images ``(N, C, H, W)`` and int64 labels, both splits."""

    info: DatasetInfo
    train_images: "torch.Tensor"
    train_labels: "torch.Tensor"
    test_images: "torch.Tensor"
    test_labels: "torch.Tensor"
    classes: tuple[str, ...]
    location: str  # the directory read, or a description of generated data

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        """One line: what was loaded, from where, and how many examples."""
        c, h, w = self.shape
        return (f"{self.info.title} from {self.location}: {len(self.train_labels):,} training and "
                f"{len(self.test_labels):,} test images, {c}x{h}x{w}, {self.num_classes} classes")


def dataset_info(name: str) -> DatasetInfo:
    key = name.strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise UsageError(f"unknown data set {name!r}: use {', '.join(DATASET_NAMES)}", param="dataset")
    return DATASETS[key]


def load_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = False,
                 limit_train: int | None = None, limit_test: int | None = None) -> ImageData:
    """Load a data set into memory (CPU tensors), optionally only its first examples.

    Missing files raise a one-line :class:`UsageError` naming the directory and the files
    expected; a corrupt or truncated file raises :class:`CorruptDataError` naming the file.
    """
    info = dataset_info(name)
    for value, param in ((limit_train, "limit_train"), (limit_test, "limit_test")):
        if value is not None and value <= 0:
            raise UsageError(f"must be positive, not {value}", param=param)
    root = Path(root or DEFAULT_DATA_ROOT).expanduser()
    if info.name == "fake":
        data = _fake(info)
    else:
        if download:
            _download(info, root)
        directory = info.directory(root)
        _check_present(info, directory)
        data = _read_cifar(info, directory) if info.name == "cifar10" else _read_idx(info, directory)
    return _limited(data, limit_train, limit_test)


def _check_present(info: DatasetInfo, directory: Path) -> None:
    def present(name: str) -> bool:
        return (directory / name).is_file() or (info.name != "cifar10" and (directory / f"{name}.gz").is_file())

    missing = [f for f in info.files if not present(f)]
    if not missing:
        return
    either = " (each may be .gz)" if info.name != "cifar10" else ""
    if len(missing) == len(info.files):
        raise UsageError(f"no {info.title} data in {directory}: expected {', '.join(info.files)}{either}; "
                         "nothing is downloaded unless asked", param="data_root")
    raise UsageError(f"{info.title} in {directory} is incomplete: missing {', '.join(missing)}{either}",
                     param="data_root")


def _download(info: DatasetInfo, root: Path) -> None:
    import torchvision

    dataset_class = getattr(torchvision.datasets, info.torchvision_class)
    try:
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - network and disk failures alike
        raise ArchprobeError(f"downloading {info.title} into {root} failed: {type(exc).__name__}: {exc}") from exc


def _uncompressed(path: Path, ndim: int) -> Path:
    """``path``, extracted first from ``path.gz`` beside it (torchvision reads only uncompressed
    IDX files; its downloader extracts them the same way) where it is missing or older than the
    ``.gz``: an extraction made from an earlier ``.gz`` must not hide the one there now. The
    extraction takes the ``.gz``'s time stamps (as ``gunzip`` does), so a ``.gz`` replaced
    later is newer than it."""
    packed = path.with_name(path.name + ".gz")
    if not packed.is_file() or (path.is_file() and path.stat().st_mtime_ns >= packed.stat().st_mtime_ns):
        return path
    inflate_idx(packed, path, ndim)
    stamps = packed.stat()
    os.utime(path, ns=(stamps.st_atime_ns, stamps.st_mtime_ns))
    return path


def _read_idx(info: DatasetInfo, directory: Path) -> ImageData:
    import torch
    import torchvision

    from archprobe.training.formats import read_idx

    split = {}
    for prefix in ("train", "t10k"):
        images_path = _uncompressed(directory / f"{prefix}-images-idx3-ubyte", 3)
        labels_path = _uncompressed(directory / f"{prefix}-labels-idx1-ubyte", 1)
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise CorruptDataError(labels_path, f"{len(labels):,} labels for the {len(images):,} images of "
                                                f"{images_path.name}")
        _check_labels(labels, info.num_classes, labels_path)
        split[prefix] = (images.unsqueeze(1).contiguous(), labels.to(torch.int64))
    classes = tuple(getattr(torchvision.datasets, info.torchvision_class).classes)
    return ImageData(info, *split["train"], *split["t10k"], classes=classes, location=str(directory))


def _read_cifar(info: DatasetInfo, directory: Path) -> ImageData:
    import numpy as np
    import torch

    from archprobe.training.formats import read_cifar_batch, read_cifar_meta

    def read(names: tuple[str, ...]):
        parts = [read_cifar_batch(directory / n) for n in names]
        for n, (_, labels) in zip(names, parts):
            _check_labels(torch.from_numpy(labels), info.num_classes, directory / n)
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return torch.from_numpy(images), torch.from_numpy(labels)

    classes = read_cifar_meta(directory / CIFAR_META) or tuple(str(i) for i in range(info.num_classes))
    return ImageData(info, *read(CIFAR_TRAIN), *read(CIFAR_TEST), classes=classes, location=str(directory))


def _check_labels(labels: "torch.Tensor", num_classes: int, path: Path) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise CorruptDataError(path, f"labels range over {int(labels.min())}..{int(labels.max())}, "
                                     f"expected 0..{num_classes - 1}")


def _limited(data: ImageData, limit_train: int | None, limit_test: int | None) -> ImageData:
    from dataclasses import replace

    return replace(
        data,
        train_images=data.train_images[:limit_train], train_labels=data.train_labels[:limit_train],
        test_images=data.test_images[:limit_test], test_labels=data.test_labels[:limit_test],
    )


# --- synthetic data with structure --------------------------------------------------------------

TEMPLATE_SEED = 2015  # fixes the class patterns; the examples are drawn with their own seed
BLOBS_PER_CLASS = 3


def structured_images(count: int, *, seed: int, shape: tuple[int, int, int] = (1, 28, 28),
                      num_classes: int = 10, noise: float = 0.25,
                      max_shift: int = 3) -> tuple["np.ndarray", "np.ndarray"]:
    """``count`` uint8 images ``(N, C, H, W)`` with int64 labels that a network can learn.

    Each class is a fixed pattern of Gaussian blobs (positions, widths and colours drawn once
    from ``TEMPLATE_SEED``); every example shifts its class's pattern by up to ``max_shift``
    pixels, scales its contrast by 0.6-1.0 and adds Gaussian noise of standard deviation
    ``noise`` (in units of full brightness). Examples depend only on ``seed`` and ``count``.
    """
    import numpy as np

    channels, height, width = shape
    templates = np.random.default_rng(TEMPLATE_SEED)
    centres = templates.uniform(0.25, 0.75, size=(num_classes, BLOBS_PER_CLASS, 2)) * (height, width)
    widths = templates.uniform(1.5, 3.5, size=(num_classes, BLOBS_PER_CLASS)) * (min(height, width) / 28)
    colours = templates.uniform(0.6, 1.0, size=(num_classes, BLOBS_PER_CLASS, channels))

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=count)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(count, 1, 2))
    contrast = rng.uniform(0.6, 1.0, size=count)
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    images = np.empty((count, channels, height, width), dtype=np.uint8)
    for start in range(0, count, 4096):  # bounded memory for large counts
        part = slice(start, start + 4096)
        centre = (centres[labels[part]] + shifts[part]).astype(np.float32)  # (n, blobs, 2)
        distance = ((rows - centre[..., 0, None, None]) ** 2
                    + (cols - centre[..., 1, None, None]) ** 2)  # (n, blobs, H, W)
        blobs = np.exp(-distance / (2 * widths[labels[part]][..., None, None] ** 2))
        image = np.einsum("nbhw,nbc->nchw", blobs, colours[labels[part]]) * contrast[part, None, None, None]
        image += rng.normal(0.0, noise, size=image.shape)
        images[part] = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


@lru_cache(maxsize=2)  # generated once per process; nothing writes to these tensors
def _fake(info: DatasetInfo) -> ImageData:
    import torch

    shape = (info.channels, info.side, info.side)
    train = structured_images(FAKE_SIZES[0], seed=0, shape=shape, num_classes=info.num_classes)
    test = structured_images(FAKE_SIZES[1], seed=1, shape=shape, num_classes=info.num_classes)
    tensors = [torch.from_numpy(a) for a in (*train, *test)]
    return ImageData(info, *tensors, classes=tuple(f"pattern {i}" for i in range(info.num_classes)),
                     location="memory (generated: class patterns + shifts + noise)")


def write_structured_dataset(root: str | os.PathLike, name: str = "fashion-mnist", *, train: int = 60000,
                             test: int = 10000, gzip: bool = False) -> Path:
    """Write :func:`structured_images` under ``root`` in data set ``name``'s real layout and
    format (IDX files, ``.gz`` with ``gzip``; or CIFAR-10 batches). Returns the directory.

    For trying the whole path where no data set can be downloaded; the data are synthetic.
    """
    from archprobe.training.formats import write_cifar_batch, write_cifar_meta, write_idx

    info = dataset_info(name)
    if info.name == "fake":
        raise UsageError("'fake' is generated in memory; write it as fashion-mnist, mnist or cifar10",
                         param="dataset")
    directory = info.directory(root)
    shape = (info.channels, info.side, info.side)
    splits = {"train": structured_images(train, seed=0, shape=shape, num_classes=info.num_classes),
              "t10k": structured_images(test, seed=1, shape=shape, num_classes=info.num_classes)}
    if info.name == "cifar10":
        images, labels = splits["train"]
        parts = len(CIFAR_TRAIN)
        for i, batch in enumerate(CIFAR_TRAIN):
            write_cifar_batch(directory / batch, images[i::parts], labels[i::parts], label=f"training batch {i + 1}")
        write_cifar_batch(directory / CIFAR_TEST[0], *splits["t10k"], label="testing batch 1")
        write_cifar_meta(directory / CIFAR_META, tuple(f"pattern {i}" for i in range(info.num_classes)),
                         -(-train // parts))
        return directory
    suffix = ".gz" if gzip else ""
    for prefix, (images, labels) in splits.items():
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images[:, 0])
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return directory
