"""``demo``: the real pipeline against the built-in simulator, with no setup.

Two polls, thirty simulated minutes apart, show the whole story: windows
split at the result cap, the settle read with its repeats dropped, and
messages that changed status (held, then released) shipped again as new events.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from collector.commands import print_results
from collector.config import parse_config
from collector.daemon import Collector
from collector.errors import ConfigError
from collector.logging import configure_logging
from collector.simulator import Filter, MailFlow, Simulator

__all__ = ["run_demo"]

_DEMO_WATCHES = [{"name": "inbound", "to": "example.com"}, {"name": "outbound", "from": "example.com"}]
_FIRST_POLL_AGO = timedelta(minutes=30)
# Small enough that the default flow fills some 15-minute windows, so the demo shows them being split.
_CAP = 25


def run_demo(*, config_path: Path | None, fmt: str, messages: int, seed: int) -> int:
    """Run two polls against a fresh simulator, print events to stdout and a summary to stderr."""
    configure_logging("warning", "auto")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    flow = MailFlow(seed=seed, start=now - timedelta(hours=2), end=now, count=max(1, messages))
    clock = {"now": now - _FIRST_POLL_AGO}
    with Simulator(flow, cap=_CAP, clock=lambda: clock["now"]) as sim, tempfile.TemporaryDirectory() as tmp:
        config = parse_config(_demo_config(sim, Path(tmp), fmt, config_path), env={}, base_dir=Path(tmp))
        collector = Collector(config)
        try:
            first = collector.run_once(now=lambda: clock["now"])
            clock["now"] = now
            second = collector.run_once(now=lambda: now)
        finally:
            collector.close()
        out = sys.stderr
        print(f"\ndemo: {len(sim.searches())} searches against the simulator at {sim.base_url}", file=out)
        print(f"first poll ({_FIRST_POLL_AGO.seconds // 60} simulated minutes ago):", file=out)
        print_results(first, out)
        print("second poll (now; settling seconds are read again, status changes become new events):", file=out)
        print_results(second, out)
        expected = _ground_truth(flow, config, now)
        shipped = sum(r.shipped for r in first + second)
        verdict = "matches" if shipped == expected else "DOES NOT match"
        print(f"{shipped} events shipped; {verdict} the simulator's ground truth of {expected} message-statuses",
              file=out)
    return 0 if all(r.ok for r in first + second) and shipped == expected else 1


def _demo_config(sim: Simulator, tmp: Path, fmt: str, config_path: Path | None) -> dict[str, Any]:
    watches: Any = _DEMO_WATCHES
    outputs: Any = [{"name": "stdout", "format": fmt, "sink": {"type": "stdout"}}]
    if config_path is not None:
        try:
            mine = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([f"(file): cannot read {config_path}: {exc}"]) from None
        watches = mine.get("watches", watches) if isinstance(mine, dict) else watches
        outputs = mine.get("outputs", outputs) if isinstance(mine, dict) else outputs
    creds = sim.credentials
    return {
        "mimecast": {"base_url": sim.base_url, "auth": {"type": "oauth2", "client_id": creds.client_id,
                                                         "client_secret": creds.client_secret}},
        "collection": {"interval": "5m", "window": "15m", "lag": "0s", "settle": "10m", "initial_lookback": "2h",
                       "result_cap": _CAP, "state_file": str(tmp / "state.json")},
        "watches": watches,
        "outputs": outputs,
        "metrics": {"listen": None},
        "logging": {"level": "warning"},
    }


def _ground_truth(flow: MailFlow, config: Any, now: datetime) -> int:
    first_at = now - _FIRST_POLL_AGO
    shipped: set[tuple[str, str]] = set()  # an output holds a message-status once, whichever watches match it
    for w in config.watches:
        flt = Filter(from_=w.from_, to=w.to, subject=w.subject, sender_ip=w.sender_ip, message_id=w.message_id)
        keys = flow.ground_truth(flt, first_at - timedelta(hours=2), first_at, first_at)
        keys |= flow.ground_truth(flt, first_at - config.collection.settle, now, now)
        if w.status or w.route:
            keys = {k for k in keys if not w.status or k[1] in w.status}
        shipped |= keys
    return len(shipped)
