"""``archprobe profile``: each layer's measured time in one step, forward and backward, vs the roofline."""

from __future__ import annotations

import os

import click

from archprobe.cli import cli
from archprobe.cli.options import (
    MAX_BATCH,
    NonEmptyPath,
    Seconds,
    cudnn_benchmark_option,
    dtype_option,
    min_iters_option,
    mode_option,
    model_input_options,
    output_options,
    threads_option,
    warmup_iters_option,
    warmup_time_option,
)


@cli.command("profile")
@click.argument("models", nargs=-1, required=True)
@click.option("--device", "-d", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device to profile on.")
@mode_option("train profiles the training step (zero_grad, forward, cross-entropy, backward, SGD step).")
@click.option("--batch-size", "-b", type=click.IntRange(1, MAX_BATCH), default=32, show_default=True,
              help="Batch size.")
@click.option("--depth", type=click.IntRange(min=0), default=2, show_default=True,
              help="Layers are the modules at this depth; deeper ones fold into them.")
@click.option("--top", type=click.IntRange(min=1), help="Show the K rows with the most time, and the rest as one row.")
@dtype_option()
@threads_option()
@warmup_iters_option
@warmup_time_option
@click.option("--min-time", type=Seconds(), default=2.0, show_default=True,
              help="Profiled repeats: at least this many seconds ...")
@min_iters_option
@cudnn_benchmark_option
@click.option("--plot", "plot_dir", type=NonEmptyPath("DIR"),
              help="Write MODEL-roofline.png and MODEL-time.png into DIR.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@model_input_options
@output_options
def profile_command(models, device, mode, batch_size, depth, top, dtype, threads, warmup, warmup_time, min_time,
                    min_iters, cudnn_benchmark, plot_dir, quiet, input_size, in_channels, num_classes, fmt, output):
    """Measure where one step of MODELS spends its time, layer by layer.

    Each layer (a module at --depth; deeper modules fold into it) gets its forward time and,
    with --mode train, its backward time (the ops of the autograd nodes its forward made);
    the optimizer step, the loss and what no layer owns ('(unattributed)') are rows of their
    own, so the shares add up to the step. Times come from torch.profiler: op self-times on
    CPU, kernel times on CUDA, medians over the profiled repeats (warm-up and repeats as in
    'throughput'). Beside each: MACs and FLOPs (the counter of 'params'), the bytes its ops
    read and write, the FLOP/s it achieved, its arithmetic intensity (FLOP/B) and the roofline
    there: the lower of the matmul-class ceiling and the measured copy bandwidth times the
    intensity, which says whether it is compute- or memory-bound. The notes compare the
    profiled step with throughput's median for the same setup (the profiler's cost).

    \b
    Examples:
      archprobe profile googlenet-d2l --mode train -b 32 --depth 2
      archprobe profile resnet18 --depth 1 --top 10
      archprobe profile tv:mobilenet_v3_small --device cuda --mode train -f json -o prof.json
      archprobe profile lenet --train -b 64 --plot plots/
    """
    from archprobe.bench.profile import profile_sweep, top_rows
    from archprobe.bench.throughput import ThroughputConfig
    from archprobe.cli.options import resolve_specs
    from archprobe.cli.progress import progress_bar
    from archprobe.report.frames import render
    from archprobe.report.notes import profile_notes
    from archprobe.report.writers import emit
    from archprobe.runtime.backends import resolve_devices

    if plot_dir and os.path.exists(plot_dir) and not os.path.isdir(plot_dir):
        raise click.BadParameter(f"{plot_dir!r} is not a directory", param_hint="--plot")
    (device,), _ = resolve_devices([device])
    specs = resolve_specs(models, input_size, in_channels, num_classes)
    config = ThroughputConfig(mode=mode, batch_size=batch_size, dtype=dtype, threads=threads, warmup=warmup,
                              warmup_time=warmup_time, min_time=min_time, min_iters=min_iters,
                              cudnn_benchmark=cudnn_benchmark)
    progress = progress_bar(quiet)
    task = progress.add_task("profile", total=len(specs))
    results = []
    with progress:
        for result in profile_sweep(specs, device, config, depth=depth,
                                    on_start=lambda label: progress.update(task, description=label)):
            results.append(result)
            progress.advance(task)
    if plot_dir:
        _plots(results, plot_dir)
    if fmt == "json":
        emit(render(results, fmt), output)
    elif fmt == "csv":
        emit(render([row for r in results for row in top_rows(r, top)], fmt), output)
    else:
        tables = [render(list(top_rows(r, top)), fmt, profile_notes([r])) for r in results if r.rows]
        failed = [r for r in results if not r.rows]
        text = "\n".join(tables)
        if failed:
            text += ("\n" if text else "") + "\n".join(profile_notes(failed)) + "\n"
        emit(text, output)
    if not any(r.ok for r in results):
        from archprobe.errors import ArchprobeError

        raise ArchprobeError("; ".join(f"{r.label}: {r.error}" for r in results))


def _plots(results, directory: str) -> None:
    from archprobe.plumbing.files import write_atomic
    from archprobe.report.plots import profile_roofline, profile_shares

    os.makedirs(directory, exist_ok=True)
    for r in results:
        if not r.ok:
            continue
        name = r.model.replace("/", "_").replace(":", "_")
        write_atomic(os.path.join(directory, f"{name}-roofline.png"), profile_roofline(r))
        write_atomic(os.path.join(directory, f"{name}-time.png"), profile_shares(r))
