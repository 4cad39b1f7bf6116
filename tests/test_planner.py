"""Sizing searches: how the density estimate follows complete answers, that it always ends, and the watch on
Mimecast's real per-answer cap (how a capped answer's records are read: ``test_bursts.py``)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.answers import pace
from collector.daemon import Collector
from collector.planner import CapWatch, Density
from collector.simulator import Filter, MailFlow, MixedFlow, Simulator
from collector.simulator.truth import match_share
from tests.conftest import make_config
from tests.planning import CAP, T0, WINDOW, at, seconds


def test_a_narrow_answer_moves_the_density_less_than_a_full_one() -> None:
    """Each answer weighs by its size: 9 records in 5 seconds barely move a density resting on hundreds."""
    def steady() -> Density:
        density = Density()
        for i in range(6):
            density.complete(at(60 * i), at(60 * i + 60), 72, CAP)  # 1.2 a second
        return density

    before, small, full = steady(), steady(), steady()
    small.complete(at(400), at(405), 9, CAP)  # 1.8 a second, in five seconds
    full.complete(at(400), at(460), 108, CAP)  # 1.8 a second, in a minute
    assert before.rate == 1.2 and small.rate is not None and full.rate is not None
    assert abs(small.rate - before.rate) < abs(full.rate - before.rate) / 5


def test_a_guess_gives_way_to_the_first_answer() -> None:
    """After a capped answer planned blind, the density is a guess: the first complete answer replaces it."""
    density = Density()
    density.capped(T0, at(900), CAP, [at(9 * i + 4) for i in range(100)])
    density.complete(T0, at(60), 72, CAP)
    assert density.rate == 72 / 60


def test_a_complete_answer_where_a_burst_begins_sizes_the_next_search_by_the_burst() -> None:
    """Forty quiet seconds, then four records a second: the next search is sized by the four a second its
    answer ends with, not by the 1.3 a second of the whole answer, which would run it into a capped one."""
    density = Density()
    density.complete(T0, at(60), 80, CAP, [at(40 + i / 4) for i in range(80)])
    width = seconds(density.width(at(60), CAP, WINDOW, WINDOW))
    assert 15 <= width <= 25, width  # about 87 records at 4 a second; the whole answer's mean says 65 seconds


def test_a_complete_answer_where_a_burst_ends_sizes_the_next_search_by_the_quiet_after_it() -> None:
    """Four records a second for twenty seconds, then forty without one: the burst is over, and the next
    search is wide, not sized by a pace the answer shows has stopped."""
    density = Density(4.0)
    density.complete(T0, at(60), 80, CAP, [at(i / 4) for i in range(80)])
    assert seconds(density.width(at(60), CAP, WINDOW, WINDOW)) == 900  # the mean would say 65 seconds


def test_steady_mail_is_seldom_taken_for_a_change_of_pace() -> None:
    """Poisson mail at one and a half records a second, in a thousand answers of a minute: the pace is read
    from the whole answer in all but a few, so each search still rests on all the records it found."""
    rng, changed = random.Random(7), 0
    for _ in range(1000):
        offsets, t = [], rng.expovariate(1.5)
        while t < 60:
            offsets.append(int(t))
            t += rng.expovariate(1.5)
        changed += pace(offsets, 60) != (len(offsets), 60)
    assert changed <= 5, changed


ANSWER = st.one_of(
    st.integers(0, CAP - 1),  # complete, with that many records
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=CAP),  # capped: where its records lie
    st.tuples(st.lists(st.floats(0, 1, allow_nan=False, exclude_max=True), max_size=CAP - 1)),  # complete, placed
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ANSWER, min_size=1, max_size=60), st.floats(0, 50, allow_nan=False) | st.none())
def test_any_run_of_answers_always_narrows_a_capped_window_and_stays_in_bounds(answers: list,
                                                                             rate: float | None) -> None:
    """Whatever Mimecast answers, each search is one second to the window wide and ends at the plan's end, and
    the re-search of a capped window is strictly narrower than it: a cycle always ends."""
    density, cursor, end = Density(rate), T0, at(3600)
    capped: timedelta | None = None
    for answer in answers:
        if cursor >= end:
            break
        width = density.width(cursor, CAP, WINDOW, end - cursor)
        assert timedelta(seconds=1) <= width <= min(WINDOW, end - cursor) and width.microseconds == 0
        assert capped is None or width < capped, (width, capped)
        if isinstance(answer, list) and width > timedelta(seconds=1):
            density.capped(cursor, cursor + width, CAP, [cursor + width * share for share in answer])
            capped = width
            continue
        if isinstance(answer, tuple):
            density.complete(cursor, cursor + width, len(answer[0]), CAP, [cursor + width * x for x in answer[0]])
        else:
            density.complete(cursor, cursor + width, answer if isinstance(answer, int) else CAP - 1, CAP)
        cursor, capped = cursor + width, None


def test_an_overlap_read_again_and_again_is_not_a_hidden_cap() -> None:
    """A sparse watch re-reads its 20-minute overlap every 30 seconds and gets the same 7 records each time:
    the same size over and over, but over time already covered, so no warning to set result_cap to 7."""
    watch = CapWatch(CAP)
    for poll in range(80):
        start = at(30 * poll)
        assert watch.observe(7, start, start + timedelta(minutes=20)) is None


def test_answers_that_keep_stopping_at_one_size_over_new_time_are_said_once() -> None:
    """Consecutive windows that all stop at 60 records, never more: a cap of 60, said the first time it shows."""
    watch = CapWatch(CAP)
    sizes = [41, 57, 60, 60, 33, 60, 60, 60, 60, 60, 60]
    said = [watch.observe(size, at(60 * i), at(60 * i + 60)) for i, size in enumerate(sizes)]
    assert said == [None] * 7 + [60, None, None, None]


def test_a_hidden_lower_cap_is_said_once_with_what_to_set(now: datetime, tmp_path: Path) -> None:
    """Against a Mimecast that stops every answer at 60 records while result_cap says 100, a catch-up at 100
    matching messages a minute over two hours warns once, with the size it saw and the setting to change."""
    per_hour = 100 * 60 / match_share(Filter(to="example.com"))
    flow = MailFlow(seed=5, start=now - timedelta(hours=2), end=now, count=int(2 * per_hour))
    with Simulator(flow, cap=60, clock=lambda: now) as sim, capture_logs() as logs:
        c = Collector(make_config(sim, tmp_path, collection={"result_cap": 100, "window": "15m", "lag": "0s",
                                                              "initial_lookback": "2h"}), registry=CollectorRegistry())
        try:
            c.run_once(now=lambda: now)
        finally:
            c.close()
    warned = [e for e in logs if e["event"] == "mimecast.answers_stop_below_result_cap"]
    assert [(e["size"], e["result_cap"]) for e in warned] == [(60, 100)], warned
    assert "set collection.result_cap to 60" in warned[0]["reason"]


def test_the_poller_hands_each_complete_answer_s_received_times_to_the_estimate(now: datetime,
                                                                               tmp_path: Path) -> None:
    """A quarter hour of quiet mail whose last 40 seconds are a burst, read in one complete answer: the density
    kept in the checkpoint is the burst's pace, which the next poll starts from, not the quarter hour's mean."""
    quiet_mail = MailFlow(seed=3, start=now - timedelta(minutes=15), end=now - timedelta(seconds=40), count=20)
    burst = MailFlow(seed=4, start=now - timedelta(seconds=40), end=now, count=110)
    with Simulator(MixedFlow([quiet_mail, burst]), cap=100, clock=lambda: now) as sim:
        c = Collector(make_config(sim, tmp_path, collection={"result_cap": 100, "window": "15m", "lag": "0s",
                                                              "initial_lookback": "15m"}), registry=CollectorRegistry())
        try:
            (result,) = c.run_once(now=lambda: now)
            density = c.state.watch("inbound").density
        finally:
            c.close()
    assert result.ok and result.searches == 1 and len(sim.searches()) == 1
    assert density is not None and density > 0.5, density  # about 1.5 a second; the mean is under 0.1

