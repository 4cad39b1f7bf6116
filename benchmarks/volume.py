"""Benchmark: Mimecast searches the collector makes against the fewest that could do, at every density.

    .venv/bin/python benchmarks/volume.py                      # 1, 100, 1,000, 3,000 a minute, a burst
    .venv/bin/python benchmarks/volume.py --densities 100 --orders oldest
    .venv/bin/python benchmarks/volume.py --densities '' --no-burst --steps 10x3000   # one density step only

Catch-up: one ``once`` over the last hour with result_cap 100 and window 15m, for each density of
matching messages a minute and each answer order the simulator can play (Mimecast documents none).
The ideal is the physical limit: the fewest whole-second windows, each holding fewer than result_cap
matching records and none wider than the window, that cover the hour (from the simulator's ground
truth). Steady state: the default daemon settings (interval 5m, window 15m, overlap 10m, lag 1m) for
six polls after a catch-up, counting searches per poll and how many of them start inside the overlap
(re-reading what the previous poll already covered). Density steps: a quiet hour (one matching message a
minute), then 10 or 30 minutes at 1,000 or 3,000 a minute, then five quiet minutes, caught up by one ``once``
over all of it: a dense period whose start nothing tells until a search is capped. Counts, not times: the
numbers repeat on any machine.
"""

from __future__ import annotations

import argparse
import functools
import json
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
from collector.simulator import ORDERS, Filter, MailFlow, MixedFlow, Simulator, steps  # noqa: E402
from collector.simulator.truth import ideal_searches, match_share  # noqa: E402

FLT = Filter(to="example.com")
SPAN = timedelta(hours=1)


@functools.cache
def share() -> float:
    """The share of the simulator's messages that match the watch (to: example.com), about two in five."""
    return match_share(FLT)


def flow_for(now: datetime, per_minute: int, burst: int, span: timedelta, variant: int = 0) -> MixedFlow:
    """``per_minute`` matching messages a minute over ``span`` before ``now``, plus ``burst`` in one minute.

    ``variant`` picks another flow of the same density (other seeds), to tell a result from one flow's luck.
    """
    seed = per_minute + 100_003 * variant
    flows = [MailFlow(seed=seed, start=now - span, end=now + timedelta(hours=1),
                      count=max(1, int(per_minute * (span + timedelta(hours=1)).total_seconds() / 60 / share())))]
    if burst:
        flows.append(MailFlow(seed=seed + 7, start=now - timedelta(minutes=31),
                              end=now - timedelta(minutes=30), count=int(burst / share())))
    return MixedFlow(flows)


def step_flow(now: datetime, per_minute: int, minutes: int, variant: int = 0) -> tuple[MixedFlow, timedelta]:
    """A quiet hour, ``minutes`` at ``per_minute`` matching a minute, five quiet minutes, ending at ``now``; and
    its span."""
    quiet, dense, tail = timedelta(hours=1), timedelta(minutes=minutes), timedelta(minutes=5)
    span = quiet + dense + tail
    flow = steps(per_minute * 10 + minutes + 100_003 * variant, now - span,
                 [(quiet, 1 / share()), (dense, per_minute / share()), (tail, 1 / share())])
    return flow, span


def collector(sim: Simulator, tmp: Path, **collection: str) -> Collector:
    """A collector for ``sim`` with one watch and a raw file output."""
    data = {
        "mimecast": {"base_url": sim.base_url, "retries": 3, "backoff_initial": "0s", "backoff_max": "0s",
                     "auth": {"type": "oauth2", "client_id": sim.credentials.client_id,
                              "client_secret": sim.credentials.client_secret}},
        "collection": {"result_cap": 100, "state_file": str(tmp / "state.db"), **collection},
        "watches": [{"name": "inbound", "to": "example.com"}],
        "outputs": [{"name": "file", "format": "raw", "sink": {"type": "file", "path": str(tmp / "out.ndjson")}}],
        "metrics": {"listen": None}, "logging": {"level": "warning"},
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(data))
    return Collector(load_config(tmp / "config.yaml", env={}), registry=CollectorRegistry())


def exact(path: Path, truth: set[tuple[str, str]]) -> bool:
    """Whether the file holds every key of ``truth`` once and nothing else."""
    got = Counter((e["id"], e["status"]) for e in (json.loads(x)["tracked_email"] for x in path.read_text().splitlines()))
    return set(got) == truth and max(got.values(), default=1) == 1


def catch_up(now: datetime, per_minute: int, burst: int, order: str, variant: int = 0) -> tuple[int, int, bool]:
    """(searches, ideal, exact) for one hour of catch-up."""
    return catch_up_flow(now, flow_for(now, per_minute, burst, SPAN, variant), SPAN, order)


def catch_up_flow(now: datetime, flow: MixedFlow, span: timedelta, order: str) -> tuple[int, int, bool]:
    """(searches, ideal, exact) for one ``once`` over the ``span`` before ``now``."""
    with Simulator(flow, cap=100, clock=lambda: now, order=order) as sim, tempfile.TemporaryDirectory() as tmp:
        c = collector(sim, Path(tmp), window="15m", lag="0s", initial_lookback=f"{int(span.total_seconds())}s")
        try:
            c.run_once(now=lambda: now)
        finally:
            c.close()
        truth = flow.ground_truth(FLT, now - span, now, now)
        ideal = ideal_searches(flow, FLT, now - span, now, now, cap=100, window=timedelta(minutes=15))
        return len(sim.searches()), ideal, exact(Path(tmp) / "out.ndjson", truth)


def cell(runs: list[tuple[int, int, bool]]) -> str:
    """``made / ideal (ratio)`` over ``runs``, with the worst single run when there are several."""
    made, ideal = sum(r[0] for r in runs), sum(r[1] for r in runs)
    worst = max(r[0] / r[1] for r in runs)
    return f"{made:,} / {ideal:,} ({made / ideal:.2f}x" + (f"; worst {worst:.2f}x)" if len(runs) > 1 else ")")


def steady(now: datetime, per_minute: int, polls: int = 6) -> tuple[float, float]:
    """Default daemon settings: (searches per poll, of which re-read the overlap) after a catch-up."""
    clock = {"now": now}
    flow = flow_for(now, per_minute, 0, SPAN)
    with Simulator(flow, cap=100, clock=lambda: clock["now"]) as sim, tempfile.TemporaryDirectory() as tmp:
        c = collector(sim, Path(tmp), interval="5m", window="15m", overlap="10m", lag="1m", initial_lookback="1h")
        try:
            c.run_once(now=lambda: clock["now"])
            searches = overlap = 0
            for _ in range(polls):
                before = len(sim.searches())
                watermark = c.state.watch("inbound").watermark
                clock["now"] += timedelta(minutes=5)
                c.run_once(now=lambda: clock["now"])
                for request in sim.searches()[before:]:
                    start = datetime.strptime(request.body["data"][0]["start"], "%Y-%m-%dT%H:%M:%S%z")
                    searches += 1
                    overlap += watermark is not None and start < watermark
        finally:
            c.close()
        return searches / polls, overlap / polls


def main() -> int:
    """Print both tables as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--densities", default="1,100,1000,3000", help="matching messages a minute, comma-separated")
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--no-burst", action="store_true", help="skip the burst case (500 in one quiet minute)")
    parser.add_argument("--flows", type=int, default=1,
                        help="flows of each density to run (other seeds); shows their sum and the worst one")
    parser.add_argument("--steps", default="10x1000,30x1000,10x3000,30x3000", metavar="MINUTESxRATE,...",
                        help="density steps to run after a quiet hour ('' for none)")
    args = parser.parse_args()
    configure_logging("warning", "json", stream=sys.stderr)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    densities = [int(x) for x in args.densities.split(",") if x]
    dense_steps = [tuple(int(n) for n in x.split("x")) for x in args.steps.split(",") if x]
    orders = args.orders.split(",")
    cases = [(d, 0) for d in densities] + ([] if args.no_burst else [(1, 500)])
    flows = f", {args.flows} flows each (sum, and the worst flow)" if args.flows > 1 else ""
    if cases:
        print(f"Catch-up of one hour, result_cap 100, window 15m{flows}: searches made / ideal (ratio)\n")
        print("| matching a minute | " + " | ".join(f"{o} first" if o != "shuffled" else o for o in orders) +
              " | every message-status once |")
        print("| --- | " + " | ".join("---:" for _ in orders) + " | --- |")
    for per_minute, burst in cases:
        cells, ok = [], True
        for order in orders:
            runs = [catch_up(now, per_minute, burst, order, variant) for variant in range(args.flows)]
            cells.append(cell(runs))
            ok = ok and all(r[2] for r in runs)
        label = f"{per_minute:,}" + (f" + {burst} in one minute" if burst else "")
        print(f"| {label} | " + " | ".join(cells) + f" | {'yes' if ok else 'NO'} |", flush=True)
    if dense_steps:
        print(f"\nDensity steps: a quiet hour (1 matching a minute), then a dense period, then 5 quiet minutes, one "
              f"once over all of it{flows}: searches made / ideal (ratio)\n")
        print("| after a quiet hour | " + " | ".join(f"{o} first" if o != "shuffled" else o for o in orders) +
              " | every message-status once |")
        print("| --- | " + " | ".join("---:" for _ in orders) + " | --- |")
    for minutes, per_minute in dense_steps:
        cells, ok = [], True
        for order in orders:
            runs = [catch_up_flow(now, *step_flow(now, per_minute, minutes, variant), order)
                    for variant in range(args.flows)]
            cells.append(cell(runs))
            ok = ok and all(r[2] for r in runs)
        print(f"| {minutes} minutes at {per_minute:,} a minute | " + " | ".join(cells) +
              f" | {'yes' if ok else 'NO'} |", flush=True)
    if not densities:
        return 0
    print("\nSteady state, default settings (interval 5m, window 15m, overlap 10m, lag 1m), six polls\n")
    print("| matching a minute | searches per poll | of which start inside the overlap |")
    print("| --- | ---: | ---: |")
    for per_minute in densities:
        per_poll, reread = steady(now, per_minute)
        print(f"| {per_minute:,} | {per_poll:.1f} | {reread:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
