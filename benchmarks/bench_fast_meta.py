"""The fast meta paths (``analysis.trace._FAST_META``) against the meta kernels they stand in for.

For each op with a fast path: the time of one call through ``run_op`` (the fast path, then
archprobe's device checks and dtype rule) against one call of the meta kernel itself, on the
shapes of a transformer layer, median of ``--repeats`` rounds. Then a training-step trace of each
model with the fast paths and with them switched off (the meta kernels), in one run.

    .venv/bin/python benchmarks/bench_fast_meta.py [MODEL ...] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from archprobe import api
from archprobe.analysis import trace as tr

aten = torch.ops.aten


def _meta(*shape):
    return torch.empty(shape, device="meta")


# (op, args, kwargs) on a ViT-S/16 block's shapes: 197 tokens of 384 channels, MLP 1536
CALLS = [
    (aten.addmm.default, (_meta(1536), _meta(197, 384), _meta(384, 1536)), {}),
    (aten.native_layer_norm.default, (_meta(1, 197, 384), [384], _meta(384), _meta(384), 1e-6), {}),
    (aten.native_layer_norm_backward.default,
     (_meta(1, 197, 384), _meta(1, 197, 384), [384], _meta(1, 197, 1), _meta(1, 197, 1), _meta(384), _meta(384),
      [True, True, True]), {}),
    (aten.gelu.default, (_meta(1, 197, 1536),), {}),
    (aten.gelu_backward.default, (_meta(1, 197, 1536), _meta(1, 197, 1536)), {}),
    (aten.convolution.default, (_meta(8, 64, 56, 56), _meta(64, 64, 3, 3), None, [1, 1], [1, 1], [1, 1], False,
                                [0, 0], 1), {}),
    (aten.cat.default, ([_meta(8, 32, 28, 28) for _ in range(16)], 1), {}),
]


def per_call(fn, repeats: int, number: int = 200) -> float:
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number)
    return statistics.median(rounds)


def trace_time(name: str, repeats: int) -> float:
    probe = api.probe(name, mode="train")
    return statistics.median(
        (lambda t: (tr.trace(probe.model, probe.input(), train=True, backward=True), time.perf_counter() - t)[1])(
            time.perf_counter()) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["tv:swin_t", "timm:convnext_tiny", "timm:vit_small_patch16_224"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'op':38s} {'meta kernel':>12s} {'fast path':>10s} {'ratio':>6s}")
    for op, op_args, kwargs in CALLS:
        assert op in tr._FAST_META, op
        kernel = per_call(lambda: op(*op_args, **kwargs), args.repeats)
        fast = per_call(lambda: tr.run_op(op, op_args, kwargs), args.repeats)
        print(f"{str(op):38s} {kernel * 1e6:10.1f}us {fast * 1e6:8.1f}us {kernel / fast:5.1f}x")
    print(f"\n{'training-step trace':38s} {'meta kernels':>12s} {'fast paths':>10s} {'ratio':>6s}")
    saved = dict(tr._FAST_META)
    for name in args.models:
        fast = trace_time(name, args.repeats)
        tr._FAST_META.clear()
        try:
            kernels = trace_time(name, args.repeats)
        finally:
            tr._FAST_META.update(saved)
        print(f"{name:38s} {kernels * 1e3:10.1f}ms {fast * 1e3:8.1f}ms {kernels / fast:5.1f}x")


if __name__ == "__main__":
    main()
