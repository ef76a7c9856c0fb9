"""Option bundles shared by commands (sqlite-utils style decorators)."""

from __future__ import annotations

import click

from archprobe.report.frames import FORMATS


def _compose(*decorators):
    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def _positive(ctx, param, value):
    if value is None:
        return value
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if v <= 0:
            raise click.BadParameter(f"must be positive, not {v}")
    return value


model_input_options = _compose(
    click.option("--input-size", metavar="SIZE", help="Input size: 224, HxW or CxHxW (default: the model's)."),
    click.option("--in-channels", type=int, callback=_positive, help="Input channels (default: the model's)."),
    click.option("--num-classes", type=int, callback=_positive, help="Output classes (default: the model's)."),
)

batch_size_option = click.option(
    "--batch-size", "-b", type=int, default=1, show_default=True, callback=_positive, help="Batch size."
)

output_options = _compose(
    click.option(
        "--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
        help="Output format.",
    ),
    click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout."),
)


def expand_specs(specs) -> list[str]:
    """Zoo globs (``'inception*'``, ``'*'``) expand to the matching zoo names, in zoo order."""
    from archprobe.errors import SpecError
    from archprobe.zoo.registry import list_models

    expanded: list[str] = []
    for spec in specs:
        if ":" not in spec and any(ch in spec for ch in "*?["):
            names = [info.name for info in list_models(spec)]
            if not names:
                raise SpecError(f"no zoo model matches {spec!r}; see 'archprobe list'")
            expanded.extend(names)
        else:
            expanded.append(spec)
    return list(dict.fromkeys(expanded))


def resolve_specs(specs, input_size=None, in_channels=None, num_classes=None):
    """Resolve every spec up front, so a typo fails before any work starts."""
    from archprobe.zoo.spec import resolve

    return [
        resolve(s, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
        for s in expand_specs(specs)
    ]


