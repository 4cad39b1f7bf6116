"""Mimecast's quota: paced by its headers, never spent to the last request, hostile headers bounded."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from collector.daemon import Collector
from collector.simulator import Bucket, Fault, Filter, MailFlow, Simulator, Window
from tests.conftest import make_config

FLT = Filter(to="example.com")


def keys_in(path: Path) -> list[tuple[str, str]]:
    """(id, status) of every raw event in the file."""
    return [(e["id"], e["status"]) for e in (json.loads(line)["tracked_email"]
                                             for line in path.read_text(encoding="utf-8").splitlines())]


def collector(sim: Simulator, tmp_path: Path, mimecast: dict[str, Any] | None = None,
              **collection: Any) -> Collector:
    cfg = make_config(sim, tmp_path, mimecast=mimecast or {},
                      collection={"result_cap": 100, "window": "15m", "lag": "0s", "initial_lookback": "1h",
                                  **collection})
    return Collector(cfg, registry=CollectorRegistry())


@pytest.fixture(name="dense")
def _dense(now: datetime) -> MailFlow:
    # About 2,000 matching message-statuses over the hour: some 25 searches at result_cap 100.
    return MailFlow(seed=31, start=now - timedelta(hours=1), end=now, count=3700)


def test_a_sufficient_quota_is_never_refused_nor_spent_below_the_reserve(dense: MailFlow, now: datetime,
                                                                       tmp_path: Path) -> None:
    """A bucket of 12, one back every 0.2 s, reserve 4: catch-up and two more polls pace instead of a 429."""
    quota = Bucket(12, 0.2)
    with Simulator(dense, cap=100, clock=lambda: now, quota=quota) as sim:
        c = collector(sim, tmp_path, {"quota_reserve": 4})
        try:
            with structlog.testing.capture_logs() as logs:
                results = [c.run_once(now=lambda: now)[0] for _ in range(3)]
        finally:
            c.close()
    assert all(r.ok for r in results)
    assert quota.refused == 0 and quota.low_water >= 4, (quota.refused, quota.low_water)
    assert len(sim.searches()) > 12, "the catch-up needed more searches than the bucket held"
    assert c.metrics.registry.get_sample_value("mimecast_collector_rate_limit_remaining") >= 4
    assert c.metrics.registry.get_sample_value("mimecast_collector_rate_limit_limit") == 12
    assert any(e["event"] == "mimecast.quota_pacing_started" for e in logs)
    assert sorted(keys_in(tmp_path / "out.ndjson")) == sorted(dense.ground_truth(FLT, now - timedelta(hours=1), now, now))


def test_a_share_reserve_holds_back_every_watch_of_the_daemon(dense: MailFlow, now: datetime, tmp_path: Path) -> None:
    """Four watches searching at once share one budget: the reserve (25% of 16) is never touched."""
    quota = Bucket(16, 0.15)
    watches = [{"name": f"w{i}", "to": "example.com"} for i in range(4)]
    with Simulator(dense, cap=100, clock=lambda: now, quota=quota) as sim:
        cfg = make_config(sim, tmp_path, mimecast={"quota_reserve": "25%"}, watches=watches,
                          collection={"result_cap": 100, "window": "15m", "lag": "0s", "initial_lookback": "1h"})
        c = Collector(cfg, registry=CollectorRegistry())
        from concurrent.futures import ThreadPoolExecutor
        try:
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(lambda p: p.run_cycle(now), c.pollers))
        finally:
            c.close()
    assert all(r.ok for r in results) and len(sim.searches()) > 16
    assert quota.refused == 0 and quota.low_water >= 4, (quota.refused, quota.low_water)


def test_a_quota_that_does_not_suffice_is_refused_at_most_once_per_reset_and_loses_nothing(
        dense: MailFlow, now: datetime, tmp_path: Path) -> None:
    """Other integrations drain the bucket: 429s come at most once per reset interval, the watermark lags
    (visible in the metric), and the next poll after they stop completes everything."""
    quota = Bucket(6, 0.3, other=3.5)
    with Simulator(dense, cap=100, clock=lambda: now, quota=quota) as sim:
        c = collector(sim, tmp_path, {"quota_reserve": 1, "max_rate_limit_wait": "2s"})
        try:
            (starved,) = c.run_once(now=lambda: now)
            refused = [r for r in sim.searches() if r.status == 429]
            lag_mark = c.metrics.registry.get_sample_value("mimecast_collector_watermark_timestamp_seconds",
                                                           {"watch": "inbound"})
            quota.other = 0.0
            time.sleep(2)
            (recovered,) = c.run_once(now=lambda: now)
        finally:
            c.close()
    assert not starved.ok and starved.error is not None and starved.error.error_type == "rate_limited"
    assert refused, "the starved quota was refused at least once"
    gaps = [b.answered_at - a.answered_at for a, b in zip(refused, refused[1:])]
    assert all(g >= 0.25 for g in gaps), f"more than one 429 per reset interval: {gaps}"
    assert lag_mark is None or lag_mark < now.timestamp()
    assert recovered.ok
    got = keys_in(tmp_path / "out.ndjson")
    assert len(got) == len(set(got)) and set(got) == dense.ground_truth(FLT, now - timedelta(hours=1), now, now)


def test_a_quota_that_refills_whole_each_window_is_used_again_in_every_window(now: datetime,
                                                                             tmp_path: Path) -> None:
    """20 searches per fixed 3-second window, Reset the time left in it, reserve 10%: a catch-up of some 190
    searches makes at least 16 in every window after the first, is never refused, and logs one pacing
    episode, not one per window."""
    flow = MailFlow(seed=5, start=now - timedelta(days=3), end=now, count=3000)
    quota, stop = Window(20, 3.0), threading.Event()
    with Simulator(flow, cap=1000, clock=lambda: now, quota=quota) as sim:
        cfg = make_config(sim, tmp_path, mimecast={"quota_reserve": "10%"},
                          collection={"window": "15m", "lag": "0s", "initial_lookback": "2d", "result_cap": 1000})
        c = Collector(cfg, registry=CollectorRegistry(), stop=stop)
        with structlog.testing.capture_logs() as logs:
            catch_up = threading.Thread(target=c.run_once, kwargs={"now": lambda: now})
            catch_up.start()
            while max(quota.served, default=0) < 5 and catch_up.is_alive():
                time.sleep(0.1)
            still_going = catch_up.is_alive()
            stop.set()
            catch_up.join()
        c.close()
    full = [quota.served[w] for w in range(1, 5)]
    assert still_going, "the catch-up was still going when the fifth window began"
    assert min(full) >= 16 and quota.refused == 0, (sorted(quota.served.items()), quota.refused)
    pacing = [e["event"] for e in logs if e["event"].startswith("mimecast.quota_pacing")]
    assert pacing == ["mimecast.quota_pacing_started"], pacing


@pytest.mark.parametrize(("reset", "remaining"), [("86400000000", "0"), ("inf", "0"), ("nan", "0"),
                                                  ("-5", "0"), ("1e400", "0"), ("0", "0"), ("12abc", "x")])
def test_absurd_rate_limit_headers_never_stall_or_crash(flow: MailFlow, now: datetime, tmp_path: Path,
                                                       reset: str, remaining: str) -> None:
    """Every answer says the quota is spent with a nonsensical reset: waits stay bounded, the poll completes."""
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": reset}
    with Simulator(flow, clock=lambda: now) as sim:
        body = json.dumps({"meta": {"status": 200}, "data": [{"trackedEmails": []}], "fail": []}).encode()
        sim.inject(Fault("canned", status=200, body=body, headers=headers), times=3)
        c = collector(sim, tmp_path, {"max_rate_limit_wait": "3s"}, result_cap=1000, initial_lookback="3h")
        began = time.monotonic()
        try:
            (result,) = c.run_once(now=lambda: now)
        finally:
            gate_left = c.client.gate.remaining()
            c.close()
    assert time.monotonic() - began < 60 and gate_left <= 3.0
    assert result.ok, result.error


@pytest.mark.parametrize("reset", ["0", "86400000000", "inf"])
def test_a_429_storm_with_absurd_resets_is_bounded(flow: MailFlow, now: datetime, tmp_path: Path, reset: str) -> None:
    """429 on every answer with reset 0, 1,000 days or inf: a bounded number of tries, a clean failure, and
    the shared gate never closed longer than max_rate_limit_wait."""
    with Simulator(flow, clock=lambda: now) as sim:
        sim.periodic = (1, Fault("canned", status=429, body=b'{"detail": "Over throttling limit"}',
                                 headers={"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": "0"}))
        c = collector(sim, tmp_path, {"max_rate_limit_wait": "2s"}, result_cap=1000, initial_lookback="3h")
        try:
            (result,) = c.run_once(now=lambda: now)
            gate_left = c.client.gate.remaining()
        finally:
            c.close()
    assert not result.ok and result.error is not None and result.error.error_type == "rate_limited"
    assert 1 <= len(sim.searches()) <= 31 and gate_left <= 2.0


def test_a_trickle_of_retryable_failures_inside_http_200_converges(flow: MailFlow, now: datetime,
                                                                  tmp_path: Path) -> None:
    """Every third search answers a retryable fail inside HTTP 200: retried, counted, and everything ships."""
    with Simulator(flow, cap=100, clock=lambda: now) as sim:
        sim.periodic = (3, Fault("fail200", code="err_temporary", retryable=True))
        c = collector(sim, tmp_path, initial_lookback="3h")
        try:
            (result,) = c.run_once(now=lambda: now)
        finally:
            c.close()
    assert result.ok, result.error
    assert c.metrics.registry.get_sample_value("mimecast_collector_api_retries_total", {"reason": "api_fail"}) >= 3
    got = keys_in(tmp_path / "out.ndjson")
    assert len(got) == len(set(got)) and set(got) == flow.ground_truth(FLT, now - timedelta(hours=3), now, now)
