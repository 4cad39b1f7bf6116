"""Fault suite: each failure ends with nothing lost after recovery, no busy loop, one clear log line
per failure, and metrics that show it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from collector.daemon import Collector
from collector.simulator import Fault, Filter, MailFlow, Simulator
from tests.cef_decoder import decode
from tests.conftest import config_dict, make_config, write_config
from tests.rsyslog import Rsyslog, require_rsyslog
from tests.statedb import read_state
from tests.test_daemon import Daemon, keys_in, wait_for

pytestmark = pytest.mark.faults
FLT = Filter(to="example.com")


@pytest.fixture(name="steady")
def _steady(now: datetime) -> Iterator[Simulator]:
    flow = MailFlow(seed=17, start=now - timedelta(hours=3, minutes=50), end=now - timedelta(minutes=5), count=3000)
    with Simulator(flow, clock=lambda: now, cap=10_000) as sim:
        yield sim


def collector(sim: Simulator, tmp_path: Path, **kw: Any) -> Collector:
    return Collector(make_config(sim, tmp_path, **kw), registry=CollectorRegistry())


def expected(sim: Simulator, now: datetime) -> set[tuple[str, str]]:
    return sim.flow.ground_truth(FLT, sim.flow.start, sim.flow.end, now)


def value(c: Collector, name: str, **labels: str) -> float:
    return c.metrics.registry.get_sample_value(name, labels) or 0.0


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_429_storm_is_waited_out_at_a_bounded_rate(steady: Simulator, tmp_path: Path, now: datetime) -> None:
    """Fifteen 429s: each waits its X-RateLimit-Reset, the request rate stays under one per reset, nothing is lost."""
    c = collector(steady, tmp_path, collection={"window": "30m"})
    steady.inject(Fault("rate_limit", reset_ms=300), times=15)
    with structlog.testing.capture_logs() as logs:
        (result,) = c.run_once()
    c.close()
    limited = [r for r in steady.searches() if r.status == 429]
    gaps = [b.at - a.at for a, b in zip(steady.searches(), steady.searches()[1:]) if a.status == 429]
    storm = limited[-1].at - limited[0].at
    assert result.ok and len(limited) == 15
    assert min(gaps) >= 0.3 and len(limited) / (storm + 0.3) <= 1 / 0.3
    assert len(events(logs, "mimecast.rate_limited")) == 15
    assert value(c, "mimecast_collector_rate_limited_total") == 15
    assert value(c, "mimecast_collector_rate_limit_wait_seconds_total") == pytest.approx(4.5)
    assert set(keys_in(tmp_path / "out.ndjson")) == expected(steady, now)


@pytest.mark.parametrize(("fault", "times", "error_type", "extra"), [
    (Fault("server_error", status=503), 3, "server_error", {}),
    (Fault("slow", delay=1.3), 2, "timeout", {"mimecast": {"timeout": "1s"}}),
    (Fault("malformed"), 2, "malformed_response", {}),
])
def test_transient_failures_are_retried_with_one_line_each(steady: Simulator, tmp_path: Path, now: datetime,
                                                           fault: Fault, times: int, error_type: str,
                                                           extra: dict[str, Any]) -> None:
    """5xx bursts, timeouts and malformed JSON within the retry budget: one retry line each, nothing lost."""
    c = collector(steady, tmp_path, **extra)
    steady.inject(fault, times=times)
    with structlog.testing.capture_logs() as logs:
        (result,) = c.run_once()
    c.close()
    retries = events(logs, "mimecast.retry")
    assert result.ok and len(retries) == times and {r["error_type"] for r in retries} == {error_type}
    assert value(c, "mimecast_collector_api_retries_total", reason=error_type) == times
    chunks = 4 * 60 // 15 + 1
    assert len(steady.searches()) <= chunks + times, "no busy loop"
    got = keys_in(tmp_path / "out.ndjson")
    assert set(got) == expected(steady, now) and max(got.values()) == 1


@pytest.mark.parametrize(("fault", "auth", "error_type"), [
    (Fault("fail200", code="err_internal"), "oauth2", "api_fail"),
    (Fault("binding_expired"), "hmac", "binding_expired"),
    (Fault("server_error", status=500), "oauth2", "server_error"),
])
def test_a_failure_mid_run_stops_cleanly_and_the_next_poll_completes(steady: Simulator, tmp_path: Path,
                                                                     now: datetime, fault: Fault, auth: str,
                                                                     error_type: str) -> None:
    """A non-recoverable failure after five chunks: one poll.failed line, watermark kept, then exactly once."""
    c = collector(steady, tmp_path, auth=auth)
    steady.inject(Fault("slow", delay=0), times=5)
    steady.inject(fault, times=10)
    with structlog.testing.capture_logs() as logs:
        (failed,) = c.run_once()
    failures = events(logs, "poll.failed")
    assert not failed.ok and failed.chunks == 5
    assert len(failures) == 1 and failures[0]["error_type"] == error_type
    assert value(c, "mimecast_collector_poll_errors_total", watch="inbound", error_type=error_type) == 1
    assert len(steady.searches()) <= 5 + 4, "a failure is retried within the budget, not in a loop"
    watermark = c.state.watch("inbound").watermark
    assert set(keys_in(tmp_path / "out.ndjson")) == steady.flow.ground_truth(FLT, steady.flow.start, watermark, now)
    steady.clear_faults()
    (fixed,) = c.run_once()
    c.close()
    got = keys_in(tmp_path / "out.ndjson")
    assert fixed.ok and set(got) == expected(steady, now) and max(got.values()) == 1


def test_token_expiring_mid_run_is_renewed_once(steady: Simulator, tmp_path: Path, now: datetime) -> None:
    """A token that expires after a few chunks is replaced once; the poll completes."""
    c = collector(steady, tmp_path)
    steady.inject(Fault("slow", delay=0), times=4)
    steady.inject(Fault("expire_token"))
    (result,) = c.run_once()
    c.close()
    assert result.ok
    assert len([r for r in steady.requests if r.path == "/oauth/token"]) == 2
    assert [r.status for r in steady.searches()].count(401) == 1
    assert value(c, "mimecast_collector_api_retries_total", reason="token_expired") == 1
    assert set(keys_in(tmp_path / "out.ndjson")) == expected(steady, now)


def test_full_filesystem_fails_the_chunk_and_recovers_exactly_once(steady: Simulator, tmp_path: Path,
                                                                   now: datetime) -> None:
    """On a full tmpfs the chunk fails and is rolled back; with space again every event is there exactly once."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        out = mount / "out.ndjson"
        outputs = [{"name": "archive", "format": "raw", "sink": {"type": "file", "path": str(out)}}]
        c = collector(steady, tmp_path, outputs=outputs)
        with structlog.testing.capture_logs() as logs:
            (full,) = c.run_once()
        assert not full.ok and full.error.error_type == "sink" and "No space left" in str(full.error)
        assert len(events(logs, "poll.failed")) == 1
        assert value(c, "mimecast_collector_sink_errors_total", output="archive") == 1
        mark = read_state(tmp_path / "state.json")["outputs"]["archive"]["size"]
        assert out.stat().st_size == mark, "the partial chunk was rolled back"
        subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)
        (fixed,) = c.run_once()
        c.close()
        got = keys_in(out)
        assert fixed.ok and set(got) == expected(steady, now) and max(got.values()) == 1
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_syslog_receiver_down_for_30_seconds(tmp_path: Path, now: datetime) -> None:
    """Mail keeps arriving while rsyslog is down for 30 s: polls fail once per interval, nothing is committed,
    and after the restart every event is delivered."""
    require_rsyslog()
    # A live, dense flow: a few new rejected or bounced messages (one status each) reach every 10 s poll.
    flow = MailFlow(seed=23, start=now - timedelta(minutes=30), end=now + timedelta(minutes=3), count=12_000)
    receiver = Rsyslog(tmp_path / "rsyslog").start()
    with Simulator(flow, cap=100_000) as sim:
        sink = {"type": "syslog", "host": "127.0.0.1", "port": receiver.tcp_port, "transport": "tcp"}
        cfg = write_config(tmp_path, config_dict(sim, tmp_path, collection={"interval": "10s"},
                                                 watches=[{"name": "inbound", "to": "example.com",
                                                           "status": ["rejected", "bounced"]}],
                                                 outputs=[{"name": "siem", "format": "cef", "sink": sink}],
                                                 logging={"level": "info"}))
        daemon = Daemon(tmp_path, "run", "-c", str(cfg))
        try:
            wait_for(lambda: '"poll.done"' in daemon.log.read_text(), what="the first poll")
            receiver.stop()
            down_at = time.monotonic()
            time.sleep(30)
            failures = daemon.log.read_text().count('"poll.failed"')
            receiver.start()
            wait_for(lambda: _polls_after(daemon.log, down_at + 30) >= 1, timeout=30, what="a poll after the restart")
        finally:
            daemon.signal(signal.SIGTERM)
            log = daemon.wait()
            daemon.kill()
        watermark = datetime.fromisoformat(read_state(tmp_path / "state.json")
                                           ["watches"]["inbound"]["watermark"])
        wanted = {k for k in flow.ground_truth(FLT, flow.start, watermark, watermark)
                  if k[1] in ("rejected", "bounced")}
        delivered = {(e.extension["cs1"], e.extension["act"]) for e in (decode(m["msg"]) for m in receiver.messages())}
    receiver.stop()
    assert 2 <= failures <= 4, f"one failed poll per 10 s interval while down, not a busy loop ({failures})"
    assert log.count("closed the connection") + log.count("cannot connect") >= failures
    assert wanted and delivered >= wanted, f"{len(wanted - delivered)} events never delivered"
    assert "Traceback" not in log


def _polls_after(log: Path, since_monotonic: float) -> int:
    """Successful polls logged after a moment (monotonic clock converted to the log's wall clock)."""
    since = datetime.now().timestamp() - (time.monotonic() - since_monotonic)
    count = 0
    for line in log.read_text().splitlines():
        if '"poll.done"' not in line or '"success"' not in line:
            continue
        stamp = datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
        count += stamp > since
    return count
