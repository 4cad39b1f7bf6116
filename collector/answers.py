"""What an answer's received times show the planner: where a capped answer's records lie, and where a complete
answer's mail changed pace.

Which records a capped answer keeps, and in what order, is undocumented: what is read here only guides the
size of the next searches, never decides that any part of a window is complete.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

__all__ = ["Profile", "SPREAD_GUESS", "pace"]

# A gap between an answer's outermost record and its window's edge is a cut when the density next to that
# record would put this many records in it (a sample spread over the window shows one about once in 120).
_CUT = 8.0
# How far before a cut first record the mail is taken to be as dense as next to it, in the time the answer's
# records take at that density: a burst seldom starts exactly where an answer's records do.
_LEAD = 3
# How many records next to an edge tell whether the gap to it is a cut: few, so that a lone record of the
# quiet mail around a burst is not taken for a dense part's edge.
_NEAR = 5
# How much denser than "exactly result_cap" to take a capped answer planned blind whose records spread over
# all of its window (a sample of unknown size): any multiple is possible, and a large step wastes at most one
# under-filled search when it is too high where each step too small wastes a whole capped one (measured
# with benchmarks/volume.py over 1 to 3,000 matching messages a minute: 8 beats 2, 4, 12 and 16).
SPREAD_GUESS = 8.0
# A sample shows a few records a second at most, by chance: each second is guessed from the records this many
# seconds either side of it as well, so that a search is not sized by the luck of its own seconds alone.
_SMOOTH = 5
# How much better (log-likelihood) two steady paces must explain a complete answer's records than one, to take
# the later pace as the mail's now: steady mail shows such a gain in at most one answer in 300 (measured from
# 0.05 to 6 records a second), where a burst's edge shows tens.
_CHANGE = 8.0
# How many times denser than planned the records next to a cut must lie for a capped answer to be a dense period
# rather than a fluctuation (the 20 records that measure it spread by about a quarter).
_DENSER = 3.0
_SECOND = timedelta(seconds=1)


def _density(offsets: Sequence[int], k: int) -> float:
    """Records per second over the first ``k + 1`` of ``offsets`` (seconds, in order from the edge inwards)."""
    k = min(len(offsets) - 1, max(1, k))
    return k / max(abs(offsets[k] - offsets[0]), 1) if k > 0 else 0.0


def pace(offsets: Sequence[int], seconds: int) -> tuple[int, int]:
    """(records, seconds) of a complete answer's part after its last change of pace, or of all of it.

    ``offsets`` are its records' seconds from its start, in order. The split is the one that best explains
    them as two steady paces (Poisson likelihood); it counts only when it explains them far better than one
    pace (``_CHANGE``), as where a burst begins or ends.
    """
    n, best, split, before = len(offsets), _CHANGE, 0, 0
    after = n

    def fit(k: int, s: int) -> float:
        return k * math.log(k / s) - k if k else 0.0

    one = fit(n, seconds)
    for t in sorted({*offsets, *(o + 1 for o in offsets)}):
        while before < n and offsets[before] < t:
            before += 1
        if 0 < t < seconds and (gain := fit(before, t) + fit(n - before, seconds - t) - one) > best:
            best, split, after = gain, t, n - before
    return after, seconds - split


class Profile:
    """Where a capped answer's records lie: a lower bound on each second's count, scaled by a guess.

    The records exist, so a second holds at least as many as the answer shows. Records listed in order
    that stop well short of an edge of the window (further than the density next to them explains) mark
    where the answer was cut: it kept the records of one part (``scale`` 1), and the mail beyond the cut
    is likely as dense for a while (``lead`` seconds before the first record). Records in no order, or
    that reach both edges, are a sample of unknown size (``scale`` ``SPREAD_GUESS``). Every complete
    search inside corrects both, the scale by all those searches found against what the answer showed.
    """

    def __init__(self, start: datetime, end: datetime, received: Sequence[datetime], prior: float | None) -> None:
        self.start, self.end = start, end
        listed = [int((r - start).total_seconds()) for r in received]
        offsets = sorted(listed)
        self.counts = Counter(offsets)
        seconds = self.length = max(int((end - start).total_seconds()), 1)
        head, tail = _density(offsets, _NEAR), _density(offsets[::-1], _NEAR)
        # Records listed oldest first can only have been cut after the last of them, records listed newest
        # first only before the first; records listed in no order are a sample.
        cut_before = listed == offsets[::-1] and offsets[0] * head >= _CUT
        cut_after = listed == offsets and (seconds - 1 - offsets[-1]) * tail >= _CUT
        head, tail = _density(offsets, len(offsets) // 5), _density(offsets[::-1], len(offsets) // 5)
        self.first = offsets[0] if cut_before else 0
        self.last = offsets[-1] if cut_after else seconds - 1
        self.sample, self.scale = (False, 1.0) if cut_before or cut_after else (True, SPREAD_GUESS)
        # Before a cut first record: as dense as next to it for a while, then as measured before the answer.
        self.lead_from = max(self.first - int(_LEAD * len(offsets) / max(head, 1e-9)), 0) if prior is not None else 0
        self.lead, self.prior, self.tail = head, prior or 0.0, tail
        self.past = tail if cut_after else None
        self.cut_before = cut_before
        # Whether the records show two paces (a sample keeps the shape of the mail it was drawn from).
        self._changed = self.sample and pace(offsets, seconds)[1] < seconds
        # How long from its first record on the mail is known dense: at first, the time its records take there.
        self.known = max(int(len(offsets) / max(head, 1e-9)), 1)
        self._found: tuple[int, int] = (0, 0)

    def denser_than(self, rate: float) -> bool:
        """Whether part of the window holds mail far denser than ``rate`` a second: a sample that crowds into
        part of it, or records next to a cut that lie several times closer than ``rate`` would put them."""
        if self.sample:
            return self._changed
        return (self.lead if self.cut_before else self.tail) > _DENSER * rate

    def covers(self, second: int) -> bool:
        """Whether ``second`` (from ``start``) lies between the answer's first and last record."""
        return self.first <= second <= self.last

    def at(self, second: int) -> float:
        """The records guessed for ``second``, which it covers: a sample's from the seconds around it too."""
        k = _SMOOTH if self.sample else 0  # and only seconds of the window: past it nothing was searched
        around = range(max(second - k, 0), min(second + k + 1, self.length))
        return sum(self.counts[s] for s in around) / len(around) * self.scale

    def found(self, count: int, shown: int) -> None:
        """A complete search inside found ``count`` records where the answer showed ``shown``."""
        self._found = (self._found[0] + count, self._found[1] + shown)
        self.scale = max(1.0, self._found[0] / self._found[1])

    def learn(self, first: int, last: int, count: int, seen: float, target: float) -> None:
        """A complete search of seconds ``[first, last)`` of the window found ``count`` records, the latest
        part of it ``seen`` a second; a search aims at ``target`` records."""
        shown = sum(self.counts[s] for s in range(max(first, self.first), min(last, self.last + 1)))
        if shown and self.covers(first) and self.covers(last - 1):
            self.found(count, shown)
        zone = self.lead * max(min(last, self.first) - max(first, self.lead_from), 0)
        if count < target / 4 <= zone / 2:
            # The guess was wrong: the dense part starts between this search's end and the records. Guessing
            # it at the records bets the whole gap on one search, capped if the burst began early in it.
            self.lead_from = (last + self.first) // 2
        elif self.lead_from <= first and last <= self.first:
            self.lead = seen
        elif self.past is not None and first > self.last:
            self.past = seen
        elif last <= self.lead_from:
            self.prior = seen

    def guess_longer(self, earlier: Profile, grow: float) -> bool:
        """Whether this answer (newest first) ended before the records of the ``earlier`` one, whose re-search
        it is: then the dense part began before the time guessed dense next to them. Peeling it from its end an
        answer's worth at a time would cost a search per answer it holds, so the guess reaches back ``grow``
        times as far as the time known dense: each wrong guess grows it geometrically, and its start is found
        in the logarithm of its length (between a quiet search and the records by halving, :meth:`learn`)."""
        if not (self.cut_before and earlier.cut_before and self.end <= earlier.start + (earlier.first * _SECOND)):
            return False
        self.known = int((earlier.start - self.start).total_seconds() + earlier.first + earlier.known - self.first)
        self.lead_from = max(self.first - int(self.known * grow), 0)
        return True

    def before(self, second: int) -> float:
        """The density guessed for ``second``, before the first record."""
        return self.lead if second >= self.lead_from else self.prior
