"""Files written whole or not at all, and directories swapped in whole.

The process plumbing every wing shares (the report, the training run directory, checkpoints):
it imports nothing of archprobe but :mod:`archprobe.errors` and :mod:`archprobe.plumbing.signals`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
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
    mode = _mode_of(target, 0o666)
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


def move_to_fresh_name(source: Path, wanted: Path) -> Path:
    """Move the file ``source`` to ``wanted`` (on the same file system), or, where that name is
    taken, to the first free one of ``wanted`` with ``-2``, ``-3``, ... before its suffix: a file
    of an earlier run is never replaced. The name is claimed first (``O_EXCL``), so two runs
    never pick the same one; SIGINT and SIGTERM are held back meanwhile. Returns the new path."""
    names = (wanted.with_name(f"{wanted.stem}-{n}{wanted.suffix}") if n > 1 else wanted for n in itertools.count(1))
    with signals_deferred():
        candidate = next(name for name in names if _claim(name))
        try:
            os.replace(source, candidate)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        fsync_directory(candidate.parent)
    return candidate


def _claim(path: Path) -> bool:
    """Create ``path`` empty, unless anything is there (a file, a directory, even a dangling link)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


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


def _mode_of(path: Path, new: int) -> int:
    """The permission bits of ``path``; for a path that does not exist yet, ``new`` less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return new & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- directories built aside and swapped in -----------------------------------------------------


def is_mount_point(path: str | os.PathLike) -> bool:
    """Is ``path`` a mount point? ``os.path.ismount`` misses a bind mount of a directory of the
    same file system; the kernel's mount table (Linux) does not."""
    if os.path.ismount(path):
        return True
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            table = fh.read()
    except OSError:
        return False
    fields = (line.split() for line in table.splitlines())
    return os.fspath(path) in {_unescape_octal(f[4]) for f in fields if len(f) > 4}  # the 5th: where


def _unescape_octal(field: str) -> str:
    """A path of the mount table, where a space is ``\\040`` (a tab, a newline, a backslash alike)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def stage_home(target: Path) -> Path:
    """Where the stage of ``target`` (a real path) is built: beside it, so that the swap is one
    rename; inside it when it is a mount point, which no rename can replace."""
    return target if is_mount_point(target) else target.parent


def directory_entries(directory: Path) -> list[str]:
    """The names in ``directory`` (a real path), sorted, less what is not a user's at a mount
    point: the file system's ``lost+found`` and the stages of runs writing into it."""
    names = sorted(os.listdir(directory))
    if not is_mount_point(directory):
        return names
    return [name for name in names if name != "lost+found" and not _is_stage_name(name, directory)]


def _is_stage_name(name: str, target: Path) -> bool:
    return name.startswith(f".{target.name}.") and name.endswith(".tmp")


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, *, replace: bool) -> Iterator["Stage"]:
    """A directory built aside and swapped in whole: the block writes into ``stage.path`` (a
    hidden sibling of ``target``, so the swap is a rename on one file system) and calls
    ``stage.commit()``; without a commit, or after it, the stage is removed, on every path out.

    ``target`` (a symlink's target) is created, or with ``replace`` swapped for the new one. An
    interrupt or a crash at any moment leaves either the old directory or the new one at
    ``target``, each whole; a second writer never mixes its files with ours.

    A mount point cannot be swapped: its stage is built inside it, and the commit moves the
    files in one by one (each whole, signals held back) and removes the old ones.
    """
    stage = Stage(Path(os.path.realpath(target)), replace=replace)
    try:
        with signals_deferred():  # a signal raised as it ends is inside the try: the stage goes
            stage.create()
        yield stage
    finally:
        with signals_deferred():  # an interrupt now must not leave half a stage behind
            if stage.path is not None:
                shutil.rmtree(stage.path, ignore_errors=True)


class Stage:
    """The hidden directory of :func:`staged_directory`, beside its target (or, at a mount point,
    inside it: ``home``)."""

    def __init__(self, target: Path, *, replace: bool):
        self.target = target
        self.replace = replace
        self.committed = False
        self.home = stage_home(target)
        self.in_place = self.home == target
        self.path: Path | None = None

    def create(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        mode = None if self.in_place else _mode_of(self.target, 0o777)
        self.path = Path(tempfile.mkdtemp(dir=self.home, prefix=f".{self.target.name}.", suffix=".tmp"))
        if mode is not None:
            os.chmod(self.path, mode)  # mkdtemp makes 0700 directories; this one becomes the target

    def commit(self) -> None:
        """Swap the stage in at the target (SIGINT and SIGTERM held back meanwhile).

        Raises:
            UsageError: the target was filled by someone else since the stage was made and
                ``replace`` was not given.
        """
        fsync_directory(self.path)
        with signals_deferred():
            if self.in_place:
                self._move_in()
            else:
                try:
                    os.rename(self.path, self.target)  # a missing or empty target: replaced at once
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    self._refuse_unless_replacing()
                    self._swap()
            self.committed = True
            fsync_directory(self.home)

    def _refuse_unless_replacing(self) -> None:
        if not self.replace:
            raise UsageError(f"{self.target} was written by another run meanwhile", hint="force") from None

    def _move_in(self) -> None:
        # The mount point's own files: each new one renamed over its old namesake, then the old
        # ones the new report does not have removed.
        old = directory_entries(self.target)
        if old:
            self._refuse_unless_replacing()
        new = sorted(os.listdir(self.path))
        for name in new:
            os.replace(self.path / name, self.target / name)
        for name in set(old) - set(new):
            (self.target / name).unlink(missing_ok=True)

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
