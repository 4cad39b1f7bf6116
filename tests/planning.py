"""What the planner's tests share: a fixed start, widths in whole seconds, and answers as Mimecast may list them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from collector.planner import Density

T0 = datetime(2026, 11, 28, 9, tzinfo=timezone.utc)
CAP = 100
WINDOW = timedelta(minutes=15)


def at(second: float) -> datetime:
    """``second`` seconds after ``T0``."""
    return T0 + timedelta(seconds=second)


def seconds(width: timedelta) -> int:
    """A width in whole seconds."""
    return int(width.total_seconds())


def newest_first(received: list[datetime]) -> list[datetime]:
    """``received`` as an answer that lists the newest records first holds them."""
    return sorted(received, reverse=True)


def quiet() -> Density:
    """A density measured on a quiet quarter hour: 10 records in 900 seconds."""
    density = Density()
    density.complete(at(-900), T0, 10, CAP)
    return density


def sample(received: list[datetime]) -> list[datetime]:
    """``received`` as an answer that lists its records in no order holds them."""
    return received[1::2] + received[::2]


def replay(received: list[datetime], start: datetime, end: datetime, order: str) -> tuple[int, int]:
    """(searches, capped ones) that the poller's loop makes over ``[start, end)`` with the planner alone, each
    answer holding the records of ``received`` in its window as Mimecast may list them (``order``)."""
    import bisect
    import random

    received, shuffle = sorted(received), random.Random(7)
    density, cursor, searches, capped = Density(), start, 0, 0
    while cursor < end:
        width = density.width(cursor, CAP, WINDOW, end - cursor)
        found = received[bisect.bisect_left(received, cursor):bisect.bisect_left(received, cursor + width)]
        kept = {"oldest": found[:CAP], "newest": found[::-1][:CAP]}.get(order) \
            or shuffle.sample(found, min(CAP, len(found)))
        searches += 1
        if len(found) >= CAP and width > timedelta(seconds=1):
            density.capped(cursor, cursor + width, CAP, kept)
            capped += 1
            continue
        density.complete(cursor, cursor + width, min(len(found), CAP), CAP, kept)
        cursor += width
    return searches, capped
