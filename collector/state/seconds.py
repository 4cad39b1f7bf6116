"""The checkpoint's keys and per-second rows: a chunk's writes, a reset, and forgetting the keys of seconds no
watch can read again."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from collector.state.model import Advance
from collector.state.schema import digest

__all__ = ["clear", "forget", "sweep", "write_keys", "write_seconds"]

# A key is still needed while any watch follows its second.
_NOT_FOLLOWED = "NOT EXISTS (SELECT 1 FROM seconds WHERE seconds.second = keys.last_seen AND stage > 0)"


def write_keys(conn: sqlite3.Connection, watch_id: int, advance: Advance, seen_at: int) -> None:
    """Write the keys ``advance`` shipped, and move those it found again to the second they were found in;
    a key without a known second counts from ``seen_at`` (the chunk's end)."""
    conn.executemany("INSERT INTO keys (key, watch, last_seen) VALUES (?, ?, ?) ON CONFLICT (key) "
                     "DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
                     [(digest(k), watch_id, advance.key_seconds.get(k, seen_at)) for k in advance.new_keys])
    # A key stored with an upper bound of its second (before version 3) learns its second when it is seen again,
    # and a stray (found outside its received time) moves on with the search that found it; a key already there
    # is not rewritten.
    conn.executemany("UPDATE keys SET last_seen = ? WHERE key = ? AND last_seen != ?",
                     [(advance.key_seconds[k], digest(k), advance.key_seconds[k])
                      for k in advance.seen_again if k in advance.key_seconds])


def clear(conn: sqlite3.Connection, watch_id: int | None, pruned_at: int | None) -> None:
    """Forget one watch's progress and follow-up (with the keys only that held), or, for ``None``, every
    watch's and every key."""
    if watch_id is None:
        for table in ("keys", "seconds", "watches"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("DELETE FROM meta WHERE name = 'pruned_at'")
        return
    conn.execute("UPDATE watches SET watermark = NULL, horizon = NULL, density = NULL WHERE id = ?", (watch_id,))
    conn.execute("DELETE FROM seconds WHERE watch = ?", (watch_id,))
    sweep(conn, pruned_at)


def write_seconds(conn: sqlite3.Connection, watch_id: int, before: Mapping[int, tuple[int, int]],
                  rows: Mapping[int, tuple[int, int] | None]) -> list[int]:
    """Write ``rows`` of one watch (``None`` deletes one); return the seconds whose follow-up ended with them
    (followed in ``before``, not any more)."""
    conn.executemany("DELETE FROM seconds WHERE watch = ? AND second = ?",
                     [(watch_id, s) for s, row in rows.items() if row is None])
    conn.executemany("INSERT OR REPLACE INTO seconds (watch, second, count, stage) VALUES (?, ?, ?, ?)",
                     [(watch_id, s, *row) for s, row in rows.items() if row is not None])
    return [s for s, row in rows.items() if before.get(s, (0, 0))[1] > 0 and (row is None or row[1] <= 0)]


def forget(conn: sqlite3.Connection, prune: int | None, pruned_at: int | None, finished: list[int]) -> None:
    """Forget the keys of seconds no watch can read again: those the prune point passed since ``pruned_at``
    (``prune``: every watch's settle frontier moved past them) that no watch follows, and those of followed
    seconds before the prune point whose follow-up ended."""
    if prune is not None:
        low = pruned_at if pruned_at is not None else -(1 << 62)
        conn.execute(f"DELETE FROM keys WHERE last_seen >= ? AND last_seen < ? AND {_NOT_FOLLOWED}", (low, prune))
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('pruned_at', ?)", (prune,))
    point = prune if prune is not None else pruned_at
    conn.executemany(f"DELETE FROM keys WHERE last_seen = ? AND {_NOT_FOLLOWED}",
                     [(s,) for s in finished if point is not None and s < point])


def sweep(conn: sqlite3.Connection, pruned_at: int | None, keep: list[int] | None = None, before: int = 0) -> None:
    """Forget what only a follow-up that will never end held back: the followed rows before ``before`` of
    watches not in ``keep`` (removed from the configuration; ``None`` keeps every watch's), then the keys before
    the prune point that no row follows any more (their follow-up was reset or removed with its watch)."""
    if keep is not None:
        conn.execute(f"DELETE FROM seconds WHERE stage > 0 AND second < ? AND watch NOT IN "
                     f"({','.join('?' * len(keep))})", (before, *keep))
    if pruned_at is not None:
        conn.execute(f"DELETE FROM keys WHERE last_seen < ? AND {_NOT_FOLLOWED}", (pruned_at,))
