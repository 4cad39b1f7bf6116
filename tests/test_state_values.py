"""Every stored value the collector cannot have written stops the start with exit 65 and the reset hint."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.errors import StateCorruptError
from collector.simulator import MailFlow, Simulator
from collector.state import Advance, OutputMark, StateStore
from tests.conftest import config_dict, run_cli, write_config

T = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)

# (the damage, done with sqlite3 as a hand edit or a bad disk would, what the message names)
DAMAGE = {
    "density-text": ("UPDATE watches SET density = 'abc'", "density 'abc'"),
    "density-infinite": ("UPDATE watches SET density = 1e999", "density inf"),
    "density-negative": ("UPDATE watches SET density = -5", "density -5"),
    "watermark-garbage": ("UPDATE watches SET watermark = 'garbage'", "watermark 'garbage'"),
    "watermark-9999": ("UPDATE watches SET watermark = '9999-12-31T23:00:00+00:00'", "watermark '9999"),
    "watermark-number": ("UPDATE watches SET watermark = 17", "watermark '17'"),
    "watermark-no-zone": ("UPDATE watches SET watermark = '2026-11-28T12:00:00'", "is not a UTC time"),
    "horizon-absurd": ("UPDATE watches SET horizon = 99999999999999", "horizon 99999999999999"),
    "horizon-text": ("UPDATE watches SET horizon = 'x'", "horizon 'x'"),
    "horizon-negative": ("UPDATE watches SET horizon = -1", "horizon -1"),
    "mark-size-text": ("UPDATE outputs SET size = 'x'", "committed length 'x'"),
    "mark-size-negative": ("UPDATE outputs SET size = -3", "committed length -3"),
    "mark-inode": ("UPDATE outputs SET inode = 2.5", "inode 2.5"),
    "mark-path": ("UPDATE outputs SET path = ''", "path ''"),
    "prune-point": ("UPDATE meta SET value = 'zz' WHERE name = 'pruned_at'", "prune point 'zz'"),
    "key-last-seen": ("UPDATE keys SET last_seen = 'zz'", "last seen as text"),
    "key-text": ("UPDATE keys SET key = 'abc'", "key stored as text"),
    "second-text": ("UPDATE seconds SET second = 'x'", "second 'x'"),
    "second-count": ("UPDATE seconds SET count = -1", "count -1"),
    "second-stage": ("UPDATE seconds SET stage = 'due'", "stage 'due'"),
}


def _checkpoint(path: Path, out: Path) -> None:
    """A checkpoint with a watch, a remembered key, a prune point and an output mark, as the daemon leaves it."""
    store = StateStore(path).open()
    store.prepare(["inbound"])
    store.commit(Advance("inbound", T, T - timedelta(minutes=10), new_keys=[("id-1", "delivered")], density=0.5,
                         marks={"archive": OutputMark(str(out), 1234, 0)},
                         seconds={int(T.timestamp()) - 30: (3, 0)}))
    store.close()


def _damage(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    assert conn.execute(sql).rowcount == 1, "the damage must change the value it names"
    conn.commit()
    conn.close()


@pytest.mark.parametrize("case", list(DAMAGE))
def test_an_impossible_value_is_a_corrupt_checkpoint(tmp_path: Path, case: str) -> None:
    """Opening (to run, or read-only to show) raises StateCorruptError naming the value and `state reset`."""
    sql, names = DAMAGE[case]
    path = tmp_path / "state.json"
    _checkpoint(path, tmp_path / "out.ndjson")
    _damage(path, sql)
    content = path.read_bytes()
    for lock in (True, False):
        with pytest.raises(StateCorruptError, match="mimecast-collector state reset") as raised:
            StateStore(path).open(lock=lock)
        assert names in str(raised.value) and "impossible value" in str(raised.value)
    assert path.read_bytes() == content


@pytest.mark.parametrize("case", ["density-text", "watermark-garbage", "watermark-9999", "horizon-absurd"])
def test_the_commands_exit_65_with_the_hint_and_reset_recovers(tmp_path: Path, case: str) -> None:
    """`once` and `state show` exit 65 with one line and the hint (no traceback, which a service manager would
    restart for ever); `state reset` keeps the file aside and the next run works."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with Simulator(MailFlow(seed=5, start=now - timedelta(hours=2), end=now, count=60), clock=lambda: now) as sim:
        cfg = write_config(tmp_path, config_dict(sim, tmp_path, logging={"level": "warning", "format": "json"}))
        assert run_cli("once", "-c", str(cfg)).returncode == 0
        _damage(tmp_path / "state.json", DAMAGE[case][0])
        for command in (["once"], ["state", "show"]):
            done = run_cli(*command, "-c", str(cfg))
            assert done.returncode == 65, done.stderr
            assert "Traceback" not in done.stderr and "mimecast-collector state reset" in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert run_cli("state", "reset", "-c", str(cfg)).returncode == 0
        assert len(list(tmp_path.glob("state.json.corrupt-*"))) == 1
        assert run_cli("once", "-c", str(cfg)).returncode == 0
