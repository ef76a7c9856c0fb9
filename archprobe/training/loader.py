"""A data set on the training device, served in batches that are scaled and resized there.

The book's pipeline (``ToTensor`` after ``Resize`` in a ``DataLoader`` with workers) decodes,
resizes and copies every image on the host, every epoch. Fashion-MNIST and MNIST are 47 MB of
uint8 pixels and CIFAR-10 150 MB, so here the whole set is copied to the device once as uint8;
each batch is gathered there by index, scaled to [0, 1] (what ``ToTensor`` does) and resized
with bilinear interpolation (``F.interpolate``; ``Resize`` is bilinear too). Nothing per batch
crosses the host-device link but the indices.

A data set that would take more than a quarter of the device's free memory stays on the host
in pinned memory, and batches come through a ``DataLoader`` with ``workers`` processes.
Either way the examples are served in the order the runner gives: an index tensor made on the
CPU from the seed (one process: a ``torch.randperm``; a data-parallel rank: its
``DistributedSampler`` share), so the order depends only on the seed, not on the device or the
placement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from archprobe.training.datasets import ImageData

DEVICE_SHARE = 0.25  # a data set up to this share of free device memory is kept on the device


def fits_on_device(nbytes: int, device: "torch.device", cuda=None) -> bool:
    """Whether ``nbytes`` of data may live on ``device`` (host memory is the CPU's device)."""
    if device.type != "cuda":
        return True
    import torch

    cuda = cuda or torch.cuda
    free, _total = cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


class _Batches:
    """``__getitems__`` lets a ``DataLoader`` fetch a whole batch with one indexing op."""

    def __init__(self, images: "torch.Tensor", labels: "torch.Tensor"):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]):
        import torch

        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def _whole_batch(batch):
    return batch


class DeviceData:
    """Training and test batches of ``data`` on ``device``, in [0, 1] at ``resize``, in ``dtype``
    (the model's: float32 unless it was made otherwise).

    ``placement`` is ``"device"`` (the uint8 tensors live on the device) or ``"host"`` (pinned
    host memory and a ``DataLoader`` with ``workers``); by default the data set goes on the
    device when :func:`fits_on_device` says so.
    """

    def __init__(self, data: "ImageData", device: "torch.device", resize: int | None = None, *,
                 workers: int = 0, placement: str | None = None, dtype: "torch.dtype | None" = None):
        tensors = (data.train_images, data.train_labels, data.test_images, data.test_labels)
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        self.placement = placement or ("device" if fits_on_device(nbytes, device) else "host")
        if self.placement not in ("device", "host"):
            raise ValueError(f"placement is 'device' or 'host', not {self.placement!r}")
        self.device = device
        self.dtype = dtype
        self.workers = workers
        height, width = data.shape[1:]
        self.size = None if resize is None or (resize, resize) == (height, width) else (resize, resize)
        if self.placement == "device":
            tensors = tuple(t.to(device) for t in tensors)
        elif device.type == "cuda":
            tensors = tuple(t.pin_memory() for t in tensors)
        self.train_images, self.train_labels, self.test_images, self.test_labels = tensors

    @property
    def train_examples(self) -> int:
        return len(self.train_labels)

    @property
    def test_examples(self) -> int:
        return len(self.test_labels)

    def prepare(self, images: "torch.Tensor") -> "torch.Tensor":
        """uint8 images on the device -> [0, 1] in the model's dtype, resized (bilinear) where asked."""
        import torch
        import torch.nn.functional as F

        x = images.to(self.dtype or torch.float32).div_(255)
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x

    def train(self, batch_size: int, order: "torch.Tensor") -> Iterator[tuple["torch.Tensor", "torch.Tensor"]]:
        """The training examples ``order`` (int64 indices on the CPU) in batches; the last one
        may be smaller, as the book's."""
        yield from self._batches(self.train_images, self.train_labels, order, batch_size)

    def test(self, batch_size: int, order: "torch.Tensor | None" = None) -> Iterator[tuple["torch.Tensor", "torch.Tensor"]]:
        """The test examples ``order`` in batches; by default the whole test set in order."""
        import torch

        order = torch.arange(self.test_examples) if order is None else order
        yield from self._batches(self.test_images, self.test_labels, order, batch_size)

    def _batches(self, images, labels, order, batch_size):
        if self.placement == "device":
            order = order.to(self.device)
            for start in range(0, len(order), batch_size):
                index = order[start:start + batch_size]
                yield self.prepare(images.index_select(0, index)), labels.index_select(0, index)
            return
        import torch

        loader = torch.utils.data.DataLoader(
            _Batches(images, labels), batch_sampler=order.split(batch_size), num_workers=self.workers,
            collate_fn=_whole_batch, pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            yield self.prepare(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)
