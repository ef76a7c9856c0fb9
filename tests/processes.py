"""Helpers for tests that start processes of their own (ranks, CLI runs)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a zombie counts: it has not been reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
