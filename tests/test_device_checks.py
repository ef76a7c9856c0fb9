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
