"""No poll can hang: a total deadline on every request, and a watchdog that means progress."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from collector.simulator import Fault, MailFlow, Simulator
from tests.conftest import config_dict, run_cli, write_config
from tests.rsyslog import make_certs
from tests.test_daemon import Daemon, free_port, wait_for
from tests.trickle import HandshakeTrickle, Trickle

AUTH = {"type": "oauth2", "client_id": "collector", "client_secret": "s3cret-value"}


def trickle_config(tmp_path: Path, server: Trickle | HandshakeTrickle, **mimecast: Any) -> Path:
    data = {
        "mimecast": {"base_url": server.base_url, "auth": AUTH, "timeout": "2s", "retries": 1,
                     "backoff_initial": "0s", "backoff_max": "0s", **mimecast},
        "collection": {"interval": "10s", "lag": "0s", "initial_lookback": "5m",
                       "state_file": str(tmp_path / "s.json")},
        "watches": [{"name": "inbound", "to": "example.com"}],
        "outputs": [{"name": "archive", "format": "raw", "sink": {"type": "file", "path": str(tmp_path / "out")}}],
        "logging": {"level": "info", "format": "json"},
    }
    return write_config(tmp_path, data)


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(("phase", "what", "https"), [
    ("body", "search", False), ("headers", "search", False), ("token", "token request", False),
    ("body", "search", True), ("headers", "search", True),
])
def test_once_against_a_trickling_server_ends_at_its_deadline(tmp_path: Path, phase: str, what: str,
                                                              https: bool) -> None:
    """A server that never finishes its answer, a byte every 0.25 s: each attempt ends at its 2 s deadline.

    Without the total deadline requests' per-read timeout never trips and ``once`` waits for the whole
    two-minute trickle, past this test's limit.
    """
    certs = make_certs(tmp_path / "certs") if https else None
    tls = (str(certs.server_cert), str(certs.server_key)) if certs else None
    with Trickle(phase, every=0.25, limit=120, tls=tls) as server:
        extra = {"tls_verify": str(certs.ca)} if certs else {}
        began = time.monotonic()
        result = run_cli("once", "-c", str(trickle_config(tmp_path, server, **extra)), timeout=40)
        took = time.monotonic() - began
    assert result.returncode == 1, result.stderr
    assert f"FAILED (timeout: {what} timed out after 2s)" in result.stderr
    retries = [e for e in log_lines(result.stderr) if e["event"] == "mimecast.retry"]
    assert [(e["error_type"], e["attempt"]) for e in retries] == [("timeout", 1)]
    assert len(server.trickled) == 2, "retries: 1 means two attempts, each cut at its deadline"
    print(f"once against a trickling {phase}: {took:.1f}s for 2 attempts of timeout 2s")


def test_a_tls_handshake_that_never_finishes_ends_at_the_deadline(tmp_path: Path) -> None:
    """A TLS server (or middlebox) that trickles its handshake is cut off at the deadline too.

    (Python's TLS layer bounds a whole handshake by the socket timeout; this keeps it so.)
    """
    with HandshakeTrickle(every=0.25, limit=120) as server:
        result = run_cli("once", "-c", str(trickle_config(tmp_path, server)), timeout=40)
    assert result.returncode == 1, result.stderr
    assert "FAILED (timeout: token request timed out after 2s)" in result.stderr
    assert server.connections == 2


def test_daemon_polls_a_trickling_watch_again_on_schedule(tmp_path: Path) -> None:
    """In the daemon the timed-out poll ends, so the watch's next poll runs at its next slot (10 s later)."""
    with Trickle("body", every=0.25, limit=120) as server:
        cfg = trickle_config(tmp_path, server, timeout="1s", retries=0)
        daemon = Daemon(tmp_path, "run", "-c", str(cfg))
        try:
            wait_for(lambda: daemon.log.read_text().count('"poll.failed"') >= 2, timeout=40,
                     what="a second failed poll")
        finally:
            daemon.signal(signal.SIGTERM)
            log = daemon.wait()
            daemon.kill()
    failed = [e for e in log_lines(log) if e["event"] == "poll.failed"]
    assert all(e["error_type"] == "timeout" for e in failed)
    assert '"poll.still_running"' not in log
    assert not [e for e in log_lines(log) if e.get("logger", "").startswith("apscheduler")], \
        "at info, APScheduler's per-run lines stay out of the log"


class Notify:
    """A systemd notify socket: what the daemon sends, with when it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[tuple[float, str]] = []

    def pump(self, seconds: float) -> None:
        """Collect messages for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                return
            self.received.append((time.monotonic(), message))

    def pings(self, after: float = 0.0) -> list[float]:
        return [at for at, m in self.received if m == "WATCHDOG=1" and at > after]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(name="notify")
def _notify(tmp_path: Path) -> Iterator[Notify]:
    notify = Notify(tmp_path / "notify.sock")
    yield notify
    notify.close()


@pytest.fixture(name="steady")
def _steady(now: datetime) -> Iterator[Simulator]:
    flow = MailFlow(seed=5, start=now - timedelta(hours=1), end=now - timedelta(minutes=2), count=3000)
    with Simulator(flow, cap=10_000, clock=lambda: now) as sim:
        yield sim


def fast_mimecast(**extra: Any) -> dict[str, Any]:
    return {"timeout": "1s", "retries": 0, "backoff_initial": "0s", "backoff_max": "0s", **extra}


@pytest.mark.slow
def test_watchdog_pings_stop_when_a_poll_is_stuck_on_a_sink(steady: Simulator, tmp_path: Path,
                                                            notify: Notify) -> None:
    """A file output that never accepts a byte (a full FIFO) blocks delivery: pings stop, the log names the watch."""
    fifo = tmp_path / "stuck.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # present but never reading: the writer blocks when full
    outputs = [{"name": "stuck", "format": "raw", "sink": {"type": "file", "path": str(fifo)}}]
    port = free_port()
    cfg = write_config(tmp_path, config_dict(steady, tmp_path, outputs=outputs, logging={"level": "info"},
                                             metrics={"listen": f"127.0.0.1:{port}"},
                                             mimecast=fast_mimecast(max_rate_limit_wait="0s"),
                                             collection={"interval": "10s", "initial_lookback": "1h"}))
    daemon = Daemon(tmp_path, "run", "-c", str(cfg),
                    env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    try:
        notify.pump(3)
        assert notify.received and notify.received[0][1].startswith("READY=1")
        assert notify.pings(), "a healthy start pings"
        deadline = time.monotonic() + 60
        while '"poll.stuck"' not in daemon.log.read_text() and time.monotonic() < deadline:
            notify.pump(0.5)
        stuck_seen = time.monotonic()
        notify.pump(4)  # eight ping periods
        scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        daemon.kill()
        os.close(reader)
    stuck = [e for e in log_lines(daemon.log.read_text()) if e["event"] == "poll.stuck"]
    assert len(stuck) == 1, "a stuck poll is logged once"
    # interval 10s; timeout 1s, no retries or rate-limit wait: searching 4s; one file output and the checkpoint
    # 5s each; plus the 5s margin.
    assert stuck[0]["watch"] == "inbound" and stuck[0]["doing"] == "delivering" and stuck[0]["bound_s"] == 15.0
    assert stuck[0]["last_step"] == "searched" and stuck[0]["running_since"]
    assert not notify.pings(after=stuck_seen), "no WATCHDOG=1 once a poll is stuck"
    running = [line for line in scrape.splitlines()
               if line.startswith('mimecast_collector_poll_running_seconds{watch="inbound"}')]
    assert running and float(running[0].split()[-1]) > stuck[0]["bound_s"], "the gauge shows the long poll"
    last_ping = max(notify.pings())
    first_ping = min(notify.pings())
    assert last_ping - first_ping < stuck[0]["bound_s"] + 2, "pings stopped within the bound"


@pytest.mark.slow
def test_watchdog_keeps_pinging_through_a_rate_limit_wait_within_the_bound(steady: Simulator, tmp_path: Path,
                                                                           notify: Notify) -> None:
    """A 429 asking for 15 s, with max_rate_limit_wait 30s: the daemon waits it out and keeps pinging."""
    steady.inject(Fault("rate_limit", reset_ms=15_000))
    cfg = write_config(tmp_path, config_dict(steady, tmp_path, mimecast=fast_mimecast(max_rate_limit_wait="30s"),
                                             collection={"interval": "10m", "initial_lookback": "1h"}))
    daemon = Daemon(tmp_path, "run", "-c", str(cfg),
                    env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    try:
        deadline = time.monotonic() + 60
        while not any(r.status == 200 for r in steady.searches()) and time.monotonic() < deadline:
            notify.pump(0.5)
        notify.pump(1)
    finally:
        daemon.signal(signal.SIGTERM)
        log = daemon.wait()
        daemon.kill()
    searches = steady.searches()
    limited = next(r for r in searches if r.status == 429)
    answered = next(r for r in searches if r.status == 200)
    assert answered.at - limited.at >= 14, "the wait was waited out"
    # Without max_rate_limit_wait in the bound the searching bound would be 9 s: pings would stop 9 s into the wait.
    late = [at for at in notify.pings() if answered.at - 5 <= at <= answered.at]
    assert len(late) >= 3, "still pinging in the last seconds of the wait"
    assert '"poll.stuck"' not in log and '"mimecast.rate_limited"' in log
    assert [e for e in log_lines(log) if e.get("logger", "").startswith("apscheduler")], \
        "at debug, APScheduler's own lines are shown"


def test_reload_does_not_kill_a_running_once(steady: Simulator, tmp_path: Path) -> None:
    """``reload`` (SIGHUP) to a cron-driven ``once`` reopens its outputs; the run finishes and exits 0."""
    steady.latency = 0.3
    out = tmp_path / "out.ndjson"
    cfg = write_config(tmp_path, config_dict(steady, tmp_path, collection={"initial_lookback": "1h", "window": "5m"}))
    once = Daemon(tmp_path, "once", "-c", str(cfg))
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0, what="the first delivery")
        assert once.proc.poll() is None, "still running when the signal arrives"
        reload = run_cli("reload", "--pid", str(once.proc.pid))
        assert reload.returncode == 0, reload.stderr
        steady.latency = 0.0  # slow searches only keep the run going until the signal is there
        log = once.wait(timeout=60)
    finally:
        once.kill()
    assert once.proc.returncode == 0, log
    assert '"sinks.reopened"' in log and "inbound: " in log and " - ok" in log
