"""What a perfect client could do against a flow: the yardstick for searches made."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from collector.simulator.flow import Filter, MailFlow

__all__ = ["ideal_searches", "lasting", "match_share"]


def match_share(flt: Filter, samples: int = 20_000) -> float:
    """The share of the simulator's messages that ``flt`` matches, counted over ``samples`` of them: what a
    flow of N messages a minute gives a watch, so that a benchmark or test can ask for N matching a minute."""
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    flow = MailFlow(seed=0, start=start, end=start + timedelta(seconds=samples), count=samples)
    return sum(flt.matches(m) for m in flow.between(flow.start, flow.end)) / samples


def ideal_searches(flow: Any, flt: Filter, start: datetime, end: datetime, at: datetime, *, cap: int,
                   window: timedelta) -> int:
    """The fewest whole-second windows, each holding fewer than ``cap`` matching records and none wider
    than ``window``, that cover ``[start, end)`` (never fewer than the span over ``window``).

    A second that alone holds ``cap`` or more records counts as one window (no search can do better).
    Greedy from the oldest second is optimal: a window can always be extended while it stays under both
    limits, and extending never makes the rest harder to cover.
    """
    per_second = Counter(int((m.received - start).total_seconds()) for m, _s, _i in flow.visible(flt, start, end, at))
    span, widest = int((end - start).total_seconds()), int(window.total_seconds())
    windows, cursor = 0, 0
    while cursor < span:
        held, width = per_second[cursor], 1
        while cursor + width < span and width < widest and held + per_second[cursor + width] < cap:
            held += per_second[cursor + width]
            width += 1
        windows += 1
        cursor += width
    return windows


def lasting(flow: Any, flt: Filter, start: datetime, end: datetime, at: datetime,
            minimum: timedelta) -> set[tuple[str, str]]:
    """The ``(mimecast id, status)`` pairs of messages received in ``[start, end)`` that a search could find
    for at least ``minimum`` by ``at`` (a status still current at ``at`` counts the time until then).

    What a collector that reads each second at least every ``minimum`` must have shipped; with
    ``minimum`` 0, every status a search could ever have shown by ``at``.
    """
    return {(m.id, status) for m in flow.between(start, end) if flt.matches(m)
            for status, since, until in m.spans(at) if until - since >= minimum}
