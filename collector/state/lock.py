"""The single-instance lock beside the checkpoint: ``<state_file>.lock``, holding the holder's pid.

The lock is an exclusive ``flock`` on the file at that path, and the file's text is its holder's pid. A
file holding anything else is never locked: the pid is written into a new file first, which is locked
and then renamed over the path, so whoever finds the lock held reads the pid of the process holding it
(``reload`` signals that pid). Starters take turns through a ``flock`` on the folder, held only while
they look at the old file and rename theirs over it; ``reload`` and ``state show`` only look.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import suppress
from pathlib import Path

from collector.errors import StateLockedError
from collector.state.failures import from_os

__all__ = ["lock_holder", "take_lock"]

# A reader that opened the path just before a start renamed a new file over it looks again.
_LOOKS = 5


def take_lock(lock_path: Path, state_path: Path) -> int:
    """Take the lock for ``state_path`` with this pid in it; return its descriptor (closing releases it).

    Raises:
        StateLockedError: another instance holds it.
        StateResourceError: the lock file or its folder cannot be opened or written (full, read-only, permission).
        StateError: the lock file or its folder cannot be opened for another reason.
    """
    try:
        folder = os.open(lock_path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os(exc, lock_path.parent, "open", "the folder of the lock file") from None
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # one starter at a time; held for a few system calls
        held, holder = _look(lock_path)
        if held:
            raise StateLockedError(
                f"the state file {state_path} is in use by another mimecast-collector (pid {holder or 'unknown'}); "
                "stop it first, or give each instance its own collection.state_file")
        return _replace(lock_path)
    finally:
        os.close(folder)  # releases the folder's flock


def _replace(lock_path: Path) -> int:
    """A new lock file holding this pid, locked, renamed over ``lock_path``; its descriptor."""
    for leftover in lock_path.parent.glob(f"{lock_path.name}.*.tmp"):  # a starter that died before its rename
        with suppress(OSError):  # a read-only folder is reported by the open below
            leftover.unlink(missing_ok=True)
    fresh = lock_path.with_name(f"{lock_path.name}.{os.getpid()}.tmp")
    fd = -1
    try:
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.write(fd, f"{os.getpid()}\n".encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(fresh, lock_path)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        with suppress(OSError):
            fresh.unlink(missing_ok=True)
        raise from_os(exc, lock_path, "write", "the lock file") from None
    return fd


def lock_holder(lock_path: Path) -> int | None:
    """The pid of the process holding the lock, or ``None`` when nobody holds it."""
    return _look(lock_path)[1]


def _look(lock_path: Path) -> tuple[bool, int | None]:
    """Whether the lock is held, and the pid written in it."""
    for _ in range(_LOOKS):
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False, None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return True, int(text) if text.isdigit() else None
            if _still_at(fd, lock_path):
                return False, None
        finally:
            os.close(fd)
    return False, None


def _still_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a start may have renamed a new one over it)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False
