"""``archprobe memory``: the peak memory of one step, its breakdown, the largest batch that fits."""

from __future__ import annotations

import click

from archprobe.cli import cli
from archprobe.cli.options import (
    ByteSize, batch_sizes_option, flatten_lists, mode_option, model_input_options, output_options,
    dtype_option,
)
from archprobe.runtime.step import OPTIMIZERS


@cli.command("memory")
@click.argument("models", nargs=-1, required=True)
@mode_option("train models a training step (zero_grad, forward, cross-entropy, backward, optimizer "
             "step) instead of an inference forward.")
@batch_sizes_option("32")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), default="sgd", show_default=True,
              help="With --train: SGD (lr 0.001, momentum 0.9; the throughput engine's) or Adam.")
@dtype_option(help="Compute dtype; bfloat16/float16 run the forward under autocast.")
@click.option("--device", "-d", type=click.Choice(["cuda", "cpu"]),
              help="The device whose step is modelled (default: cuda where one is visible, else cpu): "
                   "cuda runs the optimizer's multi-tensor kernels (torch's default there), cpu one "
                   "tensor at a time. No GPU is needed to model one.")
@click.option("--fit", "budget", type=ByteSize(),
              help="Find the largest batch whose peak fits in SIZE (24GiB, 16GB, 512MiB; B/KB/MB/GB "
                   "are powers of 1000, KiB/MiB/GiB powers of 1024).")
@model_input_options
@output_options
@click.pass_context
def memory_command(ctx, models, mode, batch_sizes, optimizer, dtype, device, budget, input_size, in_channels,
                   num_classes, fmt, output):
    """Predict the peak memory of one step of MODELS, allocating no weights.

    \b
    The peak of live tensor bytes during one inference forward (eval mode, under
    inference_mode) or, with --train, one steady-state training step (zero_grad,
    forward, cross-entropy, backward, optimizer step, with the optimizer state and the
    last step's gradients present), predicted on meta/fake tensors by torch's MemTracker.
    The table breaks the peak down into parameters, buffers, gradients, optimizer
    state (with its step's temporaries), activations (made by the forward), temporaries
    (made by the backward) and the input batch, and names the module running at the peak.
    Not included: allocator rounding and caching, cuDNN/cuBLAS workspaces, the CUDA
    context (leave a margin on a GPU).

    --fit SIZE searches the predictions for the largest batch whose peak fits: the row
    shows that batch, and the one above it does not fit.

    \b
    Examples:
      archprobe memory resnet18 --train -b 8
      archprobe memory resnet50 --train --fit 24GiB -d cuda   # a GPU's step, modelled here
      archprobe memory vgg16 resnet50 densenet121 -b 1,32,128 --train --optimizer adam
      archprobe memory googlenet --train --dtype bfloat16 -f json
    """
    from archprobe.analysis.memory import memory_rows
    from archprobe.cli.options import resolve_specs
    from archprobe.probe import Mode
    from archprobe.report.frames import render
    from archprobe.report.notes import memory_notes
    from archprobe.report.writers import emit

    if budget is not None and ctx.get_parameter_source("batch_sizes") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--fit searches the batch size; leave out --batch-size")
    specs = resolve_specs(models, input_size, in_channels, num_classes)
    rows = memory_rows(specs, [Mode.of(mode)], flatten_lists(batch_sizes),
                           optimizer=optimizer, dtype=dtype, device=device, budget=budget)
    emit(render(rows, fmt, memory_notes(rows)), output)
