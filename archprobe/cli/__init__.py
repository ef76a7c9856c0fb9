"""The ``archprobe`` command line: a thin layer over the library (may import every room).

Only click and the standard library are imported here, so ``--help`` never imports torch.
Each command lives in its own module and registers itself on ``cli``.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from archprobe import __version__
from archprobe.errors import ArchprobeError, ExitCode, as_interrupted, first_line

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
      archprobe memory resnet50 --train --fit 24GiB
      archprobe throughput --device cpu
      archprobe profile googlenet-d2l --mode train
      archprobe report -o reports/
      archprobe sweep 'tv:*' -a params,min-input -o atlas --jobs 2
      archprobe train lenet --dataset fake --epochs 3
    """


def _register_commands() -> None:
    # Each module adds its command(s) to ``cli`` on import; they import torch only when run.
    from archprobe.cli import (  # noqa: F401
        memory_cmd,
        min_input_cmd,
        profile_cmd,
        report_cmd,
        static_cmd,
        sweep_cmd,
        throughput_cmd,
        train_cmd,
        zoo_cmd,
    )


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors on stderr with an ``ExitCode``; ``--debug`` adds a traceback.

    SIGTERM is handled like Ctrl-C (work saved, exit 143); characters the terminal cannot encode
    are written as ASCII look-alikes (``15-4096+``).
    """
    from archprobe.report.writers import ascii_fallback
    from archprobe.plumbing.signals import handling_signals
    from archprobe.user_code import stdout_kept_for_archprobe

    args = sys.argv[1:] if argv is None else list(argv)
    with handling_signals(), stdout_kept_for_archprobe(), ascii_fallback(sys.stdout, sys.stderr):
        code = _run(args, debug="--debug" in args)
    if argv is None:  # the program itself, not a call from Python
        _exit_program(code)
    sys.exit(code)


def _exit_program(code: int) -> None:
    """The program's exit. archprobe's output is complete, so whatever model code still writes (a
    daemon thread, an ``atexit`` hook) goes to stderr; a thread it left running is not waited for."""
    import threading

    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the program was started with that descriptor closed
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    except OSError:
        pass
    if any(t is not threading.current_thread() and not t.daemon for t in threading.enumerate()):
        os._exit(code)
    sys.exit(code)


def _run(args: list[str], debug: bool) -> int:
    try:
        # click's own main() would print a blank line on an interrupt and wrap it in Abort;
        # making the context and invoking it directly leaves every message to the handlers here.
        with cli.make_context("archprobe", args) as ctx:
            returned = cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # plain 'archprobe' (click >= 8.2): the help itself
            click.echo(exc.ctx.get_help())
            return ExitCode.OK
        where = getattr(exc, "ctx", None)
        hint = f" (see '{where.command_path} --help')" if isinstance(exc, click.UsageError) and where else ""
        _error(exc.format_message() + hint)
        return ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code
    except ArchprobeError as exc:
        if debug:
            traceback.print_exc()
        _error(exc.for_command_line())
        return exc.exit_code
    except KeyboardInterrupt as exc:
        interrupted = as_interrupted(exc)
        click.echo(_one_line(str(interrupted)), err=True)
        return interrupted.exit_code
    except BrokenPipeError:
        # The reader went away (``archprobe list | head -1``): nothing more to say, and nothing
        # left to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILURE
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        _error(f"{first_line(exc)} (run with --debug for a traceback)")
        return ExitCode.FAILURE
    return returned if isinstance(returned, int) else ExitCode.OK


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(message: str) -> None:
    click.echo(f"error: {_one_line(message)}", err=True)
