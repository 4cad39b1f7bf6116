"""``simulator``: serve the built-in simulator on a port so ``run``, ``doctor`` and ``search`` can be tried."""

from __future__ import annotations

import argparse
import sys
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TextIO

from collector.errors import ConfigError
from collector.simulator import ORDERS

if TYPE_CHECKING:
    from collector.simulator import Bucket, Simulator, Window  # noqa: F401 (annotations only)

__all__ = ["add_simulator_parser", "mimecast_block", "run_simulator"]

# The simulated mail reaches back Mimecast's 30 days and keeps arriving for a day more.
_HISTORY = timedelta(days=30)
_AHEAD = timedelta(days=1)


def add_simulator_parser(sub: Any) -> None:
    """Register the ``simulator`` sub-command (it listens on 127.0.0.1 only)."""
    sim = sub.add_parser("simulator", help="serve the built-in Mimecast simulator on a port (no credentials needed)")
    sim.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)")
    sim.add_argument("--density", type=float, default=10.0,
                     help="messages per minute, over the last 30 days and as time goes on (default 10)")
    sim.add_argument("--burst", type=int, default=0, help="extra messages within one minute, an hour ago")
    sim.add_argument("--order", choices=ORDERS, default="oldest", help="order of records in an answer")
    sim.add_argument("--cap", type=int, default=100, help="most records one answer carries (default 100)")
    sim.add_argument("--quota", default=None, metavar="LIMIT/SECONDS[:window]",
                     help="request quota: LIMIT requests, one more every SECONDS (e.g. 50/0.5), or with "
                          ":window LIMIT per window of SECONDS, refilled whole when it ends (e.g. 20/10:window)")
    sim.add_argument("--fault-every", type=int, default=0, metavar="N",
                     help="answer every N-th search with a retryable 503 (default: never)")
    sim.add_argument("--seed", type=int, default=7, help="seed of the simulated mail flow")


def run_simulator(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Serve until SIGTERM or SIGINT; print the ``mimecast:`` block to paste into a configuration."""
    from collector.daemon import stopping_on_signals
    from collector.simulator import Fault, MailFlow, MixedFlow, Simulator

    quota = _quota(args.quota)
    problems = [f"--{name}: must be {rule}" for name, bad, rule in (
        ("density", not 0 < args.density <= 1000, "above 0 and at most 1000"), ("burst", args.burst < 0, "0 or more"),
        ("cap", args.cap < 2, "2 or more"), ("fault-every", args.fault_every < 0, "0 or more"),
        ("port", not 0 <= args.port <= 65535, "0 to 65535")) if bad]
    if problems:
        raise ConfigError(problems)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - _HISTORY
    steady = MailFlow(seed=args.seed, start=start, end=now + _AHEAD,
                      count=max(1, int(args.density * (_HISTORY + _AHEAD).total_seconds() / 60)))
    flow: Any = steady
    if args.burst:
        hour_ago = now - timedelta(hours=1)
        flow = MixedFlow([steady, MailFlow(seed=args.seed + 1, start=hour_ago, end=hour_ago + timedelta(minutes=1),
                                           count=args.burst)])
    stop = threading.Event()
    sim = Simulator(flow, cap=args.cap, order=args.order, quota=quota, port=args.port)
    if args.fault_every:
        sim.periodic = (args.fault_every, Fault("server_error", status=503, retryable=True))
    with stopping_on_signals(stop):
        sim.start()
        try:
            out.write(mimecast_block(sim.base_url, sim))
            out.write(f"# collection.result_cap must not exceed {args.cap}; "
                      f"{flow.count} messages from {start:%Y-%m-%dT%H:%M:%SZ}; stop with Ctrl-C\n")
            out.flush()
            while not stop.wait(1.0):
                pass
        finally:
            sim.stop()
    print(f"simulator: answered {len(sim.searches())} searches", file=sys.stderr)
    return 0


def mimecast_block(base_url: str, sim: Simulator) -> str:
    """The ``mimecast:`` section that points a configuration at ``sim`` (its demo credentials, never real ones)."""
    creds = sim.credentials
    return (f"mimecast:\n  base_url: {base_url}\n  auth:\n    type: oauth2\n"
            f"    client_id: {creds.client_id}\n    client_secret: {creds.client_secret}\n")


def _quota(text: str | None) -> Bucket | Window | None:
    from collector.simulator.quota import parse_quota_spec

    if text is None:
        return None
    try:
        return parse_quota_spec(text)
    except ValueError:
        raise ConfigError([f"--quota: expected LIMIT/SECONDS like 50/0.5 (one request back every 0.5 s) or "
                           f"20/10:window (20 per 10-second window), got {text!r}"]) from None

