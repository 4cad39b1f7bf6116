"""The shared rate gate measured through a real scrape: seconds held once for all watches, pacing as it happens."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.daemon import Collector
from collector.metrics import Metrics, serve_metrics
from collector.mimecast.client import MimecastClient
from collector.simulator import Fault, MailFlow, Simulator, Window
from tests.conftest import make_config


@contextmanager
def serving(metrics: Metrics) -> Iterator[str]:
    """The metrics of ``metrics`` served on a free loopback port; yields the scrape URL."""
    server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def scrape(url: str) -> dict[str, float]:
    """Every unlabelled sample of a real scrape, by name."""
    text = requests.get(url, timeout=5).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_two_watches_refused_at_once_count_the_gate_closed_once(flow: MailFlow, now: datetime,
                                                                tmp_path: Path) -> None:
    """Two watches in flight together both get a 429 asking for 1.5 s: the gate was closed 1.5 s, and the
    wait counter says so, not 3 s (one wait per watch)."""
    with Simulator(flow, cap=1000) as sim:
        config = make_config(sim, tmp_path, watches=[{"name": "a", "to": "example.com"},
                                                     {"name": "b", "from": "example.com"}])
        metrics = Metrics(CollectorRegistry(), process=False)
        client = MimecastClient(config.mimecast, metrics=metrics)
        client.check_credentials()
        sim.inject(Fault("rate_limit", reset_ms=1500, delay=0.5), times=2)
        searches = [threading.Thread(target=client.search, args=(w, now - timedelta(hours=1), now))
                    for w in config.watches]
        with serving(metrics) as url:
            for search in searches:
                search.start()
            for search in searches:
                search.join()
            seen = scrape(url)
        client.close()
    limited = [r for r in sim.searches() if r.status == 429]
    assert len(limited) == 2 and abs(limited[0].answered_at - limited[1].answered_at) < 0.5
    assert seen["mimecast_collector_rate_limited_total"] == 2
    assert 1.4 <= seen["mimecast_collector_rate_limit_wait_seconds_total"] < 2.5, seen


def test_pacing_is_measured_once_for_every_watch_it_holds_back(now: datetime, tmp_path: Path) -> None:
    """Three watches catch up against 12 searches per 4-second window, reserve 2 (a window long enough that a busy
    machine still fits its searches in it): while they are held back the
    scrape says pacing is on, and the paced seconds grow with the wall clock, not three times as fast."""
    flow = MailFlow(seed=8, start=now - timedelta(days=2), end=now, count=2000)
    watches = [{"name": f"w{i}", "to": "example.com"} for i in range(3)]
    quota, stop = Window(12, 4.0), threading.Event()
    with Simulator(flow, cap=1000, clock=lambda: now, quota=quota) as sim:
        cfg = make_config(sim, tmp_path, mimecast={"quota_reserve": 2}, watches=watches,
                          collection={"window": "15m", "lag": "0s", "initial_lookback": "1d", "result_cap": 1000})
        c = Collector(cfg, registry=CollectorRegistry(), stop=stop)
        with serving(c.metrics) as url:
            before = scrape(url)
            began = time.monotonic()
            polls = [threading.Thread(target=p.run_cycle, args=(now,)) for p in c.pollers]
            for poll in polls:
                poll.start()
            while max(quota.served, default=0) < 3:
                time.sleep(0.05)
            during = scrape(url)
            elapsed = time.monotonic() - began
            stop.set()
            for poll in polls:
                poll.join()
        c.close()
    assert before["mimecast_collector_quota_pacing"] == 0
    assert before["mimecast_collector_quota_paced_seconds_total"] == 0
    assert during["mimecast_collector_quota_pacing"] == 1
    paced = during["mimecast_collector_quota_paced_seconds_total"]
    assert 1.0 <= paced <= elapsed, (paced, elapsed)
    # Ten a window are free above the reserve; three watches in flight at once may leave one unused at a window's
    # end (the gate counts searches in flight against the budget), where a gate that never speeds up makes one or two.
    assert quota.refused == 0 and min(quota.served[w] for w in (1, 2)) >= 8, sorted(quota.served.items())
