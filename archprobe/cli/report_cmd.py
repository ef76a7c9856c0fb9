"""``archprobe report``: the whole comparison into one directory."""

from __future__ import annotations

import os

import click

from archprobe.cli import cli
from archprobe.cli.options import NonEmptyPath, Seconds, batch_sizes_option, flatten_lists, model_input_options
from archprobe.cli.throughput_cmd import MODE_CHOICES
from archprobe.errors import as_interrupted

THROUGHPUT_ONLY = ("devices", "mode", "min_time")
ROWS_FILE = "throughput.csv"


@cli.command("report")
@click.argument("models", nargs=-1)
@click.option("--output", "-o", "out_dir", default="reports", show_default=True,
              type=NonEmptyPath("DIR"), help="Directory to write into.")
@click.option("--force", is_flag=True, help="Replace the report already in the directory.")
@click.option("--from", "sweep_dir", type=NonEmptyPath("SWEEP_DIR"),
              help="Report a sweep's store instead (archprobe sweep -o SWEEP_DIR); -o defaults to SWEEP_DIR/report.")
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
@click.option("--min-time", type=Seconds(minimum=0.01), default=2.0, show_default=True,
              help="With --throughput: seconds of timed iterations per row.")
@click.option("--profile", "profile_model", metavar="MODEL",
              help="Also profile one training step of MODEL (archprobe profile, --depth 2) on the first --device at "
                   "the first --batch-size: a section, profile.csv and its roofline and time-share plots.")
@click.pass_context
def report_command(ctx, models, out_dir, force, sweep_dir, input_size, in_channels, num_classes, throughput, devices,
                   batch_sizes, memory, mode, min_time, profile_model):
    """Write the comparison of MODELS (default: the whole zoo) into a directory.

    \b
    The directory gets:
      report.md           the readable report (zoo, params and MACs/FLOPs, minimum input
                          sizes, ImageNet models vs their variants, predicted peak memory,
                          throughput, environment)
      *.csv, report.json  every table, integers unrounded
      *.png               params vs MACs; peak memory vs batch size; throughput bars
                          when measured
    --batch-size sets the batches of the memory table (and of throughput, when measured).
    Every table keeps every model given (zoo, tv:, timm: or file.py:factory).

    The report is built in a hidden directory beside DIR and swapped in whole when done, so
    an interrupt or a second run leaves the old report or the new one, never a mix (a mount
    point, which cannot be swapped, gets the files moved in one by one). --force replaces a
    directory holding a report (nothing else). An interrupted --throughput keeps the rows
    measured so far in DIR-throughput-interrupted.csv beside DIR (-2, -3, ... where an
    earlier run's rows are there already; inside DIR where it is a mount point).

    \b
    Examples:
      archprobe report -o reports --force
      archprobe report alexnet vgg16 nin googlenet -o seeds --throughput --device cpu -b 16
      archprobe report tv:resnet18 timm:resnet18 --input-size 3x160x160 -o /tmp/r18 --force
      archprobe report 'resnet*' -o /tmp/resnets --force
      archprobe report googlenet-d2l -o /tmp/g --force --profile googlenet-d2l -b 32
    """
    from archprobe.analysis.comparison import compare
    from archprobe.cli.options import resolve_specs
    from archprobe.report.document import check_directory, commit_report, write_report_files
    from archprobe.plumbing.files import staged_directory

    if sweep_dir is not None:
        return _report_sweep(ctx, models, sweep_dir, out_dir, force)
    if not throughput and not profile_model:
        given = [p for p in THROUGHPUT_ONLY
                 if ctx.get_parameter_source(p) is click.core.ParameterSource.COMMANDLINE]
        if given:
            flags = ", ".join("--" + ("device" if p == "devices" else p.replace("_", "-")) for p in given)
            raise click.UsageError(f"{flags} only apply with --throughput")
        if not memory and ctx.get_parameter_source("batch_sizes") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--batch-size only applies with --memory or --throughput")
    check_directory(out_dir, force=force)  # fail before the long work (and any model code), not after it
    specs = resolve_specs(models or ("*",), input_size, in_channels, num_classes)
    profiled = resolve_specs([profile_model], input_size, in_channels, num_classes) if profile_model else None
    if profiled is not None and len(profiled) != 1:
        raise click.BadParameter(f"{profile_model!r} names {len(profiled)} models; --profile takes one",
                                 param_hint="--profile")
    with staged_directory(out_dir, replace=force) as stage:
        rows = (_ThroughputRows(stage.path / ROWS_FILE, devices, flatten_lists(batch_sizes), mode, min_time)
                if throughput else None)
        try:
            with _progress(len(specs)) as advance:
                report = compare(specs, measure=rows, on_progress=advance, memory=memory,
                                    memory_batch_sizes=flatten_lists(batch_sizes))
            if profiled:
                report = _with_profile(report, profiled, devices, flatten_lists(batch_sizes), min_time)
            written = write_report_files(report, stage.path)
            commit_report(stage, out_dir, force=force)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the old report stays; rows are kept
            raise _interrupted(as_interrupted(exc), stage, rows, out_dir) from None
    click.echo(f"wrote {len(written)} files to {out_dir}/ (open {out_dir}/report.md)", err=True)


def _with_profile(report, specs, devices, batch_sizes, min_time: float):
    """``--profile MODEL``: the report with one training step of MODEL profiled (depth 2)."""
    from dataclasses import replace

    from archprobe.bench.profile import profile_sweep
    from archprobe.bench.throughput import ThroughputConfig
    from archprobe.runtime.backends import resolve_devices

    device_list, _ = resolve_devices(devices)
    config = ThroughputConfig(mode="train", batch_size=batch_sizes[0], min_time=min_time)
    return replace(report, profiles=tuple(profile_sweep(specs, device_list[0], config, depth=2)))


def _report_sweep(ctx, models, sweep_dir: str, out_dir: str, force: bool) -> None:
    """``--from SWEEP_DIR``: the report of a sweep's store (:mod:`archprobe.report.atlas`)."""
    from archprobe.report.atlas import write_atlas

    # models apart: click 8.1.0 calls an empty MODELS... argument given on the command line
    given = [p.name for p in ctx.command.params if p.name not in ("models", "out_dir", "force", "sweep_dir")
             and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE]
    if models or given:
        raise click.UsageError("--from reports a sweep's store as it is: give no models or other options "
                               "(they were the sweep's)")
    if ctx.get_parameter_source("out_dir") is click.core.ParameterSource.DEFAULT:
        out_dir = os.path.join(sweep_dir, "report")
    written = write_atlas(sweep_dir, out_dir, force=force)
    click.echo(f"wrote {len(written)} files to {out_dir}/ (open {out_dir}/report.md)", err=True)


def _interrupted(interrupted, stage, rows: "_ThroughputRows | None", out_dir: str):
    """The interrupt, with where things stand: the rows measured so far moved beside the report
    (the stage is about to go) under a name no earlier run's rows have, the report directory as
    it was (or, when the signal came as the new report was swapped in, complete)."""
    from archprobe.plumbing.files import move_to_fresh_name

    if stage.committed:
        return interrupted.with_message(f"{interrupted}; the report in {out_dir} is complete")
    unchanged = (f"the report in {out_dir} is unchanged" if stage.in_place  # the rows may go into it
                 else f"{out_dir} is unchanged" if stage.target.exists() else f"nothing was written to {out_dir}")
    if rows is None or not rows.written:
        return interrupted.with_message(f"{interrupted}; {unchanged}")
    # beside DIR, on the stage's file system (so inside DIR where DIR is a mount point)
    kept = move_to_fresh_name(rows.path, stage.home / f"{stage.target.name}-throughput-interrupted.csv")
    rows_text = f"{rows.written} throughput row{'s' if rows.written != 1 else ''}"
    return interrupted.with_message(f"{interrupted} after {rows_text}; they are in {kept}; {unchanged}")


class _ThroughputRows:
    """The report's ``measure``: the throughput engine's rows, each appended to ``path`` (in the
    report's stage) as it lands. ``written`` counts the rows on disk, the one whose append a
    signal waited for included."""

    def __init__(self, path, devices, batch_sizes, mode, min_time):
        from archprobe.bench.throughput import MODES, ThroughputConfig
        from archprobe.probe import Mode
        from archprobe.report.notes import note_text
        from archprobe.runtime.backends import resolve_devices

        self.path = path
        self.devices, notes = resolve_devices(devices)
        for note in notes:
            click.echo(f"note: {note_text(note)}", err=True)
        self.modes = MODES if mode == "both" else (Mode.of(mode),)
        self.batch_sizes = batch_sizes
        self.config = ThroughputConfig(min_time=min_time)
        self.sink = None

    @property
    def written(self) -> int:
        return self.sink.rows if self.sink is not None else 0

    def __call__(self, specs) -> list:
        from archprobe.bench.sweeps import throughput_sweep
        from archprobe.bench.throughput import RESULT_FIELDS
        from archprobe.runtime.sink import CsvSink

        measured = []
        with CsvSink(self.path, RESULT_FIELDS) as self.sink:
            for row in throughput_sweep(specs, self.devices, self.modes, self.batch_sizes, self.config):
                self.sink.write(row)
                measured.append(row)
        return measured


def _progress(total: int):
    """A rich progress bar on stderr while the models are analysed (silent when not a TTY)."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        from archprobe.cli.progress import progress_bar

        with progress_bar() as progress:
            task = progress.add_task("analysing", total=total)

            def advance(name: str) -> None:
                progress.update(task, advance=1, description=f"analysing {name}")

            yield advance

    return bar()
