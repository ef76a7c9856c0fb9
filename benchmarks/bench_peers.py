"""archprobe next to the peer counters on the same models: their counts and wall time.

Peers (install with ``pip install -e '.[bench]'``): fvcore, torchinfo, ptflops, thop and
torch's own ``FlopCounterMode``. Each tool is used the way its documentation shows: the peers
build the model on the CPU with real weights and run a real forward; archprobe builds on the
meta device. Wall time per model includes building the model. MACs are printed in millions
(MMACs) at batch 1; FlopCounterMode reports FLOPs and is halved to MACs.

    .venv/bin/python benchmarks/bench_peers.py [MODEL ...]
"""

from __future__ import annotations

import sys
import time
import warnings

import torch

from archprobe.analysis.counting import count
from archprobe.zoo.spec import resolve

warnings.filterwarnings("ignore")
DEFAULT_MODELS = ["alexnet", "vgg16", "nin", "googlenet", "inception-v3", "resnet50", "densenet121", "lenet"]


def archprobe_tool(spec):
    result = count(spec)
    return result.macs, result.params


def fvcore_tool(spec):
    from fvcore.nn import FlopCountAnalysis

    model = spec.build("cpu")
    analysis = FlopCountAnalysis(model, torch.randn(1, *spec.input_shape))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total(), sum(p.numel() for p in model.parameters())


def torchinfo_tool(spec):
    from torchinfo import summary

    stats = summary(spec.build("cpu"), input_size=(1, *spec.input_shape), verbose=0)
    return stats.total_mult_adds, stats.total_params


def ptflops_tool(spec):
    from ptflops import get_model_complexity_info

    macs, params = get_model_complexity_info(
        spec.build("cpu"), tuple(spec.input_shape), as_strings=False, print_per_layer_stat=False, verbose=False
    )
    return macs, params


def thop_tool(spec):
    from thop import profile

    macs, params = profile(spec.build("cpu"), inputs=(torch.randn(1, *spec.input_shape),), verbose=False)
    return macs, params


def flop_counter_tool(spec):
    from torch.utils.flop_counter import FlopCounterMode

    model = spec.build("cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *spec.input_shape))
    return counter.get_total_flops() // 2, sum(p.numel() for p in model.parameters())


TOOLS = {
    "archprobe": archprobe_tool,
    "fvcore": fvcore_tool,
    "torchinfo": torchinfo_tool,
    "ptflops": ptflops_tool,
    "thop": thop_tool,
    "FlopCounterMode/2": flop_counter_tool,
}


def main(models: list[str]) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for tool, fn in TOOLS.items():  # import every tool once, outside the timings
        fn(resolve("lenet"))
    for name in models:
        spec = resolve(name)
        for tool, fn in TOOLS.items():
            start = time.perf_counter()
            try:
                macs, params = fn(spec)
                error = ""
            except Exception as exc:  # noqa: BLE001 - a peer failing on a model is a result too
                macs = params = None
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
            rows.append((name, tool, macs, params, time.perf_counter() - start, error))
            print(f"  {name:13s} {tool:18s} done", file=sys.stderr)

    print(f"\n{'model':13s} {'tool':18s} {'MMACs':>11s} {'params':>12s} {'time s':>8s} {'archprobe/peer time':>20s}")
    ours = {r[0]: r[4] for r in rows if r[1] == "archprobe"}
    for name, tool, macs, params, seconds, error in rows:
        mmacs = f"{macs / 1e6:11.3f}" if macs is not None else f"{'-':>11s}"
        count_text = f"{int(params):12,}" if params is not None else f"{'-':>12s}"
        ratio = "" if tool == "archprobe" else f"{ours[name] / seconds:20.3f}"
        print(f"{name:13s} {tool:18s} {mmacs} {count_text} {seconds:8.2f} {ratio}{'  ' + error if error else ''}")


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT_MODELS)
