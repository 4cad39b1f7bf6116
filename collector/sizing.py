"""How wide a search to make, from what each second after the cursor is expected to hold.

:class:`Expectation` says how many records each second is expected to hold, from what the planner knows: the
profile of the last capped answer, those of earlier capped answers around it, the floor after a fluctuation
and where the quiet density resumes past a burst. :func:`filling` finds the width whose expected records reach
the count a search aims at; :func:`lengthened` stretches it where that saves the rest of the plan a search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from collector.answers import Profile

__all__ = ["Expectation", "filling", "lengthened", "target_fill"]

# How many standard deviations of a window's count (Poisson) to keep below result_cap: about one search in
# ten comes back capped and is searched again, the cheapest balance against under-filled searches (measured).
_Z = 1.3
# How far (standard deviations) a search lengthened to save the plan a whole search stays under result_cap:
# capped about one time in four, it saves one search in the other three.
_Z_ALIGN = 0.5
# A remainder this small (a share of the planned width) is searched with it rather than on its own: the
# fuller search is capped now and then, which costs less than the extra search it saves.
_TAIL = 0.1


def target_fill(cap: int, z: float = _Z) -> float:
    """The count to aim a search at: ``e`` with ``e + z * sqrt(e) = cap - 1``, at least one."""
    root = (-z + math.sqrt(z * z + 4 * max(cap - 1, 1))) / 2
    return max(1.0, root * root)


class Expectation:
    """The records expected in each second after ``cursor``: inside the last capped answer's window from its
    ``profile``, past it from the ``outers`` (earlier capped answers reaching further, newest first) or the
    density (``rate``, or ``resume``'s past where the quiet mail resumes), never below the ``floor`` before
    its end. Call it with a number of seconds after ``cursor``."""

    def __init__(self, cursor: datetime, rate: float, profile: Profile | None, outers: Sequence[Profile],
                 floor: tuple[datetime, float] | None, resume: tuple[datetime, float] | None, widest: int) -> None:
        self.rate, self.profile = rate, profile
        self.offset = int((cursor - profile.start).total_seconds()) if profile is not None else 0
        self.length = profile.length if profile is not None else 0
        self.floored, self.floor_rate = (int((floor[0] - cursor).total_seconds()), floor[1]) if floor else (0, 0.0)
        self.resumed, self.resume_rate = (int((resume[0] - cursor).total_seconds()), resume[1]) if resume \
            else (widest, 0.0)
        self.outers = [(outer, int((cursor - outer.start).total_seconds())) for outer in outers]

    def __call__(self, width: int) -> float:
        """The records expected in the second ``width`` seconds after the cursor."""
        profile, second = self.profile, self.offset + width
        if profile is not None and second < self.length:
            if profile.covers(second):
                return profile.at(second)
            if second < profile.first:
                return profile.before(second)
            # Past a cut last record, as dense as at the cut; past the last record of a sample, the rate.
            base = self.rate if profile.past is None else profile.past
        else:
            for outer, at in self.outers:
                if outer.covers(at + width):
                    return outer.at(at + width)
            base = self.resume_rate if width >= self.resumed else self.rate
        return max(base, self.floor_rate) if width < self.floored else base

    def stop(self, widest: int) -> int:
        """How far a search may run: to where the profile's records begin (a burst gets searches of its own),
        unless the cursor is already in the time guessed as dense as them."""
        profile = self.profile
        return profile.first - self.offset if profile is not None and self.offset < profile.lead_from else widest

    def shared(self, target: float, limit: int) -> float:
        """``target``, or less so that what is left of a burst before the quiet mail resumes is shared evenly:
        its last search then ends where the burst does, rather than a sliver past it that costs a search."""
        if not 0 < self.resumed < limit:
            return target
        burst = sum(map(self, range(self.resumed)))
        return burst / math.ceil(burst / target) if burst > target else target


def filling(expect: Callable[[int], float], target: float, limit: int) -> int | None:
    """The fewest seconds (at least one, under ``limit``) whose expected records reach ``target``, or
    ``None`` when all of ``limit`` holds fewer."""
    expected = 0.0
    for width in range(limit):
        expected += expect(width)
        if expected >= target:
            return max(1, width)
    return None


def lengthened(seconds: int, widest: int, limit: int, left: int, expect: Callable[[int], float],
               aims: tuple[float, int]) -> timedelta:
    """``seconds``, or longer (up to ``limit``) where the rest of the plan then needs a search fewer: all
    ``left`` seconds when only a sliver would remain, one that holds too few records for a search of its
    own; or up to where the rest fits in one ``widest`` window fewer, when the mail after it is quiet enough
    for the window's width to be what limits the rest, and the longer search is still likely to stay under
    the cap (a burst's last piece ending where the quiet windows after it line up). ``aims`` is (the count
    this search aims at, result_cap)."""
    (target, cap), rest = aims, left - seconds
    if 0 < rest <= seconds * _TAIL and left <= widest and sum(map(expect, range(seconds, left))) <= target * _TAIL:
        return timedelta(seconds=left)
    aligned = left - (math.ceil(rest / widest) - 1) * widest if rest > 0 else seconds
    if seconds < aligned <= limit and expect(aligned) * widest < target \
            and sum(map(expect, range(aligned))) <= target_fill(cap, _Z_ALIGN):
        return timedelta(seconds=aligned)
    return timedelta(seconds=seconds)
