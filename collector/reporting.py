"""What one poll did, and how it is reported: the cycle's counts, its metrics and its log lines.

At ``info`` a poll is one ``poll.done`` line; what else is logged is a change an operator acts on (a failure
and its recovery, a retention gap, a clock that ran fast, windows still at the cap).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collector.errors import CollectorError
from collector.windows import Plan

__all__ = ["PURPOSES", "CycleResult", "PollReport", "iso"]

# Why a search ran: a second's first read, its settle read, a follow read, or again after a capped answer.
PURPOSES = ("first", "settle", "follow", "split")


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
    purposes: Counter[str] = field(default_factory=Counter)
    error: CollectorError | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """True when every planned chunk was delivered (invalid records do not count as failure)."""
        return self.error is None and not self.interrupted


class PollReport:
    """Reports the polls of one watch; remembers whether the last one failed, to log its recovery once."""

    def __init__(self, watch: str, result_cap: int, metrics: Any, log: Any) -> None:
        self._watch, self._cap, self._metrics, self._log = watch, result_cap, metrics, log
        self._failing = False

    def plan(self, plan: Plan, watermark: datetime | None) -> None:
        """Report what the plan of a poll found before any search: a retention gap, a watermark ahead of now."""
        if plan.gap:
            self._metrics.gaps.labels(self._watch).inc(plan.gap.total_seconds())
            self._log.error("poll.retention_gap", lost_from=iso(plan.gap_start), lost_seconds=int(plan.gap.total_seconds()),
                            reason="the checkpoint is older than Mimecast's 30-day tracking retention")
        if plan.ahead:
            self._metrics.clock_jumps.labels(self._watch).inc()
            self._log.warning("poll.watermark_ahead", watermark=iso(watermark), ahead_s=int(plan.ahead.total_seconds()),
                              search_from=iso(plan.start),
                              reason="the checkpoint is past the present (a clock that ran fast); "
                                     "searching again what may have been searched before its mail arrived")

    def finish(self, result: CycleResult, started: float, span: tuple[datetime, datetime] | None, now: datetime,
               watermark: datetime | None) -> None:
        """Count and log the poll that ``result`` describes, begun at ``started`` (monotonic), whose last window
        was ``span``, ending with the watch at ``watermark``."""
        name = self._watch
        outcome = "success" if result.ok else ("interrupted" if result.interrupted else "failure")
        self._metrics.poll_runs.labels(name, outcome).inc()
        self._metrics.poll_duration.labels(name).observe(time.monotonic() - started)
        self._metrics.poll_ended(name, result.error.error_type if result.error is not None else None)
        lag = int((now - watermark).total_seconds()) if watermark is not None else None
        if result.error is not None:
            exc = result.error
            self._metrics.poll_errors.labels(name, exc.error_type).inc()
            self._log.error("poll.failed", error_type=exc.error_type, error=str(exc), watermark=iso(watermark),
                            window_start=iso(span[0]) if span else None, window_end=iso(span[1]) if span else None)
            self._failing = True
            return
        if result.ok:
            self._metrics.last_success.labels(name).set(time.time())
            if self._failing:
                self._log.info("poll.recovered", watermark=iso(watermark))
            self._failing = False
        if result.truncated:
            self._log.warning("poll.window_truncated", searches=result.truncated, result_cap=self._cap,
                              reason="one-second searches still at result_cap; records beyond it may be missing")
        self._log.info("poll.done", outcome=outcome, chunks=result.chunks, searches=result.searches,
                       **{f"searches_{p}": result.purposes[p] for p in PURPOSES},
                       records=result.records, shipped=result.shipped, duplicates=result.duplicates,
                       invalid=result.invalid, splits=result.splits,
                       duration_ms=round((time.monotonic() - started) * 1000), lag_s=lag)


def iso(value: datetime | None) -> str | None:
    """A time as the logs give it: ISO 8601 in UTC with ``Z``; ``None`` stays ``None``."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
