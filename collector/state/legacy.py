"""The version 1 checkpoint (one JSON file) and its migration into the database.

Version 1 kept per watch a watermark and the shipped keys with their received
time, and per file output its committed mark. Migration keeps every key and
remembers it as last seen at its watch's watermark, so the first overlap
after the upgrade still recognises everything shipped before it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collector.errors import StateCorruptError
from collector.state.schema import RESET_HINT, create_schema, digest, to_iso

__all__ = ["LEGACY_VERSION", "looks_like_json", "migrate_json"]

LEGACY_VERSION = 1


def looks_like_json(head: bytes) -> bool:
    """True when a file starting with ``head`` is a candidate version 1 (JSON) checkpoint."""
    text = head.lstrip()
    return text[:1] in (b"{", b"[", b'"') or (not text and bool(head))


def migrate_json(raw: bytes, path: Path, conn: sqlite3.Connection) -> dict[str, int]:
    """Write the version 1 checkpoint ``raw`` (read from ``path``) into the empty database ``conn``.

    Returns the number of watches, keys and outputs carried over.

    Raises:
        StateCorruptError: the JSON is not a version 1 checkpoint.
    """
    try:
        watches, outputs = _parse(json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StateCorruptError(f"the state file {path} is corrupt ({type(exc).__name__}: {exc}); "
                                f"{RESET_HINT}") from None
    conn.execute("BEGIN IMMEDIATE")
    create_schema(conn)
    keys = 0
    for name, (watermark, seen) in watches.items():
        row = conn.execute("INSERT INTO watches (name, watermark, horizon) VALUES (?, ?, NULL)",
                           (name, to_iso(watermark)))
        last_seen = int(watermark.timestamp()) if watermark is not None else None
        rows = [(digest(k), row.lastrowid, max(t, last_seen) if last_seen is not None else t) for k, t in seen]
        conn.executemany("INSERT INTO keys (key, watch, last_seen) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)", rows)
        keys += len(rows)
    conn.executemany("INSERT INTO outputs (name, path, inode, size) VALUES (?, ?, ?, ?)",
                     [(name, *mark) for name, mark in outputs.items()])
    conn.execute("INSERT INTO meta (name, value) VALUES ('migrated_from', ?)",
                 (f"version {LEGACY_VERSION} JSON at {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}",))
    conn.execute("COMMIT")
    return {"watches": len(watches), "keys": keys, "outputs": len(outputs)}


def _parse(data: Any) -> tuple[dict[str, tuple[datetime | None, list[tuple[tuple[str, str], int]]]],
                               dict[str, tuple[str, int, int]]]:
    if not isinstance(data, dict) or data.get("version") != LEGACY_VERSION:
        found = data.get("version") if isinstance(data, dict) else None
        raise ValueError(f"unsupported state version {found!r} (this collector reads {LEGACY_VERSION} and "
                         "its own database)")
    watches = {}
    for name, entry in data["watches"].items():
        mark = entry["watermark"]
        watermark = datetime.fromisoformat(mark).astimezone(timezone.utc) if mark is not None else None
        seen = []
        for mimecast_id, status, t in entry["seen"]:
            if not isinstance(mimecast_id, str) or not isinstance(status, str) or not isinstance(t, int):
                raise ValueError(f"bad key in watch {name!r}")
            seen.append(((mimecast_id, status), t))
        watches[str(name)] = (watermark, seen)
    outputs = {str(name): (str(entry["path"]), int(entry["inode"]), int(entry["size"]))
               for name, entry in data.get("outputs", {}).items()}
    return watches, outputs
