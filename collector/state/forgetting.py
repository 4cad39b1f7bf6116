"""When a remembered key may be forgotten, and from when each watch's keys are complete.

A key is needed while some configured watch may still search the time it was
last seen: each watch re-reads back to its horizon (watermark minus overlap).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from collector.state.model import WatchState

__all__ = ["HOLD_LIMIT", "prune_point", "remembered_from"]

# Nothing older than Mimecast's 30-day retention can be searched again, so no watch holds keys back further.
HOLD_LIMIT = timedelta(days=30)


def prune_point(horizon: datetime, others: Iterable[datetime | None]) -> datetime:
    """Forget keys last seen before this: ``horizon`` is the committing watch's, ``others`` every other
    configured watch's (``None`` for one that has not committed yet and will search back its lookback)."""
    listed = list(others)
    known = [horizon, *(h for h in listed if h is not None)]
    if None in listed:
        return max(known) - HOLD_LIMIT
    return max(min(known), max(known) - HOLD_LIMIT)


def remembered_from(state: WatchState, pruned_at: datetime | None) -> datetime | None:
    """From when ``state``'s watch finds every key it may meet again: never past its own watermark."""
    if state.watermark is None:
        return None
    if pruned_at is None:
        return state.remembered_from
    return min(pruned_at, state.watermark)
