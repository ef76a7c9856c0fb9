"""Option bundles shared by commands (sqlite-utils style decorators): one meaning per flag."""

from __future__ import annotations

import functools
import math
import os

import click
from click.core import ParameterSource

from archprobe.report.frames import FORMATS
from archprobe.runtime.timing import MAX_ITERS

# A batch beyond this fits on no device, and its shape arithmetic overflows torch's int64.
MAX_BATCH = 2**31 - 1
# -o FILE picks the format from the suffix unless -f is given (every command the same way).
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".md": "md", ".txt": "table"}


def compose(*decorators):
    """Apply several click decorators as one."""

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


class Seconds(click.ParamType):
    """A finite number of seconds, at least ``minimum``. Not click's FloatRange: that takes
    ``inf`` and lets ``nan`` through (every comparison with NaN is false)."""

    name = "SECONDS"

    def __init__(self, minimum: float = 0.0):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"must be a finite number of seconds, not {value}", param, ctx)
        if seconds < self.minimum:
            self.fail(f"must be at least {self.minimum:g}, not {value}", param, ctx)
        return seconds


class NonEmptyPath(click.ParamType):
    """A path that is not the empty string (``-o ''`` is a mistake, not the current directory)."""

    def __init__(self, name: str = "FILE"):
        self.name = name

    def convert(self, value, param, ctx):
        text = os.fspath(value)
        if not text.strip():
            self.fail("give a path, not an empty string", param, ctx)
        return text


class IntList(click.ParamType):
    """``8``, ``8,32`` or a repeated option: positive integers up to ``maximum``, kept in order,
    repeats dropped."""

    name = "N[,N...]"

    def __init__(self, maximum: int = MAX_BATCH):
        self.maximum = maximum

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [p for p in str(value).replace(" ", "").split(",")]
        if not any(parts):
            self.fail("give at least one number", param, ctx)
        sizes = []
        for part in parts:
            if not part:
                continue
            try:
                size = int(part)
            except ValueError:
                self.fail(f"{part!r} is not an integer", param, ctx)
            if size <= 0:
                self.fail(f"must be positive, not {size}", param, ctx)
            if size > self.maximum:
                self.fail(f"must be at most {self.maximum}, not {size}", param, ctx)
            sizes.append(size)
        return tuple(sizes)


class ByteSize(click.ParamType):
    """``24GiB``, ``1.5GB``, ``512MiB`` or a number of bytes -> a positive number of bytes."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        from archprobe.errors import UsageError
        from archprobe.units import parse_bytes

        try:
            return parse_bytes(value)
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


def flatten_lists(values) -> tuple[int, ...]:
    """Repeated ``IntList`` options as one tuple, first occurrence first."""
    return tuple(dict.fromkeys(v for group in values for v in group))


def exclude_option(command):
    """``--exclude GLOB`` (repeatable): models matching it are left out of the command's models
    (globs included: ``'tv:*' --exclude 'vit*'``), through the one expansion every command and
    door uses (:func:`archprobe.zoo.resolution.expand`); a command's default models too, as
    :func:`resolve_specs` applies it."""

    @functools.wraps(command)
    def without_excluded(*args, exclude, **kwargs):
        if exclude:
            from archprobe.zoo.resolution import expand

            click.get_current_context().meta[EXCLUDE_KEY] = exclude
            if kwargs.get("models"):
                kwargs["models"] = tuple(expand(kwargs["models"], exclude))
            elif isinstance(kwargs.get("model"), str):
                names = expand([kwargs["model"]], exclude)
                if len(names) != 1:
                    raise click.BadParameter(f"{kwargs['model']!r} names {len(names)} models; give one",
                                             param_hint="MODEL")
                kwargs["model"] = names[0]
        return command(*args, **kwargs)

    return click.option("--exclude", "-x", "exclude", multiple=True, metavar="GLOB",
                        help="Leave out models matching GLOB (repeatable): 'vit*', 'tv:*_bn', '*-d2l'.")(
        without_excluded)


EXCLUDE_KEY = "archprobe.exclude"

model_input_options = compose(
    click.option("--input-size", metavar="[MODEL=]SIZE", multiple=True, callback=lambda _c, _p, v: v or None,
                 help="Input size: 224, HxW or CxHxW (default: the model's; CxHxW also sets the channels); "
                      "MODEL=SIZE gives one model its own (repeatable; MODEL as typed, or a glob)."),
    click.option("--in-channels", type=click.IntRange(min=1),
                 help="Build the model for this many input channels (zoo/library models, or factories that take it)."),
    click.option("--num-classes", type=click.IntRange(min=1), help="Output classes (default: the model's)."),
    exclude_option,
)


def mode_option(train_help: str):
    """``--mode eval|train``, the API's ``mode=`` under the same name, and ``--train``, its shorthand;
    the command receives ``mode`` as ``"eval"`` or ``"train"``."""

    def decorate(command):
        @functools.wraps(command)
        def with_mode(*args, mode, train, **kwargs):
            mode_given = click.get_current_context().get_parameter_source("mode") is ParameterSource.COMMANDLINE
            if train and mode_given and mode != "train":
                raise click.UsageError("--train means --mode train; give one of them")
            return command(*args, mode="train" if train else mode, **kwargs)

        return compose(
            click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
                         help=f"eval (inference) or train: {train_help}"),
            click.option("--train", is_flag=True, help="Shorthand for --mode train."),
        )(with_mode)

    return decorate


batch_size_option = click.option(
    "--batch-size", "-b", type=click.IntRange(1, MAX_BATCH), default=1, show_default=True, help="Batch size."
)


def batch_sizes_option(default: str):
    return click.option(
        "--batch-size", "-b", "batch_sizes", type=IntList(), multiple=True, default=(default,),
        show_default=True, help="Batch size; repeat or comma-separate for a sweep (8,32,128).",
    )


warmup_iters_option = click.option(
    "--warmup", type=click.IntRange(0, MAX_ITERS), default=5, show_default=True,
    help="Warm-up: at least this many iterations ...",
)
min_iters_option = click.option(
    "--min-iters", type=click.IntRange(1, MAX_ITERS), default=10, show_default=True,
    help="... and at least this many iterations.",
)
warmup_time_option = click.option("--warmup-time", type=Seconds(), default=1.0, show_default=True,
                                  help="... and at least this many seconds.")
cudnn_benchmark_option = click.option("--cudnn-benchmark/--no-cudnn-benchmark", default=True, show_default=True,
                                      help="cuDNN autotuning on CUDA (recorded with the results).")
DTYPES = ("float32", "bfloat16", "float16")


def dtype_option(default: str | None = "float32",
                 help: str = "Compute dtype; bfloat16/float16 run under autocast."):  # noqa: A002 - click's word
    """``--dtype``: the compute dtype, one spelling in every command that runs a model."""
    return click.option("--dtype", type=click.Choice(DTYPES), default=default, show_default=default is not None,
                        help=help)


def threads_option(per_rank: bool = False):
    """``--threads``: CPU threads, bounded by the logical CPUs in every command."""
    return click.option("--threads", type=click.IntRange(1, os.cpu_count() or 1),
                        help="CPU threads, at most the logical CPUs (default: the number of physical cores"
                             + ("; per rank with --nproc)." if per_rank else ")."))


def output_format(fmt: str, output: str | None, fmt_given: bool) -> str:
    """The format to write: ``-f`` if given, else the one ``-o FILE``'s suffix names, else ``fmt``."""
    if fmt_given or not output or output == "-":
        return fmt
    return SUFFIX_FORMATS.get(os.path.splitext(output)[1].lower(), fmt)


def output_options(command):
    """``-f/--format`` and ``-o/--output`` with one meaning everywhere: the format is ``-f``, else
    the output file's suffix (.csv, .json, .md, .txt), else a table; the output is checked (the
    output rule of :mod:`archprobe.report.writers`, writability) before the command does any work."""

    @functools.wraps(command)
    def checked(*args, fmt, output, **kwargs):
        from archprobe.report.writers import check_output

        given = click.get_current_context().get_parameter_source("fmt") is ParameterSource.COMMANDLINE
        check_output(output)
        return command(*args, fmt=output_format(fmt, output, given), output=output, **kwargs)

    return compose(
        click.option(
            "--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
            help="Output format (default: from the -o file's suffix, else table).",
        ),
        click.option("--output", "-o", type=NonEmptyPath(),
                     help="Write to FILE (- for stdout; a device or FIFO is written in place)."),
    )(checked)


def resolve_specs(models, input_size=None, in_channels=None, num_classes=None):
    """Resolve every spec up front, so a typo fails before any work starts."""
    from archprobe.zoo.resolution import resolve_all

    context = click.get_current_context(silent=True)
    exclude = context.meta.get(EXCLUDE_KEY) if context is not None else None
    return resolve_all(models, exclude, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
