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
