"""Column metadata on result dataclasses.

Results are frozen dataclasses in base units (counts, MACs, FLOPs, bytes, seconds). A field
declared with ``column("Header", kind)`` is shown in human tables, formatted by its kind in
``archprobe.report.frames``; every field goes into JSON and CSV unformatted.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

KINDS = (
    "text",  # shown as is
    "int",  # plain integer with thousands separators
    "count",  # parameters: K/M with 2 decimals
    "macs",  # multiply-accumulates: G with 3 decimals (torchvision's convention)
    "flops",  # floating-point operations: G with 3 decimals
    "ops",  # MACs or FLOPs of one layer: adaptive K/M/G
    "bytes",  # MB (10^6 bytes) with 2 decimals
    "shape",  # tuple -> 1x3x224x224
    "percent",  # a fraction shown as 12.3%
    "float",  # 3 significant decimals
    "ms",  # milliseconds with 2 decimals (value stored in ms)
    "rate",  # per-second rate, 1 decimal
    "ratio",  # x-fold, 2 decimals
    "list",  # comma-joined
    "bool",
)


def column(header: str, kind: str = "text", **field_kwargs: Any):
    """A dataclass field that is displayed under ``header`` and formatted as ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown column kind {kind!r}")
    metadata = {"header": header, "kind": kind}
    return field(metadata=metadata, **field_kwargs)
