"""Results -> records / DataFrames / text, in one place.

``records`` gives machine-readable dicts (base units, integers unrounded) for JSON and CSV;
``human_rows`` formats the displayed columns by their kind for table and Markdown output.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Sequence

from archprobe.report.columns import DERIVED_FIELDS, columns_of
from archprobe.report.sentences import notes_text
from archprobe.results import flat_record, plain

FORMATS = ("table", "md", "csv", "json")


def machine(value: Any) -> Any:
    """:func:`archprobe.results.plain` with the derived fields of :data:`DERIVED_FIELDS` added to
    each result, nested ones too (JSON and CSV carry them beside the result's own), and notes
    in words."""
    derived = DERIVED_FIELDS.get(type(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and (derived or _has_nested(value)):
        record = {}
        for f in dataclasses.fields(value):
            record[f.name] = machine(getattr(value, f.name))
        for name, after, compute in derived or ():
            items = list(record.items())
            at = 0 if not after else [k for k, _ in items].index(after) + 1
            items.insert(at, (name, compute(value)))
            record = dict(items)
        return record
    if isinstance(value, (list, tuple)) and any(type(v) in DERIVED_FIELDS for v in value):
        return [machine(v) for v in value]
    return plain(value, notes_text)


def _has_nested(value: Any) -> bool:
    return any(isinstance(getattr(value, f.name), (list, tuple)) and
               any(type(v) in DERIVED_FIELDS for v in getattr(value, f.name)) for f in dataclasses.fields(value))


def records(results: Iterable[Any]) -> list[dict[str, Any]]:
    return [machine(r) for r in results]


DECIMAL_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
BINARY_UNITS = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
SCALED_KINDS = {"count": DECIMAL_UNITS, "ops": DECIMAL_UNITS, "bytes": BINARY_UNITS}
SIGNIFICANT = 3  # every number shows at least this many significant digits


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _decimals(x: float, minimum: int, significant: int = SIGNIFICANT) -> int:
    """Decimals that show ``x`` with at least ``significant`` significant digits."""
    if x == 0:
        return 0
    return min(8, max(minimum, significant - 1 - math.floor(math.log10(abs(x)))))


def column_unit(values: Iterable[Any], kind: str) -> tuple[float, str]:
    """One unit for a whole column, chosen by its largest value (``(1, "")`` below the first unit)."""
    units = SCALED_KINDS[kind]
    largest = max((abs(v) for v in values if _finite(v)), default=0)
    for scale, suffix in units:
        if largest >= scale:
            return scale, suffix
    return 1.0, "B" if kind == "bytes" else ""


def format_value(value: Any, kind: str, unit: tuple[float, str] | None = None) -> str:
    """One cell. Scaled kinds (counts, ops, bytes) use ``unit`` (the column's, from
    :func:`column_unit`; the value's own when omitted)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind in SCALED_KINDS:
        if value == 0:
            return "0"
        scale, suffix = unit or column_unit([value], kind)
        x = value / scale
        decimals = 0 if scale == 1 and float(value).is_integer() else _decimals(x, 2)
        return f"{x:,.{decimals}f}{suffix}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "shape":
        return "x".join(str(v) for v in value) if value else "-"
    if kind == "percent":
        return f"{100 * value:.{_decimals(100 * value, 1, 2)}f}%"
    if kind == "float":
        return f"{value:,.3f}"
    if kind == "ms":
        return f"{value:,.{_decimals(value, 2)}f}"
    if kind == "rate":
        return f"{value:,.{_decimals(value, 1)}f}"
    if kind == "ratio":
        return f"{value:,.2f}x"
    if kind == "list":
        return ", ".join(str(v) for v in value) if value else "-"
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "path":
        return value or "(model)"
    if kind == "pair":
        return "x".join(f"{v:g}" for v in value)
    return str(value)


def human_rows(results: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the displayed columns; all-``None`` columns are dropped.
    Counts, operations and bytes get one unit per column, chosen from that column's values."""
    if not results:
        return [], []
    columns = [c for c in columns_of(type(results[0]))
               if any(c.value(r) is not None or c.flagged(r) for r in results)]
    headers = [c.header for c in columns]
    units = {c.field: column_unit([c.value(r) for r in results], c.kind) for c in columns if c.kind in SCALED_KINDS}
    rows = [[c.flag_text if c.flagged(r) else format_value(c.value(r), c.kind, units.get(c.field)) for c in columns]
            for r in results]
    return headers, rows


def machine_frame(results: Sequence[Any]):
    """A pandas DataFrame of base-unit values; list-valued cells are joined with ``;``."""
    import pandas as pd

    return pd.DataFrame([flat_record(machine(r)) for r in results])


def render(results: Sequence[Any], fmt: str, notes: Sequence[str] = ()) -> str:
    """Render results as ``table`` | ``md`` | ``csv`` | ``json``.

    Notes (warnings, conventions) follow the table in ``table``/``md``; JSON and CSV carry
    only the data, so they stay machine-readable.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if fmt == "json":
        return json.dumps(records(results), indent=2) + "\n"
    if fmt == "csv":
        return machine_frame(results).to_csv(index=False)
    from tabulate import tabulate

    headers, rows = human_rows(results)
    text = tabulate(rows, headers=headers, tablefmt="github" if fmt == "md" else "simple",
                    disable_numparse=True)
    if notes:
        bullet = "- " if fmt == "md" else ""
        text += "\n\n" + "\n".join(bullet + n for n in notes)
    return text + "\n"
