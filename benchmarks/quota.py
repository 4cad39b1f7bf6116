"""Benchmark: searches per quota window during a long catch-up, against a quota that refills whole each window.

    .venv/bin/python benchmarks/quota.py                       # 20 per 10 s window, reserve 10%, 7 windows
    .venv/bin/python benchmarks/quota.py --limit 20 --period 3 --windows 5

One watch catches up two days in 15-minute searches (some 190, more than the windows measured can hold)
against the simulator's fixed-window quota (``--quota LIMIT/PERIOD:window``): LIMIT requests per window
of PERIOD seconds, ``X-RateLimit-Reset`` the time left in it. Prints the requests let through in each
window (window 0 also holds the token request), the requests refused (429), the pacing log lines, and
the paced seconds the gate counted. Counts, not times: they repeat on any machine fast enough to make
LIMIT searches in a window.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.config import load_config  # noqa: E402
from collector.daemon import Collector  # noqa: E402
from collector.simulator import MailFlow, Simulator, Window  # noqa: E402


def main() -> int:
    """Run the catch-up for the windows asked for and print what each window let through."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="requests per window (default 20)")
    parser.add_argument("--period", type=float, default=10.0, help="seconds per window (default 10)")
    parser.add_argument("--windows", type=int, default=7, help="windows to measure (default 7)")
    parser.add_argument("--reserve", default="10%", help="mimecast.quota_reserve (default 10%%)")
    args = parser.parse_args()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    flow = MailFlow(seed=5, start=now - timedelta(days=3), end=now, count=3000)
    quota, stop = Window(args.limit, args.period), threading.Event()
    with tempfile.TemporaryDirectory() as tmp, Simulator(flow, cap=1000, clock=lambda: now, quota=quota) as sim:
        creds = sim.credentials
        data = {"mimecast": {"base_url": sim.base_url, "quota_reserve": args.reserve,
                             "auth": {"type": "oauth2", "client_id": creds.client_id,
                                      "client_secret": creds.client_secret}},
                "collection": {"window": "15m", "lag": "0s", "initial_lookback": "2d", "result_cap": 1000,
                               "state_file": f"{tmp}/state.db"},
                "watches": [{"name": "inbound", "to": "example.com"}],
                "outputs": [{"name": "out", "format": "raw", "sink": {"type": "file", "path": f"{tmp}/out"}}],
                "metrics": {"listen": None}}
        Path(tmp, "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        collector = Collector(load_config(Path(tmp, "config.yaml"), env={}), registry=CollectorRegistry(), stop=stop)
        with structlog.testing.capture_logs() as logs:
            catch_up = threading.Thread(target=collector.run_once, kwargs={"now": lambda: now})
            catch_up.start()
            while max(quota.served, default=0) < args.windows and catch_up.is_alive():
                time.sleep(0.1)
            stop.set()
            catch_up.join()
        collector.close()
    served = [quota.served[w] for w in range(args.windows)]
    pacing = [e["event"] for e in logs if e["event"].startswith("mimecast.quota_pacing")]
    paced = collector.metrics.registry.get_sample_value("mimecast_collector_quota_paced_seconds_total")
    print(f"quota {args.limit} per {args.period:g} s window, reserve {args.reserve}")
    print(f"requests let through per window: {', '.join(map(str, served))}")
    shown = "not measured" if paced is None else f"{paced:.1f}"  # revisions before the metric existed
    print(f"refused (429): {quota.refused}; pacing log lines: {len(pacing)}; paced seconds: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
