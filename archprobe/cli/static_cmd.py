"""``archprobe params`` and ``archprobe shapes``: static analysis on the meta device."""

from __future__ import annotations

import click

from archprobe.cli import cli
from archprobe.cli.options import batch_size_option, mode_option, model_input_options, output_options


def _warn(results, fmt: str) -> None:
    """Warnings go to stderr where the output has no room for notes (JSON, CSV), so each is shown once."""
    from archprobe.report.notes import unsupported_warnings

    if fmt in ("json", "csv"):
        for warning in unsupported_warnings(results):
            click.echo(warning, err=True)


@cli.command("params")
@click.argument("models", nargs=-1, required=True)
@model_input_options
@batch_size_option
@mode_option("train adds one training step's cost (forward + loss + backward).")
@click.option(
    "--counter", type=click.Choice(["archprobe", "fvcore"]), default="archprobe", show_default=True,
    help="fvcore: also count with fvcore on real CPU tensors: its conv/linear/matmul MACs and its total.",
)
@click.option("--by", type=click.Choice(["operator", "module"]),
              help="Break the MACs and FLOPs down by aten operator or by module (fvcore's by_operator, "
                   "by_module): a row each, adding up to the totals.")
@click.option("--depth", type=click.IntRange(min=0), metavar="N",
              help="With --by module: modules down to depth N (the model is 0). Default: 1.")
@output_options
def params_command(models, input_size, in_channels, num_classes, batch_size, mode, counter, by, depth, fmt, output):
    """Compare parameters, MACs and FLOPs of MODELS (zoo names, globs, tv:, timm:, file.py:fn).

    \b
    Counting is done on the meta device: no weights are allocated.
      params        every parameter of the built model
      params (fwd)  those an eval-mode forward reads (aux heads excluded)
      MACs          multiply-accumulates of conv, linear and matmul only; equals
                    torchvision's published _ops ("GFLOPS" there are GMACs)
      FLOPs         2 per MAC + normalisation, pooling, activation, elementwise ops
    Ops the counter does not know are listed, never silently counted as zero.

    \b
    Examples:
      archprobe params alexnet vgg16 nin googlenet
      archprobe params 'resnet*' --format md
      archprobe params googlenet-d2l --input-size 1x96x96 --train -b 128
      archprobe params my_net.py:build --input-size 3x64x64 --format json
      archprobe params alexnet --counter fvcore
      archprobe params tv:resnet18 --by operator
      archprobe params googlenet --by module --depth 1
    """
    from archprobe import api
    from archprobe.probe import Mode
    from archprobe.cli.options import resolve_specs
    from archprobe.report.frames import render
    from archprobe.report.views import breakdown_table_notes, count_notes
    from archprobe.report.writers import emit

    if depth is not None and by != "module":
        raise click.UsageError("--depth applies to --by module")
    if by and counter == "fvcore":
        raise click.UsageError("--by breaks archprobe's own count down; --counter fvcore does not apply")
    specs = resolve_specs(models, input_size, in_channels, num_classes)
    if by:
        tables = [api.breakdown(s, by=by, depth=1 if by == "module" and depth is None else depth,
                                batch_size=batch_size, mode=Mode.of(mode)) for s in specs]
        _warn(tables, fmt)
        emit(render([row for t in tables for row in t.rows], fmt, breakdown_table_notes(tables)), output)
        return
    results = [api.count(s, batch_size=batch_size, mode=Mode.of(mode), counter=counter) for s in specs]
    _warn(results, fmt)
    emit(render(results, fmt, count_notes(results)), output)  # print(ap.count(...)) shows the same


@cli.command("shapes")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@model_input_options
@batch_size_option
@click.option("--depth", type=click.IntRange(min=0), default=3, show_default=True,
              help="Fold rows nested deeper than this into their parent.")
@click.option("--rf", is_flag=True,
              help="Add each layer's receptive field, effective stride and first unit's centre (input pixels).")
@output_options
def shapes_command(models, input_size, in_channels, num_classes, batch_size, depth, rf, fmt, output):
    """Per-layer output shapes, parameters, MACs and FLOPs of each MODEL (eval mode), one
    model's rows after another's (each starts with the model's own row; JSON and CSV rows
    carry a model field).

    Functional ops inside forward (torch.cat, F.max_pool2d, residual adds) are counted
    for the enclosing module. Each row shows its own numbers (not those of the rows
    under it), so the rows sum to the totals; rows deeper than --depth are folded into
    their parent.

    --rf adds what one unit of each layer's output sees: the receptive field (HxW input
    pixels), the effective stride (input pixels between neighbouring units) and the
    centre of the first unit's field, from the kernels, strides, paddings and dilations
    of the traced convolutions and pools; merged branches (cat, add) see the union.
    'global': every unit sees the whole input (after global pooling, or a fully
    connected layer over the whole map).

    \b
    Examples:
      archprobe shapes googlenet
      archprobe shapes googlenet-d2l --depth 1
      archprobe shapes lenet alexnet-d2l --depth 1
      archprobe shapes alexnet --rf
      archprobe shapes resnet18 --input-size 3x64x64 --format json
    """
    from archprobe import api
    from archprobe.cli.options import resolve_specs
    from archprobe.report.frames import render
    from archprobe.report.views import layer_notes
    from archprobe.report.writers import emit

    specs = resolve_specs(models, input_size, in_channels, num_classes)
    tables = [api.layers(spec, batch_size=batch_size, depth=depth, rf=rf) for spec in specs]
    _warn(tables, fmt)
    # print(table) shows the same for one model
    emit(render([row for table in tables for row in table.rows], fmt, layer_notes(tables, rf=rf)), output)
