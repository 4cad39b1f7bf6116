"""Records set aside reach the dead-letter file once, even when the commit that follows them fails."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.daemon import Collector
from collector.simulator import Fault, MailFlow, Simulator
from tests.conftest import make_config


def test_dead_letters_are_not_written_again_after_a_failed_commit(tmp_path: Path, now: datetime) -> None:
    """The checkpoint refuses the commit (a real SQLite failure, raised by a trigger on the watches table): the
    chunk fails, its dead letters are taken back with it, and the retry writes each of them once."""
    flow = MailFlow(seed=9, start=now - timedelta(hours=2), end=now, count=400)
    with Simulator(flow, cap=100_000, clock=lambda: now) as sim:
        c = Collector(make_config(sim, tmp_path, collection={"window": "4h", "result_cap": 100_000}),
                      registry=CollectorRegistry())
        refuse = sqlite3.connect(tmp_path / "state.json", isolation_level=None)
        refuse.execute("CREATE TRIGGER refuse BEFORE UPDATE ON watches BEGIN SELECT RAISE(ABORT, 'refused'); END")
        sim.inject(Fault("corrupt_records"), times=2)
        (failed,) = c.run_once(now=lambda: now)
        assert not failed.ok and "refused" in str(failed.error)
        refuse.execute("DROP TRIGGER refuse")
        refuse.close()
        (again,) = c.run_once(now=lambda: now)
        c.close()
    assert again.ok and again.invalid == 3
    letters = [json.loads(line) for line in (tmp_path / "dead-letter.ndjson").read_text().splitlines()]
    assert sorted(d["reason"] for d in letters) == ["bad_received", "missing_id", "not_an_object"]
    reg = c.metrics.registry
    assert sum(reg.get_sample_value("mimecast_collector_records_invalid_total", {"watch": "inbound", "reason": r})
               for r in ("bad_received", "missing_id", "not_an_object")) == 3
