"""Re-reads packed from known counts, and what a read does to a watch's seconds (collector.packing, .schedule)."""

from __future__ import annotations

from datetime import datetime, timezone

from collector.packing import Counts, budget, halves, pack
from collector.schedule import DONE, SETTLE, Ages, Read, due_follow, followed, stale_rows

T = 1_800_000_000
NOW = datetime.fromtimestamp(T, timezone.utc)
AGES = Ages(settle=600, follow=(3600, 86400), final=frozenset({"archived", "rejected", "bounced"}))


def test_budget_keeps_room_for_late_mail_under_the_cap() -> None:
    """A re-read aims at the cap less one and a twentieth of it."""
    assert budget(100) == 94 and budget(2) == 1


def test_sparse_due_seconds_share_one_window_and_dense_ones_are_cut_by_their_counts() -> None:
    """Seconds far apart whose mail fits together are one search; known counts cut windows under the limit."""
    quiet = Counts({T + 10: 3, T + 500: 4})
    assert pack([T + 10, T + 500, T + 899], quiet, limit=93, widest=900) == [(T + 10, T + 900)]
    assert pack([T + 10, T + 500, T + 950], quiet, limit=93, widest=900) == [(T + 10, T + 501), (T + 950, T + 951)]
    busy = Counts({T + s: 40 for s in range(4)})
    assert pack([T, T + 1, T + 2, T + 3], busy, limit=93, widest=900) == [(T, T + 2), (T + 2, T + 4)]
    assert pack([T + 2], Counts({T + 2: 500}), limit=93, widest=900) == [(T + 2, T + 3)], "alone over the limit"


def test_a_capped_window_is_cut_where_its_known_records_split_evenly() -> None:
    """Halves hold about as many records each; without counts the cut is by due seconds."""
    counts = Counts({T: 90, T + 1: 5, T + 2: 5, T + 3: 90})  # 95 either side of T + 2
    assert halves([T, T + 1, T + 2, T + 3], counts, T, T + 4) == [(T, T + 2), (T + 2, T + 4)]
    assert halves([T, T + 5, T + 9], Counts({}), T, T + 10) == [(T, T + 1), (T + 5, T + 10)]


def test_the_stage_after_a_read_depends_on_its_age_and_whether_a_status_is_pending() -> None:
    """Before settle the settle read is still due; after it, the next follow age while pending, else done."""
    assert AGES.after(300, pending=True) == SETTLE
    assert AGES.after(700, pending=True) == 1 and AGES.after(700, pending=False) == DONE
    assert AGES.after(4000, pending=True) == 2 and AGES.after(90000, pending=True) == DONE
    assert Ages(settle=0, follow=(), final=frozenset()).after(10, pending=True) == DONE
    assert AGES.pending(["archived", "held"]) and not AGES.pending(["archived", "rejected"])


def test_follow_reads_are_due_at_their_age() -> None:
    """A second waiting for follow age k is due once it is that old."""
    rows = {T - 3601: (5, 1), T - 3599: (5, 1), T - 90000: (2, 2), T - 100: (9, SETTLE), T - 5000: (1, DONE)}
    assert due_follow(rows, AGES, NOW) == [T - 90000, T - 3601]


def test_a_stage_past_the_configured_ages_is_due_at_once() -> None:
    """After follow was shortened, a second waiting for an age no longer configured is read at the next poll
    (which ends it or gives it a stage that exists) instead of staying in the checkpoint for ever."""
    shorter = Ages(settle=600, follow=(3600,), final=AGES.final)
    rows = {T - 700: (4, 2), T - 800: (3, 1), T - 4000: (1, 1)}
    assert due_follow(rows, shorter, NOW) == [T - 4000, T - 700]
    assert due_follow(rows, Ages(settle=600, follow=(), final=AGES.final), NOW) == [T - 4000, T - 800, T - 700]


def test_a_read_moves_the_frontiers_over_the_seconds_it_covered() -> None:
    """The watermark moves over a first read; the settle frontier only over seconds past settle."""
    read = Read(T - 900, T - 60, settled=T - 900)
    assert read.frontiers(T - 300, AGES, NOW) == (T - 60, T - 600)
    assert Read(T - 5000, T - 4000, settled=T - 900).frontiers(T - 300, AGES, NOW) == (T - 300, T - 900)
    assert read.frontiers(T - 300, Ages(0, (), frozenset()), NOW) == (T - 60, T - 60)


def test_a_read_keeps_counts_and_what_each_claimed_second_waits_for() -> None:
    """Live seconds get their next stage; a settled second no longer followed keeps only its count."""
    read = Read(T - 4000, T - 3990, settled=T - 900)
    rows = {T - 3999: (2, 1), T - 3998: (1, DONE)}
    changed = read.rows(rows, {T - 3999: 2, T - 3998: 3, T - 3997: 1}, {T - 3999: True}, AGES, NOW)
    assert changed == {T - 3999: (2, 2), T - 3998: (3, DONE), T - 3997: (1, DONE)}
    assert read.live(T - 3999, rows) and not read.live(T - 3998, rows) and read.live(T - 800, rows)
    seconds, counts, statuses = read.census([(T - 3999, "held"), (T - 5000, "archived"), (T - 3990, "archived"),
                                             (T + 50, "archived")])
    assert seconds[:2] == [T - 3999, T - 3991], "a record before the window counts in its newest second"
    assert seconds[2] == T - 3990, "one at its end (an end-inclusive answer) keeps its own second"
    assert seconds[3] == T - 3991, "one dated later still (the future) counts in its newest second"
    assert followed(changed, statuses, AGES) == {"held": 1}


def test_done_rows_older_than_every_followed_second_are_dropped() -> None:
    """Counts are kept only where a window may still pass over them."""
    rows = {T - 9000: (3, DONE), T - 8000: (2, 1), T - 7000: (4, DONE), T - 100: (1, SETTLE)}
    assert stale_rows(rows, settled=T - 600) == {T - 9000: None}
    assert stale_rows({T - 9000: (3, DONE)}, settled=T - 600) == {T - 9000: None}
