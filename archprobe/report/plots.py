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


# --- training experiments (archprobe train) -----------------------------------------------------

DEVICE_STYLES = ("-", "--", ":", "-.")


def training_curves(runs: Sequence) -> bytes:
    """The book's training plot, static: train loss, train accuracy and test accuracy per
    epoch, one colour per model and one line style per device."""
    plt = _figure()
    with_epochs = [r for r in runs if r.epochs]
    models = list(dict.fromkeys(r.model for r in with_epochs))
    devices = list(dict.fromkeys(r.device for r in with_epochs))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    panels = (("train_loss", "train loss"), ("train_acc", "train accuracy"), ("test_acc", "test accuracy"))
    for r in with_epochs:
        epochs = [row.epoch for row in r.epochs]
        style = dict(color=colours(models.index(r.model) % 10),
                     linestyle=DEVICE_STYLES[devices.index(r.device) % len(DEVICE_STYLES)], marker="o", markersize=3)
        label = r.model if len(devices) == 1 else f"{r.model} ({r.device})"
        for ax, (field, _title) in zip(axes, panels):
            ax.plot(epochs, [getattr(row, field) for row in r.epochs], label=label, **style)
    for ax, (_field, title) in zip(axes, panels):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, alpha=0.25)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    dataset = with_epochs[0].dataset if with_epochs else ""
    fig.suptitle(f"Training on {dataset}" if dataset else "Training", y=1.03)
    return _png(fig)
