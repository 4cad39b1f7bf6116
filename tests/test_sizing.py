"""The planner's parts one at a time: the records expected in each second, the width that fills a search, and
what a capped answer's profile learns."""

from __future__ import annotations

import random

from collector.answers import Profile
from collector.sizing import Expectation, filling, lengthened, target_fill
from tests.planning import CAP, T0, at, newest_first, seconds


def test_filling_is_the_fewest_seconds_that_reach_the_target() -> None:
    assert filling(lambda width: 10.0, 85, 900) == 8  # the ninth second (index 8) brings 90
    assert filling(lambda width: 0.01, 85, 900) is None  # the whole limit holds 9
    assert filling(lambda width: 200.0, 85, 900) == 1  # never less than one second


def test_lengthened_takes_a_sliver_along_and_lines_up_with_the_quiet_windows() -> None:
    quiet = lambda width: 0.001  # noqa: E731 - a constant density
    assert seconds(lengthened(95, 900, 900, 100, quiet, (85, CAP))) == 100  # 5 seconds left: searched with it
    assert seconds(lengthened(95, 900, 900, 200, quiet, (85, CAP))) == 200  # the rest fits in no window fewer
    assert seconds(lengthened(30, 900, 900, 1000, lambda width: 2.0, (85, CAP))) == 30  # dense: as planned
    # 40 seconds here and then two windows for 1,800 quiet seconds, rather than 30 and a third window.
    assert seconds(lengthened(30, 900, 900, 1840, lambda width: 2.0 if width < 40 else 0.001, (85, CAP))) == 40


def test_the_expectation_reads_the_profile_then_the_outer_ones_then_the_density() -> None:
    outer = Profile(T0, at(900), newest_first([at(880 + i / 5) for i in range(100)]), prior=0.01)
    inner = Profile(T0, at(600), newest_first([at(580 + i / 5) for i in range(100)]), prior=0.01)
    expect = Expectation(at(500), 0.01, inner, [outer], floor=None, resume=(at(900), 0.02), widest=900)
    assert expect(85) == 5.0  # 585 s: the inner profile's records
    assert expect(150) == 0.01  # 650 s: past the inner window, before the outer one's records: the density
    assert expect(385) == 5.0  # 885 s: the outer profile's records
    assert expect(450) == 0.02  # 950 s: past where the quiet mail resumes
    assert expect.stop(900) == 80  # from 500 s a search stops where the inner records begin (580 s)...
    inside = Expectation(at(530), 0.01, inner, [outer], floor=None, resume=None, widest=900)
    assert inside.stop(900) == 900  # ...but not from inside the time guessed as dense (520 to 580 s)
    floored = Expectation(at(500), 0.01, None, [], floor=(at(520), 3.0), resume=None, widest=900)
    assert floored(10) == 3.0 and floored(30) == 0.01


def test_what_is_left_of_a_burst_is_shared_evenly() -> None:
    expect = Expectation(T0, 10.0, None, [], floor=None, resume=(at(13), 0.01), widest=900)
    assert expect.shared(85, 900) == 65  # 130 records left: two searches of 65, not 85 and a sliver of 45
    assert Expectation(T0, 10.0, None, [], None, None, 900).shared(85, 900) == 85  # no burst to share


def test_a_re_search_capped_before_the_records_shown_guesses_the_dense_part_longer() -> None:
    earlier = Profile(T0, at(900), newest_first([at(886 + i / 7) for i in range(100)]), prior=0.01)
    later = Profile(T0, at(850), newest_first([at(836 + i / 7) for i in range(100)]), prior=0.01)
    assert later.guess_longer(earlier, 0.5)
    # Known dense: from 836 s to the end of the time the earlier records take (886 s and 10 more).
    assert later.known == 886 + earlier.known - 836 == 60 and later.lead_from == 836 - 60 // 2
    past = Profile(T0, at(895), newest_first([at(881 + i / 7) for i in range(100)]), prior=0.01)
    assert not past.guess_longer(earlier, 0.5), "it ended inside the records shown: no evidence of more"


def test_a_quiet_search_short_of_the_records_halves_the_gap_to_them() -> None:
    profile = Profile(T0, at(900), newest_first([at(886 + i / 7) for i in range(100)]), prior=0.01)
    assert profile.lead_from == 856  # guessed dense for three times the 10 seconds its records take
    profile.learn(0, 870, 9, 0.01, target_fill(CAP))  # 9 records where 140 were guessed
    assert profile.lead_from == (870 + 886) // 2


def test_records_far_denser_than_planned_are_a_dense_period() -> None:
    rng = random.Random(3)
    crowded = [at(rng.random() * 300) for _ in range(100)]
    spread = [at(rng.random() * 900) for _ in range(100)]
    assert Profile(T0, at(900), crowded, prior=0.1).denser_than(0.1)
    assert not Profile(T0, at(900), spread, prior=0.1).denser_than(0.1)
    cut = newest_first([at(880 + i / 5) for i in range(100)])
    assert Profile(T0, at(900), cut, prior=0.1).denser_than(0.1)
    assert not Profile(T0, at(900), cut, prior=0.1).denser_than(4.0)
