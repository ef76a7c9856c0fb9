"""Report plots (matplotlib, Agg backend, PNG bytes)."""

from __future__ import annotations

import io
from typing import Sequence

MARKERS = "osD^vP*Xhp<>"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    _figure().close(fig)
    return buffer.getvalue()


def params_vs_macs(counts: Sequence, families: dict[str, str]) -> bytes:
    """Parameters against GMACs, log scales, one marker per family, every point labelled."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9, 6.5))
    family_names = sorted({families.get(c.model, "other") for c in counts})
    for i, family in enumerate(family_names):
        points = [c for c in counts if families.get(c.model, "other") == family]
        ax.scatter(
            [c.macs / 1e9 for c in points],
            [c.params / 1e6 for c in points],
            marker=MARKERS[i % len(MARKERS)],
            s=46,
            label=family,
        )
        for c in points:
            ax.annotate(c.model, (c.macs / 1e9, c.params / 1e6), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GMACs per image (at each model's default input)")
    ax.set_ylabel("parameters (millions)")
    ax.set_title("Parameters vs compute")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, title="family")
    return _png(fig)


def throughput_bars(rows: Sequence) -> bytes:
    """Examples/sec per model, one bar per device x mode, log scale."""
    plt = _figure()
    ok = [r for r in rows if r.status == "ok"]
    models = list(dict.fromkeys(r.model for r in ok))
    series = list(dict.fromkeys((r.device, r.mode) for r in ok))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(models) + 2), 4.5))
    width = 0.8 / max(1, len(series))
    for i, (device, mode) in enumerate(series):
        values = []
        for m in models:
            match = [r.examples_per_sec for r in ok if (r.model, r.device, r.mode) == (m, device, mode)]
            values.append(max(match) if match else 0)
        ax.bar([x + i * width for x in range(len(models))], values, width, label=f"{device} {mode}")
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(models))])
    ax.set_xticklabels(models, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("examples / second")
    ax.set_title("Throughput")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.25)
    return _png(fig)
