"""Lines that libraries write straight to file descriptor 2, filtered.

torch 2.14's kineto writes a ``USDT:... profiler_start`` / ``profiler_stop`` line to the
process's stderr at every start and stop of ``torch.profiler``, whatever ``KINETO_LOG_LEVEL``
says: a profile of a few dozen rounds printed a hundred of them around its table.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator


@contextlib.contextmanager
def dropping_lines(prefix: bytes) -> Iterator[None]:
    """For the block, the lines written to file descriptor 2 that start with ``prefix`` are
    dropped and every other byte is passed on to it, in order (``sys.stderr`` included). Where
    descriptor 2 cannot be duplicated (closed), the block runs unfiltered."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        original = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        # OSError: the block ended while a child process still held the pipe (original closed)
        with contextlib.suppress(OSError), os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not line.startswith(prefix))
                if kept:
                    os.write(original, kept)
            if pending and not pending.startswith(prefix):
                os.write(original, pending)

    thread = threading.Thread(target=forward, name="archprobe-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last write end closes: the thread reads to its end
        thread.join(timeout=5.0)  # a child process still holding the pipe keeps it open
        os.close(original)
