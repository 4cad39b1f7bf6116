"""How a capped answer's records size the searches after it: a burst seen from its start, from its end, or as
a sample, and the quiet mail around it."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from collector.planner import Density, target_fill
from collector.simulator import ORDERS
from tests.planning import CAP, T0, WINDOW, at, newest_first, quiet, replay, sample, seconds


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


def _dense_after_quiet(length: int, gap: int, quiet: int) -> list:
    """Quiet mail (a record every ``quiet`` seconds) for three hours, and 25 a second for ``length`` seconds
    from ``2700 + gap`` s."""
    rng = random.Random(length + gap)
    return [at(t) for t in range(quiet // 2, 3 * 3600, quiet)] + [at(2700 + gap + rng.random() * length)
                                                                   for _ in range(25 * length)]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("gap", "quiet"), [(0, 60), (100, 60), (400, 60), (100, 14)])
def test_finding_where_a_dense_period_begins_costs_the_logarithm_of_its_length(order: str, gap: int,
                                                                                quiet: int) -> None:
    """Dense periods of 75, 150, 300, 600 and 1,200 seconds after a quiet start, in every answer order: the
    capped searches grow by a few for each doubling of the dense period's length, not with it (newest first,
    peeling it from its end an answer's worth at a time took 37 to 67 more at 1,200 seconds than at 75). With
    quiet mail of 64 records a quarter hour the first capped window was planned, and was taken for a Poisson
    fluctuation of them."""
    capped = [replay(_dense_after_quiet(length, gap, quiet), T0, at(3 * 3600), order)[1]
              for length in (75, 150, 300, 600, 1200)]
    assert capped[-1] - capped[0] <= 4 * 4, capped


def test_a_window_planned_on_quiet_mail_that_meets_a_dense_period_is_no_fluctuation() -> None:
    """Quiet mail (66 records a quarter hour) plans a quarter-hour search; it is capped by a dense period of 25
    a second in its first ten minutes. Its answer, a sample crowding into those minutes, is no Poisson
    fluctuation of the 66 planned: the next search is not just an eighth narrower."""
    density = Density()
    density.complete(at(-900), T0, 66, CAP)
    planned = seconds(density.width(T0, CAP, WINDOW, WINDOW))
    assert planned == 900
    dense = [at(i / 25) for i in range(25 * 600)]
    density.capped(T0, at(planned), CAP, random.Random(5).sample(dense, CAP))
    assert seconds(density.width(T0, CAP, WINDOW, WINDOW)) < planned / 2
