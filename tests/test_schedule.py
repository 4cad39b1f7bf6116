"""Seconds read when they are due: follow-up of statuses that change hours later, late mail, and the upgrade
from a checkpoint of the collector that re-read an overlap, all against the simulator's ground truth."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.daemon import Collector
from collector.simulator import Filter, MailFlow, Simulator
from collector.simulator.shapes import Late, Statuses
from collector.simulator.truth import lasting, match_share
from tests.conftest import ROOT, config_dict, make_config, write_config
from tests.statedb import page_size

FLT = Filter(to="example.com")
T0 = datetime(2026, 11, 28, 6, tzinfo=timezone.utc)
POLL = timedelta(minutes=5)


def events(path: Path) -> list[tuple[str, str]]:
    """(id, status) of every raw event in a file output, in file order."""
    if not path.exists():
        return []
    return [(e["id"], e["status"]) for e in
            (json.loads(line)["tracked_email"] for line in path.read_text(encoding="utf-8").splitlines())]


def poll_until(sim: Simulator, clock: dict[str, datetime], tmp_path: Path, until: datetime, **collection: Any) -> Collector:
    """Poll every five simulated minutes from ``clock['now']`` to ``until``, one collector throughout."""
    c = Collector(make_config(sim, tmp_path, collection={"lag": "1m", "initial_lookback": "5m", **collection}),
                  registry=CollectorRegistry())
    try:
        while clock["now"] <= until:
            (result,) = c.run_once(now=lambda: clock["now"])
            assert result.ok, result.error
            clock["now"] += POLL
    finally:
        c.close()
    return c


def test_a_hold_released_after_its_settle_read_is_shipped_at_the_next_follow_age(tmp_path: Path) -> None:
    """Holds released minutes to hours later: each release that happens before a follow read of its second
    is shipped once, after the hold; one after the last follow age is not claimed; nothing ships twice."""
    statuses = Statuses(held=0.4, pending=0.05, rejected=0.3, least=timedelta(minutes=15), most=timedelta(hours=4),
                        spread="uniform")
    flow = MailFlow(seed=11, start=T0, end=T0 + timedelta(hours=1), count=600, statuses=statuses)
    clock = {"now": T0}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        c = poll_until(sim, clock, tmp_path, T0 + timedelta(hours=4, minutes=30), follow=["1h", "3h"])
    shipped = events(tmp_path / "out.ndjson")
    assert max(Counter(shipped).values()) == 1, "no message-status twice"
    at = {key: n for n, key in enumerate(shipped)}
    caught = missed = 0
    for m in flow.between(flow.start, flow.end):
        if not FLT.matches(m) or len(m.lifecycle) < 2:
            continue
        (_, first, _), (delay, last, _) = m.lifecycle
        if first != "held":
            continue  # settled within two minutes: nothing to follow
        assert (m.id, first) in at, "the hold is shipped at the first read"
        if timedelta(minutes=16) < timedelta(seconds=delay) < timedelta(minutes=55) or \
                timedelta(hours=1, minutes=11) < timedelta(seconds=delay) < timedelta(hours=2, minutes=55):
            assert (m.id, last) in at, f"released after {delay} s, within a follow age: shipped"
            assert at[(m.id, first)] < at[(m.id, last)], "after its hold"
            caught += 1
        elif timedelta(seconds=delay) > timedelta(hours=3, minutes=11):
            assert (m.id, last) not in at, "released after the last follow age: not claimed"
            missed += 1
    assert caught > 30 and missed > 5
    searches = {p: c.metrics.registry.get_sample_value("mimecast_collector_searches_total",
                                                       {"watch": "inbound", "purpose": p}) for p in ("first", "follow")}
    assert searches["follow"] > 0 and searches["first"] > 0
    assert c.metrics.registry.get_sample_value("mimecast_collector_followed_records_total",
                                               {"watch": "inbound", "status": "held"}) > 0


def test_mail_indexed_up_to_settle_late_is_shipped_once(tmp_path: Path) -> None:
    """A third of the mail appears in answers up to ten minutes late: the settle read at ten minutes ships each
    message's status once, and the first read ships what it saw without a repeat."""
    flow = MailFlow(seed=12, start=T0, end=T0 + timedelta(hours=1), count=1200, statuses=Statuses(),
                    late=Late(share=0.3, most=timedelta(minutes=10)))
    clock = {"now": T0}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        poll_until(sim, clock, tmp_path, T0 + timedelta(hours=1, minutes=20), settle="10m")
    shipped = Counter(events(tmp_path / "out.ndjson"))
    final = {(m.id, m.state_at(clock["now"])[0]) for m in flow.between(flow.start, flow.end) if FLT.matches(m)}
    assert max(shipped.values()) == 1
    assert final <= set(shipped), f"{len(final - set(shipped))} late messages never shipped"
    assert set(shipped) <= {(m.id, s) for m in flow.between(flow.start, flow.end) if FLT.matches(m)
                            for s, *_ in m.spans(clock["now"])}


_BASE = "8a5501f"  # the last revision whose checkpoint is schema 2, re-reading an overlap at every poll


def _old_collector(tmp: Path) -> Path:
    """The collector of schema 2, unpacked from the repository's history."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the repository's history to run the collector of schema 2")
    folder = tmp / "old"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", _BASE, "collector"], capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"revision {_BASE} is not in this repository's history")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def test_the_upgrade_from_an_overlap_checkpoint_ships_nothing_twice_and_skips_nothing(tmp_path: Path) -> None:
    """The collector of schema 2 polls for an hour, then this one takes over its checkpoint and output: every
    status the flow showed is shipped once, the overlap's seconds get their settle read."""
    old = _old_collector(tmp_path)
    statuses = Statuses(held=0.3, least=timedelta(minutes=5), most=timedelta(minutes=40), spread="uniform")
    flow = MailFlow(seed=13, start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1), count=1200,
                    statuses=statuses)
    clock = {"now": T0}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        data = config_dict(sim, tmp_path, collection={"lag": "1m", "initial_lookback": "1h", "settle": None,
                                                      "overlap": "10m"})
        data["collection"].pop("settle")
        cfg = write_config(tmp_path, data)
        for _ in range(6):  # half an hour of the old collector, at its own clock: the simulator's now
            script = ("import sys; from datetime import datetime; from collector.commands import _logging;"
                      "from collector.config import load_config; from collector.daemon import Collector;"
                      f"c = Collector(load_config(sys.argv[1])); now = datetime.fromisoformat('{clock['now'].isoformat()}');"
                      "r = c.run_once(now=lambda: now); c.close(); sys.exit(0 if all(x.ok for x in r) else 1)")
            done = subprocess.run([sys.executable, "-c", script, str(cfg)], cwd=old, capture_output=True, text=True,
                                  env={"PYTHONPATH": str(old), "PATH": "/usr/bin:/bin"}, check=False)
            assert done.returncode == 0, done.stderr[-2000:]
            clock["now"] += POLL
        before = Counter(events(tmp_path / "out.ndjson"))
        assert before and max(before.values()) == 1
        assert page_size(tmp_path / "state.json") == 4096
        data["collection"] = {**data["collection"], "overlap": None, "settle": "11m", "follow": ["1h"]}
        data["collection"].pop("overlap")
        c = Collector(make_config(sim, tmp_path, collection={**data["collection"]}), registry=CollectorRegistry())
        try:
            while clock["now"] <= T0 + timedelta(hours=2, minutes=30):
                (result,) = c.run_once(now=lambda: clock["now"])
                assert result.ok, result.error
                clock["now"] += POLL
        finally:
            c.close()
    assert page_size(tmp_path / "state.json") == 1024, "rebuilt with the pages that write less"
    shipped = Counter(events(tmp_path / "out.ndjson"))
    assert max(shipped.values()) == 1, "nothing shipped twice across the upgrade"
    # The old collector last re-read back to its watermark less overlap (T0 + 24m less 10m): from there on,
    # every status that lasted 50 minutes was current at a read of its second (at settle, or at one hour).
    horizon = T0 + timedelta(minutes=14)
    wanted = lasting(flow, FLT, horizon, flow.end, clock["now"], timedelta(minutes=50))
    assert len(wanted) > 150
    assert wanted <= set(shipped), f"{len(wanted - set(shipped))} statuses skipped across the upgrade"


def _search_start(body: Any) -> datetime:
    return datetime.strptime(body["data"][0]["start"], "%Y-%m-%dT%H:%M:%S%z")


def _followed_state(sim: Simulator, tmp_path: Path, now: datetime) -> Path:
    """A checkpoint 70 minutes old (written by polls at that simulated time) whose pending seconds are due
    for their follow read now; returns its configuration."""
    cfg = write_config(tmp_path, config_dict(sim, tmp_path, collection={
        "lag": "1m", "settle": "10m", "follow": ["1h", "5h"], "initial_lookback": "2h", "window": "5m",
        "result_cap": 100}))
    c = Collector(make_config(sim, tmp_path, collection={
        "lag": "1m", "settle": "10m", "follow": ["1h", "5h"], "initial_lookback": "2h", "window": "5m",
        "result_cap": 100}), registry=CollectorRegistry())
    try:
        for minutes in (80, 75, 70):
            (result,) = c.run_once(now=lambda: now - timedelta(minutes=minutes))
            assert result.ok, result.error
    finally:
        c.close()
    return cfg


def test_sigkill_during_a_follow_read_loses_and_duplicates_nothing(tmp_path: Path, now: datetime) -> None:
    """Killed while it makes the follow reads of an hour of held mail (slow answers), the restarted collector
    ships the same events as one that was never killed, each once."""
    from tests.test_daemon import Daemon, wait_for

    statuses = Statuses(held=0.5, pending=0.2, least=timedelta(minutes=20), most=timedelta(hours=2), spread="uniform")
    flow = MailFlow(seed=14, start=now - timedelta(hours=3), end=now - timedelta(minutes=5), count=1500,
                    statuses=statuses)
    runs = {}
    for name in ("killed", "control"):
        folder = tmp_path / name
        folder.mkdir()
        with Simulator(flow, clock=lambda: now) as sim:
            cfg = _followed_state(sim, folder, now)
            before = Counter(events(folder / "out.ndjson"))
            if name == "killed":
                sim.latency = 0.15
                seen = len(sim.searches())
                proc = Daemon(folder, "once", "-c", str(cfg))
                try:
                    wait_for(lambda: sum(_search_start(r.body) < now - timedelta(minutes=90)
                                         for r in sim.searches()[seen:]) >= 3, what="follow reads")
                    proc.signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                finally:
                    proc.kill()
                follow_reads = [r for r in sim.searches()[seen:] if _search_start(r.body) < now - timedelta(minutes=90)]
                assert follow_reads, "the kill landed during the follow reads"
                sim.latency = 0.0
            done = subprocess.run([sys.executable, "-m", "collector", "once", "-c", str(cfg)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = (before, Counter(events(folder / "out.ndjson")))
    (_, killed), (before, control) = runs["killed"], runs["control"]
    assert max(killed.values()) == 1, "nothing shipped twice through the kill"
    assert set(killed) == set(control), "the same events as a collector that was never killed"
    assert len(set(control) - set(before)) > 50, "the follow reads shipped released holds"


@pytest.mark.slow
@pytest.mark.slow
def test_a_day_of_follow_up_ships_every_release_once_in_order(tmp_path: Path) -> None:
    """Two hours of mail at 100 matching messages a minute, followed for a day: holds released or rejected up
    to 20 hours later are each shipped once, after the hold, and nothing ships twice."""
    per_minute = 100
    statuses = Statuses(held=0.4, pending=0.05, least=timedelta(minutes=1), most=timedelta(hours=20))
    flow = MailFlow(seed=15, start=T0, end=T0 + timedelta(hours=2), count=int(per_minute * 120 / match_share(FLT)),
                    statuses=statuses, cache=True)
    clock = {"now": T0}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        c = poll_until(sim, clock, tmp_path, T0 + timedelta(hours=23, minutes=15), follow=["2h", "8h", "21h"],
                       result_cap=100)
    shipped = events(tmp_path / "out.ndjson")
    assert max(Counter(shipped).values()) == 1, "no message-status twice"
    at = {key: n for n, key in enumerate(shipped)}
    released = 0
    for m in flow.between(flow.start, flow.end):
        if not FLT.matches(m):
            continue
        last = m.state_at(clock["now"])[0]
        assert (m.id, last) in at, "every message's last status"
        if m.lifecycle[0][1] == "held" and len(m.lifecycle) == 2 and m.lifecycle[1][0] > 7 * 60:
            # Held through its first read (at most lag + interval old), released later: both, in order.
            assert (m.id, "held") in at and at[(m.id, "held")] < at[(m.id, last)], "a release after its hold"
            released += 1
    assert released > per_minute * 120 * 0.2
    pending = c.metrics.registry.get_sample_value("mimecast_collector_followed_records_total",
                                                  {"watch": "inbound", "status": "held"})
    assert pending > 0
