"""The checkpoint database: private, locked, checked on open, committed whole or not at all."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from collector.errors import StateCorruptError, StateLockedError
from collector.state import Advance, OutputMark, StateStore, legacy_backup
from tests.statedb import interrupted_rebuild, page_size

T = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)


def advance(watch: str, end: datetime, overlap: timedelta = 10 * M, **kw: object) -> Advance:
    """What a chunk ending at ``end`` commits."""
    return Advance(watch, end, end - overlap, **kw)


def test_round_trip_mode_and_no_leftovers(tmp_path: Path) -> None:
    """What is committed loads back; the file is 0600, in WAL mode, and closing leaves no side files."""
    store = StateStore(tmp_path / "sub" / "state.json").open()
    store.commit(advance("w", T, new_keys=[("id-1", "held")], density=2.5, marks={"o": OutputMark("/x", 12, 34)}))
    store.close()
    path = tmp_path / "sub" / "state.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = StateStore(path).open()
    w = again.watch("w")
    assert (w.watermark, w.density, w.horizon) == (T, 2.5, T - 10 * M)
    assert again.known("w", [("id-1", "held"), ("id-1", "archived")]) == {("id-1", "held")}
    assert again.outputs["o"] == OutputMark("/x", 12, 34)


def test_second_instance_is_refused(tmp_path: Path) -> None:
    """A second open of the same state fails with a message naming the holder."""
    first = StateStore(tmp_path / "state.json").open()
    with pytest.raises(StateLockedError, match=f"pid {os.getpid()}"):
        StateStore(tmp_path / "state.json").open()
    first.close()
    StateStore(tmp_path / "state.json").open().close()


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()


def _newer(path: Path) -> None:
    StateStore(path).open().close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def _truncated(path: Path) -> None:
    store = StateStore(path).open()
    for i in range(40):
        store.commit(advance("w", T + i * M, new_keys=[(f"id-{i}-{n}", "held") for n in range(100)]))
    store.close()
    os.truncate(path, path.stat().st_size // 2)


def _damaged(path: Path) -> None:
    _truncated(path)
    with open(path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(os.urandom(4096))


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b"{not json"), lambda p: p.write_bytes(b"[]"),
    lambda p: p.write_bytes(b'{"version": 99, "watches": {}}'),
    lambda p: p.write_bytes(b'{"version": 1, "watches": {"w": {"watermark": "soon", "seen": []}}}'),
    lambda p: p.write_bytes(b'{"version": 1, "watches": {"w": {"watermark": null, "seen": [[1, 2, 3]]}}}'),
    lambda p: p.write_bytes(os.urandom(8192)), lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50),
    _foreign, _newer, _truncated, _damaged,
], ids=["json", "json-list", "json-v99", "json-bad-time", "json-bad-key", "random", "short-header", "foreign-sqlite",
        "newer-schema", "truncated", "damaged-page"])
def test_unreadable_state_stops_with_the_reset_hint(tmp_path: Path, make: object) -> None:
    """Whatever is wrong, opening raises StateCorruptError naming `state reset`, and the file is left untouched."""
    path = tmp_path / "state.json"
    make(path)  # type: ignore[operator]
    content = path.read_bytes()
    with pytest.raises(StateCorruptError, match="mimecast-collector state reset"):
        StateStore(path).open()
    assert path.read_bytes() == content
    with pytest.raises(StateCorruptError):
        StateStore(path).open(lock=False)


def test_an_empty_file_is_a_new_checkpoint(tmp_path: Path) -> None:
    """A zero-byte file (a crash while it was first created) starts afresh."""
    (tmp_path / "state.json").write_bytes(b"")
    store = StateStore(tmp_path / "state.json").open()
    store.commit(advance("w", T))
    assert store.watch("w").watermark == T


def test_keys_are_forgotten_once_no_watch_can_read_their_second(tmp_path: Path) -> None:
    """A key lives while its record's second may be read again: until the settle frontier passes it, or, for a
    followed second, until its follow-up ends; a key stored without its second counts from the chunk end."""
    store = StateStore(tmp_path / "state.json").open()
    t = int(T.timestamp())
    keys = {("plain", "a"): t, ("followed", "held"): t + 1, ("late", "a"): t + 2}
    store.commit(advance("w", T + 5 * M, new_keys=[*keys, ("unknown", "a")], key_seconds=keys,
                         seconds={t + 1: (1, 1)}))
    store.commit(advance("w", T + 10 * M, overlap=10 * M - timedelta(seconds=2)))  # settled up to t + 2
    assert store.known("w", [*keys, ("unknown", "a")]) == {("followed", "held"), ("late", "a"), ("unknown", "a")}
    store.commit(advance("w", T + 20 * M))  # settled to T + 10m: the chunk end of "unknown" was T + 5m
    assert store.known("w", [*keys, ("unknown", "a")]) == {("followed", "held")}, "a followed second keeps its keys"
    store.commit(advance("w", T + 21 * M, seconds={t + 1: None}))
    assert store.known("w", [("followed", "held")]) == set(), "its follow-up ended: nothing can read it again"
    assert store.remembered("w") == 0


def test_a_key_seen_again_learns_its_second(tmp_path: Path) -> None:
    """A key stored with an upper bound of its second (the chunk end, as version 2 did) is lowered to its
    second when a read finds it again, so that it is forgotten with its second."""
    store = StateStore(tmp_path / "state.json").open()
    store.commit(advance("w", T, new_keys=[("k", "a")]))
    store.commit(advance("w", T + M, seen_again=[("k", "a")], key_seconds={("k", "a"): int(T.timestamp()) - 60}))
    stored = store._require().execute("SELECT last_seen FROM keys").fetchone()[0]  # noqa: SLF001 - a white-box look
    assert stored == int(T.timestamp()) - 60


def test_remembered_from_never_moves_back_nor_passes_the_watermark(tmp_path: Path) -> None:
    """Raising the overlap does not pull remembered_from back; a new watch has none."""
    store = StateStore(tmp_path / "state.json").open()
    assert store.watch("w").remembered_from is None
    store.commit(advance("w", T, overlap=10 * M, new_keys=[("k", "a")]))
    assert store.watch("w").remembered_from == T - 10 * M
    store.commit(advance("w", T + M, overlap=60 * M))  # overlap raised to 1h
    assert store.watch("w").remembered_from == T - 10 * M
    store.commit(advance("w", T + 2 * M, overlap=60 * M))
    assert store.watch("w").remembered_from == T - 10 * M
    store.prepare(["w", "late"])
    store.commit(advance("late", T - 60 * M, overlap=0 * M))
    assert store.watch("late").remembered_from == T - 60 * M, "never past its own watermark"
    assert store.watch("new").remembered_from is None


def test_the_slowest_configured_watch_holds_keys_and_a_removed_one_does_not(tmp_path: Path) -> None:
    """Keys stay until every configured watch has moved past them; unconfigured watches do not count."""
    store = StateStore(tmp_path / "state.json").open()
    store.prepare(["fast", "slow"])
    store.commit(advance("slow", T))
    store.commit(advance("fast", T + M, new_keys=[("k", "held")]))
    store.commit(advance("fast", T + 60 * M))
    assert store.known("slow", [("k", "held")]) == {("k", "held")}, "slow may still meet it"
    store.close()
    again = StateStore(tmp_path / "state.json").open()
    again.prepare(["fast"])  # "slow" was removed from the configuration
    again.commit(advance("fast", T + 61 * M))
    assert again.known("fast", [("k", "held")]) == set()


def test_a_configured_watch_that_never_committed_holds_keys(tmp_path: Path) -> None:
    """A new watch will search back its initial lookback: until its first commit nothing it may meet is forgotten."""
    store = StateStore(tmp_path / "state.json").open()
    store.prepare(["old", "new"])
    store.commit(advance("old", T, new_keys=[("k", "held")]))
    store.commit(advance("old", T + 120 * M))
    assert store.known("new", [("k", "held")]) == {("k", "held")}
    store.commit(advance("new", T + 120 * M))
    store.commit(advance("old", T + 121 * M))
    assert store.known("new", [("k", "held")]) == set()


def test_a_failed_commit_changes_nothing_in_memory_or_on_disk(tmp_path: Path) -> None:
    """Any exception inside the transaction (here not a StateError) rolls it back; memory keeps the old state."""
    store = StateStore(tmp_path / "state.json").open()
    store.commit(advance("w", T, new_keys=[("a", "x")], marks={"o": OutputMark("/x", 1, 10)}))
    bad = advance("w", T + M, new_keys=[("b", "x")], seen_again=[(1, "not text")],  # type: ignore[list-item]
                  key_seconds={(1, "not text"): 5},  # type: ignore[dict-item]
                  marks={"o": OutputMark("/x", 1, 20)})
    with pytest.raises(AttributeError):
        store.commit(bad)
    assert store.watch("w").watermark == T and store.outputs["o"].size == 10
    assert store.known("w", [("b", "x")]) == set()
    store.close()
    again = StateStore(tmp_path / "state.json").open()
    assert again.watch("w").watermark == T and again.outputs["o"].size == 10
    assert again.known("w", [("a", "x"), ("b", "x")]) == {("a", "x")}


def test_keys_that_are_not_valid_unicode_are_stored(tmp_path: Path) -> None:
    """A lone surrogate in an id or status is remembered like any other key."""
    store = StateStore(tmp_path / "state.json").open()
    keys = [("\ud800", "held"), ("id", "\udfff"), ("\ud800x", "held")]
    store.commit(advance("w", T, new_keys=keys[:2]))
    assert store.known("w", keys) == set(keys[:2])
    store.record_marks({"odd": OutputMark("/var/log/\udcff.ndjson", 7, 8)})  # an undecodable file name
    store.close()
    assert StateStore(tmp_path / "state.json").open().outputs["odd"] == OutputMark("/var/log/\udcff.ndjson", 7, 8)


def test_reading_while_the_collector_commits(tmp_path: Path) -> None:
    """A read-only open (state show) sees commits and does not stop the holder from committing."""
    path = tmp_path / "state.json"
    writer = StateStore(path).open()
    writer.commit(advance("w", T))
    reader = StateStore(path).open(lock=False)
    writer.commit(advance("w", T + M, new_keys=[("k", "a")]))
    assert reader.remembered("w") == 1
    reader.close()
    writer.close()


def test_watches_created_while_others_commit(tmp_path: Path) -> None:
    """Watch states created from other threads during commits never break a commit (no start-up race)."""
    store = StateStore(tmp_path / "state.json").open()
    errors: list[BaseException] = []

    def create() -> None:
        try:
            for i in range(3000):
                store.watch(f"w{i}")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    thread = threading.Thread(target=create)
    thread.start()
    for i in range(200):
        store.commit(advance("main", T + i * M, new_keys=[(f"k{i}", "a")]))
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert len(store.watch_names()) == 3001


def test_version_1_json_is_migrated_and_kept_aside(tmp_path: Path) -> None:
    """A JSON checkpoint becomes the database; the JSON stays beside it as state.v1.json."""
    path = tmp_path / "state.json"
    legacy = {"version": 1, "saved_at": "2026-11-28T12:00:00+00:00",
              "watches": {"w": {"watermark": T.isoformat(), "seen": [["id-1", "held", int(T.timestamp()) - 3000]]}},
              "outputs": {"o": {"path": "/x", "inode": 5, "size": 99}}}
    path.write_text(json.dumps(legacy))
    store = StateStore(path).open()
    assert json.loads(legacy_backup(path).read_text()) == legacy
    assert path.read_bytes().startswith(b"SQLite format 3")
    assert store.watch("w").watermark == T and store.outputs["o"] == OutputMark("/x", 5, 99)
    # Remembered as last seen at the watermark: the first overlap after the upgrade still drops it.
    store.commit(advance("w", T + 9 * M))
    assert store.known("w", [("id-1", "held")]) == {("id-1", "held")}


@pytest.mark.parametrize("asked", [1, 2, 3, 255, 256, 257, 499, 500, 501, 1234])
def test_known_answers_exactly_for_any_number_of_keys(tmp_path: Path, asked: int) -> None:
    """Keys are looked up in lists padded (with repeats) to a few lengths: any number asked, across batches,
    gets exactly the stored ones back."""
    store = StateStore(tmp_path / "state.db").open()
    stored = [(f"id-{i}", "held") for i in range(0, 2 * asked, 2)]
    store.commit(advance("w", T, new_keys=stored))
    wanted = [(f"id-{i}", "held") for i in range(asked)]
    assert store.known("w", wanted) == {key for key in wanted if int(key[0][3:]) % 2 == 0}
    store.close()


def _with_pages(path: Path, size: int) -> None:
    """Rebuild the checkpoint at ``path`` with pages of ``size`` bytes, as SQLite's default made them before."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute(f"PRAGMA page_size = {size}")
        conn.execute("VACUUM")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def test_a_new_checkpoint_has_small_pages(tmp_path: Path) -> None:
    """Every commit writes whole pages: a new checkpoint uses 1 KiB ones, not SQLite's default 4 KiB."""
    store = StateStore(tmp_path / "state.db").open()
    store.commit(advance("w", T, new_keys=[("id-1", "held")]))
    store.close()
    assert page_size(tmp_path / "state.db") == 1024


def test_a_checkpoint_with_larger_pages_is_rebuilt_once_and_keeps_everything(tmp_path: Path) -> None:
    """A checkpoint written with 4 KiB pages gets 1 KiB ones at the next start, with every key, watermark and
    mark; while another process has it open it is used as it is (with a warning) and rebuilt at the start after."""
    path = tmp_path / "state.db"
    store = StateStore(path).open()
    store.commit(advance("w", T, new_keys=[(f"id-{i}", "held") for i in range(3000)], density=2.5,
                         marks={"o": OutputMark("/x", 12, 34)}))
    store.close()
    _with_pages(path, 4096)
    assert page_size(path) == 4096

    other = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    other.execute("SELECT count(*) FROM keys").fetchone()
    with capture_logs() as logs:
        store = StateStore(path).open()
    assert [e["event"] for e in logs if e["event"].startswith("state.repage")] == ["state.repage_skipped"]
    # The log is folded back after 40 MiB whatever the pages: 10,240 of 4 KiB, not the 40,960 of 1 KiB.
    assert store._require().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10240  # noqa: SLF001
    store.commit(advance("w", T + M, new_keys=[("id-new", "held")]))
    store.close()
    other.close()
    assert page_size(path) == 4096

    with capture_logs() as logs:
        store = StateStore(path).open()
    assert [(e["event"], e["was"]) for e in logs if e["event"].startswith("state.repage")] == [("state.repaged", 4096)]
    try:
        assert page_size(path) == 1024
        assert store._require().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 40960  # noqa: SLF001
        w = store.watch("w")
        assert (w.watermark, w.density, w.horizon) == (T + M, 2.5, T + M - 10 * M)
        asked = [(f"id-{i}", "held") for i in range(3000)] + [("id-new", "held"), ("id-x", "held")]
        assert store.known("w", asked) == set(asked[:-1])
        assert store.outputs["o"] == OutputMark("/x", 12, 34)
        assert store.remembered("w") == 3001
    finally:
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db", "state.db.lock"]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_follow_up_that_is_reset_or_removed_releases_its_keys(tmp_path: Path) -> None:
    """Keys of followed seconds outlive the prune point only while their follow-up can end: resetting the watch,
    or removing it from the configuration for longer than its last follow age, forgets them (keys another watch
    follows stay)."""
    t = int(T.timestamp())
    store = StateStore(tmp_path / "state.json").open()
    store.prepare(["a", "b", "c"])
    for name, second in (("a", t), ("b", t + 1), ("c", t + 2)):
        key = (f"held-{name}", "held")
        store.commit(advance(name, T + 5 * M, new_keys=[key], key_seconds={key: second}, seconds={second: (1, 1)}))
    for name in ("a", "b", "c"):
        store.commit(advance(name, T + 60 * M))  # every settle frontier far past the followed seconds
    held = [("held-a", "held"), ("held-b", "held"), ("held-c", "held")]
    assert store.known("a", held) == set(held), "followed seconds keep their keys past the prune point"
    assert store.reset("a")
    assert store.known("b", held) == set(held[1:]), "reset: nothing will end its follow-up"
    store.close()
    again = StateStore(tmp_path / "state.json").open()
    assert again.known("b", held) == set(held[1:])
    again.prepare(["a", "b"], ended_before=T)  # "c" was left out of one start's configuration, not for long
    assert again.known("b", held) == set(held[1:]), "c finds its follow-up when it comes back"
    assert again.watch("c").seconds == {t + 2: (1, 1)}
    again.close()
    again = StateStore(tmp_path / "state.json").open()
    again.prepare(["a", "b"], ended_before=T + 60 * M)  # "c" removed for longer than its last follow age
    assert again.known("b", held) == {("held-b", "held")}
    assert again.watch("c").seconds == {}
    assert [stage for _count, stage in again.watch("b").seconds.values()] == [1], "b still follows its second"
    again.close()
    with closing(sqlite3.connect(tmp_path / "state.json")) as conn:
        assert conn.execute("SELECT count(*) FROM seconds WHERE stage > 0").fetchone()[0] == 1


def test_a_journal_left_beside_a_version_1_file_is_not_replayed_onto_its_migration(tmp_path: Path) -> None:
    """A rebuild killed mid-way leaves a rollback journal; put back a version 1 JSON file (a downgrade) and the
    journal belongs to a database that is no longer there: the migration removes it instead of letting SQLite
    play it onto the new database."""
    path = tmp_path / "state.json"
    interrupted_rebuild(path)
    journal = path.with_name(path.name + "-journal")
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
    path.write_text(json.dumps({"version": 1, "saved_at": T.isoformat(), "outputs": {},
                                "watches": {"w": {"watermark": T.isoformat(), "seen": [["id-1", "held", 0]]}}}))
    assert journal.stat().st_size > 0
    with capture_logs() as logs:
        store = StateStore(path).open()
    try:
        assert store.known("w", [("id-1", "held")]) == {("id-1", "held")} and store.watch("w").watermark == T
    finally:
        store.close()
    assert "state.stale_log_removed" in [e["event"] for e in logs]
    assert not journal.exists()
