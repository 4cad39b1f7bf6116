"""APScheduler 3.x wiring: one interval job per watch, never two runs of a watch at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.poller import Poller

__all__ = ["build_scheduler"]

_MAX_WORKERS = 8


def build_scheduler(pollers: Sequence[Poller], interval_s: float, metrics: Any,
                    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> BackgroundScheduler:
    """A scheduler (not started) that polls each watch right away, then every ``interval_s``.

    Jitter spreads watches so they do not all hit Mimecast in the same second;
    ``coalesce`` and ``max_instances=1`` keep a slow watch from piling up runs.
    """
    log = structlog.get_logger("collector.scheduler")
    scheduler = BackgroundScheduler(
        timezone=timezone.utc,
        executors={"default": ThreadPoolExecutor(max_workers=max(1, min(_MAX_WORKERS, len(pollers))))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(interval_s))},
    )
    jitter = int(min(30.0, interval_s / 10))
    start = now()
    for poller in pollers:
        scheduler.add_job(_tick, IntervalTrigger(seconds=interval_s, jitter=jitter or None, timezone=timezone.utc),
                          args=(poller, now), id=poller.watch.name, name=f"poll {poller.watch.name}",
                          next_run_time=start)

    def on_event(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            metrics.poll_runs.labels(event.job_id, "crash").inc()
            log.error("poll.crashed", watch=event.job_id, error=repr(event.exception),
                      traceback=event.traceback)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("poll.still_running", watch=event.job_id,
                        reason="the previous poll has not finished; this run is skipped")
        else:
            log.warning("poll.missed", watch=event.job_id, scheduled=str(event.scheduled_run_time))

    scheduler.add_listener(on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def _tick(poller: Poller, now: Callable[[], datetime]) -> None:
    poller.run_cycle(now())
