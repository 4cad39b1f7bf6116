"""Sizing searches: what the density estimate makes of capped and complete answers, that it always ends, and
the watch on Mimecast's real per-answer cap."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.answers import pace
from collector.daemon import Collector
from collector.planner import CapWatch, Density, target_fill
from collector.simulator import Filter, MailFlow, MixedFlow, Simulator
from collector.simulator.truth import match_share
from tests.conftest import make_config

T0 = datetime(2026, 11, 28, 9, tzinfo=timezone.utc)
CAP = 100
WINDOW = timedelta(minutes=15)


def at(second: float) -> datetime:
    """``second`` seconds after ``T0``."""
    return T0 + timedelta(seconds=second)


def seconds(width: timedelta) -> int:
    """A width in whole seconds."""
    return int(width.total_seconds())


def newest_first(received: list[datetime]) -> list[datetime]:
    """``received`` as an answer that lists the newest records first holds them."""
    return sorted(received, reverse=True)


def quiet() -> Density:
    """A density measured on a quiet quarter hour: 10 records in 900 seconds."""
    density = Density()
    density.complete(at(-900), T0, 10, CAP)
    return density


def test_past_a_cut_the_mail_is_as_dense_as_at_the_answers_end() -> None:
    """An answer that lists the oldest records first and reaches into a burst near its window's end: past
    its last record the searches are sized by the burst's density there, not the mean of the whole answer."""
    density = quiet()
    received = [at(60 * i) for i in range(10)] + [at(840 + i / 7) for i in range(90)]  # 7 a second from 840 s
    density.capped(T0, at(900), CAP, received)
    cursor = at(853)
    width = seconds(density.width(cursor, CAP, WINDOW, at(900) - cursor))
    assert 5 <= width <= 20, width  # about 85 records at 7 a second; the answer's mean (0.11 a second) says 780
    # The quiet part and the burst's start, searched first, say nothing about the burst past the cut.
    density.complete(T0, at(853), 100, CAP)
    assert 5 <= seconds(density.width(cursor, CAP, WINDOW, at(900) - cursor)) <= 20


def test_before_the_newest_records_the_quiet_part_is_searched_whole() -> None:
    """An answer that lists the newest records first shows a burst's last 14 seconds at the window's end:
    the first search covers the quiet part at the density measured before, and stops before the burst."""
    density = quiet()
    received = newest_first([at(886 + i / 7) for i in range(100)])
    density.capped(T0, at(900), CAP, received)
    width = seconds(density.width(T0, CAP, WINDOW, WINDOW))
    assert 700 <= width < 886, width  # the old estimate took the burst's 7 a second for all: 12 seconds


def test_quiet_records_after_a_burst_do_not_stretch_the_guess_before_it() -> None:
    """A newest-first answer holds a burst's last 97 records and 3 quiet ones after it: the guess of dense mail
    before the burst spans the time the burst's records take, not the whole answer."""
    density = quiet()
    received = newest_first([at(585 + i / 7) for i in range(97)] + [at(700), at(840), at(886)])
    density.capped(T0, at(900), CAP, received)
    width = seconds(density.width(T0, CAP, WINDOW, WINDOW))
    assert 450 <= width < 585, width


def test_a_wrong_guess_before_the_records_moves_half_way_to_them() -> None:
    """If the mail just before the newest records is quiet after all, the burst began somewhere between that
    search's end and the records: the next search runs half way there and a little into the dense guess, not
    all the way to the records (capped whenever the burst began early in the gap)."""
    density = quiet()
    density.capped(T0, at(900), CAP, newest_first([at(886 + i / 7) for i in range(100)]))
    first = seconds(density.width(T0, CAP, WINDOW, WINDOW))
    assert first < 875  # the quiet part, then about 85 records' worth of the guessed dense time
    density.complete(T0, at(first), 9, CAP)  # the quiet mail's 9, nothing of the dense time
    end = first + seconds(density.width(at(first), CAP, WINDOW, at(900) - at(first)))
    assert (first + 886) // 2 < end < 886, (first, end)


def test_past_a_capped_answer_inside_another_the_records_the_outer_one_showed_still_count() -> None:
    """A burst found from its end inwards: the first capped answer showed its last 100 records (886 to 900 s),
    a capped search inside showed 100 more (856 to 870 s). Past 870 s a lull measured 0.5 a second, but the
    next search still stops short of the 100 records at 886 s instead of running on at the lull's pace."""
    density = quiet()
    density.capped(T0, at(900), CAP, newest_first([at(886 + i / 7) for i in range(100)]))
    density.capped(T0, at(870), CAP, newest_first([at(856 + i / 7) for i in range(100)]))
    density.complete(T0, at(856), 10, CAP)
    density.complete(at(856), at(870), 99, CAP)
    density.complete(at(870), at(880), 5, CAP)  # a lull: the pace restarts at half a record a second
    assert seconds(density.width(at(880), CAP, WINDOW, at(1800) - at(880))) < 20


def test_before_the_guessed_dense_time_the_searches_follow_the_mail_found_there() -> None:
    """The mail before a newest-first answer's records was half a record a second, so the first search is
    sized at that; it finds a tenth of it, and the next search there is sized by what it found."""
    density = Density()
    density.complete(at(-900), T0, 450, CAP)  # half a record a second before the capped answer
    density.capped(T0, at(900), CAP, newest_first([at(886 + i / 7) for i in range(100)]))
    first = seconds(density.width(T0, CAP, WINDOW, WINDOW))
    assert first < 200, first  # about 87 records at half a second
    density.complete(T0, at(first), 9, CAP)
    cursor = at(first)
    assert seconds(density.width(cursor, CAP, WINDOW, at(900) - cursor)) > 3 * first


def test_records_listed_in_no_order_are_a_sample_not_the_newest_part() -> None:
    """The same capped answer, records in the window's last minute: listed newest first it kept the burst's
    end, which may have begun earlier, so the first search stops well before it; listed in no order it is a
    sample of a burst that begins with its records, so the first search covers the quiet part and a few
    seconds of the burst."""
    burst = [at(840 + i * 0.6) for i in range(100)]
    ordered, sample = quiet(), quiet()
    ordered.capped(T0, at(900), CAP, newest_first(burst))
    sample.capped(T0, at(900), CAP, burst[1::2] + burst[::2])
    assert seconds(ordered.width(T0, CAP, WINDOW, WINDOW)) < 800
    assert 840 < seconds(sample.width(T0, CAP, WINDOW, WINDOW)) < 860


def sample(received: list[datetime]) -> list[datetime]:
    """``received`` as an answer that lists its records in no order holds them."""
    return received[1::2] + received[::2]


def test_a_samples_size_rests_on_every_complete_search_inside_not_the_last() -> None:
    """A sample of one record a second over the window's last 100 seconds: the searches inside found 3 then 5
    times what it showed, so the next is sized at 4 times (80 of 20), neither 5 (the last) nor 3 (the first)."""
    density = quiet()
    density.capped(T0, at(900), CAP, sample([at(800 + i) for i in range(100)]))
    density.complete(T0, at(810), 30, CAP)  # the quiet part and 10 shown seconds: 30
    density.complete(at(810), at(820), 50, CAP)  # 10 shown: 50
    width = seconds(density.width(at(820), CAP, WINDOW, WINDOW))
    assert 19 <= width <= 21, width  # 80 records a search, 4 a second, the burst shared evenly up to 900 s


def test_a_samples_seconds_are_guessed_from_the_records_around_them() -> None:
    """A sample shows each second's few records by chance: the seconds just past a dense part of it are
    guessed partly as dense, so a search that starts there is shorter than its own seconds alone would say."""
    density = quiet()
    dense, sparse = [at(440 + i / 3) for i in range(30)], [at(450 + 2 * i) for i in range(70)]
    density.capped(T0, at(900), CAP, sample(dense + sparse))
    width = seconds(density.width(at(450), CAP, WINDOW, WINDOW))
    assert width <= 15, width  # 18 from the sparse part's own seconds


def test_a_samples_last_seconds_are_not_thinned_by_the_time_past_its_window() -> None:
    """A sample of a burst that runs to its window's end: the burst's last seconds are guessed from the
    seconds of the window around them, not diluted by seconds past it that no search has read."""
    density = quiet()
    density.capped(T0, at(900), CAP, sample([at(880 + i / 5) for i in range(100)]))  # 8 times: 40 a second
    width = seconds(density.width(at(897), CAP, WINDOW, WINDOW))
    assert width <= 3, width  # diluted, the last three seconds hold 76 and the search runs on past them


def test_inside_the_guessed_dense_time_a_search_runs_on_into_the_records() -> None:
    """Once the searches have reached the time guessed as dense as the newest records, they no longer stop
    where those records begin: that stop would cost a search for a few seconds."""
    density = quiet()
    density.capped(T0, at(900), CAP, newest_first([at(886 + i / 7) for i in range(100)]))
    assert seconds(density.width(at(880), CAP, WINDOW, at(900) - at(880))) > 886 - 880


def test_the_rest_of_a_burst_is_shared_evenly_up_to_where_the_quiet_mail_resumes() -> None:
    """About 100 records left of a burst that ends with its window: two searches of half each, so that the
    second ends where the burst does, not one of 87 and a sliver of 13 that would cost a third search."""
    density = quiet()
    density.capped(T0, at(900), CAP, newest_first([at(886 + i / 7) for i in range(100)]))
    width = seconds(density.width(at(886), CAP, WINDOW, WINDOW))
    assert 6 <= width <= 8, width  # 87 records' worth would be 12


def test_a_bursts_last_piece_ends_where_the_quiet_windows_after_it_line_up() -> None:
    """90 records left of a burst, then half an hour of quiet mail to the plan's end: one fuller search to the
    burst's end, so that two windows cover the rest, rather than two half searches and a third window for the
    few seconds that the first half leaves over."""
    density = quiet()
    records = [at(800 + 8.8 * i) for i in range(10)] + [at(888 + i / 7.5) for i in range(90)]
    density.capped(T0, at(900), CAP, newest_first(records))
    assert seconds(density.width(at(888), CAP, WINDOW, timedelta(seconds=12 + 1800))) == 12
    assert seconds(density.width(at(888), CAP, WINDOW, timedelta(seconds=12 + 1700))) < 12  # two windows anyway


def test_past_a_burst_found_blind_the_density_resumes_at_the_quiet_level() -> None:
    """A burst found by a capped answer is taken to end with its window: the search after it is wide again."""
    density = quiet()
    density.capped(T0, at(900), CAP, newest_first([at(886 + i / 7) for i in range(100)]))
    for start in range(886, 900, 7):
        density.complete(at(start), at(start + 7), 49, CAP)  # the burst, searched in pieces
    assert seconds(density.width(at(900), CAP, WINDOW, WINDOW)) == 900


def test_records_spread_over_the_whole_window_are_a_sample_of_unknown_size() -> None:
    """A capped answer whose records lie all over its window (no cut) is taken as several caps' worth."""
    density = quiet()
    density.capped(T0, at(900), CAP, [at(9 * i + 4) for i in range(100)])
    width = seconds(density.width(T0, CAP, WINDOW, WINDOW))
    assert width < 900 * target_fill(CAP) / CAP / 4, width  # well under a quarter of "the answer was all"


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

