"""Results -> records / DataFrames / text, in one place.

``records`` gives machine-readable dicts (base units, integers unrounded) for JSON and CSV;
``human_rows`` formats the displayed columns by their kind for table and Markdown output.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

from archprobe.report.columns import columns_of
from archprobe.results import flat_record, plain

FORMATS = ("table", "md", "csv", "json")


def records(results: Iterable[Any]) -> list[dict[str, Any]]:
    return [plain(r) for r in results]


def _si(value: float, units: Sequence[tuple[float, str]], decimals: int) -> str:
    for scale, suffix in units:
        if abs(value) >= scale:
            return f"{value / scale:,.{decimals}f}{suffix}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.{decimals}f}"


def format_value(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if kind == "count":
        return _si(value, ((1e9, "G"), (1e6, "M"), (1e3, "K")), 2)
    if kind == "ops":
        return _si(value, ((1e9, "G"), (1e6, "M"), (1e3, "K")), 2)
    if kind in ("macs", "flops"):
        return f"{value / 1e9:,.3f}G" if abs(value) >= 1e6 else _si(value, ((1e3, "K"),), 2)
    if kind == "bytes":
        return f"{value / 1e6:,.2f}MB"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "shape":
        return "x".join(str(v) for v in value) if value else "-"
    if kind == "percent":
        return f"{100 * value:.1f}%"
    if kind == "float":
        return f"{value:,.3f}"
    if kind == "ms":
        return f"{value:,.2f}"
    if kind == "rate":
        return f"{value:,.1f}"
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
    """Headers and formatted cells of the displayed columns; all-``None`` columns are dropped."""
    if not results:
        return [], []
    columns = [c for c in columns_of(type(results[0]))
               if any(getattr(r, c.field) is not None or (c.flag and getattr(r, c.flag)) for r in results)]
    headers = [c.header for c in columns]
    rows = [[c.flag_text if getattr(r, c.field) is None and c.flag and getattr(r, c.flag)
             else format_value(getattr(r, c.field), c.kind) for c in columns] for r in results]
    return headers, rows


def machine_frame(results: Sequence[Any]):
    """A pandas DataFrame of base-unit values; list-valued cells are joined with ``;``."""
    import pandas as pd

    return pd.DataFrame([flat_record(r) for r in results])


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
