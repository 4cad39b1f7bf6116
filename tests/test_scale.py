"""Scale: 200 watches in one daemon poll on schedule, share the rate gate, and keep memory flat."""

from __future__ import annotations

import re
import signal
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from collector.simulator import Fault, MailFlow, Simulator
from collector.simulator.flow import _LOCALS
from tests.conftest import config_dict, write_config
from tests.test_daemon import Daemon, free_port, wait_for

pytestmark = pytest.mark.scale
WATCHES = 200


def watches() -> list[dict[str, str]]:
    kinds = [("to", "{l}@example.com"), ("from", "{l}@example.org"), ("to", "{l}@example.org"),
             ("from", "{l}@example.com"), ("subject", "Invoice {n}")]
    found = []
    for n in range(WATCHES):
        key, pattern = kinds[n % len(kinds)]
        found.append({"name": f"w{n:03d}", key: pattern.format(l=_LOCALS[n % len(_LOCALS)], n=n)})
    return found


def successes(port: int) -> dict[str, float]:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return {}
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'poll_runs_total\{outcome="success",watch="(w\d+)"\} (\S+)', text)}


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


def test_200_watches_poll_on_schedule_behind_one_rate_gate(tmp_path: Path, now: datetime) -> None:
    """Every watch completes poll after poll; a 429 stops all of them for its reset; RSS stays flat."""
    flow = MailFlow(seed=31, start=now - timedelta(hours=1), end=now + timedelta(minutes=10), count=1500)
    port = free_port()
    with Simulator(flow, cap=100_000) as sim:
        data = config_dict(sim, tmp_path, watches=watches(), metrics={"listen": f"127.0.0.1:{port}"},
                           collection={"interval": "10s", "window": "30m", "initial_lookback": "1h"},
                           logging={"level": "warning"})
        daemon = Daemon(tmp_path, "run", "-c", str(write_config(tmp_path, data)))
        try:
            wait_for(lambda: len(successes(port)) == WATCHES and min(successes(port).values()) >= 2, timeout=90,
                     what="two polls of every watch")
            rss_early = rss_kib(daemon.proc.pid)
            sim.inject(Fault("rate_limit", reset_ms=2000))
            wait_for(lambda: any(r.status == 429 for r in sim.searches()), timeout=30, what="the 429")
            wait_for(lambda: min(successes(port).values()) >= 4, timeout=120, what="four polls of every watch")
            rss_late = rss_kib(daemon.proc.pid)
        finally:
            daemon.signal(signal.SIGTERM)
            log = daemon.wait(timeout=60)
            daemon.kill()
    assert daemon.proc.returncode == 0, log[-2000:]
    searches = sim.searches()
    limited = next(r for r in searches if r.status == 429)
    # Requests already on the wire when the 429 was answered cannot be recalled; nothing may start after it.
    held_back = [r for r in searches if limited.answered_at + 0.1 < r.at < limited.at + 2.0]
    assert not held_back, f"{len(held_back)} searches during the shared 2 s wait"
    assert any(r.at >= limited.at + 2.0 for r in searches), "polling resumed after the reset"
    assert rss_late - rss_early < 20 * 1024, f"RSS grew from {rss_early} to {rss_late} KiB over two cycles"
    assert "poll.crashed" not in log and "Traceback" not in log
    print(f"scale: {WATCHES} watches, {len(searches)} searches, RSS {rss_early} -> {rss_late} KiB")
