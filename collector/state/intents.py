"""What each file output was about to write past its committed length: the proof that a tail is its own.

Before a chunk is written to a file output, the pipeline records the file's identity, the committed length
the write starts at, and the digests of what it writes (see :class:`Intent`). The record is committed
without a sync, which a killed process keeps and only a power cut may lose: then the tail cannot be proven
and is kept (never cut) with an error, so the worst case is a repeated chunk, never a lost event. The
commit that covers the chunk removes the record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from collector.errors import StateCorruptError
from collector.state.failures import RESET_HINT
from collector.state.model import Intent, OutputMark
from collector.state.schema import stored_path, stored_path_text

__all__ = ["PENDING_TABLE", "clear", "ensure", "load", "write", "write_marks"]

PENDING_TABLE = """
CREATE TABLE IF NOT EXISTS pending (
    name TEXT PRIMARY KEY,   -- the file output about to write
    path TEXT NOT NULL,
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    start INTEGER NOT NULL,  -- its committed length, where the write begins
    digests BLOB NOT NULL    -- per length the write may stop at: 8-byte length, 16-byte BLAKE2b of start..length
)"""
_RECORD = 24


def ensure(conn: sqlite3.Connection) -> None:
    """Add the table to a database created before it existed (older releases ignore it)."""
    conn.execute(PENDING_TABLE)


def load(conn: sqlite3.Connection, path: Path) -> dict[str, Intent]:
    """Every recorded intent; none when the table is absent (a read-only look at an older database).

    Raises:
        StateCorruptError: a record no collector writes.
    """
    try:
        rows = conn.execute("SELECT name, path, device, inode, start, digests FROM pending").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    intents = {}
    for name, stored, device, inode, start, blob in rows:
        if not (isinstance(stored, (str, bytes)) and all(isinstance(v, int) and v >= 0 for v in (device, inode, start))
                and isinstance(blob, bytes) and len(blob) % _RECORD == 0):
            raise StateCorruptError(f"the state file {path} holds an impossible value (the pending write of output "
                                    f"{name!r}); {RESET_HINT}")
        digests = {int.from_bytes(blob[i:i + 8], "big"): blob[i + 8:i + _RECORD] for i in range(0, len(blob), _RECORD)}
        intents[name] = Intent(stored_path_text(stored), device, inode, start, digests)
    return intents


def write(conn: sqlite3.Connection, intents: Mapping[str, Intent]) -> None:
    """Record ``intents`` (inside the caller's transaction), replacing each output's previous one."""
    conn.executemany("INSERT OR REPLACE INTO pending (name, path, device, inode, start, digests) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     [(n, stored_path(i.path), i.device, i.inode, i.start,
                       b"".join(length.to_bytes(8, "big") + d for length, d in sorted(i.digests.items())))
                      for n, i in intents.items()])


def clear(conn: sqlite3.Connection, names: Iterable[str]) -> None:
    """Forget the intents of outputs whose new length is committed (inside the caller's transaction)."""
    conn.executemany("DELETE FROM pending WHERE name = ?", [(n,) for n in names])


def write_marks(conn: sqlite3.Connection, marks: Mapping[str, OutputMark], intents: Iterable[str]) -> None:
    """Write the committed lengths ``marks`` of file outputs; each supersedes the intent (one of ``intents``)
    of the write it covers."""
    conn.executemany("INSERT OR REPLACE INTO outputs (name, path, inode, size) VALUES (?, ?, ?, ?)",
                     [(n, stored_path(m.path), m.inode, m.size) for n, m in marks.items()])
    if marks.keys() & set(intents):
        clear(conn, marks.keys() & set(intents))
