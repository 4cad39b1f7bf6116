"""Mimecast's clock against this host's: how far a search may count as complete, and skew worth saying.

A search never counts as complete past Mimecast's own clock (the ``Date`` of its answer) less ``lag``, so a host
clock running fast cannot mark as searched a span whose mail has not arrived yet.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from collector.windows import floor_second

__all__ = ["ServerClock"]

# HTTP dates have whole seconds and answers take time: only a larger difference is a clock problem.
_SKEW_TOLERANCE_S = 30.0


class ServerClock:
    """One watch's view of Mimecast's clock: the skew gauge, and a log line when skew starts and ends."""

    def __init__(self, lag: timedelta, metrics: Any, log: Any) -> None:
        self._lag = lag
        self._metrics = metrics
        self._log = log
        self._skewed = False
        self._local = (datetime.now(timezone.utc), time.monotonic())

    def begin(self, now: datetime) -> None:
        """A poll starts at ``now`` (this host's idea of the present, passed in)."""
        self._local = (now, time.monotonic())

    def checked_end(self, start: datetime, end: datetime, server_time: datetime | None) -> datetime:
        """``end``, unless Mimecast's clock (its answer's ``Date``) says that time is not yet past ``lag``."""
        if server_time is None:
            return end
        local = self._local[0] + timedelta(seconds=time.monotonic() - self._local[1])
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
        return max(start, min(end, floor_second(server_time - self._lag)))
