"""The checkpoint: atomic, private, locked, and never silently reset."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.errors import StateCorruptError, StateLockedError
from collector.state import OutputMark, StateStore

T = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def test_round_trip_and_mode(tmp_path: Path) -> None:
    """What is saved loads back identically; the file is 0600 and no temporary file is left."""
    store = StateStore(tmp_path / "sub" / "state.json").open()
    w = store.watch("w")
    w.watermark = T
    w.seen[("id-1", "held")] = int(T.timestamp())
    store.outputs["o"] = OutputMark("/x", 12, 34)
    store.save()
    store.close()
    assert stat.S_IMODE(os.stat(tmp_path / "sub" / "state.json").st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["state.json", "state.json.lock"]
    again = StateStore(tmp_path / "sub" / "state.json").open()
    assert again.watches["w"].watermark == T and again.watches["w"].seen == {("id-1", "held"): int(T.timestamp())}
    assert again.outputs["o"] == OutputMark("/x", 12, 34)


def test_second_instance_is_refused(tmp_path: Path) -> None:
    """A second open of the same state file fails with a message naming the holder."""
    first = StateStore(tmp_path / "state.json").open()
    with pytest.raises(StateLockedError, match=f"pid {os.getpid()}"):
        StateStore(tmp_path / "state.json").open()
    first.close()
    StateStore(tmp_path / "state.json").open().close()


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"version": 99, "watches": {}}',
                                     b'{"version": 1, "watches": {"w": {"watermark": "soon", "seen": []}}}',
                                     b'{"version": 1, "watches": {"w": {"watermark": null, "seen": [[1, 2, 3]]}}}'])
def test_corrupt_state_stops_with_the_reset_hint(tmp_path: Path, content: bytes) -> None:
    """Unreadable content raises StateCorruptError naming `state reset`; the file is left untouched."""
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateCorruptError, match="mimecast-collector state reset"):
        StateStore(path).open()
    assert path.read_bytes() == content


def test_prune_forgets_keys_older_than_the_horizon(tmp_path: Path) -> None:
    """Keys whose time is before the horizon are dropped, newer ones kept."""
    w = StateStore(tmp_path / "s.json").open().watch("w")
    w.seen = {("old", "a"): int(T.timestamp()) - 1, ("new", "a"): int(T.timestamp())}
    w.prune(T)
    assert list(w.seen) == [("new", "a")]


def test_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    """When the new file cannot be written the old checkpoint stays as it was."""
    store = StateStore(tmp_path / "state.json").open()
    store.watch("w").watermark = T
    store.save()
    before = (tmp_path / "state.json").read_bytes()
    store.path = Path("/proc/no-such-dir/state.json")
    with pytest.raises(Exception, match="cannot write the state file"):
        store.save()
    assert (tmp_path / "state.json").read_bytes() == before
    assert json.loads(before)["watches"]["w"]["watermark"] == T.isoformat()
