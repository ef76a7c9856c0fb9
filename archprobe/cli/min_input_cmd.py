"""``archprobe min-input``: the exact set of input sizes a model accepts."""

from __future__ import annotations

import click

from archprobe.cli import cli
from archprobe.cli.options import batch_size_option, mode_option, model_input_options, output_options


@cli.command("min-input")
@click.argument("models", nargs=-1, required=True)
@mode_option("train solves for training mode (BatchNorm batch statistics, aux heads).")
@batch_size_option
@model_input_options
@click.option(
    "--max-size", type=click.IntRange(1, 65536), default=4096, show_default=True,
    help="Largest side examined; sets that run on to it are shown as 'N+'.",
)
@click.option("--explain", is_flag=True, help="Also show every layer's output size at the minimum.")
@click.option("--depth", type=click.IntRange(min=1), help="With --explain: only layers up to this depth.")
@output_options
def min_input_command(models, mode, batch_size, input_size, in_channels, num_classes, max_size, explain, depth,
                      fmt, output):
    """Smallest input each MODEL accepts, and the exact set of sizes that run.

    The valid sizes are back-solved from the layer arithmetic (kernels, strides, padding,
    dilation, ceil_mode, adaptive pools, the Linear after Flatten, add/cat agreement), traced
    at the dispatch level so functional ops in forward() count, then checked by forward passes
    on the meta device at the boundaries. Models whose forward cannot be followed (control flow
    on the input size) are scanned with forward passes instead, and the output says so.

    \b
    Valid sides: square inputs s x s that run, e.g. '15–4096+' (open-ended up to --max-size),
    '28–31' (a Linear after Flatten bounds it), 'even sizes 16–4096+' (branches must agree).
    Min HxW: the smallest input that runs, by area, solved over every H x W smaller than the
    smallest valid square (in training BatchNorm can take 1x33 where 33x33 is the smallest
    square). Min H, min W: the smallest height at the default width and the smallest width at
    the default height, or at the smallest valid square where the default does not run (a 3x7
    kernel needs different ones). --input-size sets the channels and that default (anchor) size.

    \b
    Examples:
      archprobe min-input googlenet
      archprobe min-input lenet alexnet-d2l vgg11-d2l
      archprobe min-input googlenet-d2l --explain --depth 1
      archprobe min-input resnet18 --train -b 1
      archprobe min-input tv:inception_v3 --format json
      archprobe min-input my_net.py:build --input-size 1x96x96
    """
    import sys

    from archprobe import api
    from archprobe.probe import Mode
    from archprobe.cli.options import resolve_specs
    from archprobe.report.frames import render
    from archprobe.report.notes import min_input_notes
    from archprobe.report.views import explained_layers
    from archprobe.report.writers import emit

    if depth is not None and not explain:
        raise click.UsageError("--depth only applies with --explain")
    specs = resolve_specs(models, input_size, in_channels, num_classes)
    results = []
    for spec in specs:
        with _scan_progress(spec.name, sys.stderr.isatty()) as progress:
            results.append(api.min_input(spec, batch_size=batch_size, mode=Mode.of(mode), max_size=max_size,
                                         explain=explain, progress=progress))
    text = render(results, fmt, min_input_notes(results) if fmt in ("table", "md") else ())
    if explain and fmt in ("table", "md"):
        for result in results:
            text += explained_layers(result, fmt, depth)
    emit(text, output)


class _scan_progress:
    """A rich progress bar on stderr for the fallback scan (only when stderr is a terminal)."""

    def __init__(self, name: str, enabled: bool):
        self.name = name
        self.enabled = enabled
        self.bar = None
        self.task = None

    def __enter__(self):
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from archprobe.cli.progress import progress_bar

            self.bar = progress_bar(label=f"scanning {self.name}", remaining=True)
            self.bar.start()
            self.task = self.bar.add_task("scan", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
