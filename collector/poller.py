"""One watch's poll cycle: plan the span, size each search, re-search capped answers, drop repeats, deliver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import structlog

from collector.clock import ServerClock
from collector.config import CollectionConfig, WatchConfig
from collector.errors import AnswerTooLargeError, CancelledError, CollectorError
from collector.mimecast.client import MimecastClient, SearchResult
from collector.pipeline import Chunk, Pipeline
from collector.planner import ONE_SECOND, CapWatch, Density
from collector.reporting import PURPOSES, CycleResult, PollReport
from collector.reporting import iso as _iso
from collector.rereads import Rereads
from collector.schedule import Ages, Cycle, Read, followed, moment, stale_rows
from collector.windows import Plan, floor_second, plan_windows

__all__ = ["PURPOSES", "CycleResult", "InternalError", "Poller"]


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
        self._resplit = False
        self._fits: int | None = None
        self._cycle = Cycle(datetime.now(timezone.utc), Ages.of(collection))
        self._caps = CapWatch(collection.result_cap)
        self._log = structlog.get_logger("collector.poller").bind(watch=watch.name)
        self._report = PollReport(watch.name, collection.result_cap, metrics, self._log)
        self._server_clock = ServerClock(collection.lag, metrics, self._log)

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
        self._server_clock.begin(now)
        self._report.plan(plan, state.watermark)
        span: tuple[datetime, datetime] | None = None
        self._cycle = Cycle.begin(state, plan, self._cfg, now)
        try:
            cursor = self._rereads(result, plan)
            while cursor < plan.end:
                if self._stop.is_set():
                    result.interrupted = True
                    break
                width = self._density.width(cursor, self._aim, self._cfg.window, plan.end - cursor)
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
        self._report.finish(result, started, span, now, self._pipeline.state.watch(self.watch.name).watermark)
        return result

    def _rereads(self, result: CycleResult, plan: Plan) -> datetime:
        """Make this poll's re-reads (``collector.rereads``), oldest first; return where first reads go on."""
        cycle, cap = self._cycle, self._cfg.result_cap
        rereads = Rereads(self._pipeline.state.watch(self.watch.name).seconds, cycle.ages, cycle.now,
                          settled=cycle.settled, watermark=cycle.watermark, cap=self._aim,
                          widest=int(self._cfg.window.total_seconds()))
        if _sec(plan.start) == cycle.watermark and self._density is not None:
            rereads.lengthen(self._density.rate, _sec(plan.end))
        for start, end, purpose in rereads:
            if self._stop.is_set():
                result.interrupted = True
                break
            found = self._search_span(start, end, purpose or self._purpose(start), result)
            if found is not None and (found.count < cap or end - start <= 1):
                if self._read(start, end, found, result) < moment(end):
                    return plan.end  # Mimecast's clock has not reached the end of the new time yet
                continue
            self._metrics.splits.labels(self.watch.name).inc()
            result.splits += 1
            rereads.capped(start, end, [_sec(r.received) for r in found.records] if found is not None else [])
        return moment(max(cycle.watermark, _sec(plan.start)))

    def _purpose(self, start: int) -> str:
        """Why a window runs: the purpose of its oldest second."""
        if start < self._cycle.settled:
            return "follow"
        return "settle" if start < self._cycle.watermark else "first"

    def _search_span(self, start: int, end: int, purpose: str, result: CycleResult) -> SearchResult | None:
        """Search ``[start, end)`` and count it; ``None`` when the answer was too large to read (searched again
        narrower, like a capped one) unless the window is one second, where that is the poll's error."""
        try:
            found: SearchResult | None = self._client.search(self.watch, moment(start), moment(end))
        except AnswerTooLargeError as exc:
            if end - start <= 1:
                raise
            found = None
            # Plan later windows to hold what would have fitted, with a tenth to spare for longer records.
            self._fits = max(1, int(min(self._aim, self._expected(start, end)) * exc.share * 0.9))
            self._log.warning("poll.answer_too_large", start=_iso(moment(start)), end=_iso(moment(end)),
                              plan_records=self._fits, error=str(exc))
        self._step(self.watch.name, "searched")
        result.searches += 1
        result.purposes[purpose] += 1
        self._metrics.searches.labels(self.watch.name, purpose).inc()
        if found is not None:
            self._metrics.answer_records.observe(found.count)
        return found

    @property
    def _aim(self) -> int:
        """The cap searches are planned under: ``result_cap``, or fewer records once an answer was too large to
        read (``mimecast.max_answer_bytes``), so that later windows are planned to fit instead of refused again."""
        return min(self._cfg.result_cap, self._fits) if self._fits is not None else self._cfg.result_cap

    def _expected(self, start: int, end: int) -> float:
        """The records ``[start, end)`` is known (from earlier reads) or estimated to hold."""
        rows = self._pipeline.state.watch(self.watch.name).seconds
        known = sum(count for second, (count, _stage) in rows.items() if start <= second < end)
        rate = self._density.rate if self._density is not None else None
        return max(known, (rate or 0.0) * (end - start)) or self._aim

    def _search(self, start: datetime, end: datetime, plan: Plan, result: CycleResult) -> datetime:
        """Search new time ``[start, end)``; deliver it when complete and return the new cursor, else ``start``."""
        began = time.monotonic()
        purpose = "split" if self._resplit else self._purpose(_sec(start))
        found = self._search_span(_sec(start), _sec(end), purpose, result)
        self._resplit = False
        cap, width = self._cfg.result_cap, end - start
        if found is None:  # too large to read is at least as full as capped: the same window, narrower
            self._density.capped(start, end, cap, [])
            self._metrics.splits.labels(self.watch.name).inc()
            result.splits += 1
            self._resplit = True
            return start
        hidden = self._caps.observe(found.count, start, end)
        if hidden is not None:
            self._log.warning("mimecast.answers_stop_below_result_cap", size=hidden, result_cap=cap,
                              reason=f"answers keep stopping at {hidden} records; if that is Mimecast's real cap, "
                                     f"records beyond it are lost: set collection.result_cap to {hidden}")
        if found.count >= cap and width > ONE_SECOND:
            self._density.capped(start, end, cap, [r.received for r in found.records])
            self._metrics.splits.labels(self.watch.name).inc()
            result.splits += 1
            self._resplit = True
            self._log.debug("poll.window_split", start=_iso(start), end=_iso(end), records=found.count)
            return start
        mark = self._read(_sec(start), _sec(end), found, result, began)
        return end if mark == end else plan.end

    def _read(self, start: int, end: int, found: SearchResult, result: CycleResult,
              began: float | None = None) -> datetime:
        """Deliver a complete (or one-second) answer for ``[start, end)``; return how far it counts as read."""
        cycle, cap = self._cycle, self._cfg.result_cap
        if found.server_time is not None:
            # Ages count by Mimecast's clock when it is behind this host's: a fast clock must not settle a second
            # before its late mail can have arrived.
            cycle.now = min(cycle.now, found.server_time)
        if found.count >= cap:
            self._metrics.truncated.labels(self.watch.name).inc()
            result.truncated += 1
        new_from = max(start, cycle.watermark)
        if end > new_from:
            assert self._density is not None
            newer = [r.received for r in found.records if _sec(r.received) >= new_from]
            if found.count < cap:
                self._density.complete(moment(new_from), moment(end), len(newer), cap, newer)
            mark = _sec(self._server_clock.checked_end(moment(new_from), moment(end), found.server_time))
        else:
            mark = end
        self._deliver(start, mark, found, result, began if began is not None else time.monotonic())
        return moment(mark)

    def _deliver(self, start: int, end: int, found: SearchResult, result: CycleResult, began: float) -> None:
        """Ship what ``[start, end)`` holds that the watch still claims, and commit what its seconds wait for now."""
        name, cycle = self.watch.name, self._cycle
        state = self._pipeline.state.watch(name)
        self._metrics.records_received.labels(name).inc(found.count)
        read = Read(start, end, cycle.settled)
        seconds, counts, statuses = read.census((_sec(r.received), r.status) for r in found.records)
        second = {id(r): s for r, s in zip(found.records, seconds)}
        pending = {s: cycle.ages.pending(held) for s, held in statuses.items()}
        rows = read.rows(state.seconds, counts, pending, cycle.ages, cycle.now)
        if not cycle.tidied:
            rows = {**stale_rows(state.seconds, cycle.settled), **rows}
            cycle.tidied = True
        for label, n in followed(rows, statuses, cycle.ages).items():
            self._metrics.followed.labels(name, label).inc(n)
        wanted = [r for r in found.records if (not self.watch.status or r.status in self.watch.status)
                  and (not self.watch.route or r.route in self.watch.route) and read.live(second[id(r)], state.seconds)]
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
        watermark, settled = read.frontiers(cycle.watermark, cycle.ages, cycle.now)
        assert self._density is not None
        self._pipeline.deliver(Chunk(watch=name, records=fresh, invalid=found.invalid, watermark=moment(watermark),
                                     horizon=moment(settled), fetched_at=datetime.now(timezone.utc),
                                     seen_again=again, density=self._density.rate,
                                     key_seconds={r.key: second[id(r)] for r in wanted}, seconds=rows))
        cycle.watermark, cycle.settled = watermark, settled
        self._step(name, "delivered")
        self._metrics.duplicates.labels(name).inc(duplicates)
        result.chunks += 1
        result.records += found.count
        result.shipped += len(fresh)
        result.duplicates += duplicates
        result.invalid += len(found.invalid)
        self._log.debug("poll.chunk", start=_iso(moment(start)), end=_iso(moment(end)), records=found.count,
                        shipped=len(fresh), duplicates=duplicates, invalid=len(found.invalid),
                        duration_ms=round((time.monotonic() - began) * 1000))


def _sec(value: datetime) -> int:
    return int(value.timestamp())
