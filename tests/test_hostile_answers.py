"""Hostile answers through the whole engine: odd field types, non-JSON numbers, deep nesting, a clock that jumps."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.daemon import Collector
from collector.simulator import Fault, MailFlow, Simulator
from tests.cef_decoder import decode
from tests.conftest import DATA, make_config


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
    with Simulator(flow, clock=lambda: now) as sim:
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
