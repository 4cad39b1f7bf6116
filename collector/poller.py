"""One watch's poll cycle: plan windows, search, split at the cap, drop repeats, deliver, commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import structlog

from collector.config import CollectionConfig, WatchConfig
from collector.errors import CancelledError, CollectorError
from collector.mimecast.client import MimecastClient, SearchResult
from collector.pipeline import Chunk, Pipeline
from collector.windows import MIN_SPLIT, midpoint, plan_windows

__all__ = ["CycleResult", "Poller"]


@dataclass
class CycleResult:
    """What one cycle did; ``error`` is set when it stopped early."""

    watch: str
    chunks: int = 0
    records: int = 0
    shipped: int = 0
    duplicates: int = 0
    invalid: int = 0
    splits: int = 0
    error: CollectorError | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """True when every planned chunk was delivered (invalid records do not count as failure)."""
        return self.error is None and not self.interrupted


class Poller:
    """Runs the cycle of one watch; holds no state of its own beyond the shared checkpoint."""

    def __init__(self, watch: WatchConfig, collection: CollectionConfig, client: MimecastClient,
                 pipeline: Pipeline, metrics: Any, *, stop: threading.Event | None = None,
                 on_chunk: Callable[[int, int], None] | None = None) -> None:
        self.watch = watch
        self._cfg = collection
        self._client = client
        self._pipeline = pipeline
        self._metrics = metrics
        self._stop = stop or threading.Event()
        self._on_chunk = on_chunk
        self._log = structlog.get_logger("collector.poller").bind(watch=watch.name)

    def run_cycle(self, now: datetime) -> CycleResult:
        """Search everything between the watermark and ``now - lag``; never raises a CollectorError."""
        started = time.monotonic()
        result = CycleResult(self.watch.name)
        state = self._pipeline.state.watch(self.watch.name)
        plan = plan_windows(state.watermark, now, self._cfg)
        if plan.gap:
            self._metrics.gaps.labels(self.watch.name).inc(plan.gap.total_seconds())
            self._log.error("poll.retention_gap", lost_from=_iso(plan.gap_start), lost_seconds=int(plan.gap.total_seconds()),
                            reason="the checkpoint is older than Mimecast's 30-day tracking retention")
        try:
            for index, (start, end) in enumerate(plan.chunks):
                if self._stop.is_set():
                    result.interrupted = True
                    break
                self._collect(start, end, result)
                result.chunks += 1
                if self._on_chunk is not None:
                    self._on_chunk(index + 1, len(plan.chunks))
        except CancelledError:
            result.interrupted = True
        except CollectorError as exc:
            result.error = exc
            self._metrics.poll_errors.labels(self.watch.name, exc.error_type).inc()
            self._log.error("poll.failed", error_type=exc.error_type, error=str(exc),
                            watermark=_iso(self._pipeline.state.watch(self.watch.name).watermark))
        outcome = "success" if result.ok else ("interrupted" if result.interrupted else "failure")
        self._metrics.poll_runs.labels(self.watch.name, outcome).inc()
        self._metrics.poll_duration.labels(self.watch.name).observe(time.monotonic() - started)
        if result.ok:
            self._metrics.last_success.labels(self.watch.name).set(time.time())
        watermark = self._pipeline.state.watch(self.watch.name).watermark
        if watermark is not None:
            self._metrics.watermark.labels(self.watch.name).set(watermark.timestamp())
        return result

    def _collect(self, start: datetime, end: datetime, result: CycleResult) -> None:
        began = time.monotonic()
        found = self._client.search(self.watch, start, end)
        if found.count >= self._cfg.result_cap:
            if end - start > MIN_SPLIT:
                self._metrics.splits.labels(self.watch.name).inc()
                result.splits += 1
                self._log.debug("poll.window_split", start=_iso(start), end=_iso(end), records=found.count)
                middle = max(midpoint(start, end), start + MIN_SPLIT / 2)
                self._collect(start, middle, result)
                self._collect(middle, end, result)
                return
            self._metrics.truncated.labels(self.watch.name).inc()
            self._log.warning("poll.window_truncated", start=_iso(start), end=_iso(end), records=found.count,
                              reason="a one-minute search is still at result_cap; records beyond it may be missing")
        self._deliver(start, end, found, result, began)

    def _deliver(self, start: datetime, end: datetime, found: SearchResult, result: CycleResult, began: float) -> None:
        name = self.watch.name
        self._metrics.records_received.labels(name).inc(found.count)
        seen = self._pipeline.state.known(name, [r.key for r in found.records])
        fresh, keys, again, duplicates = [], set(), [], 0
        for record in sorted(found.records, key=lambda r: r.received):
            if self.watch.status and record.status not in self.watch.status:
                continue
            if self.watch.route and record.route not in self.watch.route:
                continue
            if record.key in seen or record.key in keys:
                duplicates += 1
                if record.key in seen:
                    again.append(record.key)
                continue
            keys.add(record.key)
            fresh.append(record)
        self._pipeline.deliver(Chunk(watch=name, records=fresh, invalid=found.invalid, watermark=end,
                                     horizon=end - self._cfg.overlap, fetched_at=datetime.now(timezone.utc),
                                     seen_again=again))
        self._metrics.duplicates.labels(name).inc(duplicates)
        result.records += found.count
        result.shipped += len(fresh)
        result.duplicates += duplicates
        result.invalid += len(found.invalid)
        self._log.info("poll.chunk", start=_iso(start), end=_iso(end), records=found.count, shipped=len(fresh),
                       duplicates=duplicates, invalid=len(found.invalid),
                       duration_ms=round((time.monotonic() - began) * 1000))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
