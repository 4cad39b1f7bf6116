"""Upgrading from the JSON checkpoint again after a downgrade: a log the old database left behind is not replayed."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collector.simulator import MailFlow, Simulator
from collector.state import StateStore, legacy_backup
from tests.conftest import config_dict, run_cli, write_config
from tests.statedb import read_state
from tests.test_daemon import Daemon, keys_in, wait_for


def _v1(watermark: datetime, out: Path, shipped: list[tuple[str, str]]) -> bytes:
    """A version 1 checkpoint as the earlier release writes it: everything in ``out`` delivered."""
    seen = [[mimecast_id, status, int(watermark.timestamp())] for mimecast_id, status in shipped]
    return json.dumps({"version": 1, "saved_at": watermark.isoformat(),
                       "watches": {"inbound": {"watermark": watermark.isoformat(), "seen": seen}},
                       "outputs": {"archive": {"path": str(out), "inode": out.stat().st_ino,
                                               "size": out.stat().st_size}}}).encode()


def test_a_stale_log_is_not_replayed_onto_a_freshly_migrated_checkpoint(tmp_path: Path) -> None:
    """Upgrade, kill -9 with commits in the log, put `state.v1.json` back (the downgrade), let the earlier
    release deliver more, upgrade again: the old log is removed, nothing the JSON records as delivered is cut."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    flow = MailFlow(seed=31, start=now - timedelta(hours=3), end=now, count=900)
    state, out = tmp_path / "state.json", tmp_path / "out.ndjson"
    out.write_bytes(b"")
    state.write_bytes(_v1(now - timedelta(hours=2), out, []))
    with Simulator(flow, cap=1000, clock=lambda: now) as sim:
        cfg = write_config(tmp_path, config_dict(sim, tmp_path, logging={"level": "info", "format": "json"}))
        daemon = Daemon(tmp_path, "run", "-c", str(cfg))
        try:
            wait_for(lambda: '"poll.done"' in daemon.log.read_text(), what="the first poll")
            wal = state.with_name(state.name + "-wal")
            assert wal.exists() and wal.stat().st_size > 0, "the kill must leave commits in the log"
            committed = read_state(state)["outputs"]["archive"]["size"]
            daemon.signal(signal.SIGKILL)
            daemon.wait()
        finally:
            daemon.kill()
        assert committed > 0 and wal.exists()
        # The downgrade: the JSON goes back in place. The earlier release, whose JSON knows nothing of what the
        # newer one shipped, delivers part of it again, and records the file's length as delivered.
        os.replace(legacy_backup(state), state)
        with open(out, "ab") as f:
            f.write(out.read_bytes()[:committed // 2].rpartition(b"\n")[0] + b"\n")
        delivered = out.read_bytes()
        state.write_bytes(_v1(now - timedelta(minutes=20), out, list(keys_in(out))))
        # The upgrade again.
        done = run_cli("once", "-c", str(cfg))
        assert done.returncode == 0, done.stderr
    assert "uncommitted_tail_removed" not in done.stderr
    assert "state.stale_log_removed" in done.stderr
    assert out.read_bytes()[:len(delivered)] == delivered, "events the JSON recorded as delivered were cut"
    assert read_state(state)["outputs"]["archive"]["size"] == out.stat().st_size
    store = StateStore(state).open(lock=False)
    try:
        assert store.watch("inbound").watermark >= now - timedelta(minutes=20)
    finally:
        store.close()

