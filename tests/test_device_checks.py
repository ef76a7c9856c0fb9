"""The real kernels' size checks that archprobe adds to meta passes (``analysis.device_checks``).

For every check, one call that the CPU kernel refuses: the CPU must refuse it (so the check is
the CPU's rule, not a guess), and so must a meta pass under archprobe's dispatch mode, whatever
the meta kernel of this torch release does. Calls that run on the CPU must run there too.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archprobe.analysis.device_checks import CHECKS
from archprobe.analysis.trace import FastMeta

aten = torch.ops.aten


def _z(*shape, device):
    return torch.zeros(shape, device=device)


def _reduction(name: str, *args):
    return lambda d: getattr(torch, name)(_z(1, 0, 2, device=d), *args)


def _upsample(op, spatial: int, *extra):
    return lambda d: op(_z(1, 1, *(2,) * spatial, device=d), [0] + [2] * (spatial - 1), *extra)


REFUSED = {
    "convolution": lambda d: F.conv2d(_z(1, 1, 2, 2, device=d), _z(1, 1, 3, 3, device=d)),
    "addmm": lambda d: torch.addmm(_z(2, device=d), _z(1, 3, device=d), _z(3, 1, device=d)),
    "addmv": lambda d: torch.addmv(_z(2, device=d), _z(1, 3, device=d), _z(3, device=d)),
    "baddbmm": lambda d: torch.baddbmm(_z(2, 1, 1, device=d), _z(1, 1, 3, device=d), _z(1, 3, 1, device=d)),
    # (an output of 1 takes the mean instead)
    "_adaptive_avg_pool2d": lambda d: F.adaptive_avg_pool2d(_z(1, 1, 0, 2, device=d), 2),
    "_adaptive_avg_pool3d": lambda d: F.adaptive_avg_pool3d(_z(1, 1, 0, 2, 2, device=d), 2),
    "max.dim": _reduction("max", 1),
    "min.dim": _reduction("min", 1),
    "median.dim": _reduction("median", 1),
    "nanmedian.dim": _reduction("nanmedian", 1),
    "mode": _reduction("mode", 1),
    "kthvalue": _reduction("kthvalue", 1, 1),
    "amax": _reduction("amax", 1),
    "amin": _reduction("amin", 1),
    "argmax": _reduction("argmax", 1),
    "argmin": _reduction("argmin", 1),
    "aminmax": lambda d: torch.aminmax(_z(1, 0, 2, device=d), dim=1),
    "max.default": lambda d: _z(0, device=d).max(),
    "min.default": lambda d: _z(0, device=d).min(),
    "upsample_nearest1d": _upsample(aten.upsample_nearest1d, 1),
    "upsample_nearest2d": _upsample(aten.upsample_nearest2d, 2),
    "upsample_nearest3d": _upsample(aten.upsample_nearest3d, 3),
    "_upsample_nearest_exact1d": _upsample(aten._upsample_nearest_exact1d, 1),
    "_upsample_nearest_exact2d": _upsample(aten._upsample_nearest_exact2d, 2),
    "_upsample_nearest_exact3d": _upsample(aten._upsample_nearest_exact3d, 3),
    "upsample_linear1d": _upsample(aten.upsample_linear1d, 1, False),
    "upsample_bilinear2d": _upsample(aten.upsample_bilinear2d, 2, False),
    "upsample_bicubic2d": _upsample(aten.upsample_bicubic2d, 2, False),
    "upsample_trilinear3d": _upsample(aten.upsample_trilinear3d, 3, False),
    "_upsample_bilinear2d_aa": _upsample(aten._upsample_bilinear2d_aa, 2, False),
    "_upsample_bicubic2d_aa": _upsample(aten._upsample_bicubic2d_aa, 2, False),
}

# The same ops at sizes every kernel accepts: the checks must let them through.
ACCEPTED = {
    "convolution": lambda d: F.conv2d(_z(1, 1, 3, 3, device=d), _z(1, 1, 3, 3, device=d)),
    "transposed convolution to an empty output": lambda d: F.conv_transpose2d(
        _z(2, 3, 1, 1, device=d), _z(3, 4, 3, 3, device=d), stride=2, padding=2, output_padding=1),
    "addmv with a broadcast bias": lambda d: torch.addmv(_z(1, device=d), _z(2, 3, device=d), _z(3, device=d)),
    "addmm": lambda d: torch.addmm(_z(4, device=d), _z(2, 3, device=d), _z(3, 4, device=d)),
    "max.dim": lambda d: torch.max(_z(1, 3, 2, device=d), 1),
    "reduction with an identity": lambda d: torch.sum(_z(1, 0, 2, device=d), 1),
    "median of an empty tensor": lambda d: _z(0, device=d).median(),
    "upsample_bilinear2d": lambda d: F.interpolate(_z(1, 1, 2, 2, device=d), scale_factor=0.5, mode="bilinear"),
}


def _runs(call, device: str) -> bool:
    try:
        if device == "meta":
            with torch.no_grad(), FastMeta():
                call("meta")
        else:
            call(device)
        return True
    except Exception:  # noqa: BLE001 - a kernel's refusal, whatever its type (Python references raise others)
        return False


def test_every_check_has_a_refused_call():
    assert set(REFUSED) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_cpu_refuses_and_so_does_a_meta_pass(name):
    call = REFUSED[name]
    assert not _runs(call, "cpu"), f"the CPU kernel runs it: the check for {name} is not the CPU's rule"
    assert not _runs(call, "meta")


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_what_the_cpu_runs_runs_on_meta(name):
    call = ACCEPTED[name]
    assert _runs(call, "cpu") and _runs(call, "meta")


# --- the fast meta paths ---------------------------------------------------------------------------
def _outputs(out):
    return [(tuple(t.shape), t.stride(), t.dtype) for t in (out if isinstance(out, (tuple, list)) else (out,))]


def _on(device, *tensors):
    return [None if t is None else torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
            for t in tensors]


def _strided(shape, dtype, transposed=False):
    return torch.empty(shape[::-1], dtype=dtype).t() if transposed else torch.empty(shape, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_fast_meta_paths_give_the_cpu_s_outputs(dtype):
    # The meta addmm, native_layer_norm (and its backward) and gelu (and its backward) are Python
    # references (~0.4 to 1.5 ms a call); the fast paths that answer their plain cases give the
    # outputs (shapes, strides, dtypes) the CPU kernels give, and leave every other case to the
    # real kernel.
    from archprobe.analysis.trace import run_op

    checked = 0
    for n, k, m in [(1, 1, 1), (3, 5, 7), (0, 3, 2), (2, 0, 3)]:
        for bias_shape in [(m,), (1,), (n, m), (1, m), (n, 1), ()]:
            for ta in (False, True):
                for tb in (False, True):
                    cpu = [torch.empty(bias_shape, dtype=dtype), _strided((n, k), dtype, ta), _strided((k, m), dtype, tb)]
                    got = run_op(aten.addmm.default, tuple(_on("meta", *cpu)), {"beta": 0.5})
                    assert _outputs(got) == _outputs(aten.addmm.default(*cpu, beta=0.5))
                    checked += 1
    for shape, normalized in [((2, 5, 8), (8,)), ((2, 5, 8), (5, 8)), ((3, 2, 7, 7), (7,)), ((0, 3), (3,))]:
        for param_dtype in (None, dtype, torch.float32):
            for transposed in (False, True):
                x = torch.empty(shape[::-1], dtype=dtype).permute(*reversed(range(len(shape)))) if transposed \
                    else torch.empty(shape, dtype=dtype)
                w = None if param_dtype is None else torch.ones(normalized, dtype=param_dtype)
                meta_x, meta_w = _on("meta", x, w)
                got = run_op(aten.native_layer_norm.default, (meta_x, list(normalized), meta_w, meta_w, 1e-5), {})
                assert _outputs(got) == _outputs(aten.native_layer_norm.default(x, list(normalized), w, w, 1e-5))
                checked += 1
    # the plain cases do take the fast paths
    from archprobe.analysis.trace import _FAST_META

    plain = _on("meta", torch.empty(4, dtype=dtype), torch.empty(2, 3, dtype=dtype), torch.empty(3, 4, dtype=dtype))
    assert _FAST_META[aten.addmm.default](aten.addmm.default, tuple(plain), {}) is not NotImplemented
    x, w = _on("meta", torch.empty(2, 5, 8, dtype=dtype), torch.empty(8, dtype=dtype))
    assert _FAST_META[aten.native_layer_norm.default](aten.native_layer_norm.default, (x, [8], w, w, 1e-5), {}) \
        is not NotImplemented
    for shape, normalized in [((2, 5, 8), (8,)), ((2, 5, 8), (5, 8)), ((0, 3), (3,))]:
        for param_dtype in (None, dtype, torch.float32):
            for mask in ([True, True, True], [True, False, False], [False, True, True]):
                if param_dtype is None and mask[1]:
                    continue  # autograd asks no parameter gradient of a norm without parameters
                x, grad = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
                w = None if param_dtype is None else torch.ones(normalized, dtype=param_dtype)
                _, mean, rstd = aten.native_layer_norm.default(x, list(normalized), w, w, 1e-5)
                cpu = (grad, x, list(normalized), mean, rstd, w, w, mask)
                meta = (*_on("meta", grad, x), list(normalized), *_on("meta", mean, rstd, w, w), mask)
                got = run_op(aten.native_layer_norm_backward.default, meta, {})
                want = aten.native_layer_norm_backward.default(*cpu)
                assert [o is None for o in got] == [o is None for o in want]
                assert _outputs([o for o in got if o is not None]) == _outputs([o for o in want if o is not None])
                checked += 1
    for shape in [(2, 3, 4), (0, 5), ()]:
        for approximate in ("none", "tanh"):
            x, grad = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
            for op, cpu in ((aten.gelu.default, (x,)), (aten.gelu_backward.default, (grad, x))):
                got = run_op(op, tuple(_on("meta", *cpu)), {"approximate": approximate})
                assert _outputs(got) == _outputs(op(*cpu, approximate=approximate))
                checked += 1
            transposed = _on("meta", x.t() if x.dim() == 2 else x)
            assert _outputs(run_op(aten.gelu.default, tuple(transposed), {})) == _outputs(aten.gelu.default(*_on(
                "cpu", *transposed)))
    assert checked == 4 * 6 * 4 + 4 * 3 * 2 + 3 * 7 + 3 * 2 * 2
    with pytest.raises(Exception):  # a bias that does not broadcast: the kernels' own refusal
        run_op(aten.addmm.default, tuple(_on("meta", torch.empty(3), torch.empty(2, 4), torch.empty(4, 2))), {})
    with pytest.raises(Exception):  # a normalised shape that is not the input's last dimensions
        run_op(aten.native_layer_norm.default, (torch.empty(2, 5, device="meta"), [4], None, None, 1e-5), {})
