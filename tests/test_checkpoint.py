"""The checkpoint through the whole engine: upgrades, hostile keys, repeats across watches and time, quiet chunks."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.daemon import Collector
from collector.simulator import Fault, Filter, MailFlow, Simulator
from collector.state import Advance, StateStore
from tests.conftest import DATA, config_dict, make_config, run_cli, write_config
from tests.statedb import read_state

FLT = Filter(to="example.com")
# Written by the release whose checkpoint was one JSON file (version 1), polling this flow at T0 - 40 minutes.
V1 = DATA / "state-v1"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def lines(path: Path) -> list[dict[str, Any]]:
    """Every event of a raw file output (text that is not valid Unicode kept as surrogates)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().decode("utf-8", "surrogatepass").splitlines()]


def keys(path: Path) -> Counter[tuple[str, str]]:
    """(id, status) of every event, with multiplicity."""
    return Counter((e["tracked_email"]["id"], e["tracked_email"]["status"]) for e in lines(path))


@pytest.fixture(name="big")
def _big(now: datetime) -> Iterator[Simulator]:
    flow = MailFlow(seed=3, start=now - timedelta(hours=4), end=now, count=6000)
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        yield sim


def collector(sim: Simulator, tmp_path: Path, **kw: Any) -> Collector:
    return Collector(make_config(sim, tmp_path, **kw), registry=CollectorRegistry())


def canned(*records: dict[str, Any]) -> bytes:
    """A search answer holding exactly ``records``."""
    return json.dumps({"meta": {"status": 200}, "data": [{"trackedEmails": list(records)}], "fail": []}).encode()


def record(mimecast_id: str, received: datetime, status: str = "delivered") -> dict[str, Any]:
    """A tracked email as Mimecast sends it (the shared fixture, with this id, status and time)."""
    body = json.loads((DATA / "mimecast" / "search-held-outbound.json").read_text())
    raw = body["data"][0]["trackedEmails"][0]
    raw.update(id=mimecast_id, status=status, received=received.strftime("%Y-%m-%dT%H:%M:%S+0000"))
    return raw


def test_a_version_1_checkpoint_upgrades_without_repeats_or_gaps(tmp_path: Path) -> None:
    """From the JSON checkpoint and file the previous release wrote, the next poll ships every later event once."""
    shutil.copy(V1 / "state.json", tmp_path / "state.json")
    shutil.copy(V1 / "out.ndjson", tmp_path / "out.ndjson")
    flow = MailFlow(seed=16, start=T0 - timedelta(hours=3), end=T0, count=240)
    before = T0 - timedelta(minutes=40)
    with Simulator(flow, clock=lambda: T0) as sim:
        c = collector(sim, tmp_path)
        (result,) = c.run_once(now=lambda: T0)
        c.close()
    assert result.ok and result.duplicates > 0, "the overlap re-read met keys carried over from version 1"
    got = keys(tmp_path / "out.ndjson")
    assert max(got.values()) == 1
    expected = (flow.ground_truth(FLT, T0 - timedelta(hours=4, minutes=40), before, before)
                | flow.ground_truth(FLT, before - timedelta(minutes=10), T0, T0))
    assert set(got) == expected
    assert json.loads((tmp_path / "state.v1.json").read_text())["version"] == 1
    assert (tmp_path / "state.json").read_bytes().startswith(b"SQLite format 3")


def test_a_lone_surrogate_in_an_id_stops_nothing(flow: MailFlow, tmp_path: Path, now: datetime) -> None:
    """A record whose id and status hold lone surrogates ships and is remembered; the other watch is complete."""
    watches = [{"name": "odd", "to": "example.com"}, {"name": "healthy", "from": "example.org"}]
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        c = collector(sim, tmp_path, watches=watches, collection={"window": "4h", "initial_lookback": "4h"})
        sim.inject(Fault("canned", status=200, body=canned(record("\ud800bad", now - timedelta(hours=1),
                                                                 status="held\udfff"))))
        results = c.run_once(now=lambda: now)
        again = c.run_once(now=lambda: now + timedelta(minutes=10))
        c.close()
    assert all(r.ok for r in results + again), [r.error for r in results + again]
    got = keys(tmp_path / "out.ndjson")
    assert got[("\ud800bad", "held\udfff")] == 1 and max(got.values()) == 1
    # The second run made the settle read of "odd" normally.
    assert set(got) - {("\ud800bad", "held\udfff")} == (
        flow.ground_truth(Filter(from_="example.org"), now - timedelta(hours=4), now, now)
        | flow.ground_truth(FLT, now - timedelta(minutes=10), now, now))


def test_a_record_found_outside_its_received_window_ships_once(flow: MailFlow, tmp_path: Path,
                                                               now: datetime) -> None:
    """Mimecast may match a record by another time: received 30 minutes ago, found in every window since."""
    stray = record("stray-1", now - timedelta(minutes=30))
    clock = {"now": now}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        c = collector(sim, tmp_path, collection={"initial_lookback": "20m"})
        sim.inject(Fault("canned", status=200, body=canned(stray)), times=100)
        for minutes in (0, 1, 2):
            clock["now"] = now + timedelta(minutes=minutes)
            (result,) = c.run_once(now=lambda: clock["now"])
            assert result.ok
        c.close()
    assert keys(tmp_path / "out.ndjson") == {("stray-1", "delivered"): 1}


def test_a_future_received_time_is_forgotten_like_any_other(flow: MailFlow, tmp_path: Path, now: datetime) -> None:
    """A record dated 2099 is remembered an overlap after it was last found, then forgotten."""
    key = ("future-1", "delivered")
    clock = {"now": now}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        c = collector(sim, tmp_path, collection={"initial_lookback": "20m"})
        sim.inject(Fault("canned", status=200, body=canned(record(key[0], datetime(2099, 1, 1, tzinfo=timezone.utc)))),
                   times=2)
        c.run_once(now=lambda: now)
        assert c.state.known("inbound", [key]) == {key}
        sim.clear_faults()
        clock["now"] = now + timedelta(minutes=30)
        (later,) = c.run_once(now=lambda: clock["now"])
        assert later.ok
        assert c.state.known("inbound", [key]) == set()
        c.close()


def test_two_watches_matching_one_message_write_it_once(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """Polled at the same time, two watches with the same filter put each event in the file once."""
    watches = [{"name": "first", "to": "example.com"}, {"name": "second", "to": "example.com"}]
    c = collector(big, tmp_path, watches=watches)
    threads = [threading.Thread(target=p.run_cycle, args=(now,)) for p in c.pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    c.run_once(now=lambda: now)
    c.close()
    events = lines(tmp_path / "out.ndjson")
    got = Counter((e["tracked_email"]["id"], e["tracked_email"]["status"]) for e in events)
    assert set(got) == big.flow.ground_truth(FLT, now - timedelta(hours=4), now, now)
    assert max(got.values()) == 1
    assert len({e["event_id"] for e in events}) == len(events)
    assert c.metrics.registry.get_sample_value("mimecast_collector_events_total",
                                               {"watch": "first", "output": "archive"}) + \
        c.metrics.registry.get_sample_value("mimecast_collector_events_total",
                                            {"watch": "second", "output": "archive"}) == len(events)


def test_a_file_shorter_than_its_committed_mark_is_reported(flow: MailFlow, tmp_path: Path, now: datetime) -> None:
    """Events the checkpoint says were delivered but are gone from the file: an error and a counted sink error."""
    with Simulator(flow, clock=lambda: now) as sim:
        first = collector(sim, tmp_path)
        assert first.run_once(now=lambda: now)[0].ok
        first.close()
        out = tmp_path / "out.ndjson"
        committed = read_state(tmp_path / "state.json")["outputs"]["archive"]["size"]
        assert out.stat().st_size == committed > 0
        with open(out, "r+b") as f:
            f.truncate(committed // 2)
        with capture_logs() as logs:
            c = collector(sim, tmp_path)
        c.close()
    assert [e for e in logs if e["event"] == "sink.file.shorter_than_committed"
            and e["log_level"] == "error" and e["missing_bytes"] == committed - committed // 2]
    assert c.metrics.registry.get_sample_value("mimecast_collector_sink_errors_total", {"output": "archive"}) == 1


def test_nothing_is_taken_back_once_the_checkpoint_has_committed(flow: MailFlow, tmp_path: Path,
                                                                 now: datetime) -> None:
    """A failure after the commit (here the sink's own bookkeeping) leaves the delivered events in the file."""
    with Simulator(flow, clock=lambda: now) as sim:
        c = collector(sim, tmp_path)
        real = c.pipeline.outputs[0]

        class Forgetful:
            """The real file sink, whose note that the checkpoint covers its data fails."""

            name = real.sink.name

            def __getattr__(self, attr: str) -> object:
                return getattr(real.sink, attr)

            def committed(self) -> None:
                raise RuntimeError("bookkeeping failed")

        c.pipeline.outputs[0] = type(real)(real.name, real.formatter, Forgetful())
        (result,) = c.run_once(now=lambda: now)
        c.close()
    assert result.ok
    got = keys(tmp_path / "out.ndjson")
    assert set(got) == flow.ground_truth(FLT, now - timedelta(hours=4), now, now) and max(got.values()) == 1
    assert read_state(tmp_path / "state.json")["outputs"]["archive"]["size"] == (tmp_path / "out.ndjson").stat().st_size


def _written_by_this_thread() -> int:
    with open("/proc/thread-self/io", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def test_a_chunk_with_nothing_new_writes_next_to_nothing(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """With thousands of keys remembered, a poll that finds only repeats leaves the output alone and writes
    a few pages of checkpoint (and those of the keys it forgets), not the whole key set."""
    big.cap = 100_000
    c = collector(big, tmp_path, collection={"window": "4h", "settle": "4h", "result_cap": 100_000})
    (first,) = c.run_once(now=lambda: now)
    assert first.shipped > 2000
    out = tmp_path / "out.ndjson"
    size, mtime = out.stat().st_size, out.stat().st_mtime_ns
    before = _written_by_this_thread()
    (quiet,) = c.run_once(now=lambda: now + timedelta(minutes=2))  # the settle read of the oldest two minutes
    written = _written_by_this_thread() - before
    c.close()
    assert quiet.ok and quiet.shipped == 0 and 0 < quiet.duplicates < first.shipped / 50
    assert (out.stat().st_size, out.stat().st_mtime_ns) == (size, mtime)
    # The settle read ends those keys' lives: each forgotten key may touch a page of its own, no other key does.
    assert written < 20_000 + 4_200 * quiet.duplicates, f"{written} bytes written for {quiet.duplicates} repeats"


def _foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()


def _truncated_database(path: Path) -> None:
    store = StateStore(path).open()
    for i in range(30):
        end = T0 + timedelta(minutes=i)
        store.commit(Advance("inbound", end, end - timedelta(hours=1),
                             new_keys=[(f"id-{i}-{n}", "held") for n in range(200)]))
    store.close()
    os.truncate(path, path.stat().st_size // 3)


@pytest.mark.parametrize("damage", [_foreign_sqlite, _truncated_database,
                                    lambda p: p.write_bytes(os.urandom(20_000))],
                         ids=["foreign-sqlite", "truncated", "random-bytes"])
def test_an_unreadable_database_stops_the_start_and_reset_moves_it_aside(sim: Simulator, tmp_path: Path,
                                                                        damage: Any) -> None:
    """Exit 65 with the reset hint; `state reset` keeps the file aside; the next run starts afresh."""
    cfg = write_config(tmp_path, config_dict(sim, tmp_path))
    path = tmp_path / "state.json"
    damage(path)
    content = path.read_bytes()
    result = run_cli("once", "-c", str(cfg))
    assert result.returncode == 65 and "mimecast-collector state reset" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and path.read_bytes() == content
    assert run_cli("state", "show", "-c", str(cfg)).returncode == 65
    assert run_cli("state", "reset", "-c", str(cfg)).returncode == 0
    (aside,) = tmp_path.glob("state.json.corrupt-*")
    assert aside.read_bytes() == content
    assert run_cli("once", "-c", str(cfg)).returncode == 0


def test_state_show_reads_while_the_collector_holds_the_state(sim: Simulator, tmp_path: Path,
                                                              now: datetime) -> None:
    """`state show` runs while another process holds the lock and keeps committing; it sees the latest commit."""
    cfg = write_config(tmp_path, config_dict(sim, tmp_path))
    holder = StateStore(tmp_path / "state.json").open()
    try:
        holder.commit(Advance("inbound", now, now - timedelta(minutes=10), new_keys=[("a", "held")]))
        shown = run_cli("state", "show", "-c", str(cfg), timeout=60)
        holder.commit(Advance("inbound", now + timedelta(minutes=1), now - timedelta(minutes=9)))
    finally:
        holder.close()
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)["watches"]["inbound"]
    assert view["watermark"] == now.isoformat() and view["remembered_keys"] == 1
    assert view["remembered_from"] == (now - timedelta(minutes=10)).isoformat()
