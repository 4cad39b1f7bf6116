"""The steady-state benchmark's own measures: reads of each second from the simulator's request log, and the
follow covering limit with every status followed (``--final-statuses`` given no status)."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
import requests

from collector.simulator import MailFlow, Simulator

ROOT = Path(__file__).resolve().parents[1]
FMT = "%Y-%m-%dT%H:%M:%S+0000"


@pytest.fixture(scope="module")
def steady() -> ModuleType:
    """benchmarks/steady.py, loaded from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("steady_benchmark", ROOT / "benchmarks" / "steady.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def search(sim: Simulator, token: str, start: str, end: str) -> None:
    """One real search of ``[start, end)`` for the benchmark's watch."""
    answer = requests.post(f"{sim.base_url}/api/tracking/search", headers={"Authorization": f"Bearer {token}"},
                           json={"data": [{"start": start, "end": end,
                                           "advancedTrackAndTraceOptions": {"to": "example.com"}}]}, timeout=10)
    assert answer.status_code == 200, answer.text


def token(sim: Simulator) -> str:
    answer = requests.post(f"{sim.base_url}/oauth/token", data={
        "client_id": sim.credentials.client_id, "client_secret": sim.credentials.client_secret,
        "grant_type": "client_credentials"}, timeout=10)
    return answer.json()["access_token"]


def test_reads_of_a_second_count_complete_answers_and_follow_reads(steady: ModuleType) -> None:
    """Three searches over the first half of the counted seconds and one over the rest, then one more over the
    first half once it is a follow age old: 4 reads at most, 1 of them a follow read, a mean between 1 and 4 that
    follows where the matching mail is; no answer capped at one message a minute."""
    flow = steady.flow_for(1, 0.05)
    start = steady.T0 + steady.WARM
    middle, end = start + timedelta(minutes=20), start + timedelta(minutes=40)
    later = end + steady.FOLLOW
    with Simulator(flow, clock=lambda: later) as sim:
        bearer = token(sim)
        for _ in range(3):
            search(sim, bearer, start.strftime(FMT), middle.strftime(FMT))
        search(sim, bearer, middle.strftime(FMT), end.strftime(FMT))
        search(sim, bearer, (start - timedelta(hours=2)).strftime(FMT), (start - timedelta(hours=1)).strftime(FMT))
        first = sim.searches()
        search(sim, bearer, start.strftime(FMT), middle.strftime(FMT))
        polls = [(end + timedelta(minutes=1), first), (later, sim.searches()[len(first):])]
        reads = steady.reads_per_second(flow, polls)
    assert (reads["most"], reads["follow_most"], reads["capped"]) == (4, 1, 0)
    counted = start + timedelta(minutes=49)  # the seconds whose every read falls in the measured hours
    held = {m.received.replace(microsecond=0) for m in flow.between(start, counted) if steady.FLT.matches(m)}
    four, one = (sum(a <= s < b for s in held) for a, b in ((start, middle), (middle, end)))
    assert four > 5 and one > 5 and len(held) > four + one
    assert reads["mean"] == pytest.approx((4 * four + one) / len(held))


def test_a_capped_answer_is_not_a_read(steady: ModuleType) -> None:
    """At 100 a minute a 20-minute window holds far more than the cap: the answer counts as capped, not read."""
    flow = steady.flow_for(100, 0.05)
    start = steady.T0 + steady.WARM
    with Simulator(flow, clock=lambda: start + timedelta(hours=1)) as sim:
        search(sim, bearer := token(sim), start.strftime(FMT), (start + timedelta(minutes=20)).strftime(FMT))
        search(sim, bearer, (start + timedelta(minutes=20)).strftime(FMT),
               (start + timedelta(minutes=20, seconds=30)).strftime(FMT))
        reads = steady.reads_per_second(flow, [(start + timedelta(hours=1), sim.searches())])
    assert (reads["most"], reads["follow_most"]) == (1, 0)
    assert 0.3 < reads["capped"] < 0.5  # 20 of the 49 counted minutes
    assert 0.0 < reads["mean"] < 0.02  # 30 seconds of them


def test_follow_limit_with_no_final_status_covers_every_second_with_mail(steady: ModuleType) -> None:
    """With every status followed, the follow covering limit counts windows over all mail, which is at least
    what the default final statuses leave to follow."""
    flow: MailFlow = steady.flow_for(100, 0.005)
    now = steady.T0 + steady.WARM + timedelta(minutes=30)
    every = steady.follow_limit(flow, now, ())
    default = steady.follow_limit(flow, now, steady.FINAL)
    assert every > default > 0
    assert every >= steady.ideal_searches(flow, steady.FLT, now - steady.FOLLOW - steady.POLL, now - steady.FOLLOW,
                                          now, cap=steady.CAP, window=steady.WINDOW)
