"""Which fields of each result are shown in human tables, under which header and in which unit.

Results (:mod:`archprobe.results`) hold base units and no display strings; this table is the
only place that names their columns. A field listed here is shown in ``table``/``md`` output,
formatted by its kind in :mod:`archprobe.report.frames`; JSON and CSV carry every field.
"""

from __future__ import annotations

from dataclasses import dataclass

from archprobe import results as r

KINDS = (
    "text",  # shown as is
    "int",  # plain integer with thousands separators
    "count",  # parameters: K/M with 2 decimals
    "macs",  # multiply-accumulates: G with 3 decimals (torchvision's convention)
    "flops",  # floating-point operations: G with 3 decimals
    "ops",  # MACs or FLOPs of one layer: adaptive K/M/G
    "bytes",  # MB (10^6 bytes) with 2 decimals
    "shape",  # tuple -> 1x3x224x224
    "percent",  # a fraction shown as 12.3%
    "float",  # 3 decimals
    "ms",  # milliseconds (the value is stored in ms)
    "rate",  # per-second rate
    "ratio",  # x-fold
    "list",  # comma-joined
    "bool",
)


@dataclass(frozen=True)
class Column:
    field: str
    header: str
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}")


def _cols(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*spec) for spec in specs)


COLUMNS: dict[type, tuple[Column, ...]] = {
    r.ZooEntry: _cols(
        ("name", "Model"), ("family", "Family"), ("variant", "Variant"),
        ("input_shape", "Default input", "shape"), ("num_classes", "Classes", "int"),
        ("source", "Source"), ("paper", "Paper"), ("year", "Year"),
    ),
    r.ModelCounts: _cols(
        ("model", "Model"), ("input_shape", "Input", "shape"), ("params", "Params", "count"),
        ("params_forward", "Params (fwd)", "count"), ("trainable", "Trainable", "count"),
        ("param_bytes", "Param mem (fp32)", "bytes"), ("macs", "MACs", "macs"), ("flops", "FLOPs", "flops"),
        ("conv_params", "Conv params", "count"), ("linear_params", "Linear params", "count"),
        ("linear_share", "In linear", "percent"), ("train_macs", "Train-step MACs", "macs"),
        ("train_flops", "Train-step FLOPs", "flops"), ("fvcore_macs", "fvcore MACs", "macs"),
    ),
    r.LayerRow: _cols(
        ("layer", "Layer"), ("type", "Type"), ("output_shape", "Output shape", "shape"),
        ("params", "Params", "count"), ("macs", "MACs", "ops"), ("flops", "FLOPs", "ops"),
    ),
    r.LayerSize: _cols(
        ("depth", "Depth", "int"), ("layer", "Layer"), ("type", "Type"),
        ("output", "Output (CxHxW)", "shape"), ("hw", "HxW"),
    ),
    r.MinInputResult: _cols(
        ("model", "Model"), ("mode", "Mode"), ("batch_size", "Batch", "int"),
        ("min_size", "Min HxW", "shape"), ("min_square", "Min square", "int"),
        ("valid_sides", "Valid sides"), ("limiting_layer", "Limiting layer"), ("method", "Method"),
        ("verified", "Verified", "bool"),
    ),
    r.ThroughputResult: _cols(
        ("model", "Model"), ("device", "Device"), ("mode", "Mode"), ("batch_size", "Batch", "int"),
        ("dtype", "Dtype"), ("status", "Status"), ("examples_per_sec", "Examples/s", "rate"),
        ("median_ms", "Median ms", "ms"), ("iqr_ms", "IQR ms", "ms"),
        ("achieved_flops_per_sec", "FLOP/s", "flops"), ("utilisation", "Util.", "percent"),
        ("peak_memory_bytes", "Peak mem", "bytes"), ("speedup", "Speedup", "ratio"),
    ),
    r.VariantPair: _cols(
        ("family", "Family"), ("imagenet", "ImageNet model"), ("imagenet_input", "ImageNet input", "shape"),
        ("imagenet_params", "ImageNet params", "count"), ("imagenet_macs", "ImageNet MACs", "macs"),
        ("d2l", "Dive-into-DL model"), ("d2l_input", "d2l input", "shape"),
        ("d2l_params", "d2l params", "count"), ("d2l_macs", "d2l MACs", "macs"),
        ("params_ratio", "d2l/ImageNet params", "percent"),
    ),
}

# --- training experiments (archprobe train) ---
COLUMNS[r.TrainRun] = _cols(
    ("model", "Model"), ("device", "Device"), ("status", "Status"), ("params", "Params", "count"),
    ("macs", "MACs", "macs"), ("epochs_done", "Epochs", "int"), ("test_acc", "Test acc", "float"),
    ("best_test_acc", "Best test acc", "float"), ("examples_per_sec", "Examples/s", "rate"),
    ("train_seconds", "Train s", "float"), ("speedup", "Speedup", "ratio"),
)
COLUMNS[r.EpochRow] = _cols(
    ("model", "Model"), ("device", "Device"), ("epoch", "Epoch", "int"), ("train_loss", "Train loss", "float"),
    ("train_acc", "Train acc", "float"), ("test_acc", "Test acc", "float"),
    ("examples_per_sec", "Examples/s", "rate"), ("epoch_seconds", "Epoch s", "float"),
)
COLUMNS[r.Recipe] = _cols(
    ("model", "Model"), ("optimizer", "Optimizer"), ("lr", "LR"), ("momentum", "Momentum"),
    ("weight_decay", "Weight decay"), ("batch_size", "Batch", "int"), ("epochs", "Epochs", "int"),
    ("resize", "Resize", "int"), ("init", "Init"), ("label_smoothing", "Label smoothing"),
    ("source", "Source"), ("overrides", "Changed", "list"),
)


def columns_of(result_type: type) -> tuple[Column, ...]:
    """The displayed columns of a result type (a type without an entry shows none)."""
    return COLUMNS.get(result_type, ())
