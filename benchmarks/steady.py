"""Benchmark: searches an hour in the steady state, by purpose, against the read-once limit.

    .venv/bin/python benchmarks/steady.py                         # 1, 100, 1,000 a minute, 5% pending
    .venv/bin/python benchmarks/steady.py --densities 100 --pending 0.005 0.05 1.0

Polls every five simulated minutes (interval 5m, window 15m, lag 1m, settle 10m, result_cap 100) on the
simulator's clock, so that hours run in seconds; the first hour (a catch-up and the first settle and follow
reads) is not counted. The read-once limit is, for each poll, the fewest whole-second windows under the cap
that cover its new span (from the ground truth). A follow age costs the same whatever its length once the
collector has run that long: it is measured with ``follow: [1h]``. Counts, not times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.config import load_config  # noqa: E402
from collector.daemon import Collector  # noqa: E402
from collector.logging import configure_logging  # noqa: E402
from collector.simulator import Filter, MailFlow, Simulator  # noqa: E402
from collector.simulator.shapes import Statuses  # noqa: E402
from collector.simulator.truth import ideal_searches, match_share  # noqa: E402

FLT = Filter(to="example.com")
T0 = datetime(2026, 11, 28, 6, tzinfo=timezone.utc)
POLL = timedelta(minutes=5)
WARM, MEASURED = timedelta(hours=1, minutes=10), timedelta(hours=2)
PURPOSES = ("first", "settle", "follow", "split")


def run(per_minute: int, pending: float, follow: list[str]) -> tuple[dict[str, float], float]:
    """(searches an hour by purpose, read-once limit an hour) for one row."""
    span = WARM + MEASURED + timedelta(hours=1)
    count = int(per_minute / match_share(FLT) * span.total_seconds() / 60)
    statuses = Statuses(pending=pending, held=0.1, least=timedelta(minutes=10), most=timedelta(hours=20))
    flow = MailFlow(seed=per_minute, start=T0 - timedelta(hours=1), end=T0 - timedelta(hours=1) + span, count=count,
                    cache=True, statuses=statuses)
    clock = {"now": T0}
    with Simulator(flow, clock=lambda: clock["now"]) as sim, tempfile.TemporaryDirectory() as tmp:
        data = {"mimecast": {"base_url": sim.base_url, "auth": {"type": "oauth2", "client_id": sim.credentials.client_id,
                                                                "client_secret": sim.credentials.client_secret}},
                "collection": {"interval": "5m", "window": "15m", "lag": "1m", "settle": "10m", "follow": follow,
                               "initial_lookback": "1h", "result_cap": 100, "state_file": f"{tmp}/state.db"},
                "watches": [{"name": "w", "to": "example.com"}], "metrics": {"listen": None},
                "outputs": [{"name": "o", "format": "raw", "sink": {"type": "file", "path": f"{tmp}/out.ndjson"}}]}
        (Path(tmp) / "c.yaml").write_text(yaml.safe_dump(data))
        c = Collector(load_config(Path(tmp) / "c.yaml"), registry=CollectorRegistry())
        counted: Counter[str] = Counter()
        limit = 0
        try:
            while clock["now"] < T0 + WARM + MEASURED:
                before = c.state.watch("w").watermark
                (result,) = c.run_once(now=lambda: clock["now"])
                assert result.ok, result.error
                if clock["now"] >= T0 + WARM:
                    counted.update(result.purposes)
                    after = c.state.watch("w").watermark
                    limit += ideal_searches(flow, FLT, before, after, clock["now"], cap=100, window=timedelta(minutes=15))
                clock["now"] += POLL
        finally:
            c.close()
    hours = MEASURED / timedelta(hours=1)
    return {p: counted[p] / hours for p in PURPOSES}, limit / hours


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--densities", type=int, nargs="*", default=[1, 100, 1000])
    parser.add_argument("--pending", type=float, nargs="*", default=[0.05])
    args = parser.parse_args()
    configure_logging("error", "json")
    print("| matching a minute | pending | follow | first | settle | follow | split | total an hour | per poll "
          "| read-once limit an hour | x limit |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for per_minute in args.densities:
        for pending in args.pending:
            for follow in ([], ["1h"]):
                got, limit = run(per_minute, pending, follow)
                total = sum(got.values())
                print(f"| {per_minute:,} | {pending:.1%} | {follow or '[]'} | " + " | ".join(f"{got[p]:.1f}" for p in PURPOSES)
                      + f" | {total:.1f} | {total / 12:.1f} | {limit:.1f} | {total / max(limit, 1e-9):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
