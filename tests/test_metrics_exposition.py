"""What a scrape of a running daemon shows before anything succeeds, and that the exposition is lean and valid."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.daemon import Collector
from collector.simulator import Simulator
from tests.conftest import config_dict, make_config, write_config
from tests.test_daemon import Daemon, free_port, wait_for
from tests.test_ops import tool


def scrape(port: int) -> str | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_daemon(sim: Simulator, tmp_path: Path, port: int) -> Daemon:
    data = config_dict(sim, tmp_path, metrics={"listen": f"127.0.0.1:{port}"},
                       mimecast={"base_url": f"http://127.0.0.1:{closed_port()}", "retries": 0},
                       collection={"interval": "10s"})
    return Daemon(tmp_path, "run", "-c", str(write_config(tmp_path, data, "unreachable.yaml")))


@pytest.mark.parametrize("restarted", [False, True], ids=["fresh-install", "restarted"])
def test_a_daemon_that_never_reaches_mimecast_exports_what_alerts_need(sim: Simulator, tmp_path: Path,
                                                                       restarted: bool) -> None:
    """Unreachable from the start: start time, the failing error type at 1, the checkpoint's watermark if any,
    no last success and no rate-limit gauges (no header was ever seen)."""
    watermark = None
    if restarted:
        earlier = Collector(make_config(sim, tmp_path), registry=CollectorRegistry())
        (result,) = earlier.run_once()
        watermark = earlier.state.watch("inbound").watermark
        earlier.close()
        assert result.ok and watermark is not None
        # A poll with nothing due yet (a restart within the same second) succeeds without asking Mimecast: let a
        # few seconds become due, as they have after any real restart.
        time.sleep(2.5)
    port = free_port()
    daemon = unreachable_daemon(sim, tmp_path, port)
    try:
        text = wait_for(lambda: (t := scrape(port)) and 'poll_failing{error_type="connection",watch="inbound"} 1.0' in t
                        and t, what="a failed poll")
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait()
        daemon.kill()
    got = samples(text)
    names = {name for name, _ in got}
    assert ("mimecast_collector_start_time_seconds", ()) in got
    assert got[("mimecast_collector_poll_errors_total", (("error_type", "connection"), ("watch", "inbound")))] >= 1
    assert "mimecast_collector_last_success_timestamp_seconds" not in names
    assert "mimecast_collector_rate_limit_remaining" not in names and "mimecast_collector_rate_limit_limit" not in names
    restored = got.get(("mimecast_collector_watermark_timestamp_seconds", (("watch", "inbound"),)))
    assert restored == (watermark.timestamp() if watermark is not None else None)


def test_exposition_has_python_collectors_no_created_series_and_complete_help(sim: Simulator, tmp_path: Path) -> None:
    """A real scrape after a success: python_* and process_* series, no *_created, HELP naming every poll outcome,
    rate-limit gauges only once Mimecast sent the headers, and promtool check metrics is clean."""
    promtool = tool("promtool", "prometheus")
    port = free_port()
    cfg = write_config(tmp_path, config_dict(sim, tmp_path, metrics={"listen": f"127.0.0.1:{port}"},
                                             collection={"interval": "10s"}))
    daemon = Daemon(tmp_path, "run", "-c", str(cfg))
    try:
        text = wait_for(lambda: (t := scrape(port)) and 'outcome="success",watch="inbound"} 1.0' in t and t,
                        what="a successful poll")
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait()
        daemon.kill()
    assert not re.search(r"^\w+_created[{ ]", text, re.M), "no _created series"
    for name in ("python_info", "python_gc_objects_collected_total", "process_resident_memory_bytes",
                 "mimecast_collector_last_success_timestamp_seconds", "mimecast_collector_watermark_timestamp_seconds"):
        assert re.search(rf"^{name}[{{ ]", text, re.M), name
    assert not re.search(r"^mimecast_collector_rate_limit_(remaining|limit)[{ ]", text, re.M), \
        "the simulator sends no quota headers here"
    help_line = next(line for line in text.splitlines() if line.startswith("# HELP mimecast_collector_poll_runs_total"))
    assert all(outcome in help_line for outcome in ("success", "failure", "interrupted", "crash"))
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr
