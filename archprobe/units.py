"""Byte sizes as people write them: ``24GiB``, ``1.5 GB``, ``512MiB``, ``1000000`` (bytes)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

from archprobe.errors import UsageError

# Decimal (KB = 1000 bytes) and binary (KiB = 1024 bytes) units, matched case-insensitively.
BYTE_UNITS = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"\s*([+-]?(?:[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?|nan|inf(?:inity)?))\s*([a-z]*)\s*",
                   re.IGNORECASE)


MAX_BYTES = 2**63 - 1


def parse_bytes(value: str | int | float, *, param: str | None = None) -> int:
    """A positive byte count from ``value``: a number (bytes) or text with a unit (B, KB, MB,
    GB, TB: powers of 1000; KiB, MiB, GiB, TiB: powers of 1024). Fractions of a byte are
    dropped. Raises :class:`UsageError` for zero, negative, NaN or infinite sizes and unknown
    units."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"not a size: {value!r}", param=param)
    match = _SIZE.fullmatch(str(value))
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in BYTE_UNITS):
        raise UsageError(f"not a size: {value!r}; write a number and a unit, such as 24GiB, 512MiB or 16GB "
                         "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", param=param)
    number = float(match.group(1))
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"must be a positive, finite size, not {value!r}", param=param)
    size = math.floor(Fraction(match.group(1)) * BYTE_UNITS[unit or "b"])
    if size < 1:
        raise UsageError(f"must be at least 1 byte, not {value!r}", param=param)
    if size > MAX_BYTES:  # no allocator counts past a signed 64-bit byte count
        raise UsageError(f"must be at most 8 EiB (2**63 - 1 bytes), not {value!r}", param=param)
    return size
