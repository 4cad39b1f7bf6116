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
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from collector.answers import SPREAD_GUESS, Profile, pace

__all__ = ["CapWatch", "Density", "ONE_SECOND", "target_fill"]

ONE_SECOND = timedelta(seconds=1)
# How many standard deviations of a window's count (Poisson) to keep below result_cap: about one search in
# ten comes back capped and is searched again, the cheapest balance against under-filled searches (measured).
_Z = 1.3
# How far (standard deviations) a search lengthened to save the plan a whole search stays under result_cap:
# capped about one time in four, it saves one search in the other three.
_Z_ALIGN = 0.5
# A remainder this small (a share of the planned width) is searched with it rather than on its own: the
# fuller search is capped now and then, which costs less than the extra search it saves.
_TAIL = 0.1
# How fast older answers fade from the density estimate (each keeps 1 - _ALPHA of what came before): faster
# lets each window's Poisson noise move the next window's size; slower follows a change of pace more slowly.
_ALPHA = 0.25
# After a newest-first guess of where a dense part begins proves too late, how much longer than what is known
# dense to guess it: each wrong guess then grows the known part by half. Doubling finds a long dense part in
# fewer searches, but overshoots a one-minute burst's start more often (measured with benchmarks/volume.py,
# twelve bursts of 500 in a minute: 159 searches at a half, 166 at one, 163 when peeling answer by answer).
_GROW = 0.5


def target_fill(cap: int, z: float = _Z) -> float:
    """The count to aim a search at: ``e`` with ``e + z * sqrt(e) = cap - 1``, at least one."""
    root = (-z + math.sqrt(z * z + 4 * max(cap - 1, 1))) / 2
    return max(1.0, root * root)


class Density:
    """Matching records per second of received time for one watch; ``None`` until a search says.

    After a capped answer it also keeps that answer's profile, so the searches that follow are cut where
    its records lie (a burst gets narrow searches, the quiet time around it wide ones) instead of blindly.
    """

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate if rate is not None and math.isfinite(rate) and rate >= 0 else None
        self._profile: Profile | None = None
        # The profiles of earlier capped answers whose windows reach past the current one's, oldest first: past
        # its end, the records they show still say where the mail is dense (a burst found from its end inwards).
        self._outer: list[Profile] = []
        # After a fluctuation: (end, density) of the capped window, which its re-search must be sized by.
        self._floor: tuple[datetime, float] | None = None
        self._measured = self.rate is not None
        # What the density rests on, (records, seconds) with older answers fading; None while it is a guess.
        self._evidence: tuple[float, float] | None = None
        # The density measured before a run of capped answers planned blind: the mail around a burst.
        self._prior: float | None = None
        # Past the end of a window found capped blind, the density resumes at what it was before: a burst
        # found that way is taken to end with its window (a guess; a capped answer past it corrects it).
        self._resume: tuple[datetime, float] | None = None
        # The last capped window, (start, width): its re-search must be narrower.
        self._retry: tuple[datetime, timedelta] | None = None

    def width(self, cursor: datetime, cap: int, window: timedelta, left: timedelta) -> timedelta:
        """The next search's width from ``cursor``: whole seconds, at least one, at most ``window`` and ``left``."""
        width = self._plan(cursor, cap, window, left)
        if self._retry is not None and self._retry[0] == cursor:
            # The re-search of a capped window is narrower than it, whatever the estimate says: the cycle
            # always ends, one second at the least.
            width = min(width, max(self._retry[1] - ONE_SECOND, ONE_SECOND))
        self._retry = None
        return width

    def _plan(self, cursor: datetime, cap: int, window: timedelta, left: timedelta) -> timedelta:
        """The width the estimate asks for."""
        widest, left_s = max(1, int(min(window, left).total_seconds())), int(left.total_seconds())
        if self._profile is not None and cursor >= self._profile.end:
            self._profile = None
        self._outer = [outer for outer in self._outer if cursor < outer.end]
        if self._resume is not None and cursor >= self._resume[0]:
            self.rate, self._resume, self._evidence = self._resume[1], None, None
        target, rate = target_fill(cap), self.rate or 0.0
        if self._floor is not None and cursor >= self._floor[0]:
            self._floor = None
        profile, floor = self._profile, self._floor
        resumed, resume_rate = (int((self._resume[0] - cursor).total_seconds()), self._resume[1]) \
            if self._resume else (widest, 0.0)
        if profile is None and floor is None and self._resume is None and not self._outer:
            seconds = widest if rate <= 0 else int(min(widest, target / rate))
            return self._whole(max(1, seconds), widest, widest, left_s, lambda width: rate, (target, cap))
        offset = int((cursor - profile.start).total_seconds()) if profile is not None else 0
        length = profile.length if profile is not None else 0
        floored, floor_rate = (int((floor[0] - cursor).total_seconds()), floor[1]) if floor else (0, 0.0)

        outers = [(outer, int((cursor - outer.start).total_seconds())) for outer in reversed(self._outer)]

        def expect(width: int) -> float:
            """The records expected in the second ``width`` seconds after ``cursor``."""
            second = offset + width
            if profile is not None and second < length:
                if profile.covers(second):
                    return profile.at(second)
                if second < profile.first:
                    return profile.before(second)
                # Past a cut last record, as dense as at the cut; past the last record of a sample, the rate.
                base = rate if profile.past is None else profile.past
            else:
                for outer, at in outers:
                    if outer.covers(at + width):
                        return outer.at(at + width)
                base = resume_rate if width >= resumed else rate
            return max(base, floor_rate) if width < floored else base

        # Stop where the answer's records begin (a burst gets searches of its own), unless already as dense.
        stop = profile.first - offset if profile is not None and offset < profile.lead_from else widest
        if self._resume is not None and 0 < resumed < min(widest, stop):
            # Share what is left of a burst evenly, so that its last search ends where the quiet mail resumes
            # rather than a sliver past it, which would cost a search of its own.
            burst = sum(map(expect, range(resumed)))
            target = burst / math.ceil(burst / target) if burst > target else target
        expected = 0.0
        for width in range(min(widest, stop)):
            expected += expect(width)
            if expected >= target:
                return self._whole(max(1, width), widest, min(widest, stop), left_s, expect, (target, cap))
        return timedelta(seconds=max(1, min(widest, stop)))

    @staticmethod
    def _whole(seconds: int, widest: int, limit: int, left: int, expect: Callable[[int], float],
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

    def complete(self, start: datetime, end: datetime, count: int, cap: int, received: Sequence[datetime] = ()) -> None:
        """A complete answer: ``count`` records in ``[start, end)``, received at ``received`` when given."""
        whole = max(int((end - start).total_seconds()), 1)
        offsets = sorted(int((r - start).total_seconds()) for r in received if start <= r < end)
        # Where the mail changed pace inside the answer (a burst began or ended there), only the part after
        # the change tells how dense the next seconds are: the whole answer would dilute or inflate it.
        records, seconds = pace(offsets, whole) if len(offsets) == count else (count, whole)
        seen = records / seconds
        profile = self._profile
        if profile is not None and start < profile.end:
            first, last = int((start - profile.start).total_seconds()), int((end - profile.start).total_seconds())
            shown = sum(profile.counts[s] for s in range(max(first, profile.first), min(last, profile.last + 1)))
            if shown and profile.covers(first) and profile.covers(last - 1):
                profile.found(count, shown)
            zone = profile.lead * max(min(last, profile.first) - max(first, profile.lead_from), 0)
            if count < target_fill(cap) / 4 <= zone / 2:
                # The guess was wrong: the dense part starts between this search's end and the records. Guessing
                # it at the records bets the whole gap on one search, capped if the burst began early in it.
                profile.lead_from = (last + profile.first) // 2
            elif profile.lead_from <= first and last <= profile.first:
                profile.lead = seen
            elif profile.past is not None and first > profile.last:
                profile.past = seen
            elif last <= profile.lead_from:
                profile.prior = seen
        expected = (self.rate or 0.0) * whole
        # An answer far outside what the density predicts (Poisson, three deviations) is not noise: the
        # mail's pace has changed here, and what came before says nothing about it.
        changed = count > 2 * expected + 3 * math.sqrt(expected) + 3 or count < expected / 2 - 3 * math.sqrt(expected)
        self._observe(records, seconds, restart=self.rate is None or changed or seconds < whole)
        self._measured = True

    def _observe(self, records: float, seconds: float, *, restart: bool) -> None:
        """Weigh an answer into the density by its size, older answers fading: a few records in a narrow
        search move it little, a full one much, and a guessed density gives way to the first answer."""
        if restart or self._evidence is None:
            self._evidence = (records, seconds)
        else:
            kept = 1 - _ALPHA
            self._evidence = (self._evidence[0] * kept + records, self._evidence[1] * kept + seconds)
        self.rate = self._evidence[0] / max(self._evidence[1], 1.0)

    def capped(self, start: datetime, end: datetime, cap: int, received: Sequence[datetime]) -> None:
        """A capped answer: at least ``cap`` records in ``[start, end)``; ``received`` are the times it holds."""
        seconds = max((end - start).total_seconds(), 1.0)
        at_least = cap / seconds
        self._retry = (start, end - start)
        # A window planned to fill most of the cap and found over it is a fluctuation; one planned blind may
        # hold any multiple of the cap: at least double, more when its records are a sample (SPREAD_GUESS).
        planned = self._measured and (self.rate or 0.0) * seconds >= cap / 2
        prior = self.rate if self._measured else self._prior
        inside = [r for r in received if start <= r < end]
        profile = Profile(start, end, inside, prior) if inside else None
        if planned and profile is not None and self._profile is None and self._resume is None \
                and profile.denser_than(self.rate or 0.0):
            # Planned on steady mail, an answer whose records show far denser mail in part of the window is no
            # fluctuation: a dense period began inside, by any multiple of the cap.
            planned = False
        if planned:
            # A fluctuation: the capped window's re-search is sized by the cap it reached, the windows after
            # it by the density that moves only as much as after any other answer. An answer that kept the
            # records of one part of its window maps where to cut; a sample says no more than the cap does.
            if at_least > (self.rate or 0.0):
                self._observe(cap, seconds, restart=False)  # a lower bound: it only ever raises the density
            self._floor = (end, at_least)
            self._profile = profile if profile is not None and not profile.sample else None
            return
        self._floor, self._measured, self._prior, self._evidence = None, False, prior, None
        self._outer = [outer for outer in self._outer if end < outer.end]
        previous = self._profile
        if previous is not None and not previous.sample and end < previous.end:
            self._outer.append(previous)
        self._profile = profile
        if profile is not None and profile.cut_before and previous is not None and previous.cut_before \
                and end <= previous.start + ONE_SECOND * previous.first:
            # The dense part began before the time guessed dense next to the records shown: peeling it from its
            # end an answer's worth at a time would cost a search per answer it holds. Guess it longer by a share
            # of what is known dense, so that each wrong guess grows the guess geometrically: its start is found
            # in the logarithm of its length, and between a quiet search and the records by halving (complete).
            known = (previous.start - start).total_seconds() + previous.first + previous.known - profile.first
            profile.known = int(known)
            profile.lead_from = max(profile.first - int(profile.known * _GROW), 0)
        if prior is not None and (self._resume is None or self._resume[0] < end):
            self._resume = (end, prior)
        if profile is None or profile.sample:
            self.rate = max(at_least * SPREAD_GUESS, self.rate or 0.0)
        else:
            # The answer kept the records of one part of its window: past them the mail is likely as dense as
            # at their end (a guess; the first complete answer there corrects it).
            self.rate = max(at_least, profile.tail)


class CapWatch:
    """Notices answers that keep stopping at one size below ``result_cap``: Mimecast's real cap is lower.

    Complete answers scatter around the planned fill; a hidden cap shows as a pile of answers at exactly
    the largest size ever seen, far more than at the sizes just below it. Only answers over new time
    count: re-reading an overlap returns the same records, at the same size, poll after poll.
    """

    _MIN_PILE = 5

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.sizes: Counter[int] = Counter()
        self.reported: int | None = None
        self._ends: dict[int, datetime] = {}

    def observe(self, size: int, start: datetime, end: datetime) -> int | None:
        """Record the size of an answer for ``[start, end)``; return the suspected real cap the first time it
        becomes evident."""
        if start < self._ends.get(size, start):
            return None  # time an answer of this size already covered: not new evidence
        self._ends[size] = end
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
