"""One watch's poll cycle: plan the span, size each search, re-search capped answers, drop repeats, deliver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog

from collector.config import CollectionConfig, WatchConfig
from collector.errors import AnswerTooLargeError, CancelledError, CollectorError
from collector.mimecast.client import MimecastClient, SearchResult
from collector.pipeline import Chunk, Pipeline
from collector.planner import ONE_SECOND, CapWatch, Density
from collector.windows import Plan, floor_second, plan_windows

__all__ = ["CycleResult", "InternalError", "Poller"]

# HTTP dates have whole seconds and answers take time: only a larger difference is a clock problem.
_SKEW_TOLERANCE_S = 30.0


@dataclass
class CycleResult:
    """What one cycle did; ``error`` is set when it stopped early."""

    watch: str
    chunks: int = 0
    searches: int = 0
    records: int = 0
    shipped: int = 0
    duplicates: int = 0
    invalid: int = 0
    splits: int = 0
    truncated: int = 0
    error: CollectorError | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """True when every planned chunk was delivered (invalid records do not count as failure)."""
        return self.error is None and not self.interrupted


class InternalError(CollectorError):
    """A bug met while polling one watch: reported, counted, and the other watches go on."""

    error_type = "internal"


class Poller:
    """Runs the cycle of one watch; keeps only its density estimate besides the shared checkpoint."""

    def __init__(self, watch: WatchConfig, collection: CollectionConfig, client: MimecastClient,
                 pipeline: Pipeline, metrics: Any, *, stop: threading.Event | None = None,
                 on_chunk: Callable[[int, int], None] | None = None, tracker: Any = None) -> None:
        self.watch = watch
        self._cfg = collection
        self._client = client
        self._pipeline = pipeline
        self._metrics = metrics
        self._stop = stop or threading.Event()
        self._on_chunk = on_chunk
        self._step = tracker.step if tracker is not None else (lambda watch, step: None)
        self._density: Density | None = None
        self._caps = CapWatch(collection.result_cap)
        self._failing = False
        self._skewed = False
        self._clock = (datetime.now(timezone.utc), time.monotonic())
        self._log = structlog.get_logger("collector.poller").bind(watch=watch.name)

    def run_cycle(self, now: datetime, *, until: datetime | None = None) -> CycleResult:
        """Search everything between the watermark and the present less ``lag`` (or ``until``); never raises."""
        started = time.monotonic()
        result = CycleResult(self.watch.name)
        state = self._pipeline.state.watch(self.watch.name)
        if self._density is None:
            self._density = Density(state.density)
        plan = plan_windows(state.watermark, now, self._cfg, remembered_from=state.remembered_from)
        if until is not None and until < plan.end:
            plan = replace(plan, end=floor_second(until))
        self._clock = (now, time.monotonic())
        self._report_plan(plan, state.watermark)
        span: tuple[datetime, datetime] | None = None
        try:
            cursor = plan.start
            while cursor < plan.end:
                if self._stop.is_set():
                    result.interrupted = True
                    break
                width = self._density.width(cursor, self._cfg.result_cap, self._cfg.window, plan.end - cursor)
                span = (cursor, cursor + width)
                cursor = self._search(*span, plan, result)
                if self._on_chunk is not None:
                    self._on_chunk(int((cursor - plan.start) / ONE_SECOND), int((plan.end - plan.start) / ONE_SECOND))
        except CancelledError:
            result.interrupted = True
        except CollectorError as exc:
            result.error = exc
        except Exception as exc:  # noqa: BLE001 - one watch's bug must not stop the others or lose their data
            result.error = InternalError(f"{type(exc).__name__}: {exc}")
            self._log.exception("poll.internal_error", window_start=_iso(span[0]) if span else None)
        self._finish(result, started, span, now)
        return result

    def _search(self, start: datetime, end: datetime, plan: Plan, result: CycleResult) -> datetime:
        """Search ``[start, end)``; deliver it when complete and return the new cursor, else ``start``."""
        began = time.monotonic()
        cap, width = self._cfg.result_cap, end - start
        assert self._density is not None
        try:
            found = self._client.search(self.watch, start, end)
        except AnswerTooLargeError as exc:
            self._step(self.watch.name, "searched")
            result.searches += 1
            if width <= ONE_SECOND:
                raise
            # Too large to read is at least as full as capped: the same window searched narrower.
            self._density.capped(start, end, cap, [])
            self._metrics.splits.labels(self.watch.name).inc()
            result.splits += 1
            self._log.warning("poll.answer_too_large", start=_iso(start), end=_iso(end), error=str(exc))
            return start
        self._step(self.watch.name, "searched")
        result.searches += 1
        self._metrics.answer_records.observe(found.count)
        hidden = self._caps.observe(found.count, start, end)
        if hidden is not None:
            self._log.warning("mimecast.answers_stop_below_result_cap", size=hidden, result_cap=cap,
                              reason=f"answers keep stopping at {hidden} records; if that is Mimecast's real cap, "
                                     f"records beyond it are lost: set collection.result_cap to {hidden}")
        if found.count >= cap and width > ONE_SECOND:
            self._density.capped(start, end, cap, [r.received for r in found.records])
            self._metrics.splits.labels(self.watch.name).inc()
            result.splits += 1
            self._log.debug("poll.window_split", start=_iso(start), end=_iso(end), records=found.count)
            return start
        if found.count >= cap:
            self._metrics.truncated.labels(self.watch.name).inc()
            result.truncated += 1
        else:
            self._density.complete(start, end, found.count, cap, [r.received for r in found.records])
        mark = self._checked_end(start, end, found.server_time)
        self._deliver(start, mark, found, result, began)
        return end if mark == end else plan.end

    def _checked_end(self, start: datetime, end: datetime, server_time: datetime | None) -> datetime:
        """``end``, unless Mimecast's clock (its answer's ``Date``) says that time is not yet past ``lag``."""
        if server_time is None:
            return end
        local = self._clock[0] + timedelta(seconds=time.monotonic() - self._clock[1])
        skew = (local - server_time).total_seconds()
        skewed = abs(skew) > _SKEW_TOLERANCE_S
        self._metrics.clock_skew.set(round(skew, 3))
        if skewed != self._skewed:
            self._skewed = skewed
            if skewed:
                self._log.warning("mimecast.clock_skew", skew_s=round(skew), reason="this host's clock and "
                                  "Mimecast's differ; searches end at Mimecast's time, fix NTP on this host")
            else:
                self._log.info("mimecast.clock_skew_ended", skew_s=round(skew))
        # Never call complete what Mimecast's clock has not reached yet (a local clock running fast).
        return max(start, min(end, floor_second(server_time - self._cfg.lag)))

    def _deliver(self, start: datetime, end: datetime, found: SearchResult, result: CycleResult, began: float) -> None:
        name = self.watch.name
        self._metrics.records_received.labels(name).inc(found.count)
        wanted = [r for r in found.records if (not self.watch.status or r.status in self.watch.status)
                  and (not self.watch.route or r.route in self.watch.route)]
        known = self._pipeline.state.known(name, [r.key for r in wanted])
        fresh, keys, again, duplicates = [], set(), [], 0
        for record in sorted(wanted, key=lambda r: r.received):
            if record.key in known or record.key in keys:
                duplicates += 1
                if record.key in known:
                    again.append(record.key)
                continue
            keys.add(record.key)
            fresh.append(record)
        assert self._density is not None
        self._pipeline.deliver(Chunk(watch=name, records=fresh, invalid=found.invalid, watermark=end,
                                     horizon=end - self._cfg.overlap, fetched_at=datetime.now(timezone.utc),
                                     seen_again=again, density=self._density.rate))
        self._step(name, "delivered")
        self._metrics.duplicates.labels(name).inc(duplicates)
        result.chunks += 1
        result.records += found.count
        result.shipped += len(fresh)
        result.duplicates += duplicates
        result.invalid += len(found.invalid)
        self._log.debug("poll.chunk", start=_iso(start), end=_iso(end), records=found.count, shipped=len(fresh),
                        duplicates=duplicates, invalid=len(found.invalid),
                        duration_ms=round((time.monotonic() - began) * 1000))

    def _report_plan(self, plan: Plan, watermark: datetime | None) -> None:
        name = self.watch.name
        if plan.gap:
            self._metrics.gaps.labels(name).inc(plan.gap.total_seconds())
            self._log.error("poll.retention_gap", lost_from=_iso(plan.gap_start), lost_seconds=int(plan.gap.total_seconds()),
                            reason="the checkpoint is older than Mimecast's 30-day tracking retention")
        if plan.ahead:
            self._metrics.clock_jumps.labels(name).inc()
            self._log.warning("poll.watermark_ahead", watermark=_iso(watermark), ahead_s=int(plan.ahead.total_seconds()),
                              search_from=_iso(plan.start),
                              reason="the checkpoint is past the present (a clock that ran fast); "
                                     "searching again what may have been searched before its mail arrived")

    def _finish(self, result: CycleResult, started: float, span: tuple[datetime, datetime] | None,
                now: datetime) -> None:
        name = self.watch.name
        outcome = "success" if result.ok else ("interrupted" if result.interrupted else "failure")
        self._metrics.poll_runs.labels(name, outcome).inc()
        self._metrics.poll_duration.labels(name).observe(time.monotonic() - started)
        watermark = self._pipeline.state.watch(name).watermark
        self._metrics.poll_ended(name, result.error.error_type if result.error is not None else None)
        lag = int((now - watermark).total_seconds()) if watermark is not None else None
        if result.error is not None:
            exc = result.error
            self._metrics.poll_errors.labels(name, exc.error_type).inc()
            self._log.error("poll.failed", error_type=exc.error_type, error=str(exc), watermark=_iso(watermark),
                            window_start=_iso(span[0]) if span else None, window_end=_iso(span[1]) if span else None)
            self._failing = True
            return
        if result.ok:
            self._metrics.last_success.labels(name).set(time.time())
            if self._failing:
                self._log.info("poll.recovered", watermark=_iso(watermark))
            self._failing = False
        if result.truncated:
            self._log.warning("poll.window_truncated", searches=result.truncated, result_cap=self._cfg.result_cap,
                              reason="one-second searches still at result_cap; records beyond it may be missing")
        self._log.info("poll.done", outcome=outcome, chunks=result.chunks, searches=result.searches,
                       records=result.records, shipped=result.shipped, duplicates=result.duplicates,
                       invalid=result.invalid, splits=result.splits,
                       duration_ms=round((time.monotonic() - started) * 1000), lag_s=lag)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
