"""Cover the seconds due for a re-read with few searches, from the counts their earlier reads found.

A second read completely before is known to hold about as many records as it did then (plus what a late
index adds: the margin). Windows are whole seconds, no wider than ``widest``, and may take in seconds that
are not due when that saves a search; each holds at most ``budget`` known records.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

__all__ = ["Counts", "budget", "halves", "pack"]

# The share of result_cap kept free in a re-read for mail indexed since the last read: a capped re-read
# costs a search more, a window closed too early as much.
_LATE_SHARE = 0.05


def budget(cap: int) -> int:
    """The known records a re-read window may hold: under ``cap`` with room for late mail."""
    return max(1, cap - 1 - max(1, math.ceil(cap * _LATE_SHARE)))


class Counts:
    """Known records per second, summed over spans in logarithmic time."""

    def __init__(self, counts: Mapping[int, int]) -> None:
        self._seconds = sorted(s for s, c in counts.items() if c > 0)
        self._sums = [0]
        for second in self._seconds:
            self._sums.append(self._sums[-1] + counts[second])

    def between(self, start: int, end: int) -> int:
        """The records known in ``[start, end)``."""
        lo, hi = bisect.bisect_left(self._seconds, start), bisect.bisect_left(self._seconds, end)
        return self._sums[hi] - self._sums[lo]


def pack(due: Sequence[int], counts: Counts, *, limit: int, widest: int) -> list[tuple[int, int]]:
    """Windows ``(start, end)`` covering every second of ``due`` (sorted), oldest first.

    Greedy from the oldest due second: the window takes in the next due second while the known records
    from its start to that second stay within ``limit`` and its width within ``widest``. A second alone over
    ``limit`` gets a window of its own.
    """
    windows: list[tuple[int, int]] = []
    start = last = None
    for second in due:
        if start is not None and second + 1 - start <= widest and counts.between(start, second + 1) <= limit:
            last = second
            continue
        if start is not None:
            windows.append((start, last + 1))
        start = last = second
    if start is not None:
        windows.append((start, last + 1))
    return windows


def halves(due: Sequence[int], counts: Counts, start: int, end: int) -> list[tuple[int, int]]:
    """A capped window's due seconds in two windows, cut where the known records are split evenly (by time
    when nothing is known)."""
    inside = [s for s in due if start <= s < end]
    if len(inside) < 2:
        return [(start, end)]
    total = counts.between(start, end)
    cut = inside[len(inside) // 2]
    if total > 0:
        for second in inside[1:]:
            if counts.between(start, second) * 2 >= total:
                cut = second
                break
    first = [s for s in inside if s < cut]
    second = [s for s in inside if s >= cut]
    return [(first[0], first[-1] + 1), (second[0], second[-1] + 1)]
