"""APScheduler 3.x wiring: one interval job per watch, never two runs of a watch at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.poller import Poller

__all__ = ["build_scheduler", "phase_offsets"]

_MAX_WORKERS = 8


def phase_offsets(count: int, interval_s: float) -> list[float]:
    """Fixed, evenly spaced start offsets (seconds) that spread ``count`` watches over a tenth of the interval.

    A fixed phase per watch spreads the load on Mimecast like jitter does, but
    never adds up: every watch still polls exactly every ``interval_s``.
    """
    spread = min(30.0, interval_s / 10)
    return [spread * i / count for i in range(count)] if count else []


def build_scheduler(pollers: Sequence[Poller], interval_s: float, metrics: Any, tracker: Any = None,
                    stop: threading.Event | None = None,
                    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> BackgroundScheduler:
    """A scheduler (not started) that polls each watch at its phase, then every ``interval_s``.

    ``max_instances=1`` keeps a slow watch from running twice at once; a poll
    that overruns its interval is followed by the next one at once, so a slow
    poll costs no slot. ``tracker`` (a :class:`~collector.watchdog.PollTracker`)
    learns when each poll starts and ends.
    """
    log = structlog.get_logger("collector.scheduler")
    stop = stop or threading.Event()
    scheduler = BackgroundScheduler(
        timezone=timezone.utc,
        executors={"default": ThreadPoolExecutor(max_workers=max(1, min(_MAX_WORKERS, len(pollers))))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(interval_s))},
    )
    start = now()
    interval = timedelta(seconds=interval_s)
    for poller, offset in zip(pollers, phase_offsets(len(pollers), interval_s)):
        first = start + timedelta(seconds=offset)
        scheduler.add_job(_tick, IntervalTrigger(seconds=interval_s, start_date=first, timezone=timezone.utc),
                          args=(poller, tracker, now), id=poller.watch.name, name=f"poll {poller.watch.name}",
                          next_run_time=first)

    def on_event(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            metrics.poll_runs.labels(event.job_id, "crash").inc()
            log.error("poll.crashed", watch=event.job_id, error=repr(event.exception),
                      traceback=event.traceback)
        if event.code in (EVENT_JOB_EXECUTED, EVENT_JOB_ERROR):
            # Sent once the run no longer counts against max_instances, so the next run can start now.
            if event.scheduled_run_time + interval <= now() and not stop.is_set():
                try:
                    scheduler.modify_job(event.job_id, next_run_time=now())
                except JobLookupError:
                    pass
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("poll.still_running", watch=event.job_id,
                        reason="the previous poll has not finished; the next one starts as soon as it does")
        elif event.code == EVENT_JOB_MISSED:
            log.warning("poll.missed", watch=event.job_id, scheduled=str(event.scheduled_run_time))

    scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def _tick(poller: Poller, tracker: Any, now: Callable[[], datetime]) -> None:
    if tracker is not None:
        tracker.started(poller.watch.name)
    try:
        poller.run_cycle(now())
    finally:
        if tracker is not None:
            tracker.finished(poller.watch.name)
