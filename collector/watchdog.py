"""Poll progress for the systemd watchdog: a poll that stops moving stops the pings.

Each running poll reports when it started and each step it completes (a
search answered, a chunk delivered). A poll is *stalled* when it has gone
longer without a step than the worst case the configuration allows for that
step; the daemon then stops sending ``WATCHDOG=1`` so systemd restarts it
(the checkpoint makes the restart safe).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from collector.config import Config

__all__ = ["Bounds", "PollTracker", "Stall", "bounds_for"]

# A local file write and fsync has no timeout of its own; this is how long one may take before it counts as hung.
LOCAL_WRITE_S = 5.0
# Slack on top of every computed worst case: scheduling, logging, parsing a large answer.
MARGIN_S = 5.0

_DOING = {"started": "searching", "delivered": "searching", "searched": "delivering"}


@dataclass(frozen=True)
class Bounds:
    """The longest a poll may go without a step, by what it is doing, in seconds."""

    searching: float
    delivering: float

    def of(self, step: str) -> float:
        """The bound that applies after ``step`` (``started``, ``searched`` or ``delivered``)."""
        return self.delivering if step == "searched" else self.searching


def bounds_for(config: Config) -> Bounds:
    """The worst cases the configuration allows, plus a margin.

    Searching: every attempt may fetch a token first, one more attempt follows
    an expired token, the backoffs between attempts at their ceiling, and the
    longest rate-limit wait. Delivering (after a search answered, the chunk
    may also be split and searched again): a syslog output's connect and send
    timeouts, a file's write and fsync, the checkpoint save, for every watch
    that may be ahead in the delivery queue.
    """
    mc = config.mimecast
    backoffs = sum(min(mc.backoff_max, mc.backoff_initial * 2 ** (k - 1)) for k in range(1, mc.retries + 1))
    search = (mc.retries + 2) * 2 * mc.timeout + backoffs + mc.max_rate_limit_wait
    one_delivery = LOCAL_WRITE_S + sum(
        o.sink.connect_timeout + o.sink.send_timeout if o.sink.type == "syslog" else LOCAL_WRITE_S
        for o in config.outputs)
    deliver = one_delivery * max(1, len(config.watches))
    return Bounds(searching=search + MARGIN_S, delivering=max(search, deliver) + MARGIN_S)


@dataclass(frozen=True)
class Stall:
    """A running poll that has gone longer than its bound without a step."""

    watch: str
    doing: str
    started: datetime
    last_step: str
    last_step_at: datetime
    quiet_s: float
    bound_s: float


@dataclass
class _Running:
    started: float
    started_wall: datetime
    step: str
    step_at: float
    step_wall: datetime


class PollTracker:
    """Thread-safe record of every running poll and its last step."""

    def __init__(self, bounds: Bounds, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.bounds = bounds
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def started(self, watch: str) -> None:
        """A poll of ``watch`` begins."""
        now, wall = self._clock(), self._wall()
        with self._lock:
            self._running[watch] = _Running(now, wall, "started", now, wall)

    def step(self, watch: str, step: str) -> None:
        """The running poll of ``watch`` completed ``step`` (``searched`` or ``delivered``)."""
        now, wall = self._clock(), self._wall()
        with self._lock:
            running = self._running.get(watch)
            if running is not None:
                running.step, running.step_at, running.step_wall = step, now, wall

    def finished(self, watch: str) -> None:
        """The poll of ``watch`` ended, however it ended."""
        with self._lock:
            self._running.pop(watch, None)

    def excuse_searching(self) -> None:
        """Count a closed rate-limit gate as progress for every poll waiting to search: it is waiting, not hung."""
        now, wall = self._clock(), self._wall()
        with self._lock:
            for running in self._running.values():
                if _DOING[running.step] == "searching":
                    running.step_at, running.step_wall = now, wall

    def running_for(self, watch: str) -> float:
        """Seconds the running poll of ``watch`` has been running; 0 between polls."""
        with self._lock:
            running = self._running.get(watch)
            return self._clock() - running.started if running is not None else 0.0

    def stalls(self) -> list[Stall]:
        """Every running poll past its bound, oldest step first."""
        now = self._clock()
        with self._lock:
            found = [Stall(watch, _DOING[r.step], r.started_wall, r.step, r.step_wall, now - r.step_at,
                           self.bounds.of(r.step))
                     for watch, r in self._running.items() if now - r.step_at > self.bounds.of(r.step)]
        return sorted(found, key=lambda s: s.last_step_at)
