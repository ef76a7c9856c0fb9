"""Scaffolding every test file shares: running the command line in-process."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # the helper modules beside the tests (nets_tricky, seed_models, processes)
    sys.path.insert(0, str(TESTS))

# A suite started in the background (`make test &`, nohup, some CI runners) inherits SIGINT
# ignored, and archprobe rightly leaves an ignored SIGINT alone. The tests that interrupt it need
# Ctrl-C to mean what it means at a terminal, here and in the processes they start (a Python
# handler becomes the default disposition across exec; an ignored signal would stay ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def invoke(capsys):
    """``invoke(*args)`` runs ``archprobe *args`` in this process and returns ``(exit code,
    stdout, stderr)``; arguments may be paths or numbers."""
    from archprobe.cli import main

    def run(*args) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run
