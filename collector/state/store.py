"""The durable checkpoint: an SQLite database committed once per chunk, with only what changed.

Per watch it holds the watermark (first reads), the settle frontier (``horizon``), the density estimate and
the seconds that are still due (their counts and what they wait for); per output the committed mark; and one
shared set of ``(mimecast id, status)`` keys already in every output, each with its record's second. Keys are
forgotten once no configured watch can read their second again (past every watch's settle frontier and not
followed), so a message found by two watches reaches each output once, shipped by the first.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from collector.errors import StateError
from collector.state import intents as pending
from collector.state.failures import from_os, from_sqlite, writing
from collector.state.forgetting import prune_point, remembered_from
from collector.state.lock import lock_holder, take_lock
from collector.state.model import Advance, Intent, Key, OutputMark, WatchState
from collector.state.opening import connect
from collector.state.schema import digests, lookup, to_iso
from collector.state.seconds import clear, forget, sweep, write_keys, write_seconds
from collector.state.values import load

__all__ = ["Advance", "OutputMark", "StateStore", "WatchState"]


class StateStore:
    """Opens, locks, checks and commits the checkpoint database.

    Thread-safe: every method takes the store's lock, so pollers may ask :meth:`known` while the pipeline commits.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.outputs: dict[str, OutputMark] = {}
        self.intents: dict[str, Intent] = {}
        self._watches: dict[str, WatchState] = {}
        self._ids: dict[str, int] = {}
        self._active: set[str] | None = None
        self._pruned_at: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._sync = ""
        self._lock_fd: int | None = None
        self._mutex = threading.RLock()
        self.read_only = False

    def open(self, *, lock: bool = True) -> StateStore:
        """Take the lock and open (creating or migrating) the database; ``lock=False`` opens it read-only.

        Raises:
            StateLockedError: another instance holds the lock.
            StateCorruptError: the file is not a checkpoint this version can read.
            StateError: the folder or file cannot be created or read.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise from_os(exc, self.path.parent, "create", "the state folder") from None
        if lock:
            self._lock_fd = take_lock(self._lock_path, self.path)
        try:
            self._conn = connect(self.path, read_only=not lock, in_use=not lock and self.holder() is not None)
            self.read_only = not lock
            self._load()
        except BaseException:
            self.close()
            raise
        return self

    def holder(self) -> int | None:
        """The pid of the collector holding the lock, or ``None`` when no collector runs on this state."""
        return lock_holder(self._lock_path)

    def close(self) -> None:
        """Close the database (its write-ahead log is folded in) and release the lock."""
        with self._mutex:
            if self._conn is not None:
                with suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def prepare(self, names: Iterable[str], ended_before: datetime | None = None) -> None:
        """Create the state of every configured watch before any poll runs.

        Only these watches hold keys back from being forgotten; a watch removed from the configuration no longer
        does, and its follow-up ends where it would have ended had the watch run: its followed seconds before
        ``ended_before`` (now less the last follow age) are dropped, with the keys only they held. A watch left
        out for a shorter while (a start with a mistaken configuration) finds the rest when it comes back.
        """
        with self._mutex:
            self._active = set(names)
            for name in self._active:
                self._watches.setdefault(name, WatchState())
            before = int(ended_before.timestamp()) if ended_before is not None else -(1 << 62)
            gone = [state for name, state in self._watches.items() if name not in self._active]
            if not self.read_only and any(row[1] > 0 and s < before for g in gone for s, row in g.seconds.items()):
                with self._transaction("NORMAL") as conn:
                    sweep(conn, self._pruned_at, [i for n, i in self._ids.items() if n in self._active], before)
                for state in gone:
                    state.seconds = {s: row for s, row in state.seconds.items() if row[1] <= 0 or s >= before}

    def watch(self, name: str) -> WatchState:
        """The state of watch ``name`` (created empty on first use); updated in place by each commit."""
        with self._mutex:
            return self._watches.setdefault(name, WatchState())

    def watch_names(self) -> list[str]:
        """Every watch the checkpoint knows, configured or not."""
        with self._mutex:
            return sorted(self._watches)

    def known(self, watch: str, keys: Iterable[Key]) -> set[Key]:
        """Which of ``keys`` are already in every output (shipped by any watch) or set aside.

        ``watch`` is the asking watch: a key another watch shipped first is
        known to it as well, so each output holds one event per key.
        """
        wanted = digests(keys)
        found: set[Key] = set()
        if not wanted:
            return found
        with self._mutex:
            try:
                found.update(wanted[k] for k in lookup(self._require(), list(wanted)))
            except sqlite3.Error as exc:
                raise from_sqlite(exc, self.path, "read") from None
        return found

    def remembered(self, watch: str) -> int:
        """How many remembered keys ``watch`` shipped first."""
        with self._mutex:
            watch_id = self._ids.get(watch)
            if watch_id is None:
                return 0
            return self._require().execute("SELECT count(*) FROM keys WHERE watch = ?", (watch_id,)).fetchone()[0]

    def commit(self, advance: Advance) -> None:
        """Commit one chunk: new and refreshed keys, forgotten keys, watermark and output marks, atomically.

        Memory changes only once the database has committed, so after any
        failure both still hold the previous checkpoint.

        Raises:
            StateError: the database could not be written; nothing of ``advance`` is committed.
        """
        with self._mutex:
            conn = self._require()
            state = self.watch(advance.watch)
            watermark = advance.watermark if state.watermark is None else max(state.watermark, advance.watermark)
            seen_at = int(advance.watermark.timestamp())
            prune = self._prune_point(advance.watch, advance.horizon)
            marks = {n: m for n, m in advance.marks.items() if self.outputs.get(n) != m}
            # A commit that adds nothing to any output may be lost to a power cut without harm (the chunk is
            # searched again); one that covers new output data is synced before the call returns.
            with self._transaction("FULL" if advance.new_keys or marks else "NORMAL"):
                watch_id = self._watch_row(advance.watch)
                conn.execute("UPDATE watches SET watermark = ?, horizon = ?, density = coalesce(?, density) "
                             "WHERE id = ?", (to_iso(watermark), int(advance.horizon.timestamp()), advance.density,
                                              watch_id))
                write_keys(conn, watch_id, advance, seen_at)
                finished = write_seconds(conn, watch_id, state.seconds, advance.seconds)
                forget(conn, prune, self._pruned_at, finished)
                pending.write_marks(conn, marks, self.intents)
            self._ids[advance.watch] = watch_id
            for second, row in advance.seconds.items():
                if row is None:
                    state.seconds.pop(second, None)
                else:
                    state.seconds[second] = row
            state.watermark, state.horizon = watermark, advance.horizon
            if advance.density is not None:
                state.density = advance.density
            self.outputs.update(marks)
            self.intents = {n: i for n, i in self.intents.items() if n not in marks}
            if prune is not None:
                self._pruned_at = prune
            self._refresh_remembered()

    def record_marks(self, marks: Mapping[str, OutputMark]) -> None:
        """Commit output marks alone (on start and after a reopen); unchanged marks are not written.

        Raises:
            StateError: the database could not be written.
        """
        with self._mutex:
            changed = {n: m for n, m in marks.items() if self.outputs.get(n) != m}
            if not changed:
                return
            with self._transaction("FULL"):
                pending.write_marks(self._require(), changed, self.intents)
            self.outputs.update(changed)
            self.intents = {n: i for n, i in self.intents.items() if n not in changed}

    def record_intents(self, intents: Mapping[str, Intent]) -> None:
        """Record what file outputs are about to write past their committed length, before they write it.

        Committed without a sync: a killed process keeps it, a power cut may lose it (the tail is then kept).

        Raises:
            StateError: the database could not be written (nothing may be written to the outputs then).
        """
        with self._mutex:
            with self._transaction("NORMAL") as conn:
                pending.write(conn, intents)
            self.intents.update(intents)

    def reset(self, watch: str | None = None) -> bool:
        """Forget one watch's progress, or every watch's progress and every key; False if ``watch`` is unknown.

        Keys stay when one watch is reset (they record what the outputs hold), but for those only its follow-up
        held past the prune point: nothing will end that follow-up now.

        Raises:
            StateError: the database could not be written.
        """
        with self._mutex:
            if watch is not None and watch not in self._ids:
                return False
            with self._transaction("FULL") as conn:
                clear(conn, self._ids[watch] if watch is not None else None, self._pruned_at)
            if watch is None:
                self._watches.clear()
                self._ids.clear()
                self._pruned_at = None
            else:
                state = self._watches[watch]
                state.watermark = state.density = state.horizon = None
                state.seconds.clear()
            self._refresh_remembered()
            return True

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"the state file {self.path} is not open")
        return self._conn

    @contextmanager
    def _transaction(self, sync: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (see :func:`writing`) at the ``synchronous`` level ``sync``.

        Raises:
            StateError: the database could not be written (other exceptions pass through unchanged).
        """
        conn = self._require()
        if self.read_only:
            raise StateError(f"the state file {self.path} is open read-only")
        if sync != self._sync:
            try:
                conn.execute(f"PRAGMA synchronous = {sync}")
            except sqlite3.Error as exc:
                raise from_sqlite(exc, self.path, "write") from None
            self._sync = sync
        with writing(conn, self.path):
            yield conn

    def _watch_row(self, name: str) -> int:
        conn = self._require()
        watch_id = self._ids.get(name)
        if watch_id is None:
            conn.execute("INSERT INTO watches (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,))
            watch_id = conn.execute("SELECT id FROM watches WHERE name = ?", (name,)).fetchone()[0]
        return watch_id

    def _prune_point(self, committing: str, horizon: datetime) -> int | None:
        names = self._active if self._active is not None else set(self._watches)
        others = [self._watches[n].horizon if n in self._watches else None for n in names if n != committing]
        seconds = int(prune_point(horizon, others).timestamp())
        return seconds if self._pruned_at is None or seconds > self._pruned_at else None

    def _refresh_remembered(self) -> None:
        pruned = datetime.fromtimestamp(self._pruned_at, timezone.utc) if self._pruned_at is not None else None
        for state in self._watches.values():
            state.remembered_from = remembered_from(state, pruned)

    def _load(self) -> None:
        try:
            loaded = load(self._require(), self.path)
            self.intents = pending.load(self._require(), self.path)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, self.path, "read") from None
        for name, (watch_id, state) in loaded.watches.items():
            self._ids[name] = watch_id
            self._watches[name] = state
        self.outputs.update(loaded.outputs)
        self._pruned_at = loaded.pruned_at
        self._refresh_remembered()
