"""``archprobe throughput``: examples/sec on CPU and CUDA, inference and training."""

from __future__ import annotations

import contextlib

import click

from archprobe.cli import cli
from archprobe.cli.options import (
    IntList,
    Seconds,
    batch_sizes_option,
    cudnn_benchmark_option,
    dtype_option,
    flatten_lists,
    min_iters_option,
    model_input_options,
    output_options,
    threads_option,
    warmup_iters_option,
    warmup_time_option,
)
from archprobe.cli.progress import progress_bar
from archprobe.errors import as_interrupted
from archprobe.runtime.distributed import DEFAULT_TIMEOUT_S

SEED_MODELS = ("alexnet", "vgg16", "nin", "googlenet")
MODE_CHOICES = ("eval", "inference", "train", "both")


@cli.command("throughput")
@click.argument("models", nargs=-1)
@click.option("--device", "-d", "devices", multiple=True, default=("all",), show_default=True,
              type=click.Choice(["cpu", "cuda", "all"]),
              help="Device to measure on (repeatable); 'all' = cpu and cuda if available.")
@click.option("--mode", "-m", type=click.Choice(MODE_CHOICES), default="both", show_default=True,
              help="eval (inference: eval mode under inference_mode; 'inference' is a synonym) and/or train.")
@batch_sizes_option("32")
@dtype_option()
@click.option("--channels-last", is_flag=True, help="Model and input in channels_last memory format.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the model; compile time is reported apart from the throughput.")
@threads_option(per_rank=True)
@warmup_iters_option
@warmup_time_option
@click.option("--min-time", type=Seconds(), default=2.0, show_default=True,
              help="Timed phase: at least this many seconds ...")
@min_iters_option
@cudnn_benchmark_option
@click.option("--utilisation/--no-utilisation", default=True, show_default=True,
              help="Count FLOPs and measure a matmul ceiling per device to report utilisation.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--nproc", "nprocs", type=IntList(), multiple=True,
              help="Data-parallel: launch N local ranks through torch.distributed (DDP in train; "
                   "comma-separate for a scaling sweep: 1,2,4). -b and --threads are per rank.")
@click.option("--distributed", is_flag=True,
              help="Join the process group torchrun started (one or many nodes) instead of launching ranks.")
@click.option("--timeout", type=Seconds(minimum=1), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="With --nproc/--distributed: seconds a rank waits for its peers before the row fails.")
@model_input_options
@output_options
@click.pass_context
def throughput_command(ctx, models, devices, mode, batch_sizes, dtype, channels_last, compile_, threads,
                       warmup, warmup_time, min_time, min_iters, cudnn_benchmark, utilisation, quiet,
                       nprocs, distributed, timeout, input_size, in_channels, num_classes, fmt, output):
    """Measure examples/sec of MODELS (default: alexnet vgg16 nin googlenet).

    Each model x device x mode x batch size is one row, built with real weights on the device
    and fed synthetic on-device data. After a warm-up (by count and time), per-iteration times
    are taken (CUDA events on CUDA) for at least --min-time seconds and --min-iters iterations;
    the table shows the median, the IQR, examples/sec = batch / median, the achieved FLOP/s as
    a fraction of a matmul ceiling measured on the same device, and peak memory. With two
    devices a Speedup column gives CUDA over CPU. The setup (versions, device, threads, dtype,
    memory format) is recorded in every row; -f json/csv show all fields.

    Rows are written as soon as they are measured (-o FILE.csv appends; -o picks csv, json or
    md from the file's suffix unless -f is given); Ctrl-C (or SIGTERM) keeps what was measured
    and exits with 130 (143). An out-of-memory batch size is recorded as 'oom' and the sweep goes on; the
    batch size is never changed. A failing model's error is kept in its row.

    Past one device, --nproc N runs N data-parallel ranks on this machine through
    torch.distributed's launcher (the one torchrun uses): DistributedDataParallel in train,
    independent ranks in eval; gloo on CPU with the cores split between the ranks, NCCL on CUDA
    with one GPU per rank (--device defaults to cuda where usable, else cpu). A step's time is
    the slowest rank's; Examples/s = batch x ranks / median step time, and Scaling eff. compares
    it with one process at the same per-rank batch and threads, measured in the same run. A rank
    that fails turns its row into an error row naming it. Across machines, start archprobe
    with torchrun and --distributed (see README.md); only rank 0 writes output.

    \b
    Examples:
      archprobe throughput --device cpu --mode train -b 8
      archprobe throughput googlenet-d2l --device all -b 32,128 -o results.csv
      archprobe throughput resnet50 --device cuda --dtype bfloat16 --channels-last --compile
      archprobe throughput tv:mobilenet_v3_small --device cpu --threads 4 --mode inference
      archprobe throughput lenet --device cpu --nproc 1,2 --mode train -b 32
      archprobe throughput resnet50 --device cuda --nproc 1,2,4,8 --mode train -f json
      torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m archprobe throughput resnet50 --device cuda --mode train --distributed -o scaling.csv
    """
    from archprobe.bench.sweeps import distributed_sweep, throughput_sweep
    from archprobe.runtime.distributed import writes_output
    from archprobe.zoo.resolution import expand
    from archprobe.bench.throughput import MODES, RESULT_FIELDS, ThroughputConfig, ThroughputRunner
    from archprobe.cli.options import resolve_specs
    from archprobe.probe import Mode
    from archprobe.report.frames import render
    from archprobe.report.notes import note_text, throughput_notes
    from archprobe.report.writers import resolve_output, streaming, write_output
    from archprobe.plumbing.files import write_atomic
    from archprobe.runtime.backends import cuda_usable, resolve_devices
    from archprobe.runtime.sink import CsvSink

    target = resolve_output(output)  # checked (writable) before any work by output_options
    batch_sizes = flatten_lists(batch_sizes)
    modes = MODES if mode == "both" else (Mode.of(mode),)
    config = ThroughputConfig(
        dtype=dtype, channels_last=channels_last, compile=compile_, threads=threads, warmup=warmup,
        warmup_time=warmup_time, min_time=min_time, min_iters=min_iters, cudnn_benchmark=cudnn_benchmark,
        utilisation=utilisation,
    )
    writes = writes_output(distributed)
    progress = progress_bar(quiet or not writes)
    if nprocs or distributed:
        nprocs = flatten_lists(nprocs)
        notes = []
        if ctx.get_parameter_source("devices") is click.core.ParameterSource.DEFAULT:
            devices = ("cuda",) if cuda_usable() else ("cpu",)
            notes.append(f"data-parallel ranks on {devices[0]} (--device to choose)")
        total = len(expand(models or SEED_MODELS)) * len(modes) * len(batch_sizes) * max(1, len(nprocs))
        task = progress.add_task("throughput", total=total)
        rows = distributed_sweep(
            models or SEED_MODELS, devices, modes, batch_sizes, config, nprocs=nprocs or None,
            join_group=distributed, input_size=input_size, in_channels=in_channels, num_classes=num_classes,
            timeout=timeout, on_start=lambda label: progress.update(task, description=label),
        )
    else:
        device_list, device_notes = resolve_devices(devices)
        notes = [note_text(n) for n in device_notes]
        specs = resolve_specs(models or SEED_MODELS, input_size, in_channels, num_classes)
        if not device_list:
            raise click.UsageError("no device to measure on")
        total = len(specs) * len(device_list) * len(modes) * len(batch_sizes)
        task = progress.add_task("throughput", total=total)
        rows = throughput_sweep(specs, device_list, modes, batch_sizes, config, runner=ThroughputRunner(),
                                    on_start=lambda label: progress.update(task, description=label))
    if not writes:  # a rank other than 0 of torchrun's group: it measures, rank 0 writes
        for _ in rows:
            pass
        return
    for note in notes:
        click.echo(f"note: {note}", err=True)

    results = []
    interrupted = None
    with contextlib.ExitStack() as cleanup:
        sink = None
        if fmt == "csv":  # rows appended to a file one by one; a stream gets the header, then the rows
            destination = target.path if target.is_file else cleanup.enter_context(streaming(target))
            sink = cleanup.enter_context(CsvSink(destination, RESULT_FIELDS))
        try:
            with progress:
                for result in rows:
                    results.append(result)
                    progress.advance(task)
                    if sink is not None:
                        sink.write(result)
                    elif target.is_file:  # keep the file current after every row
                        write_atomic(target.path, render(results, fmt, notes + throughput_notes(results)))
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: keep what was measured
            interrupted = as_interrupted(exc)

    all_notes = notes + throughput_notes(results)
    if interrupted:
        all_notes.append(f"{interrupted}: {len(results)} of {total} rows measured")
    if sink is None:
        write_output(target, render(results, fmt, all_notes))
    elif target.is_file and not interrupted:
        click.echo(f"{sink.rows} rows appended to {output}", err=True)
    if interrupted:
        where = f"; they are in {output}" if output and output != "-" else ""
        raise interrupted.with_message(f"{interrupted} after {len(results)} of {total} rows{where}")
