"""The ``archprobe`` command line: a thin layer over the library.

Only click and the standard library are imported here, so ``--help`` never imports torch.
Each command lives in its own module and registers itself on ``cli``.
"""

from __future__ import annotations

import sys
import traceback

import click

from archprobe import __version__
from archprobe.errors import ArchprobeError, ExitCode, UsageError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.version_option(__version__, prog_name="archprobe")
def cli(debug: bool) -> None:
    """Instantiate CNN architectures and analyse them.

    \b
    Model specs (every command takes them):
      googlenet, alexnet-d2l ...   a zoo name (see 'archprobe list')
      tv:NAME                      any torchvision classification model
      timm:NAME                    any timm model
      path/to/file.py:factory      your own model (package.module:factory too)

    \b
    Examples:
      archprobe list 'inception*'
      archprobe params alexnet vgg16 nin googlenet
      archprobe shapes googlenet --depth 2
      archprobe min-input googlenet
      archprobe throughput --device cpu
      archprobe report -o reports/
      archprobe train lenet --dataset fake --epochs 3
    """


def _register_commands() -> None:
    # Each module adds its command(s) to ``cli`` on import; they import torch only when run.
    from archprobe.cli import (  # noqa: F401
        min_input_cmd,
        report_cmd,
        static_cmd,
        throughput_cmd,
        train_cmd,
        zoo_cmd,
    )


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors on stderr with an ``ExitCode``; ``--debug`` adds a traceback."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        # Without standalone mode click *returns* the code of a ctx.exit()/Exit instead of
        # raising it; commands return None otherwise.
        returned = cli.main(args=args, prog_name="archprobe", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ArchprobeError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.as_flag() if isinstance(exc, UsageError) else exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(
            f"error: {type(exc).__name__}: {message} (run with --debug for a traceback)", err=True
        )
        sys.exit(ExitCode.FAILURE)
    sys.exit(returned if isinstance(returned, int) else ExitCode.OK)
