"""Every replay rule against real forward passes.

One or more tiny forwards per registered op name (``CASES``), each running that op with a
dependence on the input size. For each case the forward is traced at two sizes, the traces are
replayed over fixed random sizes plus edge sizes, and at every size a real forward on the CPU
decides: the replay must say "runs" exactly where the CPU pass runs, archprobe's meta passes
(the trace and ``forward_runs``, which the solver's checks and scans use) must say the same, and
where it runs the replayed output shapes of every op the rule handled must be the traced ones.
The meta kernels are not the truth: some of them skip a check the CPU kernels make, and which
ones changes between torch releases (``archprobe.analysis.device_checks`` makes those checks).
A rule registered without a case fails ``test_every_rule_has_a_case``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archprobe.analysis.replay import RULES, Program, rule
from archprobe.analysis.replay.align import INPUT
from archprobe.analysis.trace import Trace, TraceFailure, forward_runs, make_input, trace

_rng = random.Random(20240617)
EDGES = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4), (5, 6), (6, 5), (7, 7), (8, 8), (1, 80), (80, 1),
         (80, 80), (79, 80)]
SIZES = EDGES + [(_rng.randint(1, 80), _rng.randint(1, 80)) for _ in range(40)]
EVEN = ((24, 32), (36, 28))  # the default traced sizes: H and W move by different amounts


class Lambda(nn.Module):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@dataclass(frozen=True)
class Case:
    """``op``: the registered rule name this case exercises; ``fn``: the forward as a function of
    the input, or ``module``: a factory for an ``nn.Module`` (built on meta); ``traces``: the sizes
    the replayed program is traced at; ``same_path=False``: the forward runs other ops at some valid sizes (validity is still compared
    there, shapes are not)."""

    op: str
    fn: Callable | None = None
    module: Callable[[], nn.Module] | None = None
    label: str = ""
    traces: tuple = EVEN
    batch: int = 2
    train: bool = False
    same_path: bool = True  # False: some valid sizes take another path (shapes compared where not)

    @property
    def id(self) -> str:
        return f"{self.op}[{self.label}]" if self.label else self.op

    def build(self, device: str = "meta") -> nn.Module:
        if self.module is None:
            return Lambda(self.fn)
        with torch.device(device):
            return self.module()


def _pool_floor(x):
    return F.avg_pool2d(x, 2)  # floor(n / 2) per side


def _pool_ceil(x):
    return F.max_pool2d(x, 2, ceil_mode=True)  # ceil(n / 2): agrees with _pool_floor at even sizes


def _global_avg(x):
    return F.avg_pool2d(x, x.shape[2:])  # the seeds' global pool: a window as large as the map


def _zeros(*size, device):
    return torch.zeros(size, device=device)


CASES = [
    # --- windows ---
    Case("convolution", module=lambda: nn.Conv2d(3, 4, (5, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
         label="strided-dilated"),
    Case("convolution", module=lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=2, output_padding=1),
         label="transposed"),
    Case("convolution", module=lambda: nn.Sequential(nn.ConvTranspose2d(3, 3, 2, stride=2), nn.Conv2d(3, 3, 3, padding=1)),
         label="transposed-then-same"),
    Case("convolution", label="empty-transposed-then-same",
         module=lambda: nn.Sequential(nn.ConvTranspose2d(3, 3, 3, stride=2, padding=2, output_padding=1),
                                      nn.Conv2d(3, 3, 3, padding=1))),
    Case("convolution", module=lambda: nn.Conv2d(3, 6, 4, stride=3, padding=2, groups=3), label="grouped"),
    Case("convolution", module=lambda: nn.Sequential(nn.Conv2d(3, 3, 3, stride=2), nn.Conv2d(3, 3, 3, padding=1)),
         label="same-window"),
    Case("convolution", module=lambda: nn.Sequential(nn.Flatten(2), nn.Conv1d(3, 4, 7, stride=3)), label="1d"),
    Case("convolution", module=lambda: nn.Sequential(nn.Unflatten(1, (1, 3)), nn.Conv3d(1, 2, (2, 3, 3), padding=(0, 0, 2))),
         label="3d"),
    Case("max_pool2d_with_indices", fn=lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True), label="ceil"),
    Case("max_pool2d_with_indices", fn=lambda x: F.max_pool2d(x, (2, 4), stride=(3, 1), dilation=(2, 3)),
         label="dilated"),
    Case("max_pool2d_with_indices", fn=lambda x: F.max_pool1d(x.flatten(2), 5, stride=4, ceil_mode=True), label="1d"),
    Case("max_pool3d_with_indices", fn=lambda x: F.max_pool3d(x.unsqueeze(1), (1, 3, 2), stride=(1, 2, 3), ceil_mode=True)),
    Case("avg_pool2d", fn=lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
         label="ceil"),
    Case("avg_pool2d", fn=lambda x: _global_avg(F.max_pool2d(x, 3)), label="global-window"),
    Case("avg_pool2d", fn=lambda x: F.avg_pool1d(x.mean(2), 4, stride=3), label="1d"),
    Case("avg_pool3d", fn=lambda x: F.avg_pool3d(x.unsqueeze(1), (1, 4, 3), stride=(1, 3, 2), padding=(0, 1, 1))),
    Case("_adaptive_avg_pool2d", fn=lambda x: F.adaptive_avg_pool2d(x[:, :, 6:, 2:], (2, 5))),
    Case("_adaptive_avg_pool2d", fn=lambda x: F.adaptive_avg_pool1d(x.flatten(2)[..., 30:], 4), label="1d"),
    Case("_adaptive_avg_pool2d", fn=lambda x: F.interpolate(x[:, :, 3:], size=(4, 5), mode="area"), label="area"),
    Case("_adaptive_avg_pool3d", fn=lambda x: F.adaptive_avg_pool3d(x[:, :, 4:].unsqueeze(1), (1, 2, 3))),
    Case("adaptive_max_pool2d", fn=lambda x: F.adaptive_max_pool2d(x[..., 5:], 3)),
    Case("adaptive_max_pool3d", fn=lambda x: F.adaptive_max_pool3d(x[:, :, 3:].unsqueeze(1), (2, 2, 2))),
    # --- reductions ---
    Case("sum", fn=lambda x: x.sum(2)),
    Case("sum", fn=lambda x: x[:, :, 5:].sum((1, 3), keepdim=True), label="empty"),
    Case("mean", fn=lambda x: x.mean(3, keepdim=True)),
    Case("mean", fn=lambda x: F.adaptive_avg_pool2d(x[:, :, 5:], 1), label="adaptive-1x1"),
    Case("amax", fn=lambda x: x[:, :, 4:].amax(2)),
    Case("amin", fn=lambda x: x.amin((2, 3))),
    Case("any", fn=lambda x: (x > 0)[..., 5:].any(3)),
    Case("all", fn=lambda x: (x > 0).all(2)),
    Case("logsumexp", fn=lambda x: x[:, :, 3:].logsumexp(2)),
    Case("nansum", fn=lambda x: x.nansum(3)),
    Case("prod", fn=lambda x: x.prod(2)),
    Case("argmax", fn=lambda x: x[..., 4:].argmax(3)),
    Case("argmin", fn=lambda x: x.argmin(2, keepdim=True)),
    Case("linalg_vector_norm", fn=lambda x: torch.linalg.vector_norm(x, 2, dim=3)),
    Case("linalg_vector_norm", fn=lambda x: torch.linalg.vector_norm(x[:, :, 5:], float("inf"), dim=2), label="inf"),
    Case("norm", fn=lambda x: torch.norm_except_dim(x, 2, 3)),
    Case("norm", fn=lambda x: torch.norm_except_dim(x[:, :, 4:], -1, 3), label="negative-order"),
    Case("var", fn=lambda x: x.var(3)),
    Case("std", fn=lambda x: x.std(2, keepdim=True)),
    Case("max.dim", fn=lambda x: x[:, :, 3:].max(2).values),
    Case("min.dim", fn=lambda x: x.min(3).indices),
    Case("var_mean", fn=lambda x: torch.var_mean(x, 2)[0]),
    Case("std_mean", fn=lambda x: torch.std_mean(x, (2, 3))[1]),
    Case("aminmax", fn=lambda x: torch.aminmax(x[..., 6:], dim=3).max),
    Case("mode", fn=lambda x: x[:, :, 2:].mode(2).values),
    Case("median.dim", fn=lambda x: x.median(3).values),
    Case("nanmedian.dim", fn=lambda x: x[:, :, 4:].nanmedian(2).values),
    Case("kthvalue", fn=lambda x: x.kthvalue(5, 3).values),
    # --- views and shape ops ---
    Case("view", fn=lambda x: x.view(2, 3, -1), label="infer"),
    Case("view", fn=lambda x: x.flatten(1), label="flatten"),
    Case("view", fn=lambda x: F.max_pool2d(x, 2).view(2, 3, -1, 3), label="infer-divisible"),
    Case("_unsafe_view", fn=lambda x: x.transpose(0, 1).reshape(6, -1)),
    Case("view_copy", fn=lambda x: torch.view_copy(x, (2, -1, 6))),
    Case("as_strided", fn=lambda x: torch.as_strided(x, F.max_pool2d(x, 2).shape, x.stride())),
    Case("expand", fn=lambda x: x[:, :, 1:2].expand(-1, -1, x.shape[3], -1)),
    Case("expand_copy", fn=lambda x: torch.expand_copy(x[:, :1], (2, 3, -1, -1))),
    Case("permute", fn=lambda x: x.permute(0, 3, 1, 2)),
    Case("permute_copy", fn=lambda x: torch.permute_copy(x, (3, 2, 0, 1))),
    Case("t", fn=lambda x: x[0, 0].t()),
    Case("t_copy", fn=lambda x: torch.t_copy(x[0, 0])),
    Case("transpose", fn=lambda x: x.transpose(1, -1)),
    Case("transpose_copy", fn=lambda x: torch.transpose_copy(x, 2, 3)),
    Case("unsqueeze", fn=lambda x: x.unsqueeze(-1)),
    Case("unsqueeze_copy", fn=lambda x: torch.unsqueeze_copy(x, 2)),
    Case("squeeze", fn=lambda x: x.amax(2, keepdim=True).squeeze(2), label="dim"),
    Case("squeeze", fn=lambda x: x[:, :1].amax(2, keepdim=True).squeeze((1, 2)), label="dims"),
    Case("squeeze_copy", fn=lambda x: torch.squeeze_copy(x[:, :1], 1)),
    Case("cat", fn=lambda x: torch.cat([_pool_ceil(x), _pool_floor(x)], 1), label="agree"),
    Case("cat", fn=lambda x: torch.cat([x, x[:, :, 3:]], 2), label="joined-dim"),
    Case("stack", fn=lambda x: torch.stack([_pool_ceil(x), _pool_floor(x)], 2)),
    Case("slice", fn=lambda x: x[:, :, 2:-3, ::3]),
    Case("slice", fn=lambda x: x[:, :, :_pool_floor(x).shape[2]], label="bound-end"),
    Case("slice_copy", fn=lambda x: torch.slice_copy(x, 3, 1, -1, 2)),
    Case("narrow_copy", fn=lambda x: torch.narrow_copy(x, 2, 2, 3)),
    Case("narrow_copy", fn=lambda x: torch.narrow_copy(x, 3, 3, _pool_floor(x).shape[3]), label="bound-length"),
    Case("narrow_copy", fn=lambda x: torch.narrow_copy(x, 2, -3, 2), label="negative-start"),
    Case("select", fn=lambda x: x[:, :, 3]),
    Case("select", fn=lambda x: x[..., -5], label="negative"),
    Case("select_copy", fn=lambda x: torch.select_copy(x, 3, 2)),
    Case("split", fn=lambda x: x.split(2, 1)),
    Case("split_copy", fn=lambda x: torch.split_copy(x, 2, 1)),
    Case("unsafe_split", fn=lambda x: torch.unsafe_split(x, 2, 1)),
    Case("split_with_sizes", fn=lambda x: x.split([1, 2], 1)),
    Case("split_with_sizes", label="bound-sizes", traces=((24, 33), (36, 27)),
         fn=lambda x: x.split([F.avg_pool2d(x, (1, 2)).shape[3], F.max_pool2d(x, (1, 2), ceil_mode=True).shape[3]], 3)),
    Case("split_with_sizes_copy", fn=lambda x: torch.split_with_sizes_copy(x, [2, 1], 1)),
    Case("unsafe_split_with_sizes", fn=lambda x: torch.unsafe_split_with_sizes(x, [1, 2], 1)),
    Case("unbind", fn=lambda x: x.unbind(1)),
    Case("unbind_copy", fn=lambda x: torch.unbind_copy(x, 0)),
    Case("index_select", fn=lambda x: x.index_select(3, torch.arange(_pool_floor(x).shape[3], device=x.device))),
    # --- matrix products ---
    Case("mm", module=lambda: nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(126, 5, bias=False)),
         traces=((24, 28), (27, 31))),
    Case("addmm", module=lambda: nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(126, 5)),
         traces=((24, 28), (27, 31))),
    Case("bmm", fn=lambda x: torch.bmm(_pool_floor(x).flatten(2), _pool_ceil(x).flatten(2).transpose(1, 2))),
    Case("bmm", fn=lambda x: x @ x.transpose(2, 3), label="matmul"),
    Case("baddbmm", fn=lambda x: torch.baddbmm(_zeros(3, 3, device=x.device), _pool_floor(x).flatten(2),
                                               _pool_ceil(x).flatten(2).transpose(1, 2))),
    Case("mv", fn=lambda x: _pool_floor(x)[0, 0] @ _pool_ceil(x)[0, 0, 0]),
    Case("addmv", fn=lambda x: torch.addmv(F.max_pool2d(x, (2, 1), ceil_mode=True)[0, 0, :, 0], _pool_floor(x)[0, 0],
                                           F.avg_pool2d(x, (1, 2))[0, 0, 0])),
    # --- normalisation ---
    Case("native_batch_norm", module=lambda: nn.Sequential(nn.MaxPool2d(4), nn.BatchNorm2d(3)), train=True, batch=1),
    Case("native_batch_norm", module=lambda: nn.BatchNorm2d(3), label="eval"),
    Case("native_batch_norm", module=lambda: nn.Sequential(nn.MaxPool2d(4), nn.BatchNorm2d(3)), train=True,
         label="batch-2"),
    Case("native_batch_norm", fn=lambda x: F.batch_norm(x[:, :, 5:], None, None, training=True), batch=1,
         label="empty", same_path=False),
    Case("native_batch_norm", fn=lambda x: F.instance_norm(x), label="instance"),
    Case("native_group_norm", module=lambda: nn.Sequential(nn.MaxPool2d(4), nn.GroupNorm(3, 3)), batch=1),
    Case("native_layer_norm", fn=lambda x: F.layer_norm(x, x.shape[2:]), label="spatial"),
    Case("native_layer_norm", fn=lambda x: F.layer_norm(x.permute(0, 2, 3, 1), (3,)), label="channels"),
    # --- resampling and padding ---
    Case("upsample_nearest2d", fn=lambda x: F.interpolate(x, scale_factor=0.5)),
    Case("upsample_nearest2d", fn=lambda x: F.interpolate(x, size=F.avg_pool2d(x, 3).shape[2:]), label="size"),
    Case("upsample_nearest2d", fn=lambda x: F.interpolate(x, scale_factor=(1.7, 0.3)), label="fractional"),
    Case("upsample_nearest1d", fn=lambda x: F.interpolate(x.mean(2), scale_factor=0.4)),
    Case("upsample_nearest3d", fn=lambda x: F.interpolate(x.unsqueeze(1), scale_factor=(1, 0.5, 1.5))),
    Case("_upsample_nearest_exact1d", fn=lambda x: F.interpolate(x.flatten(2), scale_factor=0.1, mode="nearest-exact")),
    Case("_upsample_nearest_exact2d",
         fn=lambda x: F.interpolate(x, size=F.max_pool2d(x, 2).shape[2:], mode="nearest-exact")),
    Case("_upsample_nearest_exact3d",
         fn=lambda x: F.interpolate(x.unsqueeze(1), scale_factor=(2, 0.25, 0.5), mode="nearest-exact")),
    Case("upsample_linear1d", fn=lambda x: F.interpolate(x.mean(3), scale_factor=2.5, mode="linear")),
    Case("upsample_bilinear2d", fn=lambda x: F.interpolate(x, scale_factor=0.7, mode="bilinear", align_corners=True)),
    Case("upsample_bicubic2d", fn=lambda x: F.interpolate(x, scale_factor=(0.5, 2), mode="bicubic")),
    Case("upsample_trilinear3d", fn=lambda x: F.interpolate(x.unsqueeze(2), scale_factor=(2, 0.5, 0.5), mode="trilinear")),
    Case("_upsample_bilinear2d_aa", fn=lambda x: F.interpolate(x, scale_factor=0.3, mode="bilinear", antialias=True)),
    Case("_upsample_bicubic2d_aa",
         fn=lambda x: F.interpolate(x, size=F.max_pool2d(x, 3).shape[2:], mode="bicubic", antialias=True)),
    Case("constant_pad_nd", fn=lambda x: F.pad(x, (-3, 1, 2, -5))),
    Case("constant_pad_nd", fn=lambda x: F.pad(x, (-2, -2, 0, -3)), label="cut-both"),
    Case("constant_pad_nd", fn=lambda x: F.pad(x, (0, _pool_ceil(x).shape[3])), label="bound-pad"),
    Case("reflection_pad1d", fn=lambda x: F.pad(x.mean(2), (3, 2), mode="reflect")),
    Case("reflection_pad2d", fn=lambda x: F.pad(x, (2, 3, 4, 1), mode="reflect")),
    Case("reflection_pad3d", fn=lambda x: F.pad(x.unsqueeze(1), (1, 2, 3, 1, 0, 0), mode="reflect")),
    Case("replication_pad1d", fn=lambda x: F.pad(x.mean(2), (2, -3), mode="replicate")),
    Case("replication_pad2d", fn=lambda x: F.pad(x, (-2, 1, 3, -4), mode="replicate")),
    Case("replication_pad3d", fn=lambda x: F.pad(x.unsqueeze(1), (1, -2, -1, 2, 0, 0), mode="replicate")),
    Case("pixel_shuffle", module=lambda: nn.Sequential(nn.Conv2d(3, 12, 1), nn.PixelShuffle(2))),
    Case("pixel_unshuffle", fn=lambda x: F.pixel_unshuffle(x, 3), traces=((24, 33), (36, 27))),
    # --- factories ---
    Case("empty", fn=lambda x: torch.empty(x.shape[2:], device=x.device)),
    Case("zeros", fn=lambda x: torch.zeros(x.shape[0], x.shape[3], device=x.device)),
    Case("ones", fn=lambda x: torch.ones(_pool_floor(x).shape, device=x.device)),
    Case("full", fn=lambda x: torch.full((x.shape[2], 5), 1.5, device=x.device)),
    Case("empty_strided", fn=lambda x: torch.empty_strided((x.shape[3], x.shape[2]), (1, x.shape[3]), device=x.device)),
    Case("rand", fn=lambda x: torch.rand(_pool_ceil(x).shape, device=x.device)),
    Case("randn", fn=lambda x: torch.randn(x.shape[3], 2, device=x.device)),
    Case("new_empty", fn=lambda x: x.new_empty(x.shape[1:])),
    Case("new_zeros", fn=lambda x: x.new_zeros((x.shape[2], x.shape[3]))),
    Case("new_ones", fn=lambda x: x.new_ones((4, x.shape[2]))),
    Case("new_full", fn=lambda x: x.new_full((x.shape[3],), 2.0)),
    Case("new_empty_strided", fn=lambda x: x.new_empty_strided((x.shape[2], x.shape[3]), (x.shape[3], 1))),
    Case("empty_permuted", fn=lambda x: torch.empty_permuted((2, x.shape[2], x.shape[3], 3), (0, 3, 1, 2), device=x.device)),
    Case("arange", fn=lambda x: torch.arange(x.shape[3], device=x.device)),
    Case("arange", fn=lambda x: torch.arange(2, x.shape[2], 3, device=x.device), label="start-step"),
    Case("arange", fn=lambda x: torch.arange(x.shape[3], 0, -2, device=x.device), label="negative-step"),
    Case("arange", fn=lambda x: torch.arange(x.shape[3], 4, -1, device=x.device), label="against-step"),
]


def _rule_name(op) -> str | None:
    """The registered name whose rule the replay runs for traced op ``op`` (as the engine looks it up)."""
    if op.overload in RULES:
        return op.overload
    return op.name if op.name in RULES else None


def _trace(model: nn.Module, case: Case, size) -> Trace | None:
    """A real pass at ``size`` on meta: its trace, or ``None`` where it fails."""
    try:
        return trace(model, make_input((case.batch, 3, *size)), train=case.train, track_modules=False)
    except TraceFailure:
        return None


def _runs_on_cpu(model: nn.Module, case: Case, size) -> bool:
    model.train(case.train)
    try:
        with torch.no_grad():
            model(torch.randn(case.batch, 3, *size))
        return True
    except Exception:  # noqa: BLE001 - any failure means the size does not run
        return False


def _size_dependent(program: Program, result, k: int) -> bool:
    """Does op ``k`` read or produce a dimension that changes with the input size (an array in
    the replay), or take an argument that does?"""
    op = program.ops[k]
    keys = [(k, j) for j in range(len(op.out_shapes[0]))]
    for key in op.keys.values():
        keys += key if isinstance(key, list) else [key]
    if INPUT in keys or op.varying:
        return True
    return any(isinstance(d, np.ndarray) for key in keys for d in result.outputs.get(key, ()))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_matches_forward_passes(case: Case):
    model = case.build()
    traces = [_trace(model, case, size) for size in case.traces]
    assert all(t is not None for t in traces), "a traced size does not run"
    ops = [op.index for op in traces[0].ops if _rule_name(op) == case.op]
    assert ops, f"aten.{case.op} is not in the trace: {[op.overload for op in traces[0].ops]}"

    program = Program(traces)
    result = program.replay([h for h, _ in SIZES], [w for _, w in SIZES], keep_outputs=True)
    assert not result.ambiguities, [a.what for a in result.ambiguities]
    assert any(_size_dependent(program, result, k) for k in ops), f"aten.{case.op} does not depend on the input size"
    cpu_model = case.build("cpu")
    wrong = []
    for i, size in enumerate(SIZES):
        real = _trace(model, case, size)
        runs = _runs_on_cpu(cpu_model, case, size)
        if (real is not None) != runs or forward_runs(model, (case.batch, 3, *size), train=case.train) != runs:
            wrong.append(f"{size}: {'runs' if runs else 'fails'} on the CPU, a meta pass says it "
                         f"{'runs' if real is not None else 'fails'}")
        said = bool(result.valid[i])
        if said != runs:
            why = "" if said else f" ({result.reason(i)})"
            wrong.append(f"{size}: {'runs' if runs else 'fails'}, the replay says it {'runs' if said else 'fails'}{why}")
            continue
        if not runs:
            continue
        if real is None or [o.func for o in real.ops] != [o.func for o in traces[0].ops]:
            assert not case.same_path, f"{size}: the forward takes another path"
            continue
        for k in ops:
            for j, ref in enumerate(real.ops[k].outputs):
                if ref is not None and result.output_shape(k, i, j) != ref.shape:
                    wrong.append(f"{size}: op {k} output {j} replayed {result.output_shape(k, i, j)}, real {ref.shape}")
    assert not wrong, "\n".join(wrong)


def test_every_rule_has_a_case():
    assert {c.op for c in CASES} == set(RULES)


def test_a_second_rule_for_an_op_is_refused():
    before = dict(RULES)
    with pytest.raises(ValueError, match=r"aten\.convolution"):
        rule("not_an_aten_op", "convolution")(lambda ctx: [])
    assert dict(RULES) == before  # nothing registered, not even the new name
    with pytest.raises(TypeError):
        RULES["convolution"] = lambda ctx: []  # type: ignore[index]
