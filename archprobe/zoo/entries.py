"""The zoo as displayable result rows (``archprobe list``)."""

from __future__ import annotations

from dataclasses import dataclass

from archprobe.report.columns import column
from archprobe.zoo.registry import list_models


@dataclass(frozen=True)
class ZooEntry:
    name: str = column("Model")
    family: str = column("Family")
    variant: str = column("Variant")
    input_shape: tuple[int, int, int] = column("Default input", "shape")
    num_classes: int = column("Classes", "int")
    source: str = column("Source")
    paper: str = column("Paper")
    year: int = column("Year")
    notes: str = ""


def zoo_entries(include=None, exclude=None) -> list[ZooEntry]:
    return [
        ZooEntry(
            name=i.name,
            family=i.family,
            variant=i.variant,
            input_shape=i.input_shape,
            num_classes=i.num_classes,
            source=i.source,
            paper=i.paper,
            year=i.year,
            notes=i.notes,
        )
        for i in list_models(include, exclude)
    ]
