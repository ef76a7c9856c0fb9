"""A result as the command line shows it: ``print(result)`` in a terminal, a table in a notebook.

Results stay plain data (:mod:`archprobe.results`); this module renders one the way its command
prints it (the same table and the same sentences under it: ``print(ap.count("alexnet"))`` is what
``archprobe params alexnet`` prints) and, for notebooks, as an HTML table. Importing it registers
:func:`text` and :func:`html` with :data:`archprobe.results.VIEWS`, which every result's
``__str__`` and ``_repr_html_`` call; ``archprobe`` imports it, so they hold as soon as the
package is imported. A result without a table prints as its ``repr``.
"""

from __future__ import annotations

import html as html_text
from typing import Any, Sequence

from archprobe import results as r
from archprobe.report.columns import columns_of
from archprobe.report.frames import human_rows, render


def count_notes(counts: Sequence[r.ModelCounts]) -> list[str]:
    """What ``archprobe params`` says under its table: the conventions, each model's notes and
    warnings, the parameters an eval forward leaves unread, where the parameters live."""
    from archprobe.report.notes import FVCORE_NOTE, idle_notes, parameter_note

    notes = _common(counts) + idle_notes(counts)
    note = parameter_note(counts)
    if note:
        notes.append(note)
    if any(c.counter == "fvcore" for c in counts):
        notes.append(FVCORE_NOTE)
    return notes


def layer_notes(tables: "r.LayerTable | Sequence[r.LayerTable]", rf: bool | None = None) -> list[str]:
    """What ``archprobe shapes`` says under its table (one model's, or several one after
    another): the totals, the conventions, the models' notes and warnings, and with receptive
    fields (``rf``; None: where the rows hold them) what they are."""
    from archprobe.report.notes import RECEPTIVE_FIELDS

    tables = [tables] if isinstance(tables, r.LayerTable) else list(tables)
    totals = [(f"{t.model} total" if len(tables) > 1 else "total")
              + f": {t.params:,} params ({t.params_forward:,} used in forward), {t.macs:,} MACs, {t.flops:,} FLOPs"
              f" for input {'x'.join(map(str, t.input_shape))}" for t in tables]
    if rf is None:
        rf = any(row.rf_global is not None for t in tables for row in t.rows)
    return [*totals, *_common(tables)] + ([RECEPTIVE_FIELDS] if rf else [])


def breakdown_table_notes(tables: Sequence[r.CostBreakdown]) -> list[str]:
    """What ``archprobe params --by`` says under its table."""
    from archprobe.report.notes import breakdown_notes, unsupported_warnings

    return _common(tables, warnings=False) + breakdown_notes(tables) + unsupported_warnings(tables)


def explained_layers(result: r.MinInputResult, fmt: str = "table", depth: int | None = None) -> str:
    """``min-input --explain``'s table after the results: every layer's output at the explained
    size (down to ``depth``), under a title; "" without one."""
    layers = [layer for layer in result.layers if depth is None or layer.depth <= depth]
    if not layers or result.explain_size is None:
        return ""
    h, w = result.explain_size
    title = f"{result.model} ({result.mode}, batch {result.batch_size}) at {h}x{w}: output of every layer"
    return "\n" + (f"### {title}\n\n" if fmt == "md" else f"{title}\n") + render(layers, fmt)


def _common(results: Sequence[Any], warnings: bool = True) -> list[str]:
    from archprobe.report.notes import CONVENTIONS, notes_text, unsupported_warnings

    notes = [CONVENTIONS] + [f"{x.model}: {note}" for x in results for note in notes_text(x.notes)]
    return notes + (unsupported_warnings(results) if warnings else [])


def _parts(result: Any) -> tuple[list[Any], list[str]] | None:
    """The rows of ``result``'s table and the sentences under it, as its command prints them
    (None: no table)."""
    from archprobe.report import notes

    one = [result]
    if isinstance(result, r.ModelCounts):
        return one, count_notes(one)
    if isinstance(result, r.LayerTable):
        return list(result.rows), layer_notes(result)
    if isinstance(result, r.CostBreakdown):
        return list(result.rows), breakdown_table_notes(one)
    if isinstance(result, r.MinInputResult):
        return one, notes.min_input_notes(one)
    if isinstance(result, r.MemoryResult):
        return one, notes.memory_notes(one)
    if isinstance(result, r.ThroughputResult):
        return one, notes.throughput_notes(one)
    if isinstance(result, r.TrainRun):
        return one, notes.train_notes(one)
    if isinstance(result, r.Recipe):
        return one, notes.recipe_notes(one)
    if columns_of(type(result)):
        return one, []
    return None


def text(result: Any) -> str:
    """``result`` as its command prints it: the table, then the sentences under it."""
    parts = _parts(result)
    if parts is None:
        return repr(result)
    rows, notes = parts
    shown = render(rows, "table", notes) if rows else "\n".join(notes) + "\n"
    if isinstance(result, r.MinInputResult):
        shown += explained_layers(result)
    return shown.rstrip("\n")


def html(result: Any) -> str | None:
    """``result`` as an HTML table with the sentences under it (a notebook's view; None: no table)."""
    from tabulate import tabulate

    parts = _parts(result)
    if parts is None:
        return None
    rows, notes = parts
    headers, cells = human_rows(rows)
    table = tabulate([[html_text.escape(c) for c in row] for row in cells],
                     headers=[html_text.escape(h) for h in headers], tablefmt="unsafehtml", disable_numparse=True)
    return table + "".join(f"\n<p>{html_text.escape(note)}</p>" for note in notes)


r.VIEWS.update(text=text, html=html)
