"""Results hold values, not words: every text field of every result type is an identifier, a
version, a citation or an error's own message, and no value names a command-line flag.

The report (``archprobe.report``) is the only place that turns results into sentences; a new
text field must be classified here, or the test fails.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
from torch import nn

import archprobe as ap
import archprobe.results as results

# Every field whose type holds text, by what the text is.
IDENTIFIERS = {  # names and codes a program compares: models, devices, modules, ops, settings
    "model", "name", "models", "device", "dataset", "type", "path", "layer", "family", "variant", "d2l",
    "imagenet", "peak_at", "backend", "rank_hosts", "rank_device_names", "device_name", "cpu_model",
    "counter", "by", "method", "kind", "mode", "dtype", "status", "optimizer", "init", "peak_phase", "precision",
    "code", "values",  # a note: its kind and the names of its figures
    "idle_modules", "idle_in_training", "unsupported_ops", "warnings", "overrides", "source",
    "ceiling_precision", "key", "analysis", "options", "versions", "weights", "front",
    "phase", "bound", "timing", "above_roof_layers",  # a profile's row: its phase, its roof; where times came from
}
VERSIONS = {"torch_version", "cuda_version", "python_version", "nccl_version"}
CITATIONS = {"paper", "notes"}  # a zoo entry's paper title and registry remark; a recipe's source
MESSAGES = {  # what failed, in the failure's own words (the model's exception, the failing check)
    "error", "limiting_layer", "limiting_reason", "upper_limiting_layer", "upper_limiting_reason",
}
LABELS = {"shape", "ceiling_shape",  # the kernel that set a ceiling, as the ceiling names it
          "large_shape", "bandwidth_shape", "large_bandwidth_shape"}  # the copy that set a bandwidth
TEXT_FIELDS = IDENTIFIERS | VERSIONS | CITATIONS | MESSAGES | LABELS
# fields once filled with display text, now derived by the report
GONE = {"valid_sides", "hw"}

RESULT_TYPES = [obj for obj in vars(results).values()
                if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == results.__name__]


def _holds_text(annotation) -> bool:
    return "str" in str(annotation) and "Note" not in str(annotation)


@pytest.mark.parametrize("result_type", RESULT_TYPES, ids=[t.__name__ for t in RESULT_TYPES])
def test_every_text_field_is_classified(result_type):
    hints = typing.get_type_hints(result_type)
    for field in dataclasses.fields(result_type):
        assert field.name not in GONE, f"{result_type.__name__}.{field.name} is display text"
        if _holds_text(hints[field.name]):
            assert field.name in TEXT_FIELDS, f"{result_type.__name__}.{field.name}: classify this text field"
        if field.name == "notes" and result_type is not results.ZooEntry:
            assert "Note" in str(hints[field.name]), f"{result_type.__name__}.notes must hold Notes, not prose"


def _texts(value):
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _texts(getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _texts(v)


FLAG = re.compile(r"(^|\s)--[a-z]")


def test_no_result_names_a_flag_or_carries_a_sentence():
    user = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    produced = [
        ap.count(user), ap.count("lenet", mode="train", batch_size=2), ap.layers(user, rf=True),
        ap.min_input(user, explain=True), ap.min_input("lenet", mode="train"),
        ap.memory(user, mode="train", batch_size=2), ap.list_models("lenet"),
    ]
    for result in produced:
        for text in _texts(result):
            assert not FLAG.search(text), text
    notes = [n for r in produced if hasattr(r, "notes") and not isinstance(r.notes, str) for n in r.notes]
    assert notes and all(isinstance(n, results.Note) for n in notes)
