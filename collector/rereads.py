"""The re-reads of one poll: every second due again (follow, then settle), in windows packed from the counts
their earlier reads found, oldest first.

The newest window takes in new time too when the known records leave room (a sparse watch reads its settling
and its new seconds in one search). A capped answer proves nothing: its window is cut in two where the known
records (raised by what the answer showed) split evenly, and each half is searched again.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import datetime

from collector.packing import Counts, budget, halves, pack
from collector.planner import target_fill
from collector.schedule import Ages, due_follow

__all__ = ["Rereads"]

Window = tuple[int, int, str | None]


class Rereads:
    """The re-read windows ``(start, end, purpose)`` of one poll (``purpose`` ``None``: by its oldest second)."""

    def __init__(self, rows: Mapping[int, tuple[int, int]], ages: Ages, now: datetime, *, settled: int,
                 watermark: int, cap: int, widest: int) -> None:
        at = int(now.timestamp())
        settling = range(settled, min(watermark, at - ages.settle)) if ages.settle else range(0)
        self.due = [*due_follow(rows, ages, now), *settling]
        self._known = {s: c for s, (c, _stage) in rows.items()}
        self._counts = Counts(self._known)
        self._cap, self._widest, self._watermark = cap, widest, watermark
        self._queue: deque[Window] = deque((a, b, None) for a, b in pack(self.due, self._counts, limit=budget(cap),
                                                                          widest=widest))
        self._merged: tuple[int, int, int] | None = None

    def lengthen(self, rate: float | None, end: int) -> None:
        """Let the newest window go on into new time up to ``end`` as far as ``rate`` (records a second) leaves
        room under the cap; nothing without a rate."""
        first = self._watermark
        if not self._queue or rate is None or first >= end:
            return
        start, stop, purpose = self._queue[-1]
        room = target_fill(self._cap) - self._counts.between(start, first)
        new = min(end - first, self._widest - (first - start), int(room / rate) if rate > 0 else end - first)
        if stop > first or room <= 0 or new < 1:
            return
        self._queue[-1] = (start, first + new, purpose)
        self._merged = (start, first + new, stop)

    def __iter__(self) -> Rereads:
        return self

    def __next__(self) -> Window:
        if not self._queue:
            raise StopIteration
        return self._queue.popleft()

    def capped(self, start: int, end: int, shown: Iterable[int]) -> None:
        """The window ``[start, end)`` came back capped with records at ``shown`` seconds: search it again in
        two (a lengthened window again without its new time, which first reads then take)."""
        for second, count in Counter(shown).items():
            self._known[second] = max(self._known.get(second, 0), count)
        self._counts = Counts(self._known)
        if self._merged is not None and self._merged[:2] == (start, end):
            self._queue.appendleft((start, self._merged[2], "split"))
            self._merged = None
            return
        self._queue.extendleft((a, b, "split") for a, b in reversed(halves(self.due, self._counts, start, end)))
