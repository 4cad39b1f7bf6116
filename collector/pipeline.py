"""Delivery of one chunk: drop what the outputs already hold, format, write, flush, then commit the checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from collector.errors import CollectorError, RecordError, SinkError, StateError
from collector.fileio import append_durably
from collector.formats import Event, Formatter, json_line
from collector.records import TrackedEmail
from collector.sinks import Line, Sink
from collector.sinks.tails import prefix_matches
from collector.state import Advance, Intent, OutputMark, StateStore

__all__ = ["Chunk", "Output", "Pipeline", "invalid_key"]


@dataclass(frozen=True)
class _Appended:
    """Where a chunk's dead letters began in the file, and what they were."""

    identity: tuple[int, int]
    start: int
    data: bytes


@dataclass(frozen=True)
class Output:
    """A named formatter and sink pair."""

    name: str
    formatter: Formatter
    sink: Sink


@dataclass(frozen=True)
class Chunk:
    """What one search window of one watch produced, ready to deliver."""

    watch: str
    records: Sequence[TrackedEmail]
    invalid: Sequence[tuple[RecordError, Any]]
    watermark: datetime
    horizon: datetime
    fetched_at: datetime
    seen_again: Sequence[tuple[str, str]] = ()
    density: float | None = None
    key_seconds: Mapping[tuple[str, str], int] = field(default_factory=dict)
    seconds: Mapping[int, tuple[int, int] | None] = field(default_factory=dict)


def invalid_key(raw: Any) -> tuple[str, str]:
    """A stable dedup key for a record that has no usable id."""
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return ("!invalid", hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32])


class Pipeline:
    """Delivers chunks to every output and commits the checkpoint, one chunk at a time.

    Searches of different watches run in parallel, but delivery and commit
    are serialized under one lock so a file's committed length always
    matches the watermarks saved with it.
    """

    def __init__(self, outputs: Sequence[Output], state: StateStore, *, dead_letter: Path, metrics: Any) -> None:
        self.outputs = list(outputs)
        self.state = state
        self.metrics = metrics
        self._dead_letter = Path(dead_letter)
        self._lock = threading.Lock()
        self._reopen = threading.Event()
        self._log = structlog.get_logger("collector.pipeline")

    def reconcile(self) -> None:
        """On start, cut the tails this checkpoint wrote but did not commit off file outputs; report (and count)
        files shorter than committed or holding bytes another writer appended; record marks."""
        with self._lock:
            for out in self.outputs:
                reconcile = getattr(out.sink, "reconcile", None)
                if reconcile is not None and reconcile(self.state.outputs.get(out.name),
                                                       self.state.intents.get(out.name)) < 0:
                    self.metrics.sink_errors.labels(out.name).inc()
            self._record_marks()

    def request_reopen(self) -> None:
        """Reopen every sink before the next delivery (SIGHUP, logrotate)."""
        self._reopen.set()

    def deliver(self, chunk: Chunk) -> None:
        """Write ``chunk`` everywhere, then advance the checkpoint.

        A record whose key an output already holds (shipped by another watch)
        is not written again. Nothing is written or synced for a chunk with no
        new event. Once the checkpoint has committed, the chunk is delivered:
        no later error takes it back.

        Raises:
            SinkError: an output failed; nothing was committed.
            StateError: the checkpoint could not be saved; outputs were rolled back.
        """
        with self._lock:
            if self._reopen.is_set():
                self._reopen.clear()
                self._reopen_sinks()
            repeats = self.state.known(chunk.watch, [r.key for r in chunk.records])
            records, taken = [], set(repeats)
            for record in chunk.records:
                if record.key not in taken:
                    taken.add(record.key)
                    records.append(record)
            rendered, shipped, unformattable = self._render([Event(r, chunk.watch, chunk.fetched_at)
                                                             for r in records])
            invalid = [*chunk.invalid, *unformattable]
            invalid_keys = [invalid_key(raw) for _e, raw in invalid]
            set_aside = self.state.known(chunk.watch, invalid_keys)
            fresh_invalid = [v for k, v in zip(invalid_keys, invalid) if k not in set_aside]
            letters: _Appended | None = None
            try:
                # What each file is about to receive is recorded first: only that is ever cut back after a crash.
                intents = {out.name: intent for out in self.outputs
                           if rendered[out.name] and (intent := self._stage(out, rendered[out.name])) is not None}
                if intents:
                    self.state.record_intents(intents)
                for out in self.outputs:
                    self._write(out, rendered[out.name])
                letters = self._write_dead_letters(chunk.watch, fresh_invalid)
                marks = {out.name: mark for out in self.outputs if (mark := out.sink.mark()) is not None}
                self.state.commit(Advance(
                    chunk.watch, chunk.watermark, chunk.horizon,
                    new_keys=[*shipped, *{k for k in invalid_keys if k not in set_aside}],
                    seen_again=[*chunk.seen_again, *repeats, *set_aside], density=chunk.density, marks=marks,
                    key_seconds=chunk.key_seconds, seconds=chunk.seconds))
            except BaseException as exc:
                # Whatever went wrong, nothing of this chunk may stay in a file the checkpoint does not cover.
                for out in self.outputs:
                    if out.sink.rollback():
                        self.metrics.sink_errors.labels(out.name).inc()
                if letters is not None:
                    self._take_back(letters)
                if isinstance(exc, StateError):
                    self.metrics.state_write_errors.inc()
                    self.metrics.state_failing.set(1)
                raise
            self.metrics.state_failing.set(0)
            for out in self.outputs:
                self._committed(out)
                self.metrics.events.labels(chunk.watch, out.name).inc(len(rendered[out.name]))
            if repeats:
                self.metrics.duplicates.labels(chunk.watch).inc(len(repeats))
            for error, _raw in fresh_invalid:
                self.metrics.invalid.labels(chunk.watch, error.reason).inc()
            if fresh_invalid:
                self._log.warning("records.set_aside", watch=chunk.watch, count=len(fresh_invalid),
                                  file=str(self._dead_letter), reasons=sorted({e.reason for e, _ in fresh_invalid}))

    def close(self) -> None:
        """Flush and close every sink."""
        with self._lock:
            for out in self.outputs:
                try:
                    out.sink.close()
                except CollectorError as exc:
                    self._log.error("sink.close_failed", output=out.name, error=str(exc))

    def _render(self, events: list[Event]) -> tuple[dict[str, list[Line]], list[tuple[str, str]],
                                                    list[tuple[RecordError, Any]]]:
        rendered: dict[str, list[Line]] = {out.name: [] for out in self.outputs}
        keys: list[tuple[str, str]] = []
        failed: list[tuple[RecordError, Any]] = []
        for event in events:
            try:
                lines = {out.name: Line(out.formatter.format(event), out.formatter.severity(event),
                                        event.record.received) for out in self.outputs}
            except Exception as exc:  # noqa: BLE001 - one unformattable record must not stop the batch
                failed.append((RecordError("format_error", f"{type(exc).__name__}: {exc}"), event.record.raw))
                continue
            for name, line in lines.items():
                rendered[name].append(line)
            keys.append(event.record.key)
        return rendered, keys, failed

    @staticmethod
    def _stage(out: Output, lines: list[Line]) -> Intent | None:
        stage = getattr(out.sink, "stage", None)
        return stage(lines) if stage is not None else None

    def _write(self, out: Output, lines: list[Line]) -> None:
        if not lines:
            return
        try:
            out.sink.write(lines)
            out.sink.flush()
        except SinkError:
            self.metrics.sink_errors.labels(out.name).inc()
            self.metrics.output_failing.labels(out.name).set(1)
            raise
        except OSError as exc:
            self.metrics.sink_errors.labels(out.name).inc()
            self.metrics.output_failing.labels(out.name).set(1)
            raise SinkError(out.name, str(exc)) from None
        self.metrics.output_failing.labels(out.name).set(0)

    def _committed(self, out: Output) -> None:
        try:
            out.sink.committed()
        except Exception as exc:  # noqa: BLE001 - the chunk is committed; a sink's bookkeeping cannot undo that
            self._log.error("sink.commit_note_failed", output=out.name, error=f"{type(exc).__name__}: {exc}")

    def _write_dead_letters(self, watch: str, fresh: list[tuple[RecordError, Any]]) -> _Appended | None:
        """Append ``fresh`` to the dead-letter file; what was appended, to take it back if the commit fails."""
        if not fresh:
            return None
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        data = "".join(json_line({"at": at, "watch": watch, "reason": e.reason, "error": str(e), "record": raw})
                       + "\n" for e, raw in fresh).encode("utf-8", "surrogatepass")
        try:
            device, inode, start = append_durably(self._dead_letter, data, 0o600)
        except OSError as exc:
            raise SinkError("dead-letter", f"cannot write {self._dead_letter}: {exc.strerror or exc}") from None
        return _Appended((device, inode), start, data)

    def _take_back(self, letters: _Appended) -> None:
        """Cut the dead letters of a chunk that did not commit (they are written again with its retry), when
        nothing but them lies past where they began."""
        try:
            size = os.stat(self._dead_letter).st_size
            if prefix_matches(self._dead_letter, letters.identity, letters.start, size, letters.data):
                os.truncate(self._dead_letter, letters.start)
                return
        except OSError:
            pass
        self._log.error("dead_letters.not_taken_back", file=str(self._dead_letter),
                        reason="the chunk failed after its dead letters were written, and the file changed since; "
                               "they are kept and will be written again with the chunk's retry")

    def _record_marks(self) -> None:
        marks: dict[str, OutputMark] = {}
        for out in self.outputs:
            mark = out.sink.mark()
            if mark is not None:
                marks[out.name] = mark
        try:
            self.state.record_marks(marks)
        except StateError:
            self.metrics.state_write_errors.inc()
            self.metrics.state_failing.set(1)
            raise
        self.metrics.state_failing.set(0)

    def _reopen_sinks(self) -> None:
        for out in self.outputs:
            try:
                out.sink.reopen()
            except CollectorError as exc:
                self._log.error("sink.reopen_failed", output=out.name, error=str(exc))
        self._record_marks()
        self._log.info("sinks.reopened", outputs=[o.name for o in self.outputs])
