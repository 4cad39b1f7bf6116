"""Sizing searches from what Mimecast has shown: a density estimate, and a watch on its real per-answer cap.

A search that returns ``result_cap`` records may be truncated and is searched again narrower; one that
returns fewer is complete. Every other search is wasted quota, so each search is sized to fill most of
``result_cap`` without reaching it, from the density of matching mail seen so far. The records of a
capped answer (their received times) only sharpen that estimate: which records a capped answer keeps,
and in what order, is undocumented, so they never decide that any part of a window is complete.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

__all__ = ["CapWatch", "Density", "ONE_SECOND", "target_fill"]

ONE_SECOND = timedelta(seconds=1)
# How many standard deviations of a window's count (Poisson) to keep below result_cap: about one search in
# twenty comes back capped and is searched again, the cheapest balance against under-filled searches.
_Z = 1.65
# A capped answer whose records span most of its window says nothing about how many more there were.
_SPREAD = 0.9
_OVERSHOOT = 1.15


def target_fill(cap: int) -> float:
    """The count to aim a search at: ``e`` with ``e + z * sqrt(e) = cap - 1``, at least one."""
    root = (-_Z + math.sqrt(_Z * _Z + 4 * max(cap - 1, 1))) / 2
    return max(1.0, root * root)


class Density:
    """Matching records per second of received time for one watch; ``None`` until a search says.

    Besides the smoothed rate it remembers what a capped answer proved: that its window holds at least
    ``result_cap`` records, less what complete searches of its start have since found. The rest of that
    window is planned at no less than that density, so a burst is not re-searched blindly.
    """

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate if rate is not None and math.isfinite(rate) and rate >= 0 else None
        self._dense: tuple[datetime, int] | None = None
        self._measured = self.rate is not None

    def width(self, cursor: datetime, cap: int, window: timedelta, left: timedelta) -> timedelta:
        """The next search's width from ``cursor``: whole seconds, at least one, at most ``window`` and ``left``."""
        widest = min(window, left)
        rate = self.rate or 0.0
        if self._dense is not None and cursor < self._dense[0]:
            rate = max(rate, self._dense[1] / max((self._dense[0] - cursor).total_seconds(), 1.0))
        if rate <= 0:
            return widest
        seconds = int(target_fill(cap) / rate)
        return max(ONE_SECOND, min(widest, timedelta(seconds=seconds)))

    def complete(self, start: datetime, end: datetime, count: int, cap: int) -> None:
        """A complete answer: ``count`` records in ``[start, end)``."""
        seen = count / max((end - start).total_seconds(), 1.0)
        if self.rate is None or count < target_fill(cap) / 4:
            # A clearly under-filled answer is not noise: the mail really is that sparse here.
            self.rate = seen
        else:
            self.rate = (self.rate + seen) / 2
        self._measured = True
        if self._dense is not None:
            until, at_least = self._dense
            self._dense = (until, at_least - count) if end < until and count < at_least else None

    def capped(self, start: datetime, end: datetime, cap: int, received: Sequence[datetime]) -> None:
        """A capped answer: at least ``cap`` records in ``[start, end)``; ``received`` are the times it holds."""
        seconds = max((end - start).total_seconds(), 1.0)
        at_least = cap / seconds
        # A window planned to fill most of the cap and found over it is a fluctuation; one planned blind may
        # hold any multiple of the cap: double (the least regret when nothing more is known).
        planned = self._measured and (self.rate or 0.0) * seconds >= cap / 2
        estimate = at_least * (_OVERSHOOT if planned else 2.0)
        inside = [r for r in received if start <= r < end]
        if len(inside) >= 2:
            span = (max(inside) - min(inside)).total_seconds() + 1.0
            if span < _SPREAD * seconds:
                # The answer covered only part of its window: as dense as that part, at least (a hint, never proof).
                estimate = max(at_least * 1.05, cap / span)
        self.rate = max(estimate, self.rate or 0.0)
        self._measured = False
        self._dense = (end, cap)


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
