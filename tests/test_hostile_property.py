"""Property: whatever a hostile Mimecast answers, two watches end with no crash, no repeat and no loss."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.daemon import Collector
from collector.poller import CycleResult
from collector.records import event_id
from collector.simulator import Fault, Filter, MailFlow, Simulator
from tests.conftest import make_config

pytestmark = pytest.mark.faults
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
FLOW = MailFlow(seed=31, start=NOW - timedelta(hours=2), end=NOW, count=300)
WATCHES = [{"name": "to-example", "to": "example.com"}, {"name": "from-example", "from": "example.org"}]
FILTERS = {"to-example": Filter(to="example.com"), "from-example": Filter(from_="example.org")}


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S+0000")


ODD = st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8),
                st.just("\ud800"), st.just([[[[]]]]), st.just({"a": {"b": 1}}))
RECORD = st.fixed_dictionaries({
    "id": st.one_of(st.sampled_from(["hostile-1", "hostile-2", "\ud800bad", "x\udfff"]), st.integers(0, 5), ODD),
    "status": st.one_of(st.sampled_from(["held", "delivered", "held\udfff", "\udc80"]), ODD),
    "received": st.one_of(st.sampled_from([stamp(NOW - timedelta(minutes=20)), stamp(NOW - timedelta(hours=5)),
                                           stamp(datetime(2099, 1, 1, tzinfo=timezone.utc)), "yesterday"]), ODD),
    "to": st.one_of(st.just("a@example.com, b@example.com"), st.just([{"emailAddress": "c@example.com"}]), ODD),
    "spamScore": st.one_of(st.just(float("nan")), st.just(float("inf")), ODD),
})
RATE_HEADERS = st.fixed_dictionaries({
    "X-RateLimit-Limit": st.sampled_from(["50", "-1", "1e309", "inf", "nan", "x"]),
    "X-RateLimit-Remaining": st.sampled_from(["0", "-5", "nan", "49"]),
    "X-RateLimit-Reset": st.sampled_from(["0", "86400000000", "inf", "-inf", "nan", "1e400", "250"]),
})


def answer(records: list[Any]) -> bytes:
    body = {"meta": {"status": 200}, "data": [{"trackedEmails": records}], "fail": []}
    return json.dumps(body).encode()  # ensure_ascii keeps lone surrogates as \u escapes, NaN as NaN


FAULT = st.one_of(
    st.lists(RECORD, min_size=1, max_size=4).map(lambda rs: Fault("canned", status=200, body=answer(rs))),
    st.integers(900, 5000).map(lambda d: Fault("canned", status=200, body=b"[" * d + b"]" * d)),
    st.just(Fault("canned", status=200, body=b'{"meta": {"status": 200}, "data": {"trackedEmails": 7}}')),
    st.just(Fault("canned", status=200, body=answer([[], "text", 3, None]))),
    RATE_HEADERS.map(lambda h: Fault("canned", status=200, body=answer([]), headers=h)),
    RATE_HEADERS.map(lambda h: Fault("canned", status=429, body=b"{}", headers=h)),
)


def refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def lines(path: Path) -> list[dict[str, Any]]:
    """Every event of the raw file, parsed as strict JSON (lone surrogates kept as surrogates)."""
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", "surrogatepass")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FAULT, min_size=1, max_size=6))
def test_hostile_answers_never_crash_repeat_or_lose(faults: list[Fault]) -> None:
    """One watch meets hostile answers, then Mimecast answers sanely again: every poll returned a result, no
    internal error, no event twice in the file, both watches caught up, and the other watch lost nothing."""
    clock = {"now": NOW}
    with tempfile.TemporaryDirectory() as tmp, Simulator(FLOW, cap=1000, clock=lambda: clock["now"]) as sim:
        tmp_path = Path(tmp)
        c = Collector(make_config(sim, tmp_path, watches=WATCHES,
                                  mimecast={"max_rate_limit_wait": "0s", "retries": 2},
                                  collection={"initial_lookback": "1h", "window": "1h"}),
                      registry=CollectorRegistry())
        for fault in faults:
            sim.inject(fault)
        results: list[CycleResult] = []
        with capture_logs() as logs:
            try:
                results += c.run_once(["to-example"], now=lambda: NOW)
                sim.clear_faults()
                results += c.run_once(now=lambda: NOW)
                # Ten minutes on, the settle read searches again what a hostile answer may have hidden.
                clock["now"] = NOW + timedelta(minutes=10)
                results += c.run_once(now=lambda: clock["now"])
            finally:
                c.close()
        events = lines(tmp_path / "out.ndjson")
        watermarks = [c.state.watch(w["name"]).watermark for w in WATCHES]
    assert all(isinstance(r, CycleResult) for r in results) and len(results) == 5
    assert not [e for e in logs if e["event"] in ("poll.internal_error", "poll.crashed")]
    assert not [r for r in results if r.error is not None and r.error.error_type == "internal"]
    assert all(r.ok for r in results[1:]), [r.error for r in results[1:]]
    assert all(w == NOW + timedelta(minutes=10) for w in watermarks), watermarks
    got = Counter(e["event_id"] for e in events)
    assert not got or max(got.values()) == 1
    # The watch that met the hostile answers may have been told a window held only them; the other loses nothing.
    wanted = FLOW.ground_truth(FILTERS["from-example"], NOW - timedelta(hours=1), NOW, NOW)
    assert {event_id(*k) for k in wanted} <= set(got), "the other watch lost events"
    recent = FLOW.ground_truth(FILTERS["to-example"], NOW - timedelta(minutes=10), NOW, NOW + timedelta(minutes=10))
    assert {event_id(*k) for k in recent} <= set(got), "the hostile watch did not catch up"
