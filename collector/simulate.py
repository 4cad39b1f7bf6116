"""``simulator``: serve the built-in simulator on a port so ``run``, ``doctor`` and ``search`` can be tried."""

from __future__ import annotations

import argparse
import sys
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TextIO

from collector.errors import ConfigError
from collector.simulator import ORDERS
from collector.simulator.shapes import SPREADS

if TYPE_CHECKING:
    from collector.simulator import Bucket, Simulator  # noqa: F401 (annotations only)

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
    sim.add_argument("--quota", default=None, metavar="LIMIT/REFILL",
                     help="request quota: LIMIT requests, one more every REFILL seconds (e.g. 50/0.5)")
    sim.add_argument("--fault-every", type=int, default=0, metavar="N",
                     help="answer every N-th search with a retryable 503 (default: never)")
    sim.add_argument("--seed", type=int, default=7, help="seed of the simulated mail flow")
    shapes = sim.add_argument_group("mail shapes", "statuses that change hours later, mail indexed late, "
                                    "density steps (none by default)")
    shapes.add_argument("--held", type=float, default=0.0, metavar="SHARE",
                        help="share of messages held, then released or rejected after --hold-delay (e.g. 0.05)")
    shapes.add_argument("--pending", type=float, default=0.0, metavar="SHARE",
                        help="share of messages held for ever (e.g. 0.005); with --held or --pending, every "
                             "other message is archived, rejected or bounced within two minutes")
    shapes.add_argument("--rejected", type=float, default=0.2, metavar="SHARE",
                        help="share of the held messages rejected rather than released (default 0.2)")
    shapes.add_argument("--hold-delay", default="1m-1d", metavar="LEAST-MOST",
                        help="how long a message stays held (default 1m-1d, e.g. 5m-20h)")
    shapes.add_argument("--hold-spread", choices=SPREADS, default="log",
                        help="log: each power of ten of delay as likely (default); uniform: each second")
    shapes.add_argument("--late", type=float, default=0.0, metavar="SHARE",
                        help="share of messages that searches find only some time after they were received")
    shapes.add_argument("--late-max", default="10m", metavar="DURATION",
                        help="the longest such delay (default 10m)")
    shapes.add_argument("--step", action="append", default=[], metavar="AGO:LENGTH:RATE",
                        help="RATE more messages a minute for LENGTH, from AGO before now (repeatable; "
                             "e.g. 1h:10m:2500 for ten dense minutes an hour ago)")


def run_simulator(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Serve until SIGTERM or SIGINT; print the ``mimecast:`` block to paste into a configuration."""
    from collector.daemon import stopping_on_signals
    from collector.simulator import Fault, MailFlow, MixedFlow, Simulator, steps

    quota = _quota(args.quota)
    options = _shapes(args)
    problems = [f"--{name}: must be {rule}" for name, bad, rule in (
        ("density", args.density <= 0, "above 0"), ("burst", args.burst < 0, "0 or more"),
        ("cap", args.cap < 2, "2 or more"), ("fault-every", args.fault_every < 0, "0 or more"),
        ("port", not 0 <= args.port <= 65535, "0 to 65535")) if bad]
    if problems:
        raise ConfigError(problems)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - _HISTORY
    steady = MailFlow(seed=args.seed, start=start, end=now + _AHEAD,
                      count=max(1, int(args.density * (_HISTORY + _AHEAD).total_seconds() / 60)), **options)
    flows: list[Any] = [steady]
    if args.burst:
        hour_ago = now - timedelta(hours=1)
        flows.append(MailFlow(seed=args.seed + 1, start=hour_ago, end=hour_ago + timedelta(minutes=1),
                              count=args.burst, **options))
    for k, (ago, length, rate) in enumerate(_steps(args.step, _HISTORY)):
        flows.extend(steps(args.seed + 2 + 7_919 * k, now - ago, [(length, rate)], **options).flows)
    flow: Any = flows[0] if len(flows) == 1 else MixedFlow(flows)
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


def _shapes(args: argparse.Namespace) -> dict[str, Any]:
    """The ``statuses`` and ``late`` options of every flow the command serves, from its arguments."""
    from collector.config.values import parse_duration
    from collector.simulator import Late, Statuses

    options: dict[str, Any] = {}
    try:
        if args.held or args.pending:
            least, _, most = args.hold_delay.partition("-")
            options["statuses"] = Statuses(held=args.held, pending=args.pending, rejected=args.rejected,
                                           least=parse_duration(least), most=parse_duration(most),
                                           spread=args.hold_spread)
    except ValueError as exc:
        raise ConfigError([f"--held/--pending/--hold-delay: {exc} (e.g. --held 0.05 --hold-delay 5m-20h)"]) from None
    try:
        if args.late:
            options["late"] = Late(share=args.late, most=parse_duration(args.late_max))
    except ValueError as exc:
        raise ConfigError([f"--late/--late-max: {exc} (e.g. --late 0.02 --late-max 10m)"]) from None
    return options


def _steps(texts: list[str], history: timedelta) -> list[tuple[timedelta, timedelta, float]]:
    """``(ago, length, messages a minute)`` of each ``--step AGO:LENGTH:RATE``."""
    from collector.config.values import parse_duration

    found = []
    for text in texts:
        try:
            ago, length, rate = text.split(":")
            step = parse_duration(ago), parse_duration(length), float(rate)
        except ValueError:
            raise ConfigError([f"--step: expected AGO:LENGTH:RATE like 1h:10m:2500, got {text!r}"]) from None
        if not (timedelta(0) < step[0] <= history and step[1] > timedelta(0) and step[2] > 0):
            raise ConfigError([f"--step {text}: AGO must be within the last 30 days, LENGTH and RATE above 0"])
        found.append(step)
    return found


def _quota(text: str | None) -> Bucket | None:
    from collector.simulator import Bucket

    if text is None:
        return None
    limit, _, refill = text.partition("/")
    try:
        return Bucket(int(limit), float(refill))
    except ValueError:
        raise ConfigError([f"--quota: expected LIMIT/REFILL like 50/0.5 (requests, seconds), got {text!r}"]) from None

