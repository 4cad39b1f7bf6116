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


def test_reads_of_a_second_count_the_searches_covering_it(steady: ModuleType) -> None:
    """Three searches over the first half of the counted seconds and one over the rest: 3 at most, and a mean
    between 1 and 3 that follows where the matching mail is."""
    flow = steady.flow_for(100, 0.05)
    start = steady.T0 + steady.WARM
    middle = start + timedelta(minutes=20)
    end = start + timedelta(minutes=40)
    fmt = "%Y-%m-%dT%H:%M:%S+0000"
    with Simulator(flow, clock=lambda: end + timedelta(hours=1)) as sim:
        bearer = token(sim)
        for _ in range(3):
            search(sim, bearer, start.strftime(fmt), middle.strftime(fmt))
        search(sim, bearer, middle.strftime(fmt), end.strftime(fmt))
        search(sim, bearer, (start - timedelta(hours=2)).strftime(fmt), (start - timedelta(hours=1)).strftime(fmt))
        mean, most = steady.reads_per_second(flow, sim)
    assert most == 3
    assert 1.5 < mean < 2.5  # about half the seconds with mail read three times, half once


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
