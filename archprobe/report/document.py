"""``archprobe report``: the whole comparison as Markdown, CSV, JSON and PNG in one directory.

Each section comes from an analyzer's frozen results; this module only arranges them.
Every file is written atomically, and the directory is replaced only when asked (``force``).
"""

from __future__ import annotations

import json

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from archprobe.errors import UsageError
from archprobe.report.columns import column
from archprobe.report.frames import machine_frame, records, render
from archprobe.report.writers import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.analysis.counting import ModelCounts
    from archprobe.zoo.spec import ModelSpec

D2L_SUFFIX = "-d2l"


@dataclass(frozen=True)
class VariantPair:
    """An ImageNet/paper model next to its Dive-into-DL (1 channel, 10 classes) version."""

    family: str = column("Family")
    imagenet: str = column("ImageNet model")
    imagenet_input: tuple[int, ...] = column("ImageNet input", "shape")
    imagenet_params: int = column("ImageNet params", "count")
    imagenet_macs: int = column("ImageNet MACs", "macs")
    d2l: str = column("Dive-into-DL model")
    d2l_input: tuple[int, ...] = column("d2l input", "shape")
    d2l_params: int = column("d2l params", "count")
    d2l_macs: int = column("d2l MACs", "macs")
    params_ratio: float = column("d2l/ImageNet params", "percent")


@dataclass(frozen=True)
class Report:
    models: tuple[str, ...]
    zoo: tuple = ()
    counts: tuple = ()
    min_inputs: tuple = ()
    variants: tuple = ()
    throughput: tuple = ()
    environment: Any = None
    notes: dict[str, list[str]] = field(default_factory=dict)


def variant_pairs(counts: Sequence["ModelCounts"], families: dict[str, str]) -> list[VariantPair]:
    """Pair each ``X-d2l`` model with ``X``, else with the first ImageNet model of its family."""
    by_name = {c.model: c for c in counts}
    pairs = []
    for c in counts:
        if not c.model.endswith(D2L_SUFFIX):
            continue
        base = c.model[: -len(D2L_SUFFIX)]
        partner = by_name.get(base) or next(
            (o for o in counts
             if families.get(o.model) == families.get(c.model) and not o.model.endswith(D2L_SUFFIX)),
            None,
        )
        if partner is None:
            continue
        pairs.append(
            VariantPair(
                family=families.get(c.model, ""),
                imagenet=partner.model,
                imagenet_input=partner.input_shape[1:],
                imagenet_params=partner.params,
                imagenet_macs=partner.macs,
                d2l=c.model,
                d2l_input=c.input_shape[1:],
                d2l_params=c.params,
                d2l_macs=c.macs,
                params_ratio=c.params / partner.params if partner.params else 0.0,
            )
        )
    return pairs


def build_report(
    specs: Sequence["ModelSpec"],
    *,
    measure: Callable[[Sequence["ModelSpec"]], Sequence] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Report:
    """Analyse ``specs``: counts and minimum input sizes always; throughput via ``measure``."""
    from archprobe.analysis.counting import count, parameter_note
    from archprobe.analysis.environment import collect_environment
    from archprobe.analysis.min_input import solve_min_input
    from archprobe.zoo.entries import zoo_entries

    counts, min_inputs = [], []
    for spec in specs:
        if on_progress:
            on_progress(spec.name)
        model = spec.build("meta")
        counts.append(count(spec, model=model))
        min_inputs.append(solve_min_input(spec, model=model))
    names = tuple(s.name for s in specs)
    zoo = tuple(e for e in zoo_entries() if e.name in names)
    families = {e.name: e.family for e in zoo}
    notes: dict[str, list[str]] = {}
    note = parameter_note(counts)
    if note:
        notes["counts"] = [note]
    unsupported = [f"{c.model}: {', '.join(c.unsupported_ops)}" for c in counts if c.unsupported_ops]
    if unsupported:
        notes.setdefault("counts", []).append("Unsupported ops (counted as 0): " + "; ".join(unsupported))
    throughput = tuple(measure(specs)) if measure is not None else ()
    return Report(
        models=names,
        zoo=zoo,
        counts=tuple(counts),
        min_inputs=tuple(min_inputs),
        variants=tuple(variant_pairs(counts, families)),
        throughput=throughput,
        environment=collect_environment("cpu"),
        notes=notes,
    )


CONVENTIONS_MD = """\
- **params**: every parameter of the built model; **params (fwd)**: those an eval-mode forward
  reads (aux heads of GoogLeNet/Inception are built but only run in training).
- **MACs**: multiply-accumulates of convolution, linear and matmul only, counted at PyTorch's
  dispatch level on the meta device. This is torchvision's published `_ops` convention (its
  "GFLOPS" are GMACs) and fvcore's/ptflops'/thop's for those layers.
- **FLOPs**: 2 per MAC plus normalisation, pooling, activation and elementwise work (one table
  of formulas in `archprobe/analysis/costs.py`); bias adds count one FLOP per output element.
- **Minimum input**: the exact set of square sides for which an eval-mode forward runs, solved
  from the layer arithmetic and verified by forward passes on the meta device; *min HxW* is
  solved per dimension.
- **Throughput** (when measured): median of per-iteration times after warm-up; examples/sec =
  batch / median; setup recorded with every row.
"""


def _section(title: str, results: Sequence, notes: Sequence[str] = (), intro: str = "") -> str:
    if not results:
        return ""
    text = f"## {title}\n\n"
    if intro:
        text += intro + "\n\n"
    return text + render(list(results), "md", notes) + "\n"


def markdown(report: Report, images: Sequence[str]) -> str:
    parts = [
        "# archprobe report\n",
        f"Models: {len(report.models)}. Generated by `archprobe report`; every number below is "
        "also in the CSV files and `report.json` beside this file.\n",
        _section("The zoo", report.zoo),
        _section(
            "Parameters and compute",
            report.counts,
            report.notes.get("counts", ()),
            "At each model's default input size, batch 1.",
        ),
    ]
    if "params_vs_macs.png" in images:
        parts.append("![Parameters vs GMACs](params_vs_macs.png)\n")
    parts.append(
        _section(
            "Minimum input sizes",
            report.min_inputs,
            intro="The smallest input each model accepts in eval mode, and every valid square side.",
        )
    )
    parts.append(
        _section(
            "ImageNet vs Dive-into-DL variants",
            report.variants,
            intro="The book's versions take 1 input channel and 10 classes (Fashion-MNIST) and "
            "often a smaller input; the fully connected layers dominate the difference.",
        )
    )
    if report.throughput:
        parts.append(_section("Throughput", report.throughput))
        if "throughput.png" in images:
            parts.append("![Throughput](throughput.png)\n")
    if report.environment is not None:
        env = report.environment
        parts.append(
            "## Environment\n\n" + "\n".join(f"- {k}: {v}" for k, v in records([env])[0].items()) + "\n"
        )
    parts.append("## Counting conventions\n\n" + CONVENTIONS_MD)
    return "\n".join(p for p in parts if p)


TABLES = ("zoo", "counts", "min_inputs", "variants", "throughput")


def check_directory(out_dir: str | Path, *, force: bool = False) -> None:
    """An existing, non-empty directory is only overwritten with ``force``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} already exists; use --force to overwrite it")


def write_report(report: Report, out_dir: str | Path, *, force: bool = False) -> list[Path]:
    """Write ``report.md``, one CSV per table, ``report.json`` and the plots into ``out_dir``."""
    from archprobe.report import plots

    out = Path(out_dir)
    check_directory(out, force=force)
    out.mkdir(parents=True, exist_ok=True)
    if not report.throughput:  # a section absent from this report must not survive from the last
        for stale in ("throughput.csv", "throughput.png"):
            (out / stale).unlink(missing_ok=True)

    written: list[Path] = []
    for name in TABLES:
        rows = getattr(report, name)
        if rows:
            written.append(write_atomic(out / f"{name}.csv", machine_frame(list(rows)).to_csv(index=False)))
    images: list[str] = []
    families = {e.name: e.family for e in report.zoo}
    if report.counts:
        written.append(write_atomic(out / "params_vs_macs.png", plots.params_vs_macs(report.counts, families)))
        images.append("params_vs_macs.png")
    if any(r.status == "ok" for r in report.throughput):
        written.append(write_atomic(out / "throughput.png", plots.throughput_bars(report.throughput)))
        images.append("throughput.png")
    document = {name: records(getattr(report, name)) for name in TABLES}
    document["models"] = list(report.models)
    document["environment"] = records([report.environment])[0] if report.environment else None
    document["notes"] = report.notes
    written.append(write_atomic(out / "report.json", json.dumps(document, indent=2) + "\n"))
    written.append(write_atomic(out / "report.md", markdown(report, images)))
    return written


