"""The on-disk formats of the book's data sets, read and written.

* IDX (MNIST, Fashion-MNIST): a big-endian header (two zero bytes, a type byte, the number of
  dimensions, then one 4-byte size per dimension) followed by the values. archprobe checks the
  header and the file size against each other, so a truncated or corrupt file is named with
  what is wrong, then reads it with torchvision's own reader (``torchvision.datasets.mnist``).
  A gzipped one is inflated checked the same way, from the stream (:func:`inflate_idx`).
* CIFAR-10 (``cifar-10-batches-py``): one pickled dict per batch with ``data`` (N x 3072 uint8,
  the red, green and blue planes of 32x32 images) and ``labels``. torchvision's ``CIFAR10``
  accepts only the official files (it checks the md5 of every batch), so archprobe reads the
  same format itself; the unpickler admits nothing but the numpy arrays the format holds.

The writers produce the same formats (tests, the synthetic examples, exporting data).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from archprobe.errors import ArchprobeError
from archprobe.plumbing.files import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

IDX_UBYTE = 0x08  # the type code of unsigned bytes, the only type MNIST-style files use
CIFAR_SIDE = 32
INFLATE_CHUNK = 1 << 20  # bytes decompressed at a time


class CorruptDataError(ArchprobeError):
    """A data file that exists but cannot be what it claims to be (exit code 1)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"corrupt or truncated data file {os.fspath(path)}: {reason}")
        self.path = os.fspath(path)


# --- IDX ----------------------------------------------------------------------------------------


def idx_dims(path: str | os.PathLike, ndim: int) -> tuple[int, ...]:
    """The dimensions in the header of an uncompressed IDX file of unsigned bytes, checked
    against the file's size (a truncated or padded file raises :class:`CorruptDataError`)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(4 + 4 * ndim)
    dims = _idx_header(head, ndim, path, f"{size} bytes")
    expected = 4 + 4 * ndim + _product(dims)
    if size != expected:
        raise CorruptDataError(path, f"{size:,} bytes, but its header ({_shape(dims)}) needs {expected:,}")
    return dims


def inflate_idx(packed: str | os.PathLike, target: str | os.PathLike, ndim: int) -> Path:
    """Decompress the gzipped IDX file ``packed`` into ``target``, checked as it goes: the header
    is read from the stream and checked before anything is written; then exactly the bytes it
    implies are written (a stream that runs past them, a decompression bomb, stops there), if
    the disk has room for them. ``target`` appears whole or not at all (a temp file renamed,
    removed on any failure). Every error names ``packed``."""
    packed, target = Path(packed), Path(target)
    try:
        with gzip.open(packed, "rb") as src:
            head = src.read(4 + 4 * ndim)
            dims = _idx_header(head, ndim, packed, f"{len(head)} bytes uncompressed")
            expected = len(head) + _product(dims)
            free = shutil.disk_usage(target.parent).free
            if expected > free:
                raise ArchprobeError(f"cannot extract {packed}: its header ({_shape(dims)}) implies {expected:,} "
                                     f"bytes, more than the {free:,} free in {target.parent}")

            def copy(dst) -> None:
                dst.write(head)
                left = expected - len(head)
                while left:
                    chunk = src.read(min(left, INFLATE_CHUNK))
                    if not chunk:
                        raise CorruptDataError(packed, f"{expected - left:,} bytes uncompressed, but its header "
                                                       f"({_shape(dims)}) needs {expected:,}")
                    dst.write(chunk)
                    left -= len(chunk)
                if src.read(1):
                    raise CorruptDataError(packed, f"more than the {expected:,} bytes its header "
                                                   f"({_shape(dims)}) needs, uncompressed")

            return write_atomic(target, copy)
    except EOFError as exc:
        raise CorruptDataError(packed, f"not a complete gzip file ({exc or type(exc).__name__})") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise CorruptDataError(packed, f"not a valid gzip file ({exc})") from exc
    except OSError as exc:
        raise ArchprobeError(f"cannot extract {packed} to {target}: {exc.strerror or exc}") from exc


def _idx_header(head: bytes, ndim: int, path: str | os.PathLike, size: str) -> tuple[int, ...]:
    """The dimensions in ``head``, the first bytes of an IDX file of unsigned bytes with
    ``ndim`` dimensions (``size``: how long the file is, for the message)."""
    if len(head) < 4:
        raise CorruptDataError(path, f"{size}, shorter than an IDX header")
    zero, type_code, found_ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or type_code != IDX_UBYTE:
        raise CorruptDataError(path, f"not an IDX file of unsigned bytes (header {head[:4].hex()})")
    if found_ndim != ndim:
        raise CorruptDataError(path, f"{found_ndim} dimensions, expected {ndim}")
    if len(head) < 4 + 4 * ndim:
        raise CorruptDataError(path, f"{size}, shorter than its header")
    return struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim])


def _shape(dims: tuple[int, ...]) -> str:
    return "x".join(map(str, dims))


def read_idx(path: str | os.PathLike, ndim: int) -> "torch.Tensor":
    """An IDX file of ``ndim`` dimensions as a uint8 tensor, through torchvision's reader."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    idx_dims(path, ndim)
    reader = read_image_file if ndim == 3 else read_label_file
    try:
        return reader(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - whatever torchvision rejects names the file
        raise CorruptDataError(path, f"{type(exc).__name__}: {exc}") from exc


def write_idx(path: str | os.PathLike, values: "np.ndarray") -> Path:
    """Write a uint8 array as an IDX file (gzip-compressed when the name ends in ``.gz``)."""
    import numpy as np

    array = np.ascontiguousarray(values, dtype=np.uint8)
    header = struct.pack(">HBB", 0, IDX_UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(data, mtime=0) if target.suffix == ".gz" else data)
    return target


# --- CIFAR-10 -----------------------------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Loads what the CIFAR batch format holds (dicts, lists, strings, numpy arrays) and
    refuses any other global: a pickle can otherwise run arbitrary code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        # protocol 5 (Python 3.8's default for arrays): the array's bytes, in band
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike) -> tuple["np.ndarray", "np.ndarray"]:
    """One CIFAR-10 batch file: images as uint8 ``(N, 3, 32, 32)`` and labels as int64 ``(N,)``."""
    import numpy as np

    try:
        with open(path, "rb") as fh:
            entry = _ArrayUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CorruptDataError(path, f"not a CIFAR batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(entry, dict):
        raise CorruptDataError(path, f"holds a {type(entry).__name__}, not a dict")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or "labels" not in entry:
        raise CorruptDataError(path, f"no 'data' and 'labels' (keys: {', '.join(map(str, entry))})")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry["labels"], dtype=np.int64)
    per_image = 3 * CIFAR_SIDE * CIFAR_SIDE
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != per_image:
        raise CorruptDataError(path, f"'data' is {data.dtype} {data.shape}, expected uint8 (N, {per_image})")
    if labels.shape != (data.shape[0],):
        raise CorruptDataError(path, f"{labels.size} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), labels


def read_cifar_meta(path: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names of ``batches.meta``; None where the file is missing."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as fh:
            meta = _ArrayUnpickler(fh, encoding="latin1").load()
        names = meta.get("label_names") or meta.get(b"label_names")
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except Exception as exc:  # noqa: BLE001 - any failure means a corrupt file
        raise CorruptDataError(path, f"not a CIFAR meta file ({type(exc).__name__}: {exc})") from exc


def write_cifar_batch(path: str | os.PathLike, images: "np.ndarray", labels: "np.ndarray",
                      label: str = "") -> Path:
    """Write uint8 ``(N, 3, 32, 32)`` images and their labels as one CIFAR-10 batch file."""
    import numpy as np

    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[1:] != (3, CIFAR_SIDE, CIFAR_SIDE):
        raise ValueError(f"CIFAR images are (N, 3, 32, 32), not {images.shape}")
    entry = {
        "batch_label": label,
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), -1),
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }
    return _write_pickle(path, entry)


def write_cifar_meta(path: str | os.PathLike, names: tuple[str, ...], per_batch: int) -> Path:
    return _write_pickle(path, {"label_names": list(names), "num_cases_per_batch": per_batch,
                                "num_vis": 3 * CIFAR_SIDE * CIFAR_SIDE})


def _write_pickle(path: str | os.PathLike, obj) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    pickle.dump(obj, buffer, protocol=2)
    target.write_bytes(buffer.getvalue())
    return target


def _product(values) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result
