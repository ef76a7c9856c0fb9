"""Figures a reader acts on: units chosen per column, notes that are true for any set of models,
plots with plain ticks and labels that do not overprint."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

import archprobe as ap
from archprobe.report.frames import column_unit, format_value, human_rows, render
from archprobe.report.notes import parameter_note
from archprobe.results import ModelCounts, ThroughputResult

# ten families: plain CNNs with big classifiers, global-pooling CNNs, and attention models
NOTE_MODELS = ["alexnet", "vgg16", "nin", "googlenet", "lenet", "resnet50", "densenet121",
               "tv:mobilenet_v3_small", "timm:vit_tiny_patch16_224", "timm:convnext_atto", "tv:swin_t"]


@pytest.fixture(scope="module")
def counts():
    return {name: ap.count(name) for name in NOTE_MODELS}


def test_units_one_per_column_with_three_significant_digits():
    assert column_unit([306, 61_100_840], "count") == (1e6, "M")
    assert format_value(306, "count", column_unit([306, 61_100_840], "count")) == "0.000306M"
    assert format_value(306, "count") == "306"
    assert format_value(1224, "bytes") == "1.20KiB"  # no more "0.00MB"
    assert format_value(244_403_360, "bytes") == "233.08MiB"
    assert format_value(668_480, "ops", column_unit([668_480, 1_390_000], "ops")) == "0.668M"
    assert format_value(0, "ops", (1e9, "G")) == "0"
    assert format_value(714_188_480, "ops", (1e9, "G")) == "0.714G"


def test_a_table_mixes_no_units_within_a_column():
    tiny = ap.count("examples/tiny_net.py:build", input_size="3x32x32")
    big = ap.count("alexnet")
    headers, rows = human_rows([tiny, big])
    for header in ("Params", "MACs", "FLOPs", "Param mem"):
        column = [row[headers.index(header)] for row in rows]
        suffixes = {re.sub(r"[\d.,]", "", cell) for cell in column if cell != "0"}
        assert len(suffixes) == 1, (header, column)
        digits = [re.sub(r"[^\d]", "", cell).lstrip("0") for cell in column]
        assert all(len(d) >= 3 for d in digits), (header, column)


def _sentences(note: str) -> dict[str, str]:
    """The note's per-model clauses, keyed by model name."""
    body = note.split("Where the parameters live: ", 1)[1].split(". The models", 1)[0].rstrip(".")
    clauses: dict[str, str] = {}
    current = None
    for part in body.split("; "):
        name = part.split(" ", 1)[0]
        if name in NOTE_MODELS:
            current = name
            clauses[name] = part
        else:  # a continuation of the previous model's clause
            clauses[current] += "; " + part
    return clauses


def test_note_states_only_what_the_numbers_show(counts):
    note = parameter_note(list(counts.values()))
    assert "small model" not in note and "4096-wide" not in note
    clauses = _sentences(note)
    assert set(clauses) == set(NOTE_MODELS)
    for name, c in counts.items():
        assert format_value(c.params, "count") in clauses[name], name
        # a flattened feature map is claimed exactly for the models whose classifier takes one
        assert ("flattened" in clauses[name]) == (c.flattened_map is not None), name
    assert "flattened 256x6x6 feature map (9,216 values)" in clauses["alexnet"]
    assert "flattened 512x7x7 feature map (25,088 values)" in clauses["vgg16"]
    for name in ("timm:vit_tiny_patch16_224", "timm:convnext_atto", "tv:swin_t", "resnet50", "googlenet"):
        assert counts[name].flattened_map is None
    # a 4096 appears only where a Linear of that width exists
    for name, c in counts.items():
        assert ("4096" in clauses[name]) == (c.largest_linear is not None and 4096 in c.largest_linear), name
    assert clauses["lenet"].startswith("lenet keeps 41.85K of its 44.43K parameters (94%)")
    assert clauses["nin"] == "nin (7.60M) has no linear layer"
    assert "(99.8%)" in clauses["tv:swin_t"]  # a part never rounds up to the whole


def test_note_compares_only_when_the_comparison_holds(counts):
    seed = [counts[n] for n in ("alexnet", "vgg16", "nin", "googlenet")]
    note = parameter_note(seed)
    assert "have 8.0-20.9x the parameters of those that reduce the map before it" in note
    # lenet flattens a map too but is smaller than nin and googlenet: no comparison then
    assert "the parameters of those" not in parameter_note([*seed, counts["lenet"]])
    assert parameter_note([counts["alexnet"]]) is None


def test_attention_and_upsampling_models_have_no_unsupported_ops(counts):
    for name in ("timm:vit_tiny_patch16_224", "timm:convnext_atto", "tv:swin_t"):
        assert counts[name].unsupported_ops == (), name
    crossvit = ap.count("timm:crossvit_tiny_240")  # bicubic resampling of its second branch
    assert crossvit.unsupported_ops == ()


def test_interpolation_and_softmax_closed_forms():
    import torch.nn.functional as F
    from torch import nn

    class Resample(nn.Module):
        def __init__(self, mode):
            super().__init__()
            self.mode = mode

        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=False)

    for mode, per_out in (("bilinear", 8), ("bicubic", 32)):
        r = ap.count(Resample(mode), input_size=(3, 10, 10), batch_size=2)
        assert (r.macs, r.flops, r.unsupported_ops) == (0, per_out * 2 * 3 * 20 * 20, ()), mode

    class Nearest(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="nearest")

    assert ap.count(Nearest(), input_size=(3, 10, 10)).flops == 0  # a copy

    class Attention(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x)

    r = ap.count(Attention(), input_size=(2, 5, 8))  # (batch, heads, tokens, dim) = (1, 2, 5, 8)
    assert r.unsupported_ops == ()
    assert r.macs == 2 * (2 * 5 * 5 * 8)  # q @ k^T and attn @ v


def test_fvcore_cross_check_prints_no_future_warning(capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert ap.count("lenet", counter="fvcore").fvcore_macs > 0


# --- plots --------------------------------------------------------------------------------------


def test_log_ticks_are_plain_and_labels_never_overprint():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from archprobe.report.plots import _plain_ticks, place_labels

    fig, ax = plt.subplots(figsize=(6, 4))
    # a tight cluster like the VGG family, and a few loners
    xs = [1.5e10, 1.55e10, 1.6e10, 1.52e10, 1.58e10, 2e10, 1e9, 3e8, 1e6]
    ys = [1.38e8, 1.39e8, 1.40e8, 1.33e8, 1.44e8, 1.43e8, 6e7, 7e6, 5e4]
    ax.scatter(xs, ys)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(5e5, 1e11)
    ax.set_ylim(1e4, 1e9)
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    labels = [f"model-{i}-with-a-long-name" for i in range(len(xs))]
    placed = place_labels(ax, xs, ys, labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    from matplotlib.text import Text

    # the text itself (an annotation's extent would include its leader line)
    boxes = [Text.get_window_extent(artist, renderer) for _, artist in placed if artist is not None]
    assert len(boxes) >= len(xs) - 2  # a name or a number for nearly every point
    for i, a in enumerate(boxes):
        assert ax.get_window_extent(renderer).contains(a.x0, a.y0) and ax.get_window_extent(renderer).contains(a.x1, a.y1)
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    ticks = [t.get_text() for t in ax.yaxis.get_ticklabels() if t.get_text()]
    assert {"100K", "1M", "10M", "100M"} <= set(ticks)
    assert not any("^" in t or "times" in t for t in ticks)
    plt.close(fig)


def test_throughput_plot_names_its_setup_and_keeps_every_configuration():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from archprobe.report import plots

    base = ThroughputResult("lenet", "cpu", "eval", 8, "float32", "ok", examples_per_sec=100.0, threads=2)
    rows = [base, replace(base, batch_size=32, examples_per_sec=300.0), replace(base, mode="train", examples_per_sec=40.0)]
    captured = {}
    original = plots._png

    def capture(fig):
        ax = fig.axes[0]
        captured["title"] = ax.get_title()
        captured["bars"] = len(ax.patches)
        return original(fig)

    try:
        plots._png = capture
        png = plots.throughput_bars(rows)
    finally:
        plots._png = original
    assert png.startswith(b"\x89PNG")
    assert captured["bars"] == 3  # one bar per measured configuration, none kept as "the best"
    assert "dtype float32" in captured["title"] and "CPU threads 2" in captured["title"]
    plt.close("all")


def test_json_keeps_base_units():
    r = ap.count("lenet")
    assert isinstance(r, ModelCounts)
    assert '"param_bytes": 177704' in render([r], "json")
