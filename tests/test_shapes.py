"""The simulator's mail shapes over real HTTP: holds released hours later, mail indexed late, density steps,
and the ground truth of every status that lasted."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from collector.simulator import Filter, Late, MailFlow, Simulator, Statuses, steps
from collector.simulator.truth import lasting

FLT = Filter(to="example.com")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


class Clock:
    """The simulator's notion of now, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


_TOKENS: dict[Simulator, str] = {}


def search(sim: Simulator, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The tracked emails one real search of ``[start, end)`` for ``to: example.com`` answers."""
    creds = sim.credentials
    if sim not in _TOKENS:
        _TOKENS[sim] = requests.post(f"{sim.base_url}/oauth/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": creds.client_id,
            "client_secret": creds.client_secret}).json()["access_token"]
    token = _TOKENS[sim]
    answer = requests.post(f"{sim.base_url}/api/tracking/search", timeout=30,
                           headers={"Authorization": f"Bearer {token}"},
                           json={"data": [{"start": start.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                                           "end": end.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                                           "advancedTrackAndTraceOptions": {"to": "example.com"}}]})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"][0]["trackedEmails"]


def statuses(found: list[dict[str, Any]]) -> Counter[str]:
    """How many records of each status an answer holds."""
    return Counter(e["status"] for e in found)


def minute_flow(**options: Any) -> MailFlow:
    """3,000 messages received in the minute from ``T0``, shaped by ``options``."""
    return MailFlow(seed=31, start=T0, end=T0 + timedelta(minutes=1), count=3000, **options)


def test_holds_are_released_or_rejected_between_the_least_and_the_most_delay() -> None:
    """30% held then released or rejected after 5m to 20h, 10% held for ever, the rest settled at once."""
    clock = Clock(T0 + timedelta(minutes=4))  # every message settled, none released yet
    shape = Statuses(held=0.3, pending=0.1, rejected=0.25, least=timedelta(minutes=5), most=timedelta(hours=20))
    with Simulator(minute_flow(statuses=shape), cap=10_000, clock=clock) as sim:
        early = statuses(search(sim, T0, T0 + timedelta(minutes=1)))
        clock.at = T0 + timedelta(hours=2)
        middle = statuses(search(sim, T0, T0 + timedelta(minutes=1)))
        clock.at = T0 + timedelta(hours=20, minutes=1)
        late = statuses(search(sim, T0, T0 + timedelta(minutes=1)))
    total = sum(early.values())
    assert 1_000 < total < 1_500, early  # about two in five messages match the watch
    assert 0.35 < early["held"] / total < 0.45, early  # nothing is released before five minutes
    assert early["held"] > middle["held"] > late["held"], (early, middle, late)
    # Delays spread over powers of ten: after two hours of 5m..20h, about 60% of the releases happened.
    assert 0.45 < (early["held"] - middle["held"]) / (early["held"] - late["held"]) < 0.75
    assert 0.08 < late["held"] / total < 0.12, late  # the pending share alone, after the longest delay
    released = late["archived"] - early["archived"]
    rejected = late["rejected"] - early["rejected"]
    assert released + rejected == early["held"] - late["held"]
    assert 0.18 < rejected / (released + rejected) < 0.32, (released, rejected)
    assert set(late) <= {"held", "archived", "rejected", "bounced"}, "every other message is settled"


def test_every_message_can_stay_pending_and_the_shape_is_the_same_for_the_same_seed() -> None:
    """100% pending holds every message; the same seed serves the same records, another seed others."""
    clock = Clock(T0 + timedelta(days=2))
    with Simulator(minute_flow(statuses=Statuses(pending=1.0)), cap=10_000, clock=clock) as sim:
        first = search(sim, T0, T0 + timedelta(minutes=1))
    with Simulator(minute_flow(statuses=Statuses(pending=1.0)), cap=10_000, clock=clock) as sim:
        again = search(sim, T0, T0 + timedelta(minutes=1))
    assert first and set(statuses(first)) == {"held"}
    assert first == again
    other = MailFlow(seed=32, start=T0, end=T0 + timedelta(minutes=1), count=3000, statuses=Statuses(pending=1.0))
    assert {m.id for m in other.between(T0, T0 + timedelta(minutes=1))}.isdisjoint(e["id"] for e in first)


def test_without_shapes_a_flow_serves_the_default_mix() -> None:
    """The shapes are opt-in: a plain flow's messages are indexed at once and some stay non-final."""
    flow = minute_flow()
    found = [m for m in flow.between(T0, T0 + timedelta(minutes=1))]
    assert all(m.indexed == 0 for m in found)
    assert Counter(m.lifecycle[-1][1] for m in found)["delivery"] > 500


def test_late_mail_appears_only_after_its_delay() -> None:
    """Half the mail is indexed 1s to 10m late: a search soon after misses it, one after ten minutes has it."""
    clock = Clock(T0 + timedelta(minutes=1))
    flow = minute_flow(late=Late(share=0.5, most=timedelta(minutes=10)))
    with Simulator(flow, cap=10_000, clock=clock) as sim:
        seen = []
        for minutes in (1, 4, 7, 12):
            clock.at = T0 + timedelta(minutes=minutes)
            found = search(sim, T0, T0 + timedelta(minutes=1))
            assert {e["id"] for e in found} == {i for i, _s in flow.ground_truth(FLT, T0, T0 + timedelta(minutes=1),
                                                                                  clock.at)}
            seen.append(len(found))
    every = len(flow.ground_truth(FLT, T0, T0 + timedelta(minutes=1), T0 + timedelta(hours=1)))
    assert seen == sorted(seen) and seen[-1] == every, (seen, every)
    assert 0.5 < seen[0] / every < 0.65, seen  # the half on time, and the few late by under a minute


def test_density_steps_are_quiet_then_dense_for_the_stated_time() -> None:
    """A quiet hour, ten minutes at 2,500 messages a minute, a quiet five: each minute holds its step's mail."""
    flow = steps(5, T0, [(timedelta(hours=1), 10), (timedelta(minutes=10), 2500), (timedelta(minutes=5), 10)],
                 cache=True)
    share = len(flow.ground_truth(FLT, T0, T0 + timedelta(minutes=75), T0 + timedelta(days=1))) / flow.count
    with Simulator(flow, cap=100_000, clock=lambda: T0 + timedelta(days=1)) as sim:
        per_minute = [len(search(sim, T0 + timedelta(minutes=k), T0 + timedelta(minutes=k + 1))) for k in range(75)]
    dense = per_minute[60:70]
    assert all(850 < n < 1_150 for n in dense), dense
    assert max(per_minute[:60] + per_minute[70:]) < 20, per_minute
    assert 0.37 < share < 0.43
    assert flow.count == 10 * 60 + 2500 * 10 + 10 * 5
    with pytest.raises(ValueError):
        steps(5, T0, [(timedelta(hours=1), 0)])


def test_reads_every_minute_find_every_status_that_lasted_a_minute() -> None:
    """Searching the flow once a simulated minute for three hours finds every (id, status) the ground truth
    says lasted at least a minute, and none it says never existed."""
    clock = Clock(T0)
    shape = Statuses(held=0.7, pending=0.1, least=timedelta(seconds=20), most=timedelta(hours=2))
    flow = MailFlow(seed=33, start=T0, end=T0 + timedelta(minutes=10), count=600, statuses=shape,
                    late=Late(share=0.3, most=timedelta(minutes=5)), cache=True)
    seen: set[tuple[str, str]] = set()
    with Simulator(flow, cap=10_000, clock=clock) as sim:
        while clock.at < T0 + timedelta(hours=3):
            clock.at += timedelta(minutes=1)
            seen |= {(e["id"], e["status"]) for e in search(sim, T0, T0 + timedelta(minutes=10))}
    end = T0 + timedelta(minutes=10)
    held_a_minute = lasting(flow, FLT, T0, end, clock.at, timedelta(minutes=1))
    ever = lasting(flow, FLT, T0, end, clock.at, timedelta(0))
    assert held_a_minute <= seen <= ever
    brief = ever - held_a_minute
    assert brief and any(s == "held" for _i, s in brief), "some holds were released within the minute"
    assert len(held_a_minute) > len({i for i, _s in held_a_minute}) * 1.5, "most messages held, then released"
