"""Report plots (matplotlib, Agg backend, PNG bytes).

Log axes carry plain tick labels (1M, 10M, 100M), point labels are placed where they overlap
neither another label nor a point (a point with no free place nearby gets a number, listed
under the plot), and everything stays inside the saved image.
"""

from __future__ import annotations

import io
from typing import Sequence

MARKERS = "osD^vP*Xhp<>"
# Offsets (in points) tried for a label, nearest first: right, left, above, below, diagonals.
_RADII = (5, 12, 22, 34)
_DIRECTIONS = ((1, 0.3), (1, -1.3), (-1, 0.3), (-1, -1.3), (0, 1), (0, -2), (1, 1), (-1, 1), (1, -2), (-1, -2))


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
    _figure().close(fig)
    return buffer.getvalue()


def _plain_ticks(axis, unit: str = "") -> None:
    """Tick labels like 1M, 10M, 100M (with ``unit`` appended) on a log axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from archprobe.report.frames import DECIMAL_UNITS

    def label(value, _pos):
        if value <= 0:
            return ""
        for scale, suffix in DECIMAL_UNITS:
            if value >= scale:
                return f"{value / scale:g}{suffix}{unit}"
        return f"{value:g}{unit}"

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(NullFormatter())


def place_labels(ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], *, fontsize: float = 7,
                 marker_points: float = 4.0) -> list[tuple[str, object | None]]:
    """Put each label next to its point where it overlaps no other label or point and stays inside
    the axes; a point with no such place gets a number instead (then, failing that, nothing).

    Returns ``(label, text artist or None)`` per point; a numbered point's artist shows the number.
    """
    fig = ax.figure
    fig.canvas.draw()  # fixes the transforms and gives a renderer for text extents
    renderer = fig.canvas.get_renderer()
    bounds = ax.get_window_extent(renderer)
    scale = fig.dpi / 72.0
    points = [tuple(ax.transData.transform((x, y))) for x, y in zip(xs, ys)]
    radius = marker_points * scale
    pad = 1.5 * scale  # keep neighbouring labels apart, not just disjoint
    taken: list[tuple[float, float, float, float]] = []  # boxes of the labels placed so far

    def free(box) -> bool:
        x0, y0, x1, y1 = box
        if x0 < bounds.x0 or x1 > bounds.x1 or y0 < bounds.y0 or y1 > bounds.y1:
            return False
        if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken):
            return False
        return not any(x0 - radius < px < x1 + radius and y0 - radius < py < y1 + radius for px, py in points)

    def place(text: str, point):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        for r in _RADII:
            for dx, dy in _DIRECTIONS:
                x0 = point[0] + dx * r * scale - (w if dx < 0 else w / 2 if dx == 0 else 0)
                y0 = point[1] + dy * r * scale * 0.8
                box = (x0 - pad, y0 - pad, x0 + w + pad, y0 + h + pad)
                if free(box):
                    taken.append(box)
                    xy_text = tuple(ax.transData.inverted().transform((x0, y0)))
                    xy_point = tuple(ax.transData.inverted().transform(point))
                    leader = {"arrowstyle": "-", "lw": 0.5, "color": "0.45"} if r > _RADII[1] else None
                    return ax.annotate(text, xy_point, xytext=xy_text, fontsize=fontsize, ha="left",
                                       va="bottom", arrowprops=leader)
        return None

    placed: dict[int, tuple[str, object | None]] = {}
    number = 1
    for i in sorted(range(len(labels)), key=lambda i: points[i]):  # left to right
        artist = place(labels[i], points[i])
        if artist is None:
            artist = place(str(number), points[i])
            number += artist is not None
        placed[i] = (labels[i], artist)
    return [placed[i] for i in range(len(labels))]


def _numbered_footnote(fig, placed: Sequence[tuple[str, object | None]], hidden: Sequence[str] = ()) -> None:
    """List under the axes the points that carry a number (or nothing) instead of their name, and
    the models that could not be drawn (a zero on a log axis)."""
    numbered = [(artist.get_text(), name) for name, artist in placed
                if artist is not None and artist.get_text() != name]
    unlabelled = [name for name, artist in placed if artist is None]
    lines = [f"{num}: {name}" for num, name in sorted(numbered, key=lambda p: int(p[0]))]
    if unlabelled:
        lines.append("not labelled (no room): " + ", ".join(unlabelled))
    if hidden:
        lines.append("not drawn (no parameters or no MACs): " + ", ".join(hidden))
    if lines:
        per_line = 4
        rows = ["    ".join(lines[i:i + per_line]) for i in range(0, len(lines), per_line)]
        fig.text(0.01, -0.02, "\n".join(rows), fontsize=7, va="top", ha="left", family="monospace")


def params_vs_macs(counts: Sequence, families: dict[str, str]) -> bytes:
    """Parameters against MACs, log scales, one marker per family, every point named."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(10, 7))
    hidden = [c.model for c in counts if c.macs <= 0 or c.params <= 0]  # no place on log axes
    counts = [c for c in counts if c.macs > 0 and c.params > 0]
    family_names = sorted({families.get(c.model, "other") for c in counts})
    for i, family in enumerate(family_names):
        points = [c for c in counts if families.get(c.model, "other") == family]
        ax.scatter([c.macs for c in points], [c.params for c in points], marker=MARKERS[i % len(MARKERS)],
                   s=40, label=family, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs, ys = [c.macs for c in counts], [c.params for c in counts]
    if xs:  # room for the labels of the extreme points inside the axes
        ax.set_xlim(min(xs) / 1.6, max(xs) * 4.0)
        ax.set_ylim(min(ys) / 1.6, max(ys) * 1.8)
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    ax.set_xlabel("MACs per image (at each model's default input)")
    ax.set_ylabel("parameters")
    ax.set_title("Parameters vs compute")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, title="family", loc="upper left")
    placed = place_labels(ax, xs, ys, [c.model for c in counts])
    _numbered_footnote(fig, placed, hidden)
    return _png(fig)


def _setup(rows: Sequence) -> str:
    """What every bar shares, for the title: dtype and threads (batch sizes when they agree)."""
    parts = []
    for label, values in (("batch", {r.batch_size for r in rows}), ("dtype", {r.dtype for r in rows}),
                          ("CPU threads", {r.threads for r in rows if r.device == "cpu" and r.threads})):
        if len(values) == 1:
            parts.append(f"{label} {next(iter(values))}")
    return ", ".join(parts)


def throughput_bars(rows: Sequence) -> bytes:
    """Examples/sec per model, one bar per measured configuration (device, mode, batch, dtype)."""
    from matplotlib.ticker import FuncFormatter

    plt = _figure()
    ok = [r for r in rows if r.status == "ok" and r.examples_per_sec]
    models = list(dict.fromkeys(r.model for r in ok))
    configs = list(dict.fromkeys((r.device, r.mode, r.batch_size, r.dtype) for r in ok))
    varying = [k for k in range(4) if len({c[k] for c in configs}) > 1] or [0, 1]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(models) * max(1, len(configs)) ** 0.5 + 3), 4.8))
    width = 0.8 / max(1, len(configs))
    for i, config in enumerate(configs):
        values = [next((r.examples_per_sec for r in ok if (r.model, r.device, r.mode, r.batch_size, r.dtype)
                        == (m, *config)), 0) for m in models]
        names = ("", "", "b=", "")
        label = " ".join(f"{names[k]}{config[k]}" for k in varying)
        ax.bar([x + i * width for x in range(len(models))], values, width, label=label)
    ax.set_xticks([x + width * (len(configs) - 1) / 2 for x in range(len(models))])
    ax.set_xticklabels(models, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}" if v < 1e4 else f"{v / 1e3:g}K"))
    ax.set_ylabel("examples / second")
    setup = _setup(ok)
    ax.set_title("Throughput" + (f" ({setup})" if setup else ""))
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="major", alpha=0.3)
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
    fig.suptitle(f"Peak memory vs batch size ({', '.join(dict.fromkeys(r.dtype for r in rows))})")
    return _png(fig)


# --- training experiments (archprobe train) -----------------------------------------------------

DEVICE_STYLES = ("-", "--", ":", "-.")


def training_curves(rows: Sequence) -> bytes:
    """The book's training plot, static: train loss, train accuracy and test accuracy per
    epoch (``rows``: :class:`archprobe.results.EpochRow`), one colour per model and one line
    style per device."""
    plt = _figure()
    curves: dict[tuple[str, str], list] = {}
    for row in rows:
        curves.setdefault((row.model, row.device), []).append(row)
    models = list(dict.fromkeys(model for model, _ in curves))
    devices = list(dict.fromkeys(device for _, device in curves))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    panels = (("train_loss", "train loss"), ("train_acc", "train accuracy"), ("test_acc", "test accuracy"))
    for (model, device), points in curves.items():
        points = sorted(points, key=lambda row: row.epoch)
        epochs = [row.epoch for row in points]
        style = dict(color=colours(models.index(model) % 10),
                     linestyle=DEVICE_STYLES[devices.index(device) % len(DEVICE_STYLES)], marker="o", markersize=3)
        label = model if len(devices) == 1 else f"{model} ({device})"
        for ax, (field, _title) in zip(axes, panels):
            ax.plot(epochs, [getattr(row, field) for row in points], label=label, **style)
    for ax, (_field, title) in zip(axes, panels):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, alpha=0.25)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    dataset = rows[0].dataset if rows else ""
    fig.suptitle(f"Training on {dataset}" if dataset else "Training", y=1.03)
    return _png(fig)


# --- where the time goes (archprobe profile) -----------------------------------------------------


def _profile_title(result) -> str:
    return f"{result.model}, {result.device} {result.mode}, batch {result.batch_size}, {result.dtype}"


def profile_roofline(result) -> bytes:
    """The roofline of a profile: each row with FLOPs and time as a point (intensity against
    achieved FLOP/s, log scales; forward and backward apart), the compute ceiling and the
    bandwidth roof drawn as lines."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9, 6.5))
    points = [r for r in result.rows if r.intensity and r.achieved_flops_per_sec]
    hidden = [f"{r.layer or '(model)'} {r.phase}" for r in result.rows
              if r.time_s > 0 and r.flops and not (r.intensity and r.achieved_flops_per_sec)]
    for i, phase in enumerate(dict.fromkeys(r.phase for r in points)):
        rows = [r for r in points if r.phase == phase]
        ax.scatter([r.intensity for r in rows], [r.achieved_flops_per_sec for r in rows], s=36, zorder=3,
                   marker=MARKERS[i % len(MARKERS)], label=phase)
    xs = [r.intensity for r in points]
    ys = [r.achieved_flops_per_sec for r in points]
    low = min(xs + ([result.ridge_intensity] if result.ridge_intensity else []), default=0.1) / 4
    high = max(xs + ([result.ridge_intensity] if result.ridge_intensity else []), default=100) * 4
    if result.ceiling_flops_per_sec and result.bandwidth_bytes_per_sec:
        ridge = result.ceiling_flops_per_sec / result.bandwidth_bytes_per_sec
        ax.plot([low, ridge, high], [result.bandwidth_bytes_per_sec * low, result.ceiling_flops_per_sec,
                                     result.ceiling_flops_per_sec], color="0.2", lw=1.2, zorder=2)
        ax.text(ridge * 1.1, result.ceiling_flops_per_sec * 1.08, f"compute ceiling ({result.ceiling_shape})",
                fontsize=7, ha="left", va="bottom")
        large = result.large_bandwidth_bytes_per_sec
        if large and large < result.bandwidth_bytes_per_sec:  # device memory, beyond every cache: for reference
            knee = min(high, result.ceiling_flops_per_sec / large)
            ax.plot([low, knee], [large * low, large * knee], color="0.5", lw=0.9, ls="--", zorder=2,
                    label=f"{result.large_bandwidth_shape}: {large / 1e9:.1f} GB/s")
        ax.text(low * 1.2, result.bandwidth_bytes_per_sec * low * 1.3,
                f"bandwidth {result.bandwidth_bytes_per_sec / 1e9:.1f} GB/s ({result.bandwidth_shape})", fontsize=7,
                rotation=0,
                ha="left", va="bottom")
        ys = ys + [result.ceiling_flops_per_sec, result.bandwidth_bytes_per_sec * low]
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ys:
        ax.set_xlim(low, high)
        ax.set_ylim(min(ys) / 3, max(ys) * 3)
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis, "FLOP/s")
    ax.set_xlabel("arithmetic intensity (FLOPs / bytes read and written)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(f"Roofline: {_profile_title(result)}")
    ax.grid(True, which="major", alpha=0.3)
    if points or result.large_bandwidth_bytes_per_sec:
        ax.legend(fontsize=8, loc="lower right")
    placed = place_labels(ax, [r.intensity for r in points], [r.achieved_flops_per_sec for r in points],
                          [r.layer or "(model)" for r in points])
    _numbered_footnote(fig, placed)
    if hidden:
        fig.text(0.01, -0.06, "not drawn (no time or no bytes): " + ", ".join(hidden), fontsize=7, va="top")
    return _png(fig)


def profile_shares(result) -> bytes:
    """Each row's share of the step as a horizontal bar, in the table's order, forward and
    backward in two colours."""
    plt = _figure()
    rows = [r for r in result.rows if r.time_s > 0]
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.24 * len(rows) + 1.2)))
    colours = {"forward": "tab:blue", "backward": "tab:orange", "step": "tab:green"}
    labels = [f"{r.layer or '(model)'} {r.phase}" if r.phase != "-" else (r.layer or "(model)") for r in rows]
    ax.barh(range(len(rows)), [100 * r.share for r in rows], color=[colours.get(r.phase, "0.6") for r in rows])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"share of the profiled step ({result.step_s * 1e3:,.1f} ms), %")
    ax.set_title(f"Where the time goes: {_profile_title(result)}")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)
