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


def _byte_label(value: float, _position=None) -> str:
    """Plain tick labels in decimal units: 1 MB, 10 MB, 1 GB (the tables' MB are 10^6 bytes)."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if value >= scale:
            return f"{value / scale:g} {unit}"
    return f"{value:g} B"


def memory_vs_batch(rows: Sequence) -> bytes:
    """Predicted peak memory against batch size, inference and training side by side, log
    scales, one line per model."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    plt = _figure()
    modes = [m for m in ("eval", "train") if any(r.mode == m for r in rows)]
    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 5.5), sharey=True, squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, mode in zip(axes[0], modes):
        for i, model in enumerate(models):
            points = sorted((r.batch_size, r.peak_bytes) for r in rows if r.model == model and r.mode == mode)
            if points:
                ax.plot(*zip(*points), marker=MARKERS[i % len(MARKERS)], markersize=4,
                        linestyle=styles[(i // 10) % len(styles)], label=model)
        batches = sorted({r.batch_size for r in rows})
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(batches))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10))
        ax.yaxis.set_major_formatter(FuncFormatter(_byte_label))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch size")
        ax.set_title("inference (eval forward)" if mode == "eval" else "training step (SGD, momentum)")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel("predicted peak memory (live tensor bytes)")
    axes[0][-1].legend(fontsize=7, title="model", loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       ncol=2 if len(models) > 18 else 1)
    fig.suptitle("Peak memory vs batch size (float32)")
    return _png(fig)
