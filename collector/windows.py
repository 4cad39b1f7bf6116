"""Rolling search windows: what to search next, in chunks, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from collector.config import CollectionConfig

__all__ = ["MIN_SPLIT", "RETENTION", "Plan", "floor_second", "midpoint", "plan_windows"]

# Mimecast keeps tracking data for 30 days; stay a minute inside so the oldest search is never refused.
RETENTION = timedelta(days=30)
_RETENTION_MARGIN = timedelta(minutes=1)
MIN_SPLIT = timedelta(minutes=1)


@dataclass(frozen=True)
class Plan:
    """The chunks to search now, and any history lost to retention."""

    chunks: tuple[tuple[datetime, datetime], ...]
    gap: timedelta = timedelta(0)
    gap_start: datetime | None = None


def floor_second(value: datetime) -> datetime:
    """``value`` in UTC without its fraction of a second (Mimecast dates have whole seconds)."""
    return value.astimezone(timezone.utc).replace(microsecond=0)


def plan_windows(watermark: datetime | None, now: datetime, cfg: CollectionConfig) -> Plan:
    """Split ``[watermark - overlap, now - lag)`` into chunks of at most ``cfg.window``.

    The first run (no watermark) starts ``initial_lookback`` ago. Nothing older
    than Mimecast's 30-day retention is searched; when the watermark is older
    than that, the lost span is reported as ``gap``.
    """
    end = floor_second(now - cfg.lag)
    oldest = floor_second(now - RETENTION + _RETENTION_MARGIN)
    if watermark is None:
        start = floor_second(now - cfg.initial_lookback)
    else:
        start = floor_second(watermark - cfg.overlap)
    gap, gap_start = timedelta(0), None
    if watermark is not None and watermark < oldest:
        gap, gap_start = oldest - watermark, watermark
    start = max(start, oldest)
    chunks = []
    while start < end:
        stop = min(start + cfg.window, end)
        chunks.append((start, stop))
        start = stop
    return Plan(tuple(chunks), gap, gap_start)


def midpoint(start: datetime, end: datetime) -> datetime:
    """The whole second halfway between ``start`` and ``end``."""
    return floor_second(start + (end - start) / 2)
