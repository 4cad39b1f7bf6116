"""Polls on time: every watch polls every interval on average, and an overrun costs no slot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.daemon import Collector
from collector.scheduler import build_scheduler, phase_offsets
from collector.simulator import MailFlow, Simulator
from tests.conftest import make_config

pytestmark = pytest.mark.slow


@pytest.fixture(name="quiet")
def _quiet(now: datetime) -> Iterator[Simulator]:
    flow = MailFlow(seed=3, start=now - timedelta(hours=1), end=now, count=200)
    with Simulator(flow, cap=10_000, clock=lambda: now) as sim:
        yield sim


def polls(collector: Collector, watch: str) -> float:
    value = collector.metrics.registry.get_sample_value("mimecast_collector_poll_runs_total",
                                                        {"watch": watch, "outcome": "success"})
    return value or 0.0


def busy(collector: Collector, watch: str) -> tuple[float, float]:
    """Polls finished and seconds spent polling, from the poll duration histogram."""
    registry = collector.metrics.registry
    labels = {"watch": watch}
    return (registry.get_sample_value("mimecast_collector_poll_duration_seconds_count", labels) or 0.0,
            registry.get_sample_value("mimecast_collector_poll_duration_seconds_sum", labels) or 0.0)


def run_for(collector: Collector, interval_s: float, span: float, warmup: float = 2.5) -> dict[str, float]:
    """Polls per watch over ``span`` seconds of a running scheduler, after ``warmup``."""
    scheduler = build_scheduler(collector.pollers, interval_s, collector.metrics, tracker=collector.tracker,
                                stop=collector.stop)
    names = [p.watch.name for p in collector.pollers]
    scheduler.start()
    try:
        time.sleep(warmup)
        before = {n: polls(collector, n) for n in names}
        time.sleep(span)
        return {n: polls(collector, n) - before[n] for n in names}
    finally:
        collector.stop.set()
        scheduler.shutdown(wait=True)


def test_every_watch_polls_every_interval_on_average(quiet: Simulator, tmp_path: Path) -> None:
    """Three watches, interval 1 s, 12 s counted: each polled about 12 times, none drifting or doubling."""
    watches = [{"name": f"w{i}", "to": "example.com"} for i in range(3)]
    collector = Collector(make_config(quiet, tmp_path, watches=watches, logging={"level": "info"},
                                      collection={"initial_lookback": "1m"}), registry=CollectorRegistry())
    try:
        counted = run_for(collector, 1.0, 12.0)
    finally:
        collector.close()
    print(f"polls in 12 s at interval 1 s: {counted}")
    for name, count in counted.items():
        assert 10.5 <= count <= 13.5, (name, counted)


def test_a_poll_that_overruns_its_interval_is_followed_by_the_next_at_once(quiet: Simulator, tmp_path: Path) -> None:
    """Searches take 1.3 s with interval 1 s: polls run back to back instead of every other slot.

    Skipping the slot that came due during the overrun polls every 2 s (6 in 12 s); back to back is
    12 s / 1.3 s, about 9.
    """
    quiet.latency = 1.3
    collector = Collector(make_config(quiet, tmp_path, collection={"initial_lookback": "1m"}),
                          registry=CollectorRegistry())
    try:
        scheduler_span = 12.0
        before = busy(collector, "inbound")
        counted = run_for(collector, 1.0, scheduler_span, warmup=3.0)["inbound"]
        done, seconds = (a - b for a, b in zip(busy(collector, "inbound"), before))
    finally:
        collector.close()
    mean = seconds / done
    print(f"overrunning polls: {counted} in {scheduler_span:g} s, mean poll {mean:.2f} s")
    assert mean > 1.0, "each poll overran its interval"
    assert counted >= 0.8 * scheduler_span / mean, (counted, mean)
    assert counted <= scheduler_span / 1.0 + 1


def test_watches_start_at_fixed_phases_spread_over_a_tenth_of_the_interval() -> None:
    """The spread is deterministic and bounded: no random delay to accumulate."""
    assert phase_offsets(4, 60.0) == [0.0, 1.5, 3.0, 4.5]
    assert phase_offsets(3, 3600.0) == [0.0, 10.0, 20.0]
    assert phase_offsets(1, 300.0) == [0.0]
    assert phase_offsets(0, 300.0) == []
