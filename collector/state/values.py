"""The checkpoint's stored values read back, each checked: a value the collector cannot have written is damage.

A watermark that is not an ISO 8601 time or lies outside the years this collector can meet, a density that
is not a finite number, a length that is negative: any of them means the file was damaged or edited by hand.
Opening it stops with exit 65 and the reset hint, never a traceback that a service manager restarts for ever.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collector.errors import StateCorruptError
from collector.state.model import OutputMark, WatchState
from collector.state.schema import RESET_HINT, stored_path_text

__all__ = ["EARLIEST", "LATEST", "Loaded", "load"]

# Mimecast keeps 30 days of tracking; nothing this collector searches lies outside these years.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)


@dataclass
class Loaded:
    """Everything the checkpoint holds apart from the keys, checked."""

    watches: dict[str, tuple[int, WatchState]] = field(default_factory=dict)
    outputs: dict[str, OutputMark] = field(default_factory=dict)
    pruned_at: int | None = None


class _Bad(ValueError):
    pass


def load(conn: sqlite3.Connection, path: Path) -> Loaded:
    """Read watches, their due seconds, output marks and the prune point from ``conn``, and check that every key is stored as one.

    Raises:
        StateCorruptError: a value no collector writes, named with where it is.
        sqlite3.Error: the database could not be read (the caller tells damage from a resource failure).
    """
    loaded = Loaded()
    try:
        for watch_id, name, watermark, horizon, density in conn.execute(
                "SELECT id, name, watermark, horizon, density FROM watches"):
            where = f"watch {name!r}"
            if not isinstance(name, str) or not isinstance(watch_id, int):
                raise _Bad(f"a watch named {name!r}")
            loaded.watches[name] = (watch_id, WatchState(
                watermark=_time(watermark, f"{where} watermark"), density=_density(density, where),
                horizon=_epoch(horizon, f"{where} horizon")))
        ids = {watch_id: state for watch_id, state in loaded.watches.values()}
        for watch_id, second, count, stage in conn.execute("SELECT watch, second, count, stage FROM seconds"):
            where = f"second {second!r} of watch {watch_id!r}"
            _epoch(second, where)
            _count(count, f"{where} count")
            if isinstance(stage, bool) or not isinstance(stage, int) or stage < -1:
                raise _Bad(f"{where} stage {stage!r}")
            if watch_id in ids:
                ids[watch_id].seconds[second] = (count, stage)
        for name, stored, inode, size in conn.execute("SELECT name, path, inode, size FROM outputs"):
            where = f"output {name!r}"
            if not isinstance(name, str) or not isinstance(stored, (str, bytes)) or not stored:
                raise _Bad(f"{where} path {stored!r}")
            loaded.outputs[name] = OutputMark(stored_path_text(stored), _count(inode, f"{where} inode"),
                                              _count(size, f"{where} committed length"))
        row = conn.execute("SELECT value FROM meta WHERE name = 'pruned_at'").fetchone()
        if row is not None:
            loaded.pruned_at = int(_epoch(row[0], "prune point").timestamp())  # type: ignore[union-attr]
        # Both through an index (text sorts after numbers, blobs after text), not a scan of every key.
        bad = conn.execute("SELECT typeof(last_seen) FROM keys WHERE last_seen >= '' LIMIT 1").fetchone()
        if bad is not None:
            raise _Bad(f"a remembered key last seen as {bad[0]}")
        bad = conn.execute("SELECT typeof(key) FROM keys WHERE key < x'' LIMIT 1").fetchone()
        if bad is not None:
            raise _Bad(f"a remembered key stored as {bad[0]}")
    except _Bad as exc:
        raise StateCorruptError(f"the state file {path} holds an impossible value ({exc}); {RESET_HINT}") from None
    return loaded


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _Bad(f"{where} {value!r} is not a UTC time")
    return _within(parsed.astimezone(timezone.utc), value, where)


def _epoch(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, int) or not EARLIEST.timestamp() <= value < LATEST.timestamp():
        raise _Bad(f"{where} {value!r} is not a time between {EARLIEST.year} and {LATEST.year}")
    return datetime.fromtimestamp(value, timezone.utc)


def _within(value: datetime, raw: Any, where: str) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise _Bad(f"{where} {raw!r} is not a time between {EARLIEST.year} and {LATEST.year}")
    return value


def _density(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _Bad(f"{where} density {value!r} is not a number of records per second")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"{where} {value!r}")
    return value
