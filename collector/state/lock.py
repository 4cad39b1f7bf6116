"""The single-instance lock beside the checkpoint: ``<state_file>.lock``, holding the holder's pid."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from collector.errors import StateLockedError
from collector.state.failures import from_os

__all__ = ["lock_holder", "take_lock"]


def take_lock(lock_path: Path, state_path: Path) -> int:
    """Take the lock for ``state_path`` and write this pid into it; return its descriptor (closing releases it).

    Raises:
        StateLockedError: another instance holds it.
        StateResourceError: the lock file cannot be opened or written (full, read-only, permission).
        StateError: the lock file cannot be opened for another reason.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise from_os(exc, lock_path, "open", "the lock file") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StateLockedError(
            f"the state file {state_path} is in use by another mimecast-collector (pid {holder}); "
            "stop it first, or give each instance its own collection.state_file") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise from_os(exc, lock_path, "write", "the lock file") from None
    return fd


def lock_holder(lock_path: Path) -> int | None:
    """The pid of the process holding the lock, or ``None`` when nobody holds it."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None
    else:
        return None
    finally:
        os.close(fd)
