"""The checkpoint database's layout, how keys are stored, and the checks that refuse a database not ours.

One SQLite file. ``application_id`` marks it as a mimecast-collector
checkpoint and ``user_version`` is its schema version; a file with another
application id, a newer version or a failing ``PRAGMA quick_check`` is refused.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from collector.errors import StateCorruptError
from collector.state.failures import RESET_HINT, from_sqlite

__all__ = ["APPLICATION_ID", "PAGE_BYTES", "RESET_HINT", "SCHEMA_VERSION", "create_schema", "digest", "digests", "from_iso", "lookup",
           "needs_upgrade", "stored_path", "stored_path_text", "to_iso", "upgrade", "verify"]

# "MCCS": mimecast-collector checkpoint store.
APPLICATION_ID = int.from_bytes(b"MCCS", "big")
# Version 1 was the JSON file; the database starts at 2; 3 reads each second when it is due (settle, follow).
SCHEMA_VERSION = 3
_UPGRADABLE = 2
# Each commit changes a few rows on pages all over the file (a chunk's keys land anywhere in the key table), and
# every changed page is written whole, to the log and again to the database: small pages write a quarter of
# what SQLite's default 4096 bytes do for the same commit (measured with the soak's 20 sparse watches).
PAGE_BYTES = 1024

_TABLES = """
CREATE TABLE watches (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    watermark TEXT,          -- ISO 8601 UTC: everything received before it is shipped
    horizon INTEGER,         -- epoch second: every second before it had its settle read (the settle frontier)
    density REAL             -- records per second of received time, the planner's estimate
);
CREATE TABLE seconds (
    watch INTEGER NOT NULL,  -- watches.id
    second INTEGER NOT NULL, -- epoch second of received time, read completely at least once
    count INTEGER NOT NULL,  -- matching records it held at its last complete read
    stage INTEGER NOT NULL,  -- 0 waits for its settle read, k >= 1 for follow age k, -1 done (count kept)
    PRIMARY KEY (watch, second)
) WITHOUT ROWID;
CREATE INDEX seconds_followed ON seconds (second) WHERE stage > 0;
CREATE TABLE keys (
    key BLOB PRIMARY KEY,    -- 16-byte BLAKE2b of (mimecast id, status): see digest()
    watch INTEGER NOT NULL,  -- watches.id of the watch that shipped it first
    last_seen INTEGER NOT NULL  -- epoch second its record was received (version 2: the end of the chunk that
                                -- found it, never earlier), forgotten once no watch can read that second again
) WITHOUT ROWID;
CREATE INDEX keys_by_last_seen ON keys (last_seen);
CREATE TABLE outputs (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL    -- committed length in bytes
);
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value
);
"""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables in an empty database and stamp it as ours (inside the caller's transaction)."""
    for statement in _TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def verify(conn: sqlite3.Connection, path: Path, *, deep: bool = True) -> bool:
    """Check that ``conn`` holds our checkpoint; False when the database is empty (a new file).

    Raises:
        StateCorruptError: a foreign SQLite file, a newer schema, or a failed ``quick_check``.
        StateResourceError: the file system failed the reading (full, read-only, permission, I/O).
    """
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and tables == 0:
            return False
        if app_id != APPLICATION_ID:
            raise StateCorruptError(f"the state file {path} is an SQLite database but not a mimecast-collector "
                                    f"checkpoint (application_id {app_id}); {RESET_HINT}")
        if version > SCHEMA_VERSION:
            raise StateCorruptError(f"the state file {path} was written by a newer mimecast-collector (schema "
                                    f"{version}, this one reads {SCHEMA_VERSION}); upgrade, or {RESET_HINT}")
        if version != SCHEMA_VERSION and version != _UPGRADABLE:
            raise StateCorruptError(f"the state file {path} has an unknown schema {version}; {RESET_HINT}")
        if deep:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StateCorruptError(f"the state file {path} is damaged ({'; '.join(problems)}); {RESET_HINT}")
    except sqlite3.Error as exc:
        raise from_sqlite(exc, path, "read") from None
    return True


def needs_upgrade(conn: sqlite3.Connection) -> bool:
    """Whether ``conn`` (verified) holds a version 2 checkpoint that :func:`upgrade` turns into this version."""
    return conn.execute("PRAGMA user_version").fetchone()[0] == _UPGRADABLE


def upgrade(conn: sqlite3.Connection) -> None:
    """Turn a version 2 checkpoint into version 3 (inside the caller's transaction).

    Version 2 re-read ``overlap`` at every poll and stored as ``horizon`` where its last chunk's re-read
    began (watermark less overlap): every second from there to the watermark gets its settle read, so
    nothing found by a late index or a status change there is skipped. Keys keep their last-seen time, an
    upper bound of their second, so none is forgotten before the settle read has seen its second again. A watch
    without a horizon (never committed one) settles back from its watermark by ``settle``.
    """
    for statement in _TABLES.split(";"):
        if "seconds" in statement and statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def digest(key: tuple[str, str]) -> bytes:
    """The stored form of a ``(mimecast id, status)`` key: 16 bytes, whatever the text holds.

    Lengths are hashed too, so no two different keys share an input; text that
    is not valid Unicode (a lone surrogate from a hostile answer) is hashed as
    is, never refused.
    """
    mimecast_id = key[0].encode("utf-8", "surrogatepass")
    status = key[1].encode("utf-8", "surrogatepass")
    return hashlib.blake2b(len(mimecast_id).to_bytes(4, "big") + mimecast_id + status, digest_size=16).digest()


def digests(keys: Iterable[tuple[str, str]]) -> dict[bytes, tuple[str, str]]:
    """Each key's stored form, mapped back to the key."""
    return {digest(k): k for k in keys}


def lookup(conn: sqlite3.Connection, stored: list[bytes]) -> Iterator[bytes]:
    """Which of the stored keys ``stored`` the keys table holds, asked in batches of up to 512."""
    for i in range(0, len(stored), 512):
        batch = stored[i:i + 512]
        # Lists of a few lengths (powers of two, padded with a repeat): a statement for every length
        # fills the connection's statement cache with compiled statements it keeps replacing.
        batch += batch[:1] * ((1 << (len(batch) - 1).bit_length()) - len(batch))
        for row in conn.execute(f"SELECT key FROM keys WHERE key IN ({','.join('?' * len(batch))})", batch):
            yield row[0]


def to_iso(value: datetime | None) -> str | None:
    """A watermark as stored: ISO 8601 in UTC."""
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def from_iso(value: str | None) -> datetime | None:
    """A stored watermark back as an aware UTC datetime."""
    return datetime.fromisoformat(value).astimezone(timezone.utc) if value is not None else None


def stored_path(path: str) -> str | bytes:
    """A path as SQLite can store it: text, or its bytes when it holds undecodable characters."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def stored_path_text(value: str | bytes) -> str:
    """A stored path back as text."""
    return os.fsdecode(value) if isinstance(value, bytes) else value
