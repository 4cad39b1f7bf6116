"""Sizing searches from what Mimecast has shown: a density estimate, and a watch on its real per-answer cap.

A search that returns ``result_cap`` records may be truncated and is searched again narrower; one that
returns fewer is complete. Every other search is wasted quota, so each search is sized to fill most of
``result_cap`` without reaching it, from the density of matching mail seen so far. The records of a
capped answer (their received times) only sharpen that estimate: which records a capped answer keeps,
and in what order, is undocumented, so they never decide that any part of a window is complete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

__all__ = ["FILL", "CapWatch", "Density", "ONE_SECOND"]

ONE_SECOND = timedelta(seconds=1)
# Aim each search at this share of result_cap: the count of a window varies, and a capped answer costs a re-search.
FILL = 0.8
# A capped answer whose records span most of its window says nothing about how many more there were.
_SPREAD = 0.9


class Density:
    """Matching records per second of received time for one watch; ``None`` until a search says."""

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate if rate is not None and rate >= 0 else None

    def width(self, cap: int, window: timedelta, left: timedelta) -> timedelta:
        """The next search's width: whole seconds, at least one, at most ``window`` and what is ``left``."""
        widest = min(window, left)
        if not self.rate:
            return widest
        seconds = int(FILL * cap / self.rate)
        return max(ONE_SECOND, min(widest, timedelta(seconds=seconds)))

    def complete(self, count: int, width: timedelta) -> None:
        """A complete answer: ``count`` records in ``width``."""
        seen = count / max(width.total_seconds(), 1.0)
        self.rate = seen if self.rate is None else (self.rate + seen) / 2

    def capped(self, cap: int, width: timedelta, received: Sequence[datetime]) -> None:
        """A capped answer: at least ``cap`` records in ``width``; ``received`` are the times it holds."""
        seconds = max(width.total_seconds(), 1.0)
        at_least = cap / seconds
        estimate = 2 * at_least
        if len(received) >= 2:
            span = (max(received) - min(received)).total_seconds() + 1.0
            if span < _SPREAD * seconds:
                # The answer covered only part of its window: as dense as that part, at least.
                estimate = max(at_least * 1.05, cap / span)
        self.rate = max(estimate, self.rate or 0.0)


class CapWatch:
    """Notices answers that keep stopping at one size below ``result_cap``: Mimecast's real cap is lower.

    Complete answers scatter around the planned fill; a hidden cap shows as a pile of answers at exactly
    the largest size ever seen, far more than at the sizes just below it.
    """

    _MIN_PILE = 5

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.sizes: Counter[int] = Counter()
        self.reported: int | None = None

    def observe(self, size: int) -> int | None:
        """Record an answer's size; return the suspected real cap the first time it becomes evident."""
        self.sizes[size] += 1
        if self.reported is not None or size >= self.cap or size < 2:
            return None
        largest = max(self.sizes)
        if largest >= self.cap:
            return None
        pile, below = self.sizes[largest], self.sizes[largest - 1] + self.sizes[largest - 2]
        if pile >= self._MIN_PILE and pile > 2 * below:
            self.reported = largest
            return largest
        return None
