"""The report of a sweep's store (``archprobe report --from DIR``): a table per analysis, the
failures with their reasons, and for the models with a published accuracy (torchvision's
ImageNet-1K top-1, read offline from the weights' metadata) accuracy against MACs, parameters and
throughput with each Pareto front marked and labelled, and the fronts as CSV.

Where the store holds a model x analysis more than once (other options, other library versions),
the latest finished cell that ended "ok" stands for it (else the latest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from archprobe.plumbing.files import write_atomic
from archprobe.report.frames import machine_frame, records, render
from archprobe.results import AtlasPoint, LayerTable, SweepCell

ANALYSIS_ORDER = ("params", "min-input", "memory", "shapes", "throughput")
# axis -> (the result field it reads, lower is better, the axis label, the file name)
AXES = {
    "macs": ("macs", True, "MACs per image (at each model's default input)", "accuracy_vs_macs.png"),
    "params": ("params", True, "parameters", "accuracy_vs_params.png"),
    "throughput": ("examples_per_sec", False, "examples/s", "accuracy_vs_throughput.png"),
}
TITLES = {"macs": "MACs", "params": "parameters", "throughput": "throughput"}
ATLAS_FILES = frozenset({"report.md", "atlas.json", "failures.csv", "accuracy.csv", "pareto.csv",
                         *(f"{a}.csv" for a in ANALYSIS_ORDER), "shapes_layers.csv",
                         *(axis[3] for axis in AXES.values())})
MODEL_OPTIONS = ("input_size", "in_channels", "num_classes")


def write_atlas(source: "str | Path", out_dir: "str | Path", *, force: bool = False) -> list[Path]:
    """The report of the sweep store in ``source`` written into ``out_dir``, built aside and
    swapped in whole (as :func:`archprobe.report.document.write_report`); ``force`` replaces a
    directory holding such a report (nothing else)."""
    from archprobe.bench.store import Store
    from archprobe.plumbing.files import staged_directory
    from archprobe.report.document import check_directory

    with Store(source, create=False) as store:
        cells = list(store.cells())
    check_directory(out_dir, force=force, names=ATLAS_FILES)
    with staged_directory(out_dir, replace=force) as stage:
        names = [path.name for path in write_atlas_report(cells, stage.path, str(source))]
        if force:
            check_directory(out_dir, force=True, names=ATLAS_FILES)
        stage.commit()
    return [stage.target / name for name in names]


def latest_cells(cells: Sequence[SweepCell]) -> list[SweepCell]:
    """One cell per model x analysis: the latest "ok" one, else the latest, in sweep order."""
    chosen: dict[tuple[str, str], SweepCell] = {}
    for cell in sorted(cells, key=lambda c: c.finished_at):
        key = (cell.model, cell.analysis)
        if key not in chosen or cell.ok or not chosen[key].ok:
            chosen[key] = cell
    return sorted(chosen.values(), key=lambda c: (c.finished_at, c.model))


def atlas_points(cells: Sequence[SweepCell]) -> list[AtlasPoint]:
    """The models with a published accuracy, each with its params, MACs and examples/sec from
    the cells (at the models' default sizes and heads only: the weights' figures are for those)
    and the Pareto fronts it lies on."""
    from archprobe.zoo.library import published_accuracy

    by_model: dict[str, dict[str, SweepCell]] = {}
    for cell in cells:
        options = dict(cell.options)
        if cell.ok and all(options.get(k) is None for k in MODEL_OPTIONS):
            by_model.setdefault(cell.model, {})[cell.analysis] = cell
    points = []
    for model, found in by_model.items():
        published = published_accuracy(model)
        if published is None:
            continue
        counts, speed = found.get("params"), found.get("throughput")
        ok_speed = speed is not None and getattr(speed.result, "status", "ok") == "ok"
        points.append(AtlasPoint(
            model=model, weights=published[0], acc1=published[1],
            params=counts.result.params if counts else None, macs=counts.result.macs if counts else None,
            examples_per_sec=speed.result.examples_per_sec if ok_speed else None))
    fronts = {axis: pareto_front(points, axis) for axis in AXES}
    return [AtlasPoint(**{**{f: getattr(p, f) for f in ("model", "weights", "acc1", "params", "macs",
                                                          "examples_per_sec")},
                          "front": tuple(a for a in AXES if p.model in fronts[a])}) for p in points]


def pareto_front(points: Sequence[AtlasPoint], axis: str) -> list[str]:
    """The models no other model beats on ``axis`` (cheaper or faster) and accuracy together: in
    order of cost, each more accurate than every cheaper one."""
    field, lower, _, _ = AXES[axis]
    placed = [p for p in points if getattr(p, field) is not None]
    placed.sort(key=lambda p: ((getattr(p, field) if lower else -getattr(p, field)), -p.acc1))
    front, best = [], float("-inf")
    for point in placed:
        if point.acc1 > best:
            front.append(point.model)
            best = point.acc1
    return front


def write_atlas_report(cells: Sequence[SweepCell], directory: Path, source: str) -> list[Path]:
    """The files of the report of ``cells`` (a store's) written into ``directory``."""
    cells = latest_cells(cells)
    written: list[Path] = []
    sections: list[str] = []
    for analysis in ANALYSIS_ORDER:
        results = [c.result for c in cells if c.analysis == analysis and c.ok]
        if not results:
            continue
        written.append(write_atomic(directory / f"{analysis}.csv", machine_frame(results).to_csv(index=False)))
        if analysis == "shapes":
            rows = [row for table in results if isinstance(table, LayerTable) for row in table.rows]
            if rows:
                written.append(write_atomic(directory / "shapes_layers.csv", machine_frame(rows).to_csv(index=False)))
        sections.append(f"## {analysis} ({len(results)} model{'s' if len(results) != 1 else ''})\n\n"
                        + render(results, "md"))
    failures = [c for c in cells if not c.ok]
    if failures:
        written.append(write_atomic(directory / "failures.csv", machine_frame(failures).to_csv(index=False)))
        sections.append(f"## Failures ({len(failures)})\n\n" + render(failures, "md"))
    points = atlas_points(cells)
    if points:
        written.extend(_accuracy_files(points, directory, sections))
    document = {"source": source, "cells": [_cell_record(c) for c in cells], "accuracy": records(points)}
    written.append(write_atomic(directory / "atlas.json", json.dumps(document, indent=2) + "\n"))
    written.append(write_atomic(directory / "report.md", _markdown(cells, sections, source)))
    return written


def _cell_record(cell: SweepCell) -> dict:
    return {"model": cell.model, "analysis": cell.analysis, "options": dict(cell.options),
            "versions": dict(cell.versions), "status": cell.status, "error": cell.error, "seconds": cell.seconds}


def _accuracy_files(points: list[AtlasPoint], directory: Path, sections: list[str]) -> list[Path]:
    written = [write_atomic(directory / "accuracy.csv", machine_frame(points).to_csv(index=False))]
    lines = ["axis,rank,model,weights,acc1,value"]
    text = [f"## Accuracy and cost ({len(points)} models with published accuracy)\n",
            "Top-1 on ImageNet-1K as torchvision publishes it for each model's default weights "
            "(`weights.meta`), beside the sweep's own counts. A model is on a Pareto front when no "
            "other is at least as accurate and at least as cheap (or fast), and better in one.\n"]
    for axis, (field, _, label, image) in AXES.items():
        front = pareto_front(points, axis)
        if not front:
            continue
        by_name = {p.model: p for p in points}
        for rank, model in enumerate(front, 1):
            p = by_name[model]
            lines.append(f"{axis},{rank},{model},{p.weights},{p.acc1},{getattr(p, field)}")
        written.append(write_atomic(directory / image, accuracy_plot(points, axis, front)))
        text.append(f"### Accuracy vs {TITLES[axis]}\n\n![accuracy vs {TITLES[axis]}]({image})\n\n"
                    + render([by_name[m] for m in front], "md"))
    written.append(write_atomic(directory / "pareto.csv", "\n".join(lines) + "\n"))
    sections.append("\n".join(text) + "\n### Every model with a published accuracy\n\n" + render(points, "md"))
    return written


def _markdown(cells: Sequence[SweepCell], sections: list[str], source: str) -> str:
    statuses: dict[str, int] = {}
    for cell in cells:
        statuses[cell.status] = statuses.get(cell.status, 0) + 1
    versions = sorted({v for c in cells for v in c.versions})
    summary = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items(), key=lambda i: (i[0] != "ok", i[0])))
    models = len({c.model for c in cells})
    head = (f"# Atlas of {source}\n\n{len(cells)} cells over {models} model{'s' if models != 1 else ''}: "
            f"{summary or 'none'}. Libraries: {', '.join(f'{k} {v}' for k, v in versions) or '-'}.\n")
    return head + "\n" + "\n".join(sections)


def accuracy_plot(points: Sequence[AtlasPoint], axis: str, front: Sequence[str]) -> bytes:
    """Accuracy against ``axis`` (log scale), every model a point, the Pareto front drawn as a
    step line through its models, each of them labelled."""
    from archprobe.report.plots import _figure, _numbered_footnote, _plain_ticks, _png, place_labels

    field, lower, label, _ = AXES[axis]
    placed = [p for p in points if getattr(p, field) is not None and getattr(p, field) > 0]
    plt = _figure()
    fig, ax = plt.subplots(figsize=(10, 7))
    ax.scatter([getattr(p, field) for p in placed], [100 * p.acc1 for p in placed], s=22, color="0.6",
               zorder=2, label="models")
    on_front = [p for m in front for p in placed if p.model == m]
    xs, ys = [getattr(p, field) for p in on_front], [100 * p.acc1 for p in on_front]
    ax.step(xs, ys, where="post", color="C3", zorder=3, linewidth=1.2)  # the best accuracy up to each cost
    ax.scatter(xs, ys, s=40, color="C3", zorder=4, label="Pareto front")
    ax.set_xscale("log")
    if placed:
        values = [getattr(p, field) for p in placed]
        ax.set_xlim(min(values) / 1.6, max(values) * 3.0)
    _plain_ticks(ax.xaxis)
    ax.set_xlabel(label)
    ax.set_ylabel("ImageNet-1K top-1 (%), torchvision's published")
    ax.set_title(f"Accuracy vs {TITLES[axis]}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    labels = place_labels(ax, xs, ys, [p.model.removeprefix("tv:") for p in on_front])
    _numbered_footnote(fig, labels)
    return _png(fig)
