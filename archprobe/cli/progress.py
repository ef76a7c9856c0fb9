"""The one progress bar of the command line: rich's, on stderr, shown only on a terminal."""

from __future__ import annotations


def progress_bar(quiet: bool = False, *, label: str = "{task.description}", remaining: bool = False):
    """A rich ``Progress`` on stderr: description, bar, done/total and the time elapsed (or,
    with ``remaining``, the time left). Off when ``quiet`` or when stderr is not a terminal;
    then it prints nothing at all (rich 13.0 printed a blank line when an idle bar stopped,
    which a one-line error after it must not have above it)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    class Bar(Progress):
        def stop(self) -> None:
            if not self.disable:
                super().stop()

    console = Console(stderr=True)
    clock = TimeRemainingColumn() if remaining else TimeElapsedColumn()
    return Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), clock, console=console, transient=True,
               disable=quiet or not console.is_terminal)
