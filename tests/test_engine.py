"""The collection engine against the simulator: complete, exactly once, and safe under faults."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.daemon import Collector
from collector.simulator import Fault, Filter, MailFlow, Simulator
from collector.sinks import Line
from tests.conftest import make_config
from tests.statedb import read_state

FLT = Filter(to="example.com")


def shipped(path: Path) -> Counter[tuple[str, str]]:
    """(id, status) of every raw event in a file output, with multiplicity."""
    keys: Counter[tuple[str, str]] = Counter()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            email = json.loads(line)["tracked_email"]
            keys[(email["id"], email["status"])] += 1
    return keys


def collector(sim: Simulator, tmp_path: Path, **kw: Any) -> Collector:
    return Collector(make_config(sim, tmp_path, **kw), registry=CollectorRegistry())


@pytest.fixture(name="big")
def _big(now: datetime) -> Simulator:
    flow = MailFlow(seed=3, start=now - timedelta(hours=4), end=now, count=6000)
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        yield sim


@pytest.mark.parametrize("cap", [1000, 40])
def test_once_ships_every_message_status_exactly_once(big: Simulator, tmp_path: Path, now: datetime, cap: int) -> None:
    """A few thousand messages reach the file exactly once, also when a small result_cap forces splits."""
    big.cap = cap
    c = collector(big, tmp_path, collection={"result_cap": cap})
    try:
        (result,) = c.run_once(now=lambda: now)
    finally:
        c.close()
    expected = big.flow.ground_truth(FLT, now - timedelta(hours=4), now, now)
    got = shipped(tmp_path / "out.ndjson")
    assert len(expected) > 2000
    assert set(got) == expected and max(got.values()) == 1
    assert result.ok and result.shipped == len(expected)
    splits = c.metrics.registry.get_sample_value("mimecast_collector_searches_split_total", {"watch": "inbound"})
    assert splits > 0 if cap == 40 else splits == 0
    assert c.metrics.registry.get_sample_value("mimecast_collector_searches_truncated_total", {"watch": "inbound"}) == 0


def test_file_output_is_mode_0640_and_in_received_order(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """Output files are created 0640; within a chunk events are in received order."""
    c = collector(big, tmp_path, collection={"window": "4h", "initial_lookback": "4h"})
    c.run_once(now=lambda: now)
    c.close()
    out = tmp_path / "out.ndjson"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    received = [json.loads(line)["tracked_email"]["received"] for line in out.read_text().splitlines()]
    assert received == sorted(received)


def test_status_change_is_a_new_event_and_repeats_are_dropped(flow: MailFlow, tmp_path: Path, now: datetime) -> None:
    """Held then archived ships twice; the overlap re-read drops every repeat."""
    clock = {"now": now - timedelta(minutes=40)}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        c = collector(sim, tmp_path)
        c.run_once(now=lambda: clock["now"])
        first = shipped(tmp_path / "out.ndjson")
        clock["now"] = now
        (second,) = c.run_once(now=lambda: now)
        c.close()
    got = shipped(tmp_path / "out.ndjson")
    assert max(got.values()) == 1
    ids_with_two_statuses = Counter(i for i, _ in got)
    assert any(n == 2 for n in ids_with_two_statuses.values()), "some message changed status between polls"
    assert second.duplicates > 0
    expected = flow.ground_truth(FLT, now - timedelta(hours=4, minutes=40), now - timedelta(minutes=40),
                                 now - timedelta(minutes=40)) | flow.ground_truth(FLT, now - timedelta(minutes=50), now, now)
    assert set(got) == expected and set(first) < set(got)


def test_429_storm_and_5xx_burst_lose_nothing(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """A 429 storm and a 5xx burst are waited out; a poll that still fails leaves the watermark below
    every unshipped message, and the next poll completes the set exactly once."""
    c = collector(big, tmp_path, collection={"window": "20m"})
    big.inject(Fault("rate_limit", reset_ms=50), times=6)
    big.inject(Fault("server_error", status=503), times=2)   # within retries: recovered in the same search
    big.inject(Fault("slow", delay=0), times=4)              # four normal answers...
    big.inject(Fault("server_error", status=502), times=50)  # ...then more 5xx than the retry budget
    (broken,) = c.run_once(now=lambda: now)
    assert not broken.ok and broken.error is not None and broken.error.error_type == "server_error"
    assert broken.chunks == 4
    watermark = c.state.watch("inbound").watermark
    assert watermark is not None and watermark < now
    got = shipped(tmp_path / "out.ndjson")
    assert set(got) == big.flow.ground_truth(FLT, now - timedelta(hours=4), watermark, now)
    big.clear_faults()
    (fixed,) = c.run_once(now=lambda: now)
    c.close()
    assert fixed.ok
    got = shipped(tmp_path / "out.ndjson")
    assert max(got.values()) == 1
    assert set(got) == big.flow.ground_truth(FLT, now - timedelta(hours=4), now, now)
    reg = c.metrics.registry
    assert reg.get_sample_value("mimecast_collector_rate_limited_total") == 6
    assert reg.get_sample_value("mimecast_collector_poll_runs_total", {"watch": "inbound", "outcome": "failure"}) == 1


def test_sink_failure_leaves_state_and_other_outputs_untouched(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """A full device on one output fails the chunk: no watermark, and the healthy file is rolled back."""
    outputs = [{"name": "good", "format": "raw", "sink": {"type": "file", "path": str(tmp_path / "good.ndjson")}},
               {"name": "full", "format": "raw", "sink": {"type": "file", "path": "/dev/full"}}]
    c = collector(big, tmp_path, outputs=outputs)
    (result,) = c.run_once(now=lambda: now)
    c.close()
    assert not result.ok and result.error.error_type == "sink"
    assert c.state.watch("inbound").watermark is None
    assert (tmp_path / "good.ndjson").read_bytes() == b""
    assert c.metrics.registry.get_sample_value("mimecast_collector_sink_errors_total", {"output": "full"}) == 1
    saved = read_state(tmp_path / "state.json")
    assert saved["watches"] == {}


def test_invalid_records_are_set_aside_once_and_the_rest_ships(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """Unusable records go to the dead-letter file once; the batch ships; the poll still succeeds."""
    big.cap = 100_000
    c = collector(big, tmp_path, collection={"window": "4h", "result_cap": 100_000})
    big.inject(Fault("corrupt_records"), times=2)
    (result,) = c.run_once(now=lambda: now)
    (again,) = c.run_once(now=lambda: now)
    c.close()
    assert result.ok and again.ok and result.invalid == 3
    letters = [json.loads(line) for line in (tmp_path / "dead-letter.ndjson").read_text().splitlines()]
    assert sorted(d["reason"] for d in letters) == ["bad_received", "missing_id", "not_an_object"]
    assert set(shipped(tmp_path / "out.ndjson")) == big.flow.ground_truth(FLT, now - timedelta(hours=4), now, now)
    reg = c.metrics.registry
    assert reg.get_sample_value("mimecast_collector_records_invalid_total",
                                {"watch": "inbound", "reason": "missing_id"}) == 1


def test_client_side_status_and_route_filters(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """status and route filters keep only matching events."""
    c = collector(big, tmp_path, watches=[{"name": "held", "to": "example.com", "status": ["held"],
                                           "route": ["inbound"]}])
    c.run_once(now=lambda: now)
    c.close()
    lines = [json.loads(x)["tracked_email"] for x in (tmp_path / "out.ndjson").read_text().splitlines()]
    assert lines and all(e["status"] == "held" and e["route"] == "inbound" for e in lines)


def test_reopen_after_rotation_writes_a_new_file(flow: MailFlow, tmp_path: Path, now: datetime) -> None:
    """After the file is moved away and a reopen is requested, new events go to a new file."""
    clock = {"now": now - timedelta(minutes=30)}
    with Simulator(flow, clock=lambda: clock["now"]) as sim:
        c = collector(sim, tmp_path)
        c.run_once(now=lambda: clock["now"])
        (tmp_path / "out.ndjson").rename(tmp_path / "out.ndjson.1")
        c.pipeline.request_reopen()
        clock["now"] = now
        c.run_once(now=lambda: now)
        c.close()
    assert (tmp_path / "out.ndjson").stat().st_size > 0
    old, new = shipped(tmp_path / "out.ndjson.1"), shipped(tmp_path / "out.ndjson")
    assert not set(old) & set(new)
    mark = read_state(tmp_path / "state.json")["outputs"]["archive"]
    assert mark["inode"] == (tmp_path / "out.ndjson").stat().st_ino


def test_uncommitted_tail_is_cut_on_start(flow: MailFlow, tmp_path: Path, now: datetime) -> None:
    """A chunk written after the last commit and never committed (a crash) is removed when the collector starts;
    bytes another process appended after the last commit are kept."""
    with Simulator(flow, clock=lambda: now) as sim:
        c = collector(sim, tmp_path)
        c.run_once(now=lambda: now)
        before = (tmp_path / "out.ndjson").read_bytes()
        # What delivery does up to the crash: record what the file is about to receive, then write it.
        sink, lines = c.pipeline.outputs[0].sink, [Line('{"written before a crash": 1}', 5, now)]
        c.state.record_intents({"archive": sink.stage(lines)})
        sink.write(lines)
        c.close()
        assert (tmp_path / "out.ndjson").read_bytes() != before
        collector(sim, tmp_path).close()
        assert (tmp_path / "out.ndjson").read_bytes() == before
        with open(tmp_path / "out.ndjson", "ab") as f:
            f.write(b'{"appended by another process": 1}\n')
        collector(sim, tmp_path).close()
    assert (tmp_path / "out.ndjson").read_bytes() == before + b'{"appended by another process": 1}\n'


def test_an_unexpected_error_while_writing_rolls_files_back(big: Simulator, tmp_path: Path, now: datetime) -> None:
    """Even an error that is not the collector's own leaves no uncommitted bytes in a file output; the poll
    reports it as an internal error instead of crashing (the other watches go on)."""
    c = collector(big, tmp_path)
    bad = c.pipeline.outputs[0]

    class Exploding:
        """A sink wrapper whose flush fails the way a bug would (not a SinkError)."""

        name = bad.sink.name

        def __getattr__(self, attr: str) -> object:
            return getattr(bad.sink, attr)

        def flush(self) -> None:
            raise RuntimeError("unexpected")

    c.pipeline.outputs[0] = type(bad)(bad.name, bad.formatter, Exploding())
    (result,) = c.run_once(now=lambda: now)
    c.close()
    assert not result.ok and result.error is not None and result.error.error_type == "internal"
    assert "RuntimeError: unexpected" in str(result.error)
    assert (tmp_path / "out.ndjson").read_bytes() == b""
    assert c.state.watch("inbound").watermark is None
