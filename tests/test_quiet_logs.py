"""A quiet steady state: one summary line per poll at info, chunk detail at debug, incidents once not per item."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.daemon import Collector
from collector.errors import SinkError
from collector.metrics import Metrics
from collector.simulator import Bucket, MailFlow, Simulator
from collector.sinks import Line
from collector.sinks.syslog import SyslogSink
from tests.conftest import config_dict, make_config, write_config
from tests.test_daemon import Daemon, free_port, wait_for
from tests.rsyslog import Rsyslog
from tests.test_hang import log_lines
from tests.test_syslog_rsyslog import sink_cfg

# Sessions the daemon logs once each, whatever the number of polls.
LIFECYCLE = {"collector.started", "collector.stopping", "collector.stopped"}


@pytest.fixture(name="live")
def _live(now: datetime) -> Iterator[Simulator]:
    """Mail that keeps arriving while the daemon runs, on the real clock."""
    flow = MailFlow(seed=23, start=now - timedelta(hours=1), end=now + timedelta(hours=1), count=7200)
    with Simulator(flow, cap=10_000) as sim:
        yield sim


def poll_runs(port: int) -> dict[str, float]:
    """Polls finished per watch, from a real scrape."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    runs: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mimecast_collector_poll_runs_total":
                runs[s.labels["watch"]] += s.value
    return dict(runs)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["info", "debug"])
def test_each_poll_logs_one_summary_at_info_and_its_chunks_at_debug(live: Simulator, tmp_path: Path,
                                                                     level: str) -> None:
    """Two watches, interval 10 s, three polls each: at info the log is the polls' summaries and nothing else."""
    port = free_port()
    watches = [{"name": "inbound", "to": "example.com"}, {"name": "outbound", "from": "example.com"}]
    cfg = write_config(tmp_path, config_dict(
        live, tmp_path, watches=watches, metrics={"listen": f"127.0.0.1:{port}"}, logging={"level": level},
        collection={"interval": "10s", "window": "5m", "initial_lookback": "20m", "settle": "2m"}))
    daemon = Daemon(tmp_path, "run", "-c", str(cfg))
    try:
        wait_for(lambda: daemon.log.read_text().count('"poll.done"') >= 6, timeout=60, what="three polls per watch")
        runs = poll_runs(port)
        daemon.signal(signal.SIGTERM)
        log = daemon.wait()
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0, log
    events = log_lines(log)
    done = [e for e in events if e["event"] == "poll.done"]
    assert Counter(e["watch"] for e in done) == runs and min(runs.values()) >= 3, (runs, done)
    chunks = sum(e["chunks"] for e in done)
    assert chunks >= 6 and sum(e["shipped"] for e in done) > 0, "the polls searched and shipped something"
    detail = [e for e in events if e["event"] == "poll.chunk"]
    if level == "info":
        assert Counter(e["event"] for e in events if e["event"] != "poll.done") == Counter(LIFECYCLE), events
        assert not [e for e in events if str(e.get("logger", "")).startswith("apscheduler")]
        assert '"poll.chunk"' not in log
    else:
        assert len(detail) == chunks
        assert sum(e["shipped"] for e in detail) == sum(e["shipped"] for e in done)


def test_quota_pacing_is_reported_once_per_episode_not_per_answer(now: datetime, tmp_path: Path) -> None:
    """A quota that keeps the budget at its reserve: pacing flips with nearly every answer, the log does not.

    A bucket of 8, one request back every 0.1 s, reserve 4, 30 one-minute chunks: the remaining count
    hovers around the reserve, so the gate starts and stops pacing again and again.
    """
    flow = MailFlow(seed=29, start=now - timedelta(minutes=30), end=now, count=600)
    with Simulator(flow, cap=10_000, clock=lambda: now, quota=Bucket(8, 0.1)) as sim:
        c = Collector(make_config(sim, tmp_path, mimecast={"quota_reserve": 4},
                                  collection={"window": "1m", "initial_lookback": "30m", "result_cap": 1000}),
                      registry=CollectorRegistry())
        with structlog.testing.capture_logs() as logs:
            (first,) = c.run_once()
            (second,) = c.run_once()
        c.close()
    assert first.ok and second.ok and first.searches >= 30
    assert len([r for r in sim.searches() if r.status == 429]) == 0
    started = [e for e in logs if e["event"] == "mimecast.quota_pacing_started"]
    ended = [e for e in logs if e["event"] == "mimecast.quota_pacing_ended"]
    assert len(started) == 1 and len(ended) <= 1, (len(started), len(ended))


@pytest.mark.rsyslog
def test_oversize_messages_of_one_chunk_make_one_line_with_a_count(tmp_path: Path) -> None:
    """Five messages over the limit in one batch: five counted in the metric, one warning naming five."""
    with Rsyslog(tmp_path / "rsyslog") as receiver:
        cfg = sink_cfg(tmp_path, port=receiver.tcp_port, transport="tcp", max_message_bytes=480)
        metrics = Metrics(CollectorRegistry(), process=False)
        sink = SyslogSink("siem", cfg, metrics=metrics)
        now = datetime.now().astimezone()
        lines = [Line("x" * 2000, 6, now) for _ in range(5)] + [Line("short", 6, now)]
        with structlog.testing.capture_logs() as logs:
            try:
                sink.write(lines)
                sink.flush()
            except SinkError as exc:  # pragma: no cover - a failure here is the receiver's, shown in full
                raise AssertionError(exc) from None
            finally:
                sink.close()
        assert len(receiver.messages(expected=6)) == 6
    oversize = [e for e in logs if e["event"] == "sink.syslog.oversize"]
    assert [e["count"] for e in oversize] == [5]
    assert metrics.registry.get_sample_value("mimecast_collector_syslog_oversize_total",
                                             {"output": "siem", "action": "truncate"}) == 5
