"""``archprobe report``: the whole comparison into one directory."""

from __future__ import annotations

import sys

import click

from archprobe.cli import cli
from archprobe.cli.options import batch_sizes_option, flatten_lists, model_input_options
from archprobe.cli.throughput_cmd import MODE_CHOICES

THROUGHPUT_ONLY = ("devices", "mode", "min_time")


@cli.command("report")
@click.argument("models", nargs=-1)
@click.option("--output", "-o", "out_dir", default="reports", show_default=True,
              type=click.Path(file_okay=False), help="Directory to write into.")
@click.option("--force", is_flag=True, help="Overwrite the directory if it already has files.")
@model_input_options
@click.option("--throughput/--no-throughput", default=False, show_default=True,
              help="Also measure examples/sec (slow; machine-dependent).")
@click.option("--device", "devices", multiple=True, default=("cpu",), show_default=True,
              type=click.Choice(["cpu", "cuda", "all"]), help="With --throughput: device (repeatable).")
@batch_sizes_option("32")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Predict peak memory (inference and training at --batch-size, and a curve over batch sizes).")
@click.option("--mode", type=click.Choice(MODE_CHOICES), default="both", show_default=True,
              help="With --throughput: eval (inference), train or both.")
@click.option("--min-time", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
              help="With --throughput: seconds of timed iterations per row.")
@click.pass_context
def report_command(ctx, models, out_dir, force, input_size, in_channels, num_classes, throughput, devices,
                   batch_sizes, memory, mode, min_time):
    """Write the comparison of MODELS (default: the whole zoo) into a directory.

    \b
    The directory gets:
      report.md           the readable report (zoo, params and MACs/FLOPs, minimum input
                          sizes, ImageNet vs Dive-into-DL variants, predicted peak memory,
                          throughput, environment)
      *.csv, report.json  every table, integers unrounded
      *.png               params vs GMACs; peak memory vs batch size; throughput bars
                          when measured
    --batch-size sets the batches of the memory table (and of throughput, when measured).
    Every table keeps every model given (zoo, tv:, timm: or file.py:factory).

    \b
    Examples:
      archprobe report -o reports --force
      archprobe report alexnet vgg16 nin googlenet -o seeds --throughput --device cpu -b 16
      archprobe report tv:resnet18 timm:resnet18 --input-size 3x160x160 -o /tmp/r18 --force
      archprobe report 'resnet*' -o /tmp/resnets --force
    """
    from archprobe import api
    from archprobe.cli.options import resolve_specs
    from archprobe.report.document import check_directory, write_report

    if not throughput:
        given = [p for p in THROUGHPUT_ONLY
                 if ctx.get_parameter_source(p) is click.core.ParameterSource.COMMANDLINE]
        if given:
            flags = ", ".join("--" + ("device" if p == "devices" else p.replace("_", "-")) for p in given)
            raise click.UsageError(f"{flags} only apply with --throughput")
        if not memory and ctx.get_parameter_source("batch_sizes") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--batch-size only applies with --memory or --throughput")
    specs = resolve_specs(models or ("*",), input_size, in_channels, num_classes)
    check_directory(out_dir, force=force)  # fail before the long work, not after it
    measure = _throughput_measure(out_dir, devices, flatten_lists(batch_sizes), mode, min_time) if throughput else None
    with _progress(len(specs)) as advance:
        report = api.report(specs, measure=measure, on_progress=advance, memory=memory,
                            memory_batch_sizes=flatten_lists(batch_sizes))
    written = write_report(report, out_dir, force=True)
    click.echo(f"wrote {len(written)} files to {out_dir}/ (open {out_dir}/report.md)", err=True)


def _throughput_measure(out_dir, devices, batch_sizes, mode, min_time):
    """Measure with the throughput engine, appending each row to throughput.csv as it lands."""
    from pathlib import Path

    from archprobe import api
    from archprobe.bench.throughput import MODES, RESULT_FIELDS, ThroughputConfig
    from archprobe.probe import Mode
    from archprobe.runtime.backends import resolve_devices
    from archprobe.runtime.sink import CsvSink

    resolved, notes = resolve_devices(devices)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    modes = MODES if mode == "both" else (Mode.of(mode),)
    config = ThroughputConfig(min_time=min_time)

    def measure(specs):
        rows_iter = api.throughput_sweep(specs, resolved, modes, batch_sizes, config)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "throughput.csv").unlink(missing_ok=True)  # rows from an older run
        rows = []
        with CsvSink(Path(out_dir) / "throughput.csv", RESULT_FIELDS) as sink:
            for row in rows_iter:
                sink.write(row)
                rows.append(row)
        return rows

    return measure


def _progress(total: int):
    """A rich progress bar on stderr while the models are analysed (silent when not a TTY)."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        if not sys.stderr.isatty():
            yield lambda name: None
            return
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("analysing", total=total)

            def advance(name: str) -> None:
                progress.update(task, advance=1, description=f"analysing {name}")

            yield advance

    return bar()
