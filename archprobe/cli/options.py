"""Option bundles shared by commands (sqlite-utils style decorators): one meaning per flag."""

from __future__ import annotations

import click

from archprobe.report.frames import FORMATS


def compose(*decorators):
    """Apply several click decorators as one."""

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


class IntList(click.ParamType):
    """``8``, ``8,32`` or a repeated option: positive integers, kept in order, repeats dropped."""

    name = "N[,N...]"

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


model_input_options = compose(
    click.option("--input-size", metavar="SIZE",
                 help="Input size: 224, HxW or CxHxW (default: the model's; CxHxW also sets the channels)."),
    click.option("--in-channels", type=click.IntRange(min=1),
                 help="Build the model for this many input channels (zoo/library models, or factories that take it)."),
    click.option("--num-classes", type=click.IntRange(min=1), help="Output classes (default: the model's)."),
)

batch_size_option = click.option(
    "--batch-size", "-b", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size."
)


def batch_sizes_option(default: str):
    return click.option(
        "--batch-size", "-b", "batch_sizes", type=IntList(), multiple=True, default=(default,),
        show_default=True, help="Batch size; repeat or comma-separate for a sweep (8,32,128).",
    )


output_options = compose(
    click.option(
        "--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
        help="Output format.",
    ),
    click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout."),
)


def resolve_specs(models, input_size=None, in_channels=None, num_classes=None):
    """Resolve every spec up front, so a typo fails before any work starts."""
    from archprobe.api import resolve_all

    return resolve_all(models, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
