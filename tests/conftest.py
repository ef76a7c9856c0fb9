"""Scaffolding every test file shares: running the command line in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # the helper modules beside the tests (nets_tricky, seed_models, processes)
    sys.path.insert(0, str(TESTS))


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
