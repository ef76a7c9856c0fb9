"""Helpers for tests that start processes of their own (ranks, CLI runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable


def alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a zombie counts: it has not been reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def interrupt_when_ready(command: list[str], ready: Callable[[], bool], *, env: dict, cwd,
                         timeout: float = 90) -> tuple[int, str, str]:
    """Run ``command`` in a session of its own, press Ctrl-C (SIGINT to its whole process group,
    as a terminal does) once ``ready()`` holds, and return ``(returncode, stdout, stderr)``."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err
