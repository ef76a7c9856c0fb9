"""``archprobe report``: the whole comparison into one directory."""

from __future__ import annotations

import sys

import click

from archprobe.cli import cli


@cli.command("report")
@click.argument("models", nargs=-1)
@click.option("--output", "-o", "out_dir", default="reports", show_default=True,
              type=click.Path(file_okay=False), help="Directory to write into.")
@click.option("--force", is_flag=True, help="Overwrite the directory if it already has files.")
@click.option("--throughput/--no-throughput", default=False, show_default=True,
              help="Also measure examples/sec (slow; machine-dependent).")
@click.option("--device", "devices", multiple=True, default=("cpu",), show_default=True,
              help="Throughput device: cpu, cuda or all (repeatable).")
@click.option("--batch-size", "-b", "batch_sizes", type=click.IntRange(min=1), multiple=True, default=(32,),
              show_default=True, help="Throughput batch size (repeatable).")
@click.option("--mode", type=click.Choice(["inference", "train", "both"]), default="both", show_default=True,
              help="Throughput mode.")
@click.option("--min-time", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
              help="Seconds of timed iterations per throughput row.")
def report_command(models, out_dir, force, throughput, devices, batch_sizes, mode, min_time):
    """Write the comparison of MODELS (default: the whole zoo) into a directory.

    \b
    The directory gets:
      report.md           the readable report (zoo, params and MACs/FLOPs, minimum input
                          sizes, ImageNet vs Dive-into-DL variants, throughput, environment)
      *.csv, report.json  every table, integers unrounded
      *.png               params vs GMACs; throughput bars when measured

    \b
    Examples:
      archprobe report -o reports --force
      archprobe report alexnet vgg16 nin googlenet -o seeds --throughput --device cpu -b 16
      archprobe report 'resnet*' -o /tmp/resnets --force
    """
    from archprobe.cli.options import resolve_specs
    from archprobe.report.document import build_report, write_report

    from archprobe.report.document import check_directory

    specs = resolve_specs(models or ("*",))
    check_directory(out_dir, force=force)  # fail before the long work, not after it
    measure = _throughput_measure(out_dir, devices, batch_sizes, mode, min_time) if throughput else None
    with _progress(len(specs)) as advance:
        report = build_report(specs, measure=measure, on_progress=advance)
    written = write_report(report, out_dir, force=True)
    click.echo(f"wrote {len(written)} files to {out_dir}/ (open {out_dir}/report.md)", err=True)


def _throughput_measure(out_dir, devices, batch_sizes, mode, min_time):
    """Measure with the throughput engine, appending each row to throughput.csv as it lands."""
    from pathlib import Path

    from archprobe.analysis.throughput import CsvSink, ThroughputConfig, resolve_devices, sweep

    resolved, notes = resolve_devices(devices)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    modes = ["inference", "train"] if mode == "both" else [mode]
    config = ThroughputConfig(min_time=min_time)

    def measure(specs):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "throughput.csv").unlink(missing_ok=True)  # rows from an older run
        rows = []
        with CsvSink(Path(out_dir) / "throughput.csv") as sink:
            for row in sweep(specs, resolved, modes, batch_sizes, config):
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
