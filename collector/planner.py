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
# ten comes back capped and is searched again, the cheapest balance against under-filled searches (measured).
_Z = 1.3
# A capped answer whose records span most of its window says nothing about how many more there were.
_SPREAD = 0.9
# How much denser than "exactly result_cap" to take a capped answer planned blind whose records spread over
# all of its window (a sample of unknown size): any multiple is possible, and a large step wastes at most one
# under-filled search when it is too high where each step too small wastes a whole capped one (measured
# with benchmarks/volume.py over 1 to 3,000 matching messages a minute: 8 beats 2, 4, 12 and 16).
_SPREAD_GUESS = 8.0
# A remainder this small (a share of the planned width) is searched with it rather than on its own: the
# fuller search is capped now and then, which costs less than the extra search it saves.
_TAIL = 0.1
# The weight of a complete answer in the density estimate: heavier lets each window's Poisson noise move
# the next window's size; lighter follows a change in the mail's pace more slowly.
_ALPHA = 0.25


def target_fill(cap: int) -> float:
    """The count to aim a search at: ``e`` with ``e + z * sqrt(e) = cap - 1``, at least one."""
    root = (-_Z + math.sqrt(_Z * _Z + 4 * max(cap - 1, 1))) / 2
    return max(1.0, root * root)


class _Profile:
    """Where a capped answer's records lie: a lower bound on each second's count, scaled by a guess.

    The records exist, so a second holds at least as many as the answer shows; ``scale`` guesses how many
    the answer left out (1 when it covered only part of its window, as if it kept the records of that
    part; ``_SPREAD_GUESS`` when they spread over all of it, a sample of unknown size) and is corrected by
    every complete search inside the covered seconds.
    """

    def __init__(self, start: datetime, end: datetime, received: Sequence[datetime]) -> None:
        self.start, self.end = start, end
        self.counts = Counter(int((r - start).total_seconds()) for r in received)
        seconds = max(int((end - start).total_seconds()), 1)
        self.first, self.last = min(self.counts), max(self.counts)
        # Records that reach close to an edge of the window cover it up to that edge.
        edge = max(1, seconds // 20)
        self.first = 0 if self.first < edge else self.first
        self.last = seconds - 1 if self.last >= seconds - edge else self.last
        spread = (self.last - self.first + 1) / seconds
        self.scale = _SPREAD_GUESS if spread >= _SPREAD else 1.0

    def covers(self, second: int) -> bool:
        """Whether ``second`` (from ``start``) lies between the answer's first and last record."""
        return self.first <= second <= self.last


class Density:
    """Matching records per second of received time for one watch; ``None`` until a search says.

    After a capped answer it also keeps that answer's profile, so the searches that follow are cut where
    its records lie (a burst gets narrow searches, the quiet time around it wide ones) instead of blindly.
    """

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate if rate is not None and math.isfinite(rate) and rate >= 0 else None
        self._profile: _Profile | None = None
        # After a fluctuation: (end, density) of the capped window, which its re-search must be sized by.
        self._floor: tuple[datetime, float] | None = None
        self._measured = self.rate is not None

    def width(self, cursor: datetime, cap: int, window: timedelta, left: timedelta) -> timedelta:
        """The next search's width from ``cursor``: whole seconds, at least one, at most ``window`` and ``left``."""
        widest = max(1, int(min(window, left).total_seconds()))
        target, rate = target_fill(cap), self.rate or 0.0
        if self._profile is not None and cursor >= self._profile.end:
            self._profile = None
        if self._floor is not None and cursor >= self._floor[0]:
            self._floor = None
        profile, floor = self._profile, self._floor
        if profile is None and floor is None:
            seconds = widest if rate <= 0 else int(target / rate)
            return self._whole(max(1, min(widest, seconds)), widest, left)
        offset, length, inside = 0, 0, False
        if profile is not None:
            offset = int((cursor - profile.start).total_seconds())
            length = int((profile.end - profile.start).total_seconds())
            inside = profile.covers(offset)
        floored, floor_rate = (int((floor[0] - cursor).total_seconds()), floor[1]) if floor else (0, 0.0)
        expected = 0.0
        for width in range(widest):
            second = offset + width
            if profile is not None and second < length and profile.covers(second) != inside:
                if not inside:
                    # Stop where the answer's records begin: a burst gets searches of its own.
                    return timedelta(seconds=max(1, width))
                inside = False  # past its last record the density is the rate again
            if profile is not None and inside and second < length:
                expected += profile.counts[second] * profile.scale
            else:
                expected += max(rate, floor_rate) if width < floored else rate
            if expected >= target:
                return self._whole(max(1, width), widest, left)
        return timedelta(seconds=widest)

    @staticmethod
    def _whole(seconds: int, widest: int, left: timedelta) -> timedelta:
        """``seconds``, or all of what is left when only a sliver would remain (a search of its own)."""
        rest = int(left.total_seconds()) - seconds
        if 0 < rest <= seconds * _TAIL and seconds + rest <= widest:
            return timedelta(seconds=seconds + rest)
        return timedelta(seconds=seconds)

    def complete(self, start: datetime, end: datetime, count: int, cap: int) -> None:
        """A complete answer: ``count`` records in ``[start, end)``."""
        profile = self._profile
        if profile is not None and start < profile.end:
            first, last = int((start - profile.start).total_seconds()), int((end - profile.start).total_seconds())
            shown = sum(profile.counts[s] for s in range(max(first, profile.first), min(last, profile.last + 1)))
            if shown and profile.covers(first) and profile.covers(last - 1):
                profile.scale = max(1.0, count / shown)
        seen = count / max((end - start).total_seconds(), 1.0)
        if self.rate is None or count < target_fill(cap) / 4:
            # A clearly under-filled answer is not noise: the mail really is that sparse here.
            self.rate = seen
        else:
            self.rate += (seen - self.rate) * _ALPHA
        self._measured = True

    def capped(self, start: datetime, end: datetime, cap: int, received: Sequence[datetime]) -> None:
        """A capped answer: at least ``cap`` records in ``[start, end)``; ``received`` are the times it holds."""
        seconds = max((end - start).total_seconds(), 1.0)
        at_least = cap / seconds
        # A window planned to fill most of the cap and found over it is a fluctuation; one planned blind may
        # hold any multiple of the cap: at least double, more when its records are a sample (_SPREAD_GUESS).
        planned = self._measured and (self.rate or 0.0) * seconds >= cap / 2
        inside = [r for r in received if start <= r < end]
        profile = _Profile(start, end, inside) if inside else None
        if planned:
            # A fluctuation: the capped window's re-search is sized by the cap it reached, the windows after
            # it by the density that moves only as much as after any other answer. An answer that kept the
            # records of one part of its window maps where to cut; a sample says no more than the cap does.
            rate = self.rate or 0.0
            self.rate = rate + max(at_least - rate, 0.0) * _ALPHA
            self._floor = (end, at_least)
            self._profile = profile if profile is not None and profile.scale == 1.0 else None
            return
        self._floor, self._measured = None, False
        self._profile = profile
        guess = self._profile.scale if self._profile is not None else _SPREAD_GUESS
        self.rate = max(at_least * max(guess, 2.0), self.rate or 0.0)
        if self._profile is not None and self._profile.scale == 1.0:
            # The answer kept the records of one part of its window: the rest is likely as dense (a guess).
            shown = (self._profile.last - self._profile.first + 1)
            self.rate = max(self.rate, len(inside) / shown)


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
