"""Telling a file system that cannot serve the checkpoint apart from a checkpoint that is damaged.

A full disk, a read-only mount, a missing permission or failing I/O leave the database as it was: the
collector stops with its own message and exit status (75, temporary), its service restarts, and the
checkpoint is used again once the cause is fixed. Only what SQLite reports as damage, or a file that is not
ours, is a corrupt checkpoint (exit 65 and the reset hint).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from collector.errors import StateCorruptError, StateError, StateResourceError

__all__ = ["RESET_HINT", "RESOURCE_HINT", "from_os", "from_sqlite", "writing"]

RESET_HINT = "inspect it with `mimecast-collector state show`; `mimecast-collector state reset` starts afresh"
RESOURCE_HINT = ("the checkpoint is not damaged: fix the cause (a running collector tries again at its next poll; "
                 "one that stopped exits 75, on which the service restarts); do not reset it")

# SQLite's primary result codes (the low byte of its extended codes).
_SQLITE_CAUSES = {
    3: "permission denied",        # SQLITE_PERM
    5: "the database is busy",     # SQLITE_BUSY
    6: "the database is locked",   # SQLITE_LOCKED
    7: "out of memory",            # SQLITE_NOMEM
    8: "the file or its file system is read-only",  # SQLITE_READONLY
    10: "an I/O error (a full disk or a failing device)",  # SQLITE_IOERR
    13: "no space left on its file system",  # SQLITE_FULL
    14: "the file cannot be opened (permissions, or a missing folder)",  # SQLITE_CANTOPEN
    15: "the locking protocol failed",  # SQLITE_PROTOCOL
    23: "access denied",           # SQLITE_AUTH
}
_OS_CAUSES = {
    errno.ENOSPC: "no space left on its file system",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "its file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an I/O error",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
    errno.ENOMEM: "out of memory",
}


def from_sqlite(exc: sqlite3.Error, path: Path, doing: str) -> StateError:
    """The error to raise for ``exc``, met while ``doing`` (e.g. "open") the checkpoint at ``path``.

    A resource failure is a :class:`StateResourceError`; damage or a foreign file (any other database
    error) a :class:`StateCorruptError`; anything else (a refused constraint, a programming or interface
    error) a plain :class:`StateError`.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    cause = _SQLITE_CAUSES.get(code & 0xFF) if isinstance(code, int) else None
    if cause is not None:
        cause = _file_system(path) or cause
        return StateResourceError(f"cannot {doing} the state file {path}: {cause} ({exc}); {RESOURCE_HINT}")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
        return StateCorruptError(f"the state file {path} is corrupt ({exc}); {RESET_HINT}")
    return StateError(f"cannot {doing} the state file {path}: {exc}")


@contextmanager
def writing(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``conn`` (the checkpoint at ``path``), committed at the end of the block and
    rolled back on any exception; a database or OS failure is raised as the error it is (see above)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise from_sqlite(exc, path, "write") from None
        if isinstance(exc, OSError):
            raise from_os(exc, path, "write") from None
        raise


def from_os(exc: OSError, path: Path, doing: str, what: str = "the state file") -> StateError:
    """The error to raise for ``exc``, met while ``doing`` ``what`` at ``path``: a resource failure (full,
    read-only, permission, I/O) is a :class:`StateResourceError`, anything else a plain :class:`StateError`."""
    cause = _OS_CAUSES.get(exc.errno) if exc.errno is not None else None
    if cause is not None:
        return StateResourceError(f"cannot {doing} {what} {path}: {cause} ({exc.strerror}); {RESOURCE_HINT}")
    return StateError(f"cannot {doing} {what} {path}: {exc.strerror or exc}")


def _file_system(path: Path) -> str | None:
    """What the file system holding ``path`` says about itself, when SQLite's code is vague (an I/O error is
    often a full disk that failed to grow the log's index)."""
    try:
        info = os.statvfs(path.parent)
    except OSError:
        return None
    if info.f_flag & os.ST_RDONLY:
        return "its file system is read-only"
    if info.f_bavail * info.f_frsize < _NEARLY_FULL:
        return "no space left on its file system"
    return None


# Less free space than this is a full file system: SQLite grows its files by pages of up to 64 KiB.
_NEARLY_FULL = 64 * 1024
