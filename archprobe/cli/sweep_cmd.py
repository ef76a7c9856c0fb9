"""``archprobe sweep``: whole libraries x analyses into a resumable store (the atlas)."""

from __future__ import annotations

import os

import click

from archprobe.cli import cli
from archprobe.cli.options import MAX_BATCH, ByteSize, NonEmptyPath, Seconds

ANALYSES = ("params", "min-input", "memory", "shapes", "throughput")  # bench.atlas.ANALYSES, torch-free


class AnalysisList(click.ParamType):
    """``params,min-input,memory``: analyses in order, repeats dropped."""

    name = "A[,A...]"

    def convert(self, value, param, ctx):
        names = tuple(dict.fromkeys(p.strip() for p in str(value).split(",") if p.strip()))
        unknown = [n for n in names if n not in ANALYSES]
        if unknown or not names:
            self.fail(f"unknown analysis {', '.join(unknown) or repr(value)}: use {', '.join(ANALYSES)}", param, ctx)
        return names


@cli.command("sweep")
@click.argument("models", nargs=-1)
@click.option("--output", "-o", "out_dir", required=True, type=NonEmptyPath("DIR"),
              help="The sweep's directory: its store (atlas.sqlite) and the workers' log (sweep.log).")
@click.option("--analyses", "-a", type=AnalysisList(), default="params", show_default=True,
              help=f"Comma-separated: {', '.join(ANALYSES)}.")
@click.option("--exclude", "-x", multiple=True, metavar="GLOB",
              help="Leave out models matching GLOB (repeatable): 'vit*', 'tv:*_bn', '*-d2l'.")
@click.option("--jobs", "-j", type=click.IntRange(1, os.cpu_count() or 1), default=1, show_default=True,
              help="Worker processes, at most the machine's CPUs (each gets CPUs / jobs threads).")
@click.option("--cell-timeout", type=Seconds(minimum=0.1), default=600.0, show_default=True,
              help="Seconds one model x analysis may run before it is stopped and recorded as 'timeout'.")
@click.option("--cell-memory", type=ByteSize(),
              help="Memory a cell may allocate beyond its worker's own (default: 3/4 of the machine's "
                   "memory shared between the jobs); past it the cell is 'oom'.")
@click.option("--shard", metavar="I/N", help="Take the I-th of N deterministic shares of the cells (job arrays).")
@click.option("--merge", is_flag=True, help="MODELS are sweep directories: merge their stores into -o DIR.")
@click.option("--retry-failed", is_flag=True, help="Compute again the stored cells that did not end 'ok'.")
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
              help="The mode of params, min-input, memory and throughput.")
@click.option("--batch-size", "-b", type=click.IntRange(1, MAX_BATCH), default=32, show_default=True,
              help="The batch of memory and throughput (params, shapes and min-input run at 1).")
@click.option("--device", "-d", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="The device memory models and throughput measures on.")
@click.option("--min-time", type=Seconds(minimum=0.01), default=2.0, show_default=True,
              help="Throughput: seconds of timed iterations per cell.")
@click.option("--input-size", metavar="SIZE",
              help="Input size: 224, HxW or CxHxW (default: each model's).")
@click.option("--in-channels", type=click.IntRange(min=1), help="Build the models for this many input channels.")
@click.option("--num-classes", type=click.IntRange(min=1), help="Output classes (default: each model's).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print every cell's status as JSON on stdout.")
def sweep_command(models, out_dir, analyses, exclude, jobs, cell_timeout, cell_memory, shard, merge, retry_failed,
                  mode, batch_size, device, min_time, input_size, in_channels, num_classes, quiet, as_json):
    """Run MODELS x analyses into a resumable store in DIR (the atlas).

    \b
    Every model x analysis is a cell, run in a worker process with a time limit
    (--cell-timeout) and a memory guard (--cell-memory); a cell that raises, hangs, runs out
    of memory or kills its worker is recorded as error, timeout, oom or crashed, with its
    reason, and the sweep goes on. Each cell is written to DIR/atlas.sqlite (SQLite) as it
    ends, keyed by its spec, analysis, options and the torch, torchvision and timm versions:
    an interrupted sweep resumes where it stopped, and a rerun computes nothing.
    --shard I/N takes a deterministic share of the cells, so the machines of a job array
    split a sweep; --merge combines their stores. 'archprobe report --from DIR' lays it out.

    \b
    Examples:
      archprobe sweep 'tv:*' -a params,min-input,memory -o atlas --jobs 2
      archprobe sweep 'timm:convnext*' 'tv:resnet*' --exclude '*_bn' -o atlas
      archprobe sweep 'tv:*' -o atlas --shard 3/8     # one task of a job array
      archprobe sweep --merge shard-* -o atlas
      archprobe report --from atlas -o atlas-report
    """
    import json

    from archprobe.errors import as_interrupted

    if merge:
        return _merge(models, out_dir, quiet)
    if not models:
        raise click.UsageError("give the models to sweep (zoo names, globs, tv:, timm:, file.py:fn)")
    from archprobe.bench.atlas import SweepConfig, run_sweep
    from archprobe.cli.progress import progress_bar

    config = SweepConfig(mode=mode, batch_size=batch_size, device=device, input_size=input_size,
                         in_channels=in_channels, num_classes=num_classes, min_time=min_time)
    bar = progress_bar(quiet, remaining=True)
    counts = {"done": 0, "failed": 0, "left": 0}
    task = None

    def planned(todo: int, cached: int) -> None:
        nonlocal task
        counts["left"] = todo
        task = bar.add_task(_label(counts), total=todo)
        if not quiet:
            click.echo(f"sweep: {todo + cached} cells, {cached} in the store, {todo} to compute", err=True)
        bar.start()

    def ended(cell) -> None:
        counts["done" if cell.ok else "failed"] += 1
        counts["left"] -= 1
        bar.update(task, advance=1, description=_label(counts))

    try:
        try:
            run = run_sweep(models, analyses, out_dir, config=config, exclude=exclude, jobs=jobs,
                            cell_timeout=cell_timeout, cell_memory=cell_memory, shard=shard,
                            retry_failed=retry_failed, on_plan=planned, on_cell=ended)
        finally:
            bar.stop()
    except KeyboardInterrupt as exc:
        interrupted = as_interrupted(exc)
        finished = counts["done"] + counts["failed"]
        raise interrupted.with_message(
            f"{interrupted} after {finished} of {finished + counts['left']} cells; the finished cells are in "
            f"{out_dir} (run the same sweep again to resume)") from None
    if as_json:
        click.echo(json.dumps({
            "computed": run.computed, "cached": run.cached, "shard": list(run.shard),
            "cells": [{"model": c.model, "analysis": c.analysis, "status": c.status, "error": c.error,
                       "seconds": c.seconds} for c in run.cells]}, indent=2))
    if not quiet:
        statuses = {}
        for cell in run.cells:
            statuses[cell.status] = statuses.get(cell.status, 0) + 1
        order = ("ok", "error", "timeout", "oom", "crashed")
        text = ", ".join(f"{statuses[s]} {s}" for s in sorted(statuses, key=lambda s: (s not in order, order.index(s)
                                                                                      if s in order else 0, s)))
        click.echo(f"sweep: {len(run.cells)} cells ({run.computed} computed, {run.cached} from the store): "
                   f"{text or 'none'}; see 'archprobe report --from {out_dir}'", err=True)


def _label(counts: dict) -> str:
    return f"{counts['done']} done, {counts['failed']} failed, {counts['left']} left"


def _merge(sources, out_dir: str, quiet: bool) -> None:
    from archprobe.bench.atlas import merge_stores

    copied = merge_stores(out_dir, sources)
    if not quiet:
        click.echo(f"merged {len(sources)} store{'s' if len(sources) != 1 else ''} into {out_dir}: "
                   f"{copied} cells copied", err=True)
