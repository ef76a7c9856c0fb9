"""``archprobe train``: the book's training experiments on real data, CPU versus CUDA."""

from __future__ import annotations

import sys

import click

from archprobe.cli import cli
from archprobe.cli.options import MAX_BATCH, Seconds, dtype_option, exclude_option, threads_option
from archprobe.cli.progress import progress_bar
from archprobe.errors import as_interrupted
from archprobe.report.frames import FORMATS
from archprobe.runtime.distributed import DEFAULT_TIMEOUT_S
from archprobe.runtime.step import OPTIMIZERS
from archprobe.training.datasets import DATASET_NAMES, DEFAULT_DATA_ROOT


@cli.command("train")
@click.argument("models", nargs=-1)
@exclude_option
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default="fashion-mnist", show_default=True,
              help="Data set; 'fake' is generated in memory (class patterns + noise), a stand-in when none "
                   "can be fetched.")
@click.option("--data-root", type=click.Path(file_okay=False), default=DEFAULT_DATA_ROOT, show_default=True,
              envvar="ARCHPROBE_DATA", help="Where the data sets are (torchvision's layout; env ARCHPROBE_DATA).")
@click.option("--download", is_flag=True, help="Fetch a missing data set with torchvision's downloader.")
@click.option("--device", "-d", "devices", multiple=True, type=click.Choice(["cpu", "cuda", "all"]),
              help="Device to train on (repeatable); 'all' = each available device, with the CUDA/CPU "
                   "speed-up. Default: cuda if available, else cpu.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs in all (a resumed run continues up to it).")
@click.option("--batch-size", "-b", type=click.IntRange(1, MAX_BATCH), help="Batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), help="Optimizer.")
@click.option("--momentum", type=click.FloatRange(min=0), help="SGD momentum.")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="Weight decay (L2).")
@click.option("--label-smoothing", type=click.FloatRange(min=0, max=1, max_open=True),
              help="Label smoothing of the cross-entropy (Szegedy et al. 2016 use 0.1).")
@click.option("--resize", type=click.IntRange(min=1), metavar="S",
              help="Resize images to SxS on the device (the book: 224 for AlexNet/VGG/NiN, 96 for "
                   "GoogLeNet/ResNet/DenseNet).")
@click.option("--init", type=click.Choice(["default", "xavier"]),
              help="Weight initialisation: xavier = xavier_uniform_ on Conv2d/Linear weights (d2l's train_ch6).")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), help="Random seed (initial weights, shuffling, dropout).")
@dtype_option(None, help="Compute dtype; bfloat16/float16 run under autocast (float16 with a gradient scaler).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader workers, used only for a data set too large for the device's memory.")
@threads_option(per_rank=True)
@click.option("--nproc", type=click.IntRange(min=1), metavar="N",
              help="Data-parallel: train each model on N local ranks through torch.distributed (DDP, a "
                   "DistributedSampler share of every epoch per rank); -b and --threads are per rank.")
@click.option("--timeout", type=Seconds(minimum=1), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="With --nproc: seconds a rank waits for its peers before the run fails.")
@click.option("--limit-train", type=click.IntRange(min=1), metavar="N", help="Train on the first N examples only.")
@click.option("--limit-test", type=click.IntRange(min=1), metavar="N", help="Test on the first N examples only.")
@click.option("--show-recipe", is_flag=True, help="Show each model's recipe (with the options applied) and stop.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Directory for train.csv, train.json, train.png and checkpoints, written every epoch.")
@click.option("--resume", is_flag=True, help="Continue the runs in --output from their last finished epoch.")
@click.option("--force", is_flag=True,
              help="Replace a training run already in --output (only the files this run writes).")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format: the comparison table (table, md), the runs (json) or the epochs (csv).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no per-epoch lines.")
def train_command(models, dataset, data_root, download, devices, epochs, batch_size, lr, optimizer, momentum,
                  weight_decay, label_smoothing, resize, init, seed, dtype, workers, threads, nproc, timeout,
                  limit_train, limit_test, show_recipe, output, resume, force, fmt, quiet):
    """Train MODELS on a real data set the book's way and compare them.

    Each Dive-into-DL zoo model trains with the book's recipe (optimizer, learning rate,
    batch size, resize, epochs, initialisation; --show-recipe shows it with its source);
    the options change it, and every result records the recipe it ran. Other models get
    archprobe's default recipe, labelled as such. The data set (torchvision's files under
    --data-root; nothing is downloaded without --download) lives on the training device as
    uint8; batches are scaled to [0, 1] and resized there.

    Each epoch prints, as in the book, the train loss, train and test accuracy, examples/sec
    (training examples / training time) and its seconds; at the end one table compares the
    models and devices: params, MACs, final and best test accuracy, examples/sec, training
    time, and with --device all the CUDA/CPU speed-up.

    With -o DIR every epoch is on disk as it ends (train.csv row, train.json, a checkpoint
    per model and device; train.png at the end); --resume continues up to --epochs in all,
    and Ctrl-C exits with 130 keeping every finished epoch. One run at a time writes DIR (a
    second is refused); --force replaces only the files the run writes. A run whose loss stops being
    finite is 'diverged' and one out of memory 'oom' (the batch size is never changed); the
    other runs go on.

    With --nproc N each model trains on N data-parallel ranks on this machine, launched as
    'throughput --nproc' launches them: DistributedDataParallel, gloo on CPU (the cores split
    between the ranks), NCCL on CUDA (one GPU per rank). Each rank takes its
    DistributedSampler share of every epoch in batches of -b (the global batch is N times
    that); the figures are global, the epoch's time the slowest rank's. Rank 0 writes the
    checkpoints, which resume with or without --nproc. A rank that fails ends its run with
    an error naming it.

    \b
    Examples:
      archprobe train lenet --dataset fake --epochs 3
      archprobe train googlenet-d2l googlenet-bn-d2l --show-recipe
      archprobe train lenet --dataset fashion-mnist --epochs 20 --optimizer adam --lr 0.003 -o runs/lenet
      archprobe train lenet -o runs/lenet --epochs 30 --resume
      archprobe train googlenet-d2l googlenet-bn-d2l --device all --limit-train 6000
      archprobe train googlenet-bn-d2l --label-smoothing 0.1 --dataset mnist --download
      archprobe train lenet --dataset fake --device cpu --nproc 2 -b 128 -o runs/lenet-ddp
    """
    from archprobe.training.plan import plan_training, training_recipes
    from archprobe.training.sweep import train_sweep
    from archprobe.report.frames import render
    from archprobe.report.notes import epoch_line, note_text, recipe_notes, train_notes
    from archprobe.report.writers import emit
    from archprobe.training.runner import TrainingInterrupted, TrainRunner

    if sys.stdout is None:  # the table goes there: refused before anything trains, not after
        raise click.UsageError("stdout is closed, and the results table is written there; "
                               "redirect it to a file (> train.txt)")

    overrides = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                     weight_decay=weight_decay, label_smoothing=label_smoothing, resize=resize, init=init,
                     seed=seed, dtype=dtype)
    if show_recipe:
        recipes = training_recipes(models, dataset=dataset, **overrides)
        emit(render(recipes, fmt, recipe_notes(recipes)), None)
        return
    if resume and not output:
        raise click.UsageError("--resume continues the runs of --output DIR; give it")

    plan = plan_training(models, dataset=dataset, data_root=data_root, download=download,
                             device=list(devices) or None, limit_train=limit_train, limit_test=limit_test,
                             nproc=nproc, timeout=timeout, threads=threads, **overrides)
    directory = None
    if output:
        from archprobe.api import run_directory

        directory = run_directory(output, runs=plan.runs, resume=resume, force=force)
    data_text = plan.data.describe()
    progress = progress_bar(quiet)
    say = (lambda line: None) if quiet else (lambda line: progress.console.print(line, markup=False,
                                                                                   highlight=False, soft_wrap=True))
    for note in plan.notes:
        say(f"note: {note_text(note)}")
    say(f"data: {data_text}")

    task = progress.add_task("train", total=None)

    def on_start(job, device):
        progress.update(task, description=f"{job.spec.name} on {device}", completed=0, total=None)

    def on_batch(done, total):
        progress.update(task, completed=done, total=total)

    runs = []
    interrupted = None
    try:
        with progress:
            for run in train_sweep(plan, runner=TrainRunner(threads=threads), output=directory, resume=resume,
                                       workers=workers, on_start=on_start,
                                       on_epoch=lambda row, so_far: say(epoch_line(row, so_far.recipe.epochs)),
                                       on_batch=None if progress.disable else on_batch):
                runs.append(run)
    except KeyboardInterrupt as exc:
        interrupted = exc
        if isinstance(exc, TrainingInterrupted):
            runs.append(exc.run)

    if fmt == "csv":
        rows = [row for run in runs for row in run.epochs]
        text = render(rows, "csv") if rows else ""
    else:
        text = render(runs, fmt, train_notes(runs, data_text)) if runs else ""
    emit(text, None)
    if directory is not None:
        written = [p.name for p in sorted(directory.path.iterdir()) if not p.name.startswith(".")]
        click.echo(f"wrote {directory.path}: {', '.join(written)}", err=True)
    if interrupted is not None:
        epochs_kept = sum(r.epochs_done for r in runs)
        where = f"; they are in {directory.path}" if directory is not None else ""
        stop = as_interrupted(interrupted)
        kept = f"{epochs_kept} finished epoch{'s' if epochs_kept != 1 else ''} kept"
        click.echo(f"{stop}: {kept}{where}", err=True)
        # SystemExit, not click's Exit: with standalone_mode=False click returns Exit's code
        # from cli.main() instead of raising it, and main() would then exit with 0.
        sys.exit(stop.exit_code)
