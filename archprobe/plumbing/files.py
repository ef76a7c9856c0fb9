"""Files written whole or not at all, and directories swapped in whole.

The process plumbing every wing shares (the report, the training run directory, checkpoints):
it imports nothing of archprobe but :mod:`archprobe.errors` and :mod:`archprobe.plumbing.signals`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from archprobe.errors import UsageError
from archprobe.plumbing.signals import signals_deferred


def check_directory_writable(directory: str | os.PathLike, *, param: str | None) -> None:
    """Can files be created in ``directory`` (or, where it does not exist yet, in its nearest
    existing ancestor, where it would be created)? Tried for real, with a nameless temp file:
    permission bits do not tell for root or a read-only file system."""
    existing = Path(os.path.abspath(directory))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot create {directory}: {existing} is not a directory", param=param)
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise UsageError(f"cannot write in {existing}: {exc.strerror}", param=param) from exc


def lock_directory(directory: str | os.PathLike, name: str, *, param: str | None) -> int:
    """Hold ``directory`` for this process until the returned descriptor is closed: an exclusive,
    non-blocking ``flock`` on the file ``name`` in it (created where missing, never removed: a
    removed lock file would let two processes lock two different files). The lock goes with
    the process, so a killed run never leaves the directory locked.

    Raises:
        UsageError: another process holds the directory (or the lock cannot be taken), naming it.
    """
    import fcntl

    path = Path(directory) / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write access
    except OSError as exc:
        raise UsageError(f"cannot lock {directory}: {path}: {exc.strerror}", param=param) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise UsageError(f"{directory} is in use by another process (it holds the lock on {path}); "
                             "wait for it to end, or choose another directory", param=param) from None
        raise UsageError(f"cannot lock {directory}: {path}: {exc.strerror}", param=param) from exc
    return fd


def write_atomic(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], Any]) -> Path:
    """Replace the file at ``path`` (a symlink's target) with ``data`` (text, bytes, or a function
    that writes to the open binary file, e.g. ``torch.save``), atomically and durably.

    A temp file beside it is written, fsynced and renamed over it, then the directory is
    fsynced; SIGINT and SIGTERM are held back meanwhile, so no half-written or temp file is
    left behind. An existing file keeps its permission bits; a new one gets the usual mode.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with signals_deferred():
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                if callable(payload):
                    payload(fh)
                else:
                    fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
                os.fchmod(fh.fileno(), mode)  # mkstemp makes 0600 files
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_directory(target.parent)
    return target


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- directories built aside and swapped in -----------------------------------------------------


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, *, replace: bool) -> Iterator["Stage"]:
    """A directory built aside and swapped in whole: the block writes into ``stage.path`` (a
    hidden sibling of ``target``, so the swap is a rename on one file system) and calls
    ``stage.commit()``; without a commit, or after it, the stage is removed.

    ``target`` (a symlink's target) is created, or with ``replace`` swapped for the new one. An
    interrupt or a crash at any moment leaves either the old directory or the new one at
    ``target``, each whole; a second writer never mixes its files with ours.
    """
    stage = Stage(Path(os.path.realpath(target)), replace=replace)
    try:
        yield stage
    finally:
        with signals_deferred():  # an interrupt now must not leave half a stage behind
            shutil.rmtree(stage.path, ignore_errors=True)


class Stage:
    """The hidden sibling directory of :func:`staged_directory`."""

    def __init__(self, target: Path, *, replace: bool):
        self.target = target
        self.replace = replace
        self.committed = False
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = 0o777 & ~_umask()
        os.chmod(self.path, mode)  # mkdtemp makes 0700 directories

    def commit(self) -> None:
        """Swap the stage in at the target (SIGINT and SIGTERM held back meanwhile).

        Raises:
            UsageError: the target was filled by someone else since the stage was made and
                ``replace`` was not given.
        """
        fsync_directory(self.path)
        with signals_deferred():
            try:
                os.rename(self.path, self.target)  # a missing or empty target: replaced at once
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if not self.replace:
                    raise UsageError(f"{self.target} was written by another run meanwhile",
                                     hint="force") from None
                self._swap()
            self.committed = True
            fsync_directory(self.target.parent)

    def _swap(self) -> None:
        # One atomic exchange where the kernel offers it; the old report lands in the stage path
        # and is removed with it. Elsewhere two renames, with the old directory put back if the
        # second one fails.
        if _exchange(self.path, self.target):
            return
        old = self.path.with_name(self.path.name + ".old")
        os.rename(self.target, old)
        try:
            os.rename(self.path, self.target)
        except BaseException:
            os.rename(old, self.target)
            raise
        os.rename(old, self.path)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``, not in Python's ``os``);
    ``False`` where the kernel, libc or file system does not offer it."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))
