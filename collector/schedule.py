"""When each second of a watch is due: its first read, its settle read, and its follow reads.

A second is first read once it is ``lag`` old, read once more at ``settle`` (late indexing, statuses that
changed meanwhile), and, while it still holds a message in a status that is not final, again at each
``follow`` age. Ages count from the second's end; a read at some age serves every stage due by then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from collector.config import STATUSES, CollectionConfig
from collector.state import WatchState
from collector.windows import Plan

__all__ = ["DONE", "SETTLE", "Ages", "Cycle", "Read", "due_follow", "followed", "moment", "stale_rows", "status_label"]

# Stages of a second already read: waiting for its settle read, or for nothing (its count kept for packing).
SETTLE, DONE = 0, -1


def status_label(status: str) -> str:
    """A status as a metric label: one of the documented statuses, else ``other`` (the label stays bounded)."""
    return status if status in STATUSES else "other"


@dataclass(frozen=True)
class Ages:
    """The ages at which a second is due, in seconds, and the statuses that end its follow-up."""

    settle: int
    follow: tuple[int, ...]
    final: frozenset[str]

    @classmethod
    def of(cls, cfg: CollectionConfig) -> Ages:
        """The ages ``cfg`` configures."""
        return cls(int(cfg.settle.total_seconds()), tuple(int(a.total_seconds()) for a in cfg.follow),
                   frozenset(cfg.final_statuses))

    def after(self, age: float, pending: bool) -> int:
        """The stage of a second read completely at ``age``: ``SETTLE`` before its settle age, else the first
        follow age still ahead (1-based) while it holds a status that is not final, else ``DONE``."""
        if self.settle and age < self.settle:
            return SETTLE
        if pending:
            for k, follow in enumerate(self.follow, 1):
                if age < follow:
                    return k
        return DONE

    def pending(self, statuses: Iterable[str]) -> bool:
        """Whether any of ``statuses`` is not final."""
        return any(s not in self.final for s in statuses)


@dataclass
class Cycle:
    """Where one poll stands: its ``now``, the ages, and the watch's frontiers (epoch seconds) as its chunks move
    them: everything before ``watermark`` had its first read, everything before ``settled`` its settle read."""

    now: datetime
    ages: Ages
    watermark: int = 0
    settled: int = 0
    tidied: bool = False

    @classmethod
    def begin(cls, state: WatchState, plan: Plan, cfg: CollectionConfig, now: datetime) -> Cycle:
        """The poll at ``now`` of a watch in ``state`` whose first reads ``plan`` covers."""
        cycle = cls(now, Ages.of(cfg))
        start = int(plan.start.timestamp())
        if state.watermark is None:
            cycle.watermark = cycle.settled = start
            return cycle
        cycle.watermark = int(state.watermark.timestamp())
        # A checkpoint that never kept a settle frontier (migrated from version 1) settles back from its watermark.
        horizon = state.horizon if state.horizon is not None else state.watermark - cfg.settle
        cycle.settled = min(int(horizon.timestamp()), cycle.watermark)
        if plan.ahead:
            # Seconds searched before their mail arrived (a clock that ran fast) are read as new again.
            cycle.watermark = cycle.settled = min(cycle.settled, start)
        return cycle


def due_follow(rows: Mapping[int, tuple[int, int]], ages: Ages, now: datetime) -> list[int]:
    """The seconds of ``rows`` due for a follow read at ``now``, oldest first."""
    at = int(now.timestamp())
    # A stage past the configured ages (follow was shortened since) is due at once: its read ends it or gives it
    # a stage that exists, so that no row waits for an age that will never come.
    return sorted(s for s, (_count, stage) in rows.items()
                  if stage > len(ages.follow) or (0 < stage and s + 1 + ages.follow[stage - 1] <= at))


@dataclass(frozen=True)
class Read:
    """One complete read of ``[start, end)`` (epoch seconds), made while the settle frontier stood at
    ``settled``: which seconds the watch still claims records of, and the rows the read leaves."""

    start: int
    end: int
    settled: int

    def census(self, received: Iterable[tuple[int, str]]) -> tuple[list[int], Counter[int], dict[int, set[str]]]:
        """The second each record of an answer counts in, given each one's (received second, status); and per
        second its record count and statuses. A record matched by another time than its received one (a stray)
        counts in the window's newest second: found again later, its key moves on with it, so that it is not
        forgotten while searches still find it. One received in the second at the window's end (an API that counts
        the end in) keeps that second, which the next window reads: its key must outlive this read's frontiers."""
        seconds, counts, statuses = [], Counter(), {}
        for at, status in received:
            second = at if self.start <= at <= self.end else max(self.start, self.end - 1)
            seconds.append(second)
            counts[second] += 1
            statuses.setdefault(second, set()).add(status)
        return seconds, counts, statuses

    def frontiers(self, watermark: int, ages: Ages, now: datetime) -> tuple[int, int]:
        """(watermark, settle frontier) after this read, from the watermark before it: each moves over the
        seconds the read covered from where it stood, the settle frontier only over those past ``settle``."""
        if self.start <= watermark < self.end:
            watermark = self.end
        if not ages.settle:
            return watermark, watermark
        if self.start <= self.settled < self.end:
            return watermark, max(self.settled, min(self.end, int(now.timestamp()) - ages.settle, watermark))
        return watermark, self.settled

    def live(self, second: int, rows: Mapping[int, tuple[int, int]]) -> bool:
        """Whether records of ``second`` are still the watch's to ship: not yet settled, or followed."""
        return second >= self.settled or rows.get(second, (0, DONE))[1] > 0

    def rows(self, rows: Mapping[int, tuple[int, int]], counts: Mapping[int, int], pending: Mapping[int, bool],
             ages: Ages, now: datetime) -> dict[int, tuple[int, int] | None]:
        """The rows of ``[start, end)`` after this read: its counts, and each live second's next stage."""
        at, changed = now.timestamp(), {}
        for second in range(self.start, self.end):
            old = rows.get(second)
            count = counts.get(second, 0)
            if self.live(second, rows):
                stage = ages.after(at - second - 1, pending.get(second, False))
            else:
                stage = DONE  # not claimed any more: only its count is kept
            row = None if count == 0 and stage <= SETTLE else (count, stage)
            # Waiting for its settle read or for nothing reads the same to every user of a row (the settle frontier
            # tells them apart): a read that finds the count unchanged and the second not followed writes nothing.
            if old is not None and row is not None and old[0] == row[0] and max(old[1], row[1]) <= SETTLE:
                continue
            if row != old:
                changed[second] = row
        return changed


def followed(rows: Mapping[int, tuple[int, int] | None], statuses: Mapping[int, set[str]], ages: Ages) -> Counter[str]:
    """The statuses (as metric labels) that keep the seconds of ``rows`` followed: not final, in a second
    whose next stage is a follow age."""
    found: Counter[str] = Counter()
    for second, row in rows.items():
        if row is not None and row[1] > SETTLE:
            found.update(status_label(s) for s in statuses.get(second, ()) if s not in ages.final)
    return found


def stale_rows(rows: Mapping[int, tuple[int, int]], settled: int) -> dict[int, None]:
    """Rows no read can use any more: done seconds older than every second still due."""
    oldest = min((s for s, (_c, stage) in rows.items() if stage > 0), default=settled)
    floor = min(oldest, settled)
    return {s: None for s, (_c, stage) in rows.items() if s < floor and stage <= 0}


def moment(second: int) -> datetime:
    """An epoch second as an aware UTC datetime."""
    return datetime.fromtimestamp(second, tz=timezone.utc)
