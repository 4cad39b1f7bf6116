"""Window math, with the clock frozen by freezegun (no scheduler involved)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from freezegun import freeze_time

from collector.config import CollectionConfig
from collector.windows import RETENTION, plan_windows

T = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def cfg(**kw: object) -> CollectionConfig:
    values = {"interval": timedelta(minutes=5), "window": timedelta(minutes=15), "lag": timedelta(minutes=2),
              "settle": timedelta(minutes=10), "initial_lookback": timedelta(hours=1), "result_cap": 100,
              "state_file": Path("/tmp/s.json"), "dead_letter_file": Path("/tmp/d.ndjson")}
    values.update(kw)
    return CollectionConfig(**values)  # type: ignore[arg-type]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@freeze_time(T + timedelta(microseconds=654321))
def test_first_run_looks_back_and_stops_at_lag() -> None:
    """No watermark: from now - initial_lookback to now - lag, in 15-minute chunks of whole seconds."""
    plan = plan_windows(None, utc_now(), cfg())
    assert plan.chunks[0][0] == T - timedelta(hours=1)
    assert plan.chunks[-1][1] == T - timedelta(minutes=2)
    assert [e - s for s, e in plan.chunks] == [timedelta(minutes=15)] * 3 + [timedelta(minutes=13)]
    assert all(s.microsecond == 0 and e.microsecond == 0 for s, e in plan.chunks)
    assert all(a[1] == b[0] for a, b in zip(plan.chunks, plan.chunks[1:])), "chunks are contiguous"


@freeze_time(T)
def test_next_run_reads_new_time_from_the_watermark() -> None:
    """With a watermark the first reads start at it (settle and follow reads are planned from the checkpoint)."""
    plan = plan_windows(T - timedelta(minutes=7), utc_now(), cfg())
    assert plan.chunks == ((T - timedelta(minutes=7), T - timedelta(minutes=2)),)


@freeze_time(T)
def test_long_gap_is_split_oldest_first() -> None:
    """A week of catch-up becomes many chunks, oldest first, none longer than window."""
    plan = plan_windows(T - timedelta(days=7), utc_now(), cfg())
    assert len(plan.chunks) == (7 * 24 * 60 - 2) // 15 + 1
    assert plan.chunks == tuple(sorted(plan.chunks))
    assert max(e - s for s, e in plan.chunks) == timedelta(minutes=15)
    assert plan.gap == timedelta(0)


@freeze_time(T)
def test_history_past_retention_is_a_reported_gap() -> None:
    """A watermark 40 days old searches only the last 30 days and reports the 10 days lost."""
    watermark = T - timedelta(days=40)
    plan = plan_windows(watermark, utc_now(), cfg())
    assert plan.chunks[0][0] >= T - RETENTION
    assert plan.gap > timedelta(days=9, hours=23)
    assert plan.gap_start == watermark


@freeze_time(T)
def test_nothing_to_do_inside_the_lag() -> None:
    """A watermark already at now - lag plans no first read."""
    assert plan_windows(T - timedelta(minutes=2), utc_now(), cfg()).chunks == ()


@freeze_time(T)
def test_initial_lookback_is_never_beyond_retention() -> None:
    """Even a 30-day lookback starts inside Mimecast's retention."""
    plan = plan_windows(None, utc_now(), cfg(initial_lookback=timedelta(days=30)))
    assert plan.chunks[0][0] > T - RETENTION


@freeze_time(T)
def test_a_longer_settle_does_not_move_first_reads_back() -> None:
    """Raising settle from 10m to 1h changes when seconds are read again, not where first reads start."""
    plan = plan_windows(T - timedelta(minutes=7), utc_now(), cfg(settle=timedelta(hours=1)),
                        remembered_from=T - timedelta(minutes=17))
    assert plan.start == T - timedelta(minutes=7)


@freeze_time(T)
def test_a_watermark_past_the_present_is_searched_again() -> None:
    """A watermark 28 minutes ahead (a clock stepped back) rewinds past the present by as much, plus settle."""
    plan = plan_windows(T + timedelta(minutes=26), utc_now(), cfg())
    assert plan.ahead == timedelta(minutes=28)
    assert plan.start == T - timedelta(minutes=2 + 28 + 10) and plan.end == T - timedelta(minutes=2)
