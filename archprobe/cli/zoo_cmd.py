"""``archprobe list``: the model zoo."""

from __future__ import annotations

import click

from archprobe.cli import cli
from archprobe.cli.options import output_options


@cli.command("list")
@click.argument("patterns", nargs=-1)
@click.option("--exclude", "-x", multiple=True, help="Glob of names to leave out (repeatable).")
@output_options
def list_command(patterns, exclude, fmt, output):
    """List the model zoo, optionally filtered by glob PATTERNS.

    \b
    Examples:
      archprobe list
      archprobe list 'inception*' 'googlenet*'
      archprobe list --exclude '*-d2l' --format md
    """
    from archprobe import api
    from archprobe.report.frames import render
    from archprobe.report.writers import emit

    entries = api.list_models(patterns or None, exclude or None)
    if not entries:
        raise click.UsageError(f"no zoo model matches {' '.join(patterns)!r}")
    emit(render(entries, fmt), output)
