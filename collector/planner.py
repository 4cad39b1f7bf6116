"""Sizing searches from what Mimecast has shown: a density estimate, and a watch on its real per-answer cap.

A search that returns ``result_cap`` records may be truncated and is searched again narrower; one that
returns fewer is complete. Every other search is wasted quota, so each search is sized to fill most of
``result_cap`` without reaching it, from the density of matching mail seen so far. The records of a
capped answer (their received times) only sharpen that estimate: which records a capped answer keeps,
and in what order, is undocumented, so they never decide that any part of a window is complete.

The parts: :class:`Density` keeps what the answers showed and reads each new one (:meth:`Density.complete`,
:meth:`Density.capped`); :mod:`collector.answers` reads a capped answer's records (:class:`Profile`) and
where a complete one's mail changed pace; :mod:`collector.sizing` turns all of it into the records expected
in each second after the cursor, and those into a width.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from collector.answers import SPREAD_GUESS, Profile, pace
from collector.sizing import Expectation, filling, lengthened, target_fill

__all__ = ["CapWatch", "Density", "ONE_SECOND", "target_fill"]

ONE_SECOND = timedelta(seconds=1)
# How fast older answers fade from the density estimate (each keeps 1 - _ALPHA of what came before): faster
# lets each window's Poisson noise move the next window's size; slower follows a change of pace more slowly.
_ALPHA = 0.25
# After a newest-first guess of where a dense part begins proves too late, how much longer than what is known
# dense to guess it: each wrong guess then grows the known part by half. Doubling finds a long dense part in
# fewer searches, but overshoots a one-minute burst's start more often (measured with benchmarks/volume.py,
# twelve bursts of 500 in a minute: 159 searches at a half, 166 at one, 163 when peeling answer by answer).
_GROW = 0.5


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
        self._pass(cursor)
        target, rate = target_fill(cap), self.rate or 0.0
        if self._profile is None and self._floor is None and self._resume is None and not self._outer:
            seconds = widest if rate <= 0 else int(min(widest, target / rate))
            return lengthened(max(1, seconds), widest, widest, left_s, lambda width: rate, (target, cap))
        expect = Expectation(cursor, rate, self._profile, self._outer[::-1], self._floor, self._resume, widest)
        limit = min(widest, expect.stop(widest))
        target = expect.shared(target, limit)
        seconds = filling(expect, target, limit)
        if seconds is None:
            return timedelta(seconds=max(1, limit))
        return lengthened(seconds, widest, limit, left_s, expect, (target, cap))

    def _pass(self, cursor: datetime) -> None:
        """Forget what lies behind ``cursor``: profiles and a floor whose windows it passed, and past where the
        quiet mail resumes, take up its density again."""
        if self._profile is not None and cursor >= self._profile.end:
            self._profile = None
        self._outer = [outer for outer in self._outer if cursor < outer.end]
        if self._resume is not None and cursor >= self._resume[0]:
            self.rate, self._resume, self._evidence = self._resume[1], None, None
        if self._floor is not None and cursor >= self._floor[0]:
            self._floor = None

    def complete(self, start: datetime, end: datetime, count: int, cap: int, received: Sequence[datetime] = ()) -> None:
        """A complete answer: ``count`` records in ``[start, end)``, received at ``received`` when given."""
        whole = max(int((end - start).total_seconds()), 1)
        offsets = sorted(int((r - start).total_seconds()) for r in received if start <= r < end)
        # Where the mail changed pace inside the answer (a burst began or ended there), only the part after
        # the change tells how dense the next seconds are: the whole answer would dilute or inflate it.
        records, seconds = pace(offsets, whole) if len(offsets) == count else (count, whole)
        profile = self._profile
        if profile is not None and start < profile.end:
            profile.learn(int((start - profile.start).total_seconds()), int((end - profile.start).total_seconds()),
                          count, records / seconds, target_fill(cap))
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
            self._fluctuation(end, cap / seconds, seconds, cap, profile)
        else:
            self._blind(end, cap / seconds, prior, profile)

    def _fluctuation(self, end: datetime, at_least: float, seconds: float, cap: int, profile: Profile | None) -> None:
        """A window planned to hold most of the cap held more: its re-search is sized by the cap it reached, the
        windows after it by the density that moves only as much as after any other answer. An answer that kept
        the records of one part of its window maps where to cut; a sample says no more than the cap does."""
        if at_least > (self.rate or 0.0):
            self._observe(cap, seconds, restart=False)  # a lower bound: it only ever raises the density
        self._floor = (end, at_least)
        self._profile = profile if profile is not None and not profile.sample else None

    def _blind(self, end: datetime, at_least: float, prior: float | None, profile: Profile | None) -> None:
        """A window planned on other mail held at least ``at_least`` a second, any multiple of what was
        planned: its records say where, and the density before it is kept to resume past it."""
        self._floor, self._measured, self._prior, self._evidence = None, False, prior, None
        self._outer = [outer for outer in self._outer if end < outer.end]
        previous = self._profile
        if previous is not None and not previous.sample and end < previous.end:
            self._outer.append(previous)
        self._profile = profile
        if profile is not None and previous is not None:
            profile.guess_longer(previous, _GROW)
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
