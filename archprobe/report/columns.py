"""Which fields of each result are shown in human tables, under which header and in which unit.

Results (:mod:`archprobe.results`) hold base units and no display strings; this table is the
only place that names their columns. A field listed here is shown in ``table``/``md`` output,
formatted by its kind in :mod:`archprobe.report.frames`; JSON and CSV carry every field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from archprobe import results as r

KINDS = (
    "text",  # shown as is
    "int",  # plain integer with thousands separators
    "count",  # parameters: K/M/G, one unit per column
    "ops",  # MACs, FLOPs or FLOP/s: K/M/G/T, one unit per column
    "bytes",  # B/KiB/MiB/GiB, one unit per column
    "shape",  # tuple -> 1x3x224x224
    "percent",  # a fraction shown as 12.3%
    "float",  # 3 decimals
    "ms",  # milliseconds (the value is stored in ms)
    "rate",  # per-second rate
    "ratio",  # x-fold
    "list",  # comma-joined
    "bool",
    "path",  # a module path: "" is the model itself, None no module
    "pair",  # (h, w) -> 195x195, 15.5x15.5
)


@dataclass(frozen=True)
class Column:
    """A displayed column: ``field`` read from each result (or derived by ``get``), shown under
    ``header`` and formatted as ``kind``."""

    field: str
    header: str
    kind: str = "text"
    get: Callable[[Any], Any] | None = None
    # shown instead of "-" where the value is None and the result's ``flag`` field is true
    flag: str | None = None
    flag_text: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}")

    def value(self, result: Any) -> Any:
        return self.get(result) if self.get is not None else getattr(result, self.field)

    def flagged(self, result: Any) -> bool:
        return self.flag is not None and self.value(result) is None and bool(getattr(result, self.flag))


def layer_label(row: r.LayerRow) -> str:
    """A row's module name, indented by its depth (the model itself by the model's name)."""
    return "  " * row.depth + (row.path.rsplit(".", 1)[-1] if row.path else row.model)


def module_label(row: r.CostRow) -> str | None:
    """A module row's name, indented by its depth (the model itself by the model's name)."""
    if row.by != "module":
        return None
    return "  " * (row.depth or 0) + (row.name.rsplit(".", 1)[-1] if row.name else row.model)


def valid_sides(result: r.MinInputResult) -> str:
    """The valid square sides in words: ``15–4096+``, ``every 4th size 4–4096+ (1024 sizes)``."""
    from archprobe.analysis.min_input import valid_text

    return valid_text(result.valid, result.examined_to)


def spatial_size(layer: r.LayerSize) -> str:
    """``HxW`` of a layer's output, ``-`` without spatial dimensions."""
    return f"{layer.output[-2]}x{layer.output[-1]}" if len(layer.output) >= 3 else "-"


# Fields JSON and CSV carry beside a result's own, derived from them (name, after which field, how).
DERIVED_FIELDS: dict[type, tuple[tuple[str, str, Callable[[Any], Any]], ...]] = {
    r.LayerRow: (("layer", "", layer_label),),  # "": first
    r.LayerSize: (("hw", "output", spatial_size),),
    r.MinInputResult: (("valid_sides", "min_square", valid_sides),),
}


def _per_dimension_minima(result: r.MinInputResult) -> str | None:
    if result.min_height is None or result.min_width is None or not result.anchor:
        return None
    return f"{result.min_height}, {result.min_width} ({result.anchor[0]}x{result.anchor[1]})"


def _cols(*specs: tuple) -> tuple[Column, ...]:
    """``(field, header[, kind[, get | flag[, flag_text]]])`` per column."""
    columns = []
    for field, header, *rest in specs:
        kind = rest[0] if rest else "text"
        extra = rest[1:]
        if extra and callable(extra[0]):
            columns.append(Column(field, header, kind, get=extra[0]))
        else:
            columns.append(Column(field, header, kind, None, *extra))
    return tuple(columns)


COLUMNS: dict[type, tuple[Column, ...]] = {
    r.ZooEntry: _cols(
        ("name", "Model"), ("family", "Family"), ("variant", "Variant"),
        ("input_shape", "Default input", "shape"), ("num_classes", "Classes", "int"),
        ("source", "Source"), ("paper", "Paper"), ("year", "Year"),
    ),
    r.ModelCounts: _cols(
        ("model", "Model"), ("input_shape", "Input", "shape"), ("dtype", "Dtype"), ("params", "Params", "count"),
        ("params_forward", "Params (fwd)", "count"), ("trainable", "Trainable", "count"),
        ("param_bytes", "Param mem", "bytes"), ("macs", "MACs", "ops"), ("flops", "FLOPs", "ops"),
        ("conv_params", "Conv params", "count"), ("linear_params", "Linear params", "count"),
        ("linear_share", "In linear", "percent"), ("train_macs", "Train-step MACs", "ops"),
        ("train_flops", "Train-step FLOPs", "ops"), ("fvcore_macs", "fvcore MACs", "ops"),
        ("fvcore_total", "fvcore total", "ops"),
    ),
    r.LayerRow: _cols(
        ("layer", "Layer", "text", layer_label), ("type", "Type"), ("output_shape", "Output shape", "shape"),
        ("params", "Params", "count"), ("macs", "MACs", "ops"), ("flops", "FLOPs", "ops"),
        # the --rf set: shown when computed
        ("receptive_field", "Receptive field", "pair", "rf_global", "global"),
        ("effective_stride", "Eff. stride", "pair"), ("rf_offset", "First centre", "pair"),
    ),
    # archprobe params --by operator|module (the label column of the other kind stays empty, so is dropped)
    r.CostRow: _cols(
        ("model", "Model"), ("operator", "Operator", "text", lambda row: row.name if row.by == "operator" else None),
        ("module", "Module", "text", module_label), ("type", "Type"), ("calls", "Calls", "int"),
        ("macs", "MACs", "ops"), ("macs_share", "MACs %", "percent"), ("flops", "FLOPs", "ops"),
        ("flops_share", "FLOPs %", "percent"), ("own_macs", "Own MACs", "ops"), ("own_flops", "Own FLOPs", "ops"),
    ),
    r.LayerSize: _cols(
        ("depth", "Depth", "int"), ("layer", "Layer", "path"), ("type", "Type"),
        ("output", "Output (CxHxW)", "shape"), ("hw", "HxW", "text", spatial_size),
    ),
    r.MinInputResult: _cols(
        ("model", "Model"), ("mode", "Mode"), ("batch_size", "Batch", "int"),
        ("min_size", "Min HxW", "shape"), ("min_square", "Min square", "int"),
        ("min_height", "Min H, min W (anchor)", "text", _per_dimension_minima), ("valid_sides", "Valid sides", "text", valid_sides),
        ("limiting_layer", "Limiting layer"), ("method", "Method"),
        ("verified", "Verified", "bool"),
    ),
    r.ThroughputResult: _cols(
        ("model", "Model"), ("device", "Device"), ("mode", "Mode"), ("batch_size", "Batch", "int"),
        ("input_shape", "Input", "shape"), ("world_size", "Ranks", "int"), ("global_batch_size", "Global batch", "int"),  # data-parallel rows
        ("dtype", "Dtype"), ("status", "Status"), ("examples_per_sec", "Examples/s", "rate"),
        ("median_ms", "Median ms", "ms"), ("iqr_ms", "IQR ms", "ms"),
        ("achieved_flops_per_sec", "Matmul FLOP/s", "ops"), ("utilisation", "Util.", "percent"),
        ("peak_memory_bytes", "Peak mem", "bytes"), ("speedup", "Speedup", "ratio"),
        ("single_process_examples_per_sec", "1-process ex/s", "rate"),  # data-parallel rows
        ("scaling_efficiency", "Scaling eff.", "percent"),
        ("warnings", "Warnings", "list", lambda row: row.warnings or None),
    ),
    r.MemoryResult: _cols(
        ("model", "Model"), ("device", "Device"), ("mode", "Mode"), ("batch_size", "Batch", "int"),
        ("dtype", "Dtype"), ("optimizer", "Optimizer"), ("peak_bytes", "Peak", "bytes"), ("param_bytes", "Params", "bytes"),
        ("buffer_bytes", "Buffers", "bytes"), ("grad_bytes", "Grads", "bytes"),
        ("optimizer_bytes", "Opt. state", "bytes"), ("activation_bytes", "Activations", "bytes"),
        ("temp_bytes", "Temp", "bytes"), ("input_bytes", "Input", "bytes"), ("peak_at", "Peak at", "path"),
        ("peak_phase", "Phase"), ("budget_bytes", "Budget", "bytes"), ("max_batch_size", "Max batch", "int"),
    ),
    r.VariantPair: _cols(
        ("family", "Family"), ("imagenet", "ImageNet model"), ("imagenet_input", "ImageNet input", "shape"),
        ("imagenet_params", "ImageNet params", "count"), ("imagenet_macs", "ImageNet MACs", "ops"),
        ("kind", "Kind"), ("d2l", "Variant"), ("d2l_input", "Variant input", "shape"),
        ("d2l_params", "Variant params", "count"), ("d2l_macs", "Variant MACs", "ops"),
        ("params_ratio", "Variant/ImageNet params", "percent"),
    ),
    # training experiments (archprobe train)
    r.TrainRun: _cols(
        ("model", "Model"), ("device", "Device"),
        ("world_size", "Ranks", "int"), ("global_batch_size", "Global batch", "int"),  # data-parallel runs
        ("status", "Status"), ("params", "Params", "count"),
        ("macs", "MACs", "ops"), ("epochs_done", "Epochs", "int"), ("train_loss", "Train loss", "float"),
        ("train_acc", "Train acc", "float"), ("test_acc", "Test acc", "float"),
        ("best_test_acc", "Best test acc", "float"), ("examples_per_sec", "Examples/s", "rate"),
        ("train_seconds", "Train s", "float"), ("speedup", "Speedup", "ratio"),
        ("warnings", "Warnings", "list", lambda run: run.warnings or None),
    ),
    r.EpochRow: _cols(
        ("model", "Model"), ("device", "Device"), ("epoch", "Epoch", "int"), ("train_loss", "Train loss", "float"),
        ("train_acc", "Train acc", "float"), ("test_acc", "Test acc", "float"),
        ("examples_per_sec", "Examples/s", "rate"), ("epoch_seconds", "Epoch s", "float"),
        ("warnings", "Warnings", "list", lambda row: row.warnings or None),
    ),
    # where the time goes (archprobe profile)
    r.ProfileRow: _cols(
        ("layer", "Layer", "text", lambda row: row.layer or "(model)"), ("phase", "Phase"), ("type", "Type"),
        ("time_s", "Time ms", "ms", lambda row: row.time_s * 1e3), ("share", "Share", "percent"),
        ("macs", "MACs", "ops"), ("flops", "FLOPs", "ops"), ("bytes", "Bytes", "bytes"),
        ("achieved_flops_per_sec", "FLOP/s", "ops"), ("intensity", "FLOP/B", "float"),
        ("attainable_flops_per_sec", "Roofline", "ops"), ("bound", "Bound"),
    ),
    # sweeps (archprobe sweep; report --from DIR)
    r.SweepCell: _cols(
        ("model", "Model"), ("analysis", "Analysis"), ("status", "Status"), ("error", "Reason"),
        ("seconds", "Seconds", "float"),
    ),
    r.LayerTable: _cols(
        ("model", "Model"), ("input_shape", "Input", "shape"), ("layers", "Layers", "int", lambda t: len(t.rows)),
        ("params", "Params", "count"), ("params_forward", "Params (fwd)", "count"), ("macs", "MACs", "ops"),
        ("flops", "FLOPs", "ops"),
    ),
    r.AtlasPoint: _cols(
        ("model", "Model"), ("weights", "Weights"), ("acc1", "Acc@1", "percent"), ("params", "Params", "count"),
        ("macs", "MACs", "ops"), ("examples_per_sec", "Examples/s", "rate"),
        ("front", "Pareto front", "list", lambda p: p.front or None),
    ),
    r.Recipe: _cols(
        ("model", "Model"), ("optimizer", "Optimizer"), ("lr", "LR"), ("momentum", "Momentum"),
        ("weight_decay", "Weight decay"), ("batch_size", "Batch", "int"), ("epochs", "Epochs", "int"),
        ("resize", "Resize", "int"), ("init", "Init"), ("label_smoothing", "Label smoothing"),
        ("source", "Source"), ("overrides", "Changed", "list"),
    ),
}


def columns_of(result_type: type) -> tuple[Column, ...]:
    """The displayed columns of a result type (a type without an entry shows none)."""
    return COLUMNS.get(result_type, ())
