"""Rolling search windows: which span to search next, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from collector.config import CollectionConfig

__all__ = ["RETENTION", "Plan", "floor_second", "plan_windows"]

# Mimecast keeps tracking data for 30 days; stay a minute inside so the oldest search is never refused.
RETENTION = timedelta(days=30)
_RETENTION_MARGIN = timedelta(minutes=1)
# A watermark this far past the present is a clock that jumped, not the one-second rounding of a Date header.
_AHEAD_TOLERANCE = timedelta(seconds=5)


@dataclass(frozen=True)
class Plan:
    """The span ``[start, end)`` to search now, and what is wrong with the checkpoint, if anything.

    ``gap`` is history lost to retention (from ``gap_start``); ``ahead`` is how far the watermark
    stood past the present (a clock that was fast): the span it may have searched too early is
    searched again.
    """

    start: datetime
    end: datetime
    window: timedelta
    gap: timedelta = timedelta(0)
    gap_start: datetime | None = None
    ahead: timedelta = timedelta(0)

    @property
    def chunks(self) -> tuple[tuple[datetime, datetime], ...]:
        """The span cut into windows of at most ``window`` (the widest searches the collector makes)."""
        chunks, start = [], self.start
        while start < self.end:
            stop = min(start + self.window, self.end)
            chunks.append((start, stop))
            start = stop
        return tuple(chunks)


def floor_second(value: datetime) -> datetime:
    """``value`` in UTC without its fraction of a second (Mimecast dates have whole seconds)."""
    return value.astimezone(timezone.utc).replace(microsecond=0)


def plan_windows(watermark: datetime | None, now: datetime, cfg: CollectionConfig, *,
                 remembered_from: datetime | None = None) -> Plan:
    """The span ``[watermark, present - lag)`` of first reads to make now (re-reads: ``collector.schedule``).

    The first run (no watermark) starts ``initial_lookback`` ago. The search never starts before
    ``remembered_from``, the oldest time the checkpoint still remembers shipped keys for. Nothing older
    than Mimecast's 30-day retention is searched; a watermark older than that is reported as ``gap``.
    """
    end = floor_second(now - cfg.lag)
    oldest = floor_second(now - RETENTION + _RETENTION_MARGIN)
    ahead = timedelta(0)
    if watermark is None:
        start = floor_second(now - cfg.initial_lookback)
    elif watermark > end + _AHEAD_TOLERANCE:
        # The watermark passed the present: searches up to it may have run before their mail arrived.
        ahead = watermark - end
        start = floor_second(end - ahead - cfg.settle)
    else:
        start = floor_second(watermark)
        if remembered_from is not None:
            start = max(start, floor_second(remembered_from))
    gap, gap_start = timedelta(0), None
    if watermark is not None and watermark < oldest:
        gap, gap_start = oldest - watermark, watermark
    return Plan(max(start, oldest), end, cfg.window, gap, gap_start, ahead)
