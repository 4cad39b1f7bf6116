"""Opening the checkpoint: a new database, ours checked, a version 1 JSON file migrated, anything else refused.

A new database is created with mode 0600 (its write-ahead log and shared
memory files take the same mode). A version 1 file is migrated into a new
database beside it, then kept as ``<name>.v1.json`` before the database takes
its place, so a crash at any point leaves either the old file or the new one.

A write-ahead log, its index and a rollback journal (``-wal``, ``-shm``, ``-journal``) belong to the database
beside them. Next to a version 1 file they belong to a database that is no longer there (a downgrade put the
JSON back), and SQLite would replay their pages onto the database the migration puts in its place: they are
removed before it does.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import structlog

from collector.errors import StateCorruptError, StateError
from collector.state import intents
from collector.state.failures import from_os, from_sqlite
from collector.state.legacy import looks_like_json, migrate_json
from collector.state.schema import PAGE_BYTES, RESET_HINT, SCHEMA_VERSION, create_schema, needs_upgrade, upgrade, verify

__all__ = ["SIDE_FILES", "connect", "connect_immutable", "inspect", "legacy_backup"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
# The write-ahead log and its index live beside the database and belong to it, as does the rollback journal of
# an interrupted rebuild (see _repage).
SIDE_FILES = ("-wal", "-shm", "-journal")
# Bounded wait when another connection holds a lock (a `state show` during a checkpoint).
_BUSY_TIMEOUT_MS = 5000
# A chunk's keys land on pages all over the key table. Folding the log back into the database after 40 MiB
# of pages rather than SQLite's 1,000 writes a page changed by many chunks once, not many times.
_FOLD_BYTES = 40 << 20


def legacy_backup(path: Path) -> Path:
    """Where a migrated version 1 checkpoint is kept: ``<name>.v1.json`` beside it."""
    return path.with_name(f"{path.stem}.v1.json")


def connect(path: Path, *, read_only: bool, in_use: bool = True) -> sqlite3.Connection:
    """A connection to the checkpoint at ``path``, created or migrated first unless ``read_only``.

    A read-only look at a database no collector uses opens it normally (but
    writes nothing), so that closing it folds its log back and leaves no files.

    Raises:
        StateCorruptError: the file is not a checkpoint this version can read.
        StateResourceError: its file system is full, read-only, not permitted or failing.
        StateError: the file cannot be read or created.
    """
    head = _head(path)
    if head and looks_like_json(head):
        return _legacy(path, read_only)
    if head and not (len(head) == 100 and head.startswith(_SQLITE_MAGIC)):
        raise StateCorruptError(f"the state file {path} is corrupt (neither a checkpoint database nor a version 1 "
                                f"checkpoint); {RESET_HINT}")
    if head is None and read_only:
        return _fresh(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False))
    if head is None:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise from_os(exc, path, "create") from None
    conn = _open(path, read_only and (in_use or not os.access(path, os.W_OK)))
    try:
        if not verify(conn, path):
            if read_only:
                conn.close()
                return _fresh(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False))
            _use_wal(conn, path)
            _fresh(conn)
        elif not read_only:
            _use_wal(conn, path)
            if needs_upgrade(conn):
                conn.execute("BEGIN IMMEDIATE")
                upgrade(conn)
                conn.execute("COMMIT")
                structlog.get_logger("collector.state").warning(
                    "state.upgraded", path=str(path), schema=SCHEMA_VERSION,
                    reason="the checkpoint now keeps when each second is due; every second of the last overlap "
                           "gets its settle read")
            _repage(conn, path)
        elif needs_upgrade(conn):
            # A look at an older checkpoint changes nothing on disk: upgrade a copy in memory.
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            conn.backup(memory)
            conn.close()
            conn = memory
            conn.execute("BEGIN")
            upgrade(conn)
            conn.execute("COMMIT")
        if not read_only:
            intents.ensure(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise from_sqlite(exc, path, "open") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _remove_stale_side_files(path: Path, why: str) -> None:
    """Delete the ``-wal`` and ``-shm`` beside ``path`` (the caller holds the lock and knows they are not its)."""
    removed = []
    for suffix in SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            size = side.stat().st_size
            side.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise from_os(exc, side, "remove", "the stale file") from None
        removed.append(f"{side.name} ({size} bytes)")
    if removed:
        _sync_folder(path.parent)
        structlog.get_logger("collector.state").warning(
            "state.stale_log_removed", path=str(path), removed=removed,
            reason=f"{why}: the write-ahead log beside it belonged to a database that is no longer there, "
                   "and replaying it would overwrite the checkpoint")


def _head(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise from_os(exc, path, "read") from None


def _open(path: Path, read_only: bool) -> sqlite3.Connection:
    try:
        if read_only:
            conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
        else:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=_BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise from_sqlite(exc, path, "open") from None
    return conn


def _use_wal(conn: sqlite3.Connection, path: Path) -> None:
    try:
        # Takes effect only on a new, empty file: it must come before the log is switched on.
        conn.execute(f"PRAGMA page_size = {PAGE_BYTES}")
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint = {max(1000, _FOLD_BYTES // size)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.Error as exc:
        raise from_sqlite(exc, path, "open") from None
    if mode != "wal":
        raise StateError(f"the state file {path} cannot use write-ahead logging (journal mode {mode})")


def _repage(conn: sqlite3.Connection, path: Path) -> None:
    """Rebuild, once, a checkpoint written with larger pages (before version 3) with :data:`PAGE_BYTES` ones.

    Only an economy: when it cannot be done now (another process has the file open, the disk is full), the
    checkpoint is used as it is, and the next start tries again.
    """
    log = structlog.get_logger("collector.state")
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        if size == PAGE_BYTES:
            return
        began = time.monotonic()
        # Pages change size only outside write-ahead logging; the rebuild is atomic under the rollback journal.
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute(f"PRAGMA page_size = {PAGE_BYTES}")
        conn.execute("VACUUM")
        log.info("state.repaged", path=str(path), page_bytes=PAGE_BYTES, was=size,
                 seconds=round(time.monotonic() - began, 2))
    except sqlite3.Error as exc:
        log.warning("state.repage_skipped", path=str(path), error=str(exc),
                    reason="the checkpoint keeps its larger pages, which write more to disk; the next start tries again")
    _use_wal(conn, path)


def _fresh(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute("BEGIN IMMEDIATE")
    create_schema(conn)
    conn.execute("COMMIT")
    return conn


def _legacy(path: Path, read_only: bool) -> sqlite3.Connection:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise from_os(exc, path, "read") from None
    if read_only:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        migrate_json(raw, path, conn)
        return conn
    tmp = path.with_name(f".{path.name}.migrating")
    for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in SIDE_FILES)):
        leftover.unlink(missing_ok=True)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA page_size = {PAGE_BYTES}")
            counts = migrate_json(raw, path, conn)
        finally:
            conn.close()
        _remove_stale_side_files(path, "the state file is a version 1 JSON checkpoint")
        backup = legacy_backup(path)
        backup.unlink(missing_ok=True)
        try:
            os.link(path, backup)
        except OSError:
            shutil.copy2(path, backup)  # a file system without hard links
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise from_os(exc, path, "migrate") from None
        raise from_sqlite(exc, path, "migrate") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    structlog.get_logger("collector.state").warning(
        "state.migrated", path=str(path), kept_as=str(backup), **counts,
        reason="the version 1 JSON checkpoint was converted to the checkpoint database")
    return connect(path, read_only=False)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def connect_immutable(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path`` that writes nothing beside it: no lock, no write-ahead log, no shared
    memory file. It reads the database file alone; what is still only in a write-ahead log is not seen."""
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1", uri=True, isolation_level=None)


def inspect(path: Path) -> bool:
    """Check that the existing file at ``path`` is a checkpoint this version reads, writing nothing at all;
    True when it cannot be judged now: a rollback journal beside it shows an interrupted rewrite (a rebuild),
    which only the next writable open rolls back, so the file alone is not the checkpoint.

    The database is opened immutable: no lock, no write-ahead log or shared memory file is made, so a
    check run by root leaves no file behind that the service's user could not open. Only for a file no
    collector is using.

    Raises:
        StateCorruptError: the file is not a checkpoint this version can read.
        StateError: the file cannot be read.
    """
    journal = path.with_name(path.name + "-journal")
    if journal.exists() and journal.stat().st_size > 0:
        return True
    head = _head(path)
    if head and looks_like_json(head):
        _legacy(path, read_only=True).close()
        return False
    if not head:
        return False
    if not (len(head) == 100 and head.startswith(_SQLITE_MAGIC)):
        raise StateCorruptError(f"the state file {path} is corrupt (neither a checkpoint database nor a version 1 "
                                f"checkpoint); {RESET_HINT}")
    try:
        conn = connect_immutable(path)
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state file {path}: {exc}") from None
    try:
        verify(conn, path)
    finally:
        conn.close()
    return False
