"""Hostile answers through the whole engine: odd field types, non-JSON numbers, deep nesting, a clock that jumps."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.daemon import Collector
from collector.simulator import Fault, Filter, MailFlow, Simulator
from tests.cef_decoder import decode
from tests.conftest import DATA, make_config

FLT = Filter(to="example.com")


def collector(sim: Simulator, tmp_path: Path, **kw: Any) -> Collector:
    return Collector(make_config(sim, tmp_path, **kw), registry=CollectorRegistry())


def canned(*records: Any) -> bytes:
    """A search answer holding exactly ``records`` (NaN and Infinity written as Python's json writes them)."""
    return json.dumps({"meta": {"status": 200}, "data": [{"trackedEmails": list(records)}], "fail": []}).encode()


def record(mimecast_id: Any, received: datetime, **fields: Any) -> dict[str, Any]:
    """The shared fixture's tracked email with this id and time and ``fields`` replaced."""
    body = json.loads((DATA / "mimecast" / "search-held-outbound.json").read_text())
    raw = body["data"][0]["trackedEmails"][0]
    raw.update(id=mimecast_id, received=received.strftime("%Y-%m-%dT%H:%M:%S+0000"), **fields)
    return raw


def events(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON lines file, parsed strictly (NaN and Infinity are not JSON)."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text(encoding="utf-8").splitlines()]


def outputs(tmp_path: Path) -> list[dict[str, Any]]:
    return [{"name": "raw", "format": "raw", "sink": {"type": "file", "path": str(tmp_path / "raw.ndjson")}},
            {"name": "ecs", "format": "ecs", "sink": {"type": "file", "path": str(tmp_path / "ecs.ndjson")}},
            {"name": "cef", "format": "cef", "sink": {"type": "file", "path": str(tmp_path / "cef.log")}}]


def test_odd_ids_recipients_and_numbers_ship_as_valid_events(tmp_path: Path, now: datetime) -> None:
    """A numeric id ships (as text); a ``to`` string keeps its recipients; NaN and Infinity never reach a file."""
    flow = MailFlow(seed=5, start=now - timedelta(hours=3), end=now - timedelta(hours=2), count=5)
    at = now - timedelta(minutes=5)
    answer = canned(record(12345, at, status="delivered", to="a@example.com, b@example.com"),
                    record("nan-1", at, status="held", spamScore=float("nan"), to=["c@example.com"]),
                    record("inf-1", at, status="held", spamScore=float("inf"), size=float("-inf")))
    assert b"NaN" in answer and b"Infinity" in answer
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        c = collector(sim, tmp_path, outputs=outputs(tmp_path), collection={"initial_lookback": "10m"})
        sim.inject(Fault("canned", status=200, body=answer))
        (result,) = c.run_once(now=lambda: now)
        c.close()
    assert result.ok and result.invalid == 0 and result.shipped == 3
    raw = {str(e["tracked_email"]["id"]): e for e in events(tmp_path / "raw.ndjson")}
    assert set(raw) == {"12345", "nan-1", "inf-1"}
    assert raw["nan-1"]["tracked_email"]["spamScore"] == "NaN"
    ecs = {e["email"]["local_id"]: e for e in events(tmp_path / "ecs.ndjson")}
    assert ecs["12345"]["email"]["to"]["address"] == ["a@example.com", "b@example.com"]
    assert ecs["nan-1"]["email"]["to"]["address"] == ["c@example.com"]
    cef = [decode(line) for line in (tmp_path / "cef.log").read_text().splitlines()]
    assert "a@example.com,b@example.com" in [m.extension.get("duser") for m in cef]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_json_is_a_retried_counted_malformed_answer(tmp_path: Path, now: datetime) -> None:
    """An answer nested 1,000 (and 100,000) deep: retried, counted, reported with its window; the next poll ships all."""
    flow = MailFlow(seed=8, start=now - timedelta(hours=1), end=now, count=200)
    deep = nested(1000).encode()
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        c = collector(sim, tmp_path, collection={"initial_lookback": "1h", "window": "1h"})
        sim.inject(Fault("canned", status=200, body=deep), times=3)
        sim.inject(Fault("canned", status=200, body=nested(100_000).encode()))
        with capture_logs() as logs:
            (failed,) = c.run_once(now=lambda: now)
            (again,) = c.run_once(now=lambda: now)
        c.close()
    assert failed.error is not None and failed.error.error_type == "malformed_response"
    assert not any(e["event"] == "poll.internal_error" for e in logs)
    (report,) = [e for e in logs if e["event"] == "poll.failed"]
    assert report["error_type"] == "malformed_response"
    assert report["window_start"] == (now - timedelta(hours=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    assert report["window_end"] == now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    assert c.metrics.registry.get_sample_value("mimecast_collector_api_retries_total",
                                               {"reason": "malformed_response"}) == 3
    assert c.metrics.registry.get_sample_value("mimecast_collector_poll_errors_total",
                                               {"watch": "inbound", "error_type": "malformed_response"}) == 1
    assert again.ok
    got = Counter((e["tracked_email"]["id"], e["tracked_email"]["status"]) for e in events(tmp_path / "out.ndjson"))
    assert max(got.values()) == 1
    assert set(got) == flow.ground_truth(FLT, now - timedelta(hours=1), now, now)


def test_a_record_nested_deep_inside_a_good_answer_is_set_aside(tmp_path: Path, now: datetime) -> None:
    """A record whose field is nested as deep as the parser allows ships or is set aside; the rest ships."""
    flow = MailFlow(seed=9, start=now - timedelta(hours=1), end=now, count=100)
    body = canned(record("deep-1", now - timedelta(minutes=3), status="held", subject="PLACEHOLDER"))
    body = body.replace(b'"PLACEHOLDER"', nested(985).encode())
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        c = collector(sim, tmp_path, collection={"initial_lookback": "1h", "window": "1h"})
        sim.inject(Fault("canned", status=200, body=body))
        (first,) = c.run_once(now=lambda: now)
        (second,) = c.run_once(now=lambda: now)
        c.close()
    assert second.ok, (first.error, second.error)
    got = Counter((e["tracked_email"]["id"], e["tracked_email"]["status"]) for e in events(tmp_path / "out.ndjson"))
    assert max(got.values()) == 1
    assert set(got) - {("deep-1", "held")} == flow.ground_truth(FLT, now - timedelta(hours=1), now, now)


def clock_flow(now: datetime) -> MailFlow:
    return MailFlow(seed=21, start=now - timedelta(hours=1), end=now + timedelta(minutes=40), count=1200)


def clock_run(tmp_path: Path, now: datetime, *, send_date: bool, fast: timedelta) -> tuple[Counter[Any], list[Any], Collector]:
    """Twelve polls a minute apart while Mimecast's clock runs true; this host's is ``fast`` for polls 1 to 3."""
    real = {"t": now}
    flow = clock_flow(now)
    with Simulator(flow, cap=1000, clock=lambda: real["t"], send_date=send_date) as sim:
        c = collector(sim, tmp_path, collection={"initial_lookback": "1h", "window": "1h"})
        with capture_logs() as logs:
            for minute in range(12):
                real["t"] = now + timedelta(minutes=minute)
                local = real["t"] + (fast if 1 <= minute <= 3 else timedelta(0))
                (result,) = c.run_once(now=lambda: local)
                assert result.ok, result.error
        c.close()
    got = Counter((e["tracked_email"]["id"], e["tracked_email"]["status"]) for e in events(tmp_path / "out.ndjson"))
    return got, logs, c


@pytest.mark.parametrize("send_date", [True, False], ids=["with-date", "without-date"])
def test_a_clock_thirty_minutes_fast_then_corrected_loses_and_repeats_nothing(tmp_path: Path, now: datetime,
                                                                               send_date: bool) -> None:
    """This host's clock runs 30 minutes fast for three polls, then is set right: it ships what a true clock ships.

    With Mimecast's ``Date`` the watermark never passes Mimecast's clock; without it the watermark gets ahead
    and, once the clock is right, the span searched too early is searched again.
    """
    (tmp_path / "true").mkdir()
    (tmp_path / "fast").mkdir()
    expected, _, _ = clock_run(tmp_path / "true", now, send_date=send_date, fast=timedelta(0))
    got, logs, c = clock_run(tmp_path / "fast", now, send_date=send_date, fast=timedelta(minutes=30))
    registry = c.metrics.registry
    if send_date:
        assert got == expected
        assert max(got.values()) == 1
        assert [e for e in logs if e["event"] == "mimecast.clock_skew"][0]["skew_s"] == 1800
        assert [e for e in logs if e["event"] == "mimecast.clock_skew_ended"]
        assert not [e for e in logs if e["event"] == "poll.watermark_ahead"]
        return
    # Without Date the fast clock is seen only once it is set right: the span it searched too early is searched
    # again. Every message ships in its lasting status; a status that came and went while the searches ran ahead
    # of the mail cannot be seen any more, and keys forgotten under the fast clock may ship a second time.
    last = now + timedelta(minutes=11)
    lasting = clock_flow(now).ground_truth(FLT, now - timedelta(hours=1), last, last)
    assert {i for i, _ in expected} <= {i for i, _ in got}
    assert lasting & set(expected) <= set(got)
    assert [e for e in logs if e["event"] == "poll.watermark_ahead"]
    assert registry.get_sample_value("mimecast_collector_clock_jumps_total", {"watch": "inbound"}) >= 1
