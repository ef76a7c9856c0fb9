"""The cost of each aten op: one table, one formula per op family.

Conventions (stated in every report):

* **MACs** are multiply-accumulates of convolutions and matrix products only (conv,
  mm/addmm/bmm/baddbmm, attention kernels), taken from ``torch.utils.flop_counter``'s
  registry divided by two. This is torchvision's published ``_ops`` convention (its
  "GFLOPS" are GMACs) and fvcore's/ptflops'/thop's for those layers.
* **FLOPs** are 2 per MAC, plus the arithmetic of every other op, per element of the
  tensor named in the table below:

  ==========================  ===========================================================
  op family                   FLOPs
  ==========================  ===========================================================
  conv / matmul               2 x MACs, + 1 per output element for a bias add
  elementwise (activations,   1 per output element (``addcmul``/``addcdiv``: 2)
  add, mul, ...)
  batch norm                  2 per element in eval (x*scale + shift), 6 in training
                              (+1 for the mean, +3 for the variance); layer/group norm: 6
  norm backward               8 per element
  max pool                    kernel-area comparisons per output element
  avg pool                    kernel-area per output element (adds and the divide)
  adaptive avg pool, mean     1 per input element + 1 per output element
  sum, amax, adaptive max     1 per input element
  softmax, log-softmax        5 per element (``_safe_softmax`` too; backward: 3)
  comparisons (eq, lt, ...),  1 per output element
  sin, cos, cumsum
  max/min over a dim, norms   1 per input element (vector norm: 2, square and add)
  interpolation               per output element: linear 4, bilinear 8, trilinear 16,
                              bicubic 32 (2 per tap); nearest: 0 (a copy); backward: the
                              same per grad-output element (nearest: 1, the accumulation)
  dropout (fused)             2 per element (backward: 1)
  nll loss                    1 per sample (forward and backward)
  pool backward               max: 1 per grad-output element; avg: kernel area per
                              grad-output element; adaptive avg: 1 per grad-input element
  padding backward, col2im    1 per input element (overlapping gradients are added)
  index_put                   0 (a copy); with accumulate, 1 per value
  ==========================  ===========================================================

* Memory, layout, factory, indexing and RNG ops (views, cat, copies, rolls, padding,
  nearest-neighbour upsampling, im2col, scatter, empty, bernoulli...) and integer/boolean ops
  cost 0 by definition (the explicit ``FREE_OPS`` set).
* Any other op is **unsupported**: it counts 0 and is reported by name, never silently.
"""

from __future__ import annotations

from math import prod
from typing import Callable

from archprobe.analysis.trace import OpEvent, TensorRef

Rule = Callable[[OpEvent], int]


def _numel(ref) -> int:
    return ref.numel() if isinstance(ref, TensorRef) else 0


def _out(e: OpEvent) -> int:
    return _numel(e.outputs[0]) if e.outputs else 0


def _in(e: OpEvent) -> int:
    return _numel(e.args[0]) if e.args else 0


def _per_out(k: int) -> Rule:
    return lambda e: k * _out(e)


def _per_in(k: int) -> Rule:
    return lambda e: k * _in(e)


def _kernel_area(e: OpEvent) -> int:
    kernel = e.named["kernel_size"]
    return prod(kernel) if isinstance(kernel, (list, tuple)) else int(kernel)


def _per_window(e: OpEvent) -> int:
    """One FLOP per kernel element per output element (a pool's comparisons or adds)."""
    return _out(e) * _kernel_area(e)


def _batch_norm(e: OpEvent) -> int:
    training = bool(e.named.get("training", False))
    return (6 if training else 2) * _in(e)


def _index_put(e: OpEvent) -> int:
    """A copy, or with ``accumulate`` one add per value written."""
    return _numel(e.named.get("values")) if e.named.get("accumulate") else 0


def _mean(e: OpEvent) -> int:
    return _in(e) + _out(e)


def _nll(e: OpEvent) -> int:
    return _numel(e.named["target"])


_ELEMENTWISE = """
    abs add clamp clamp_max clamp_min div elu exp gelu hardsigmoid hardswish
    hardtanh leaky_relu lerp log log_sigmoid_forward maximum minimum masked_fill mish mul neg
    pow reciprocal relu rsqrt rsub sigmoid silu sqrt square sub tanh threshold where
    elu_backward gelu_backward hardsigmoid_backward hardswish_backward hardtanh_backward
    leaky_relu_backward mish_backward sigmoid_backward silu_backward tanh_backward
    threshold_backward eq ne lt le gt ge sin cos cumsum
""".split()

# Interpolation: taps per output element (each a multiply and an add).
_INTERPOLATION_TAPS = {"linear1d": 2, "bilinear2d": 4, "trilinear3d": 8, "bicubic2d": 16}


def _interpolation(taps: int) -> Rule:
    return _per_out(2 * taps)


def _interpolation_backward(taps: int) -> Rule:
    return lambda e: 2 * taps * _numel(e.named.get("grad_output"))

FLOP_RULES: dict[str, Rule] = {}


def _register(rules: dict[str, Rule]) -> None:
    """Add ``rules`` to :data:`FLOP_RULES`; an op that already has a rule is an error (one
    formula per op, as the replay registry has one rule per op)."""
    repeated = sorted(set(rules) & set(FLOP_RULES))
    if repeated:
        raise ValueError(f"a FLOP rule is already registered for aten.{', aten.'.join(repeated)}")
    FLOP_RULES.update(rules)


_register({name: _per_out(1) for name in _ELEMENTWISE})
_register({name + "_": _per_out(1) for name in _ELEMENTWISE})
_register(
    {
        "addcmul": _per_out(2),
        "addcmul_": _per_out(2),
        "addcdiv": _per_out(2),
        "addcdiv_": _per_out(2),
        "native_batch_norm": _batch_norm,
        "_native_batch_norm_legit": _batch_norm,
        "_native_batch_norm_legit_no_training": _batch_norm,
        "cudnn_batch_norm": _batch_norm,
        "native_layer_norm": _per_in(6),
        "native_group_norm": _per_in(6),
        "native_batch_norm_backward": _per_in(8),
        "cudnn_batch_norm_backward": _per_in(8),
        "native_layer_norm_backward": _per_in(8),
        "native_group_norm_backward": _per_in(8),
        "max_pool1d": _per_window,
        "max_pool2d": _per_window,
        "max_pool2d_with_indices": _per_window,
        "max_pool3d_with_indices": _per_window,
        "avg_pool1d": _per_window,
        "avg_pool2d": _per_window,
        "avg_pool3d": _per_window,
        "_adaptive_avg_pool2d": _mean,
        "adaptive_avg_pool2d": _mean,
        "_adaptive_avg_pool3d": _mean,
        "adaptive_max_pool2d": _per_in(1),
        "mean": _mean,
        "sum": _per_in(1),
        "amax": _per_in(1),
        "amin": _per_in(1),
        "_softmax": _per_in(5),
        "_safe_softmax": _per_in(5),
        "max": _per_in(1),
        "min": _per_in(1),
        "linalg_vector_norm": _per_in(2),
        "col2im": _per_in(1),
        "index_put": _index_put,
        "index_put_": _index_put,
        "reflection_pad1d_backward": _per_in(1),
        "reflection_pad2d_backward": _per_in(1),
        "reflection_pad3d_backward": _per_in(1),
        "replication_pad1d_backward": _per_in(1),
        "replication_pad2d_backward": _per_in(1),
        "replication_pad3d_backward": _per_in(1),
        "_log_softmax": _per_in(5),
        "_softmax_backward_data": _per_in(3),
        "_log_softmax_backward_data": _per_in(3),
        "native_dropout": _per_in(2),
        "native_dropout_backward": _per_in(1),
        "nll_loss_forward": _nll,
        "nll_loss_backward": _nll,
        "max_pool2d_with_indices_backward": _per_in(1),
        "max_pool3d_with_indices_backward": _per_in(1),
        "avg_pool2d_backward": lambda e: _in(e) * _kernel_area(e),
        "avg_pool3d_backward": lambda e: _in(e) * _kernel_area(e),
        "_adaptive_avg_pool2d_backward": _per_out(1),
        "_adaptive_avg_pool3d_backward": _per_out(1),
    }
)
for _kind, _taps in _INTERPOLATION_TAPS.items():
    for _prefix in ("upsample_", "_upsample_"):
        _register({f"{_prefix}{_kind}": _interpolation(_taps),
                   f"{_prefix}{_kind}_backward": _interpolation_backward(_taps)})
    _register({f"_upsample_{_kind}_aa": _interpolation(_taps),
               f"_upsample_{_kind}_aa_backward": _interpolation_backward(_taps)})
for _n in (1, 2, 3):  # nearest-neighbour: the forward copies; the backward adds the gradients up
    for _name in (f"upsample_nearest{_n}d", f"_upsample_nearest_exact{_n}d"):
        _register({f"{_name}_backward": lambda e: _numel(e.named.get("grad_output"))})

FREE_OPS = frozenset(
    """
    _reshape_alias _to_copy _unsafe_view alias arange as_strided bernoulli bernoulli_ cat chunk
    clone constant_pad_nd contiguous copy copy_ detach empty empty_like empty_strided expand
    fill fill_ flatten full full_like gather index index_select lift_fresh lift_fresh_copy
    narrow new_empty new_empty_strided new_full new_ones new_zeros normal_ ones ones_like
    permute rand rand_like randn randn_like repeat reshape scalar_tensor select select_backward
    slice slice_backward split split_with_sizes squeeze stack t transpose unbind unflatten
    uniform_ unsqueeze view zero_ zeros zeros_like _local_scalar_dense set_ resize_
    as_strided_ roll flip im2col scatter unsafe_split unsafe_split_with_sizes
    reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d replication_pad2d
    replication_pad3d upsample_nearest1d upsample_nearest2d upsample_nearest3d
    _upsample_nearest_exact1d _upsample_nearest_exact2d _upsample_nearest_exact3d
    bitwise_not bitwise_and bitwise_or logical_not logical_and logical_or masked_select nonzero
    """.split()
)


def _mac_registry() -> dict:
    from torch.utils.flop_counter import flop_registry

    return flop_registry


def _shape_args(value):
    if isinstance(value, TensorRef):
        return value.shape
    if isinstance(value, (list, tuple)):
        return type(value)(_shape_args(v) for v in value)
    return value


def op_cost(e: OpEvent) -> tuple[int, int] | None:
    """``(macs, flops)`` of one op, or ``None`` when the op is unsupported."""
    mac_rule = _mac_registry().get(e.func.overloadpacket)
    if mac_rule is not None:
        out_shapes = _shape_args(e.outputs if len(e.outputs) > 1 else e.outputs[0])
        flops = int(mac_rule(*_shape_args(e.args), **_shape_args(e.kwargs), out_val=out_shapes))
        macs = flops // 2
        return macs, flops + _bias_flops(e)
    rule = FLOP_RULES.get(e.name)
    if rule is not None:
        return 0, int(rule(e))
    if e.name in FREE_OPS:
        return 0, 0
    return None


def _bias_flops(e: OpEvent) -> int:
    """The bias add of a convolution or ``addmm``: one FLOP per output element."""
    if e.name in ("convolution", "_convolution", "cudnn_convolution", "convolution_overrideable"):
        return _out(e) if isinstance(e.named.get("bias"), TensorRef) else 0
    if e.name in ("addmm", "baddbmm"):
        return _out(e)
    if e.name == "convolution_backward":
        grad_bias = e.outputs[2] if len(e.outputs) > 2 else None
        return _numel(e.args[0]) if isinstance(grad_bias, TensorRef) else 0
    return 0
