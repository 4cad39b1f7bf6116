"""Read the checkpoint database the way an operator would (with sqlite3, read-only), and leave one mid-rebuild."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from collector.state import Advance, StateStore

T = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)


def read_state(path: Path) -> dict[str, Any]:
    """Watches (watermark, remembered keys) and output marks, shaped like the old JSON checkpoint.

    Opened read-only, so it can be called while a collector runs.
    """
    conn = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True, timeout=5)
    try:
        watches = {name: {"watermark": mark, "keys": keys} for name, mark, keys in conn.execute(
            "SELECT name, watermark, (SELECT count(*) FROM keys WHERE keys.watch = watches.id) FROM watches")}
        outputs = {name: {"path": p, "inode": inode, "size": size}
                   for name, p, inode, size in conn.execute("SELECT name, path, inode, size FROM outputs")}
    finally:
        conn.close()
    return {"watches": watches, "outputs": outputs}


def page_size(path: Path) -> int:
    """The page size of the SQLite file at ``path``."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA page_size").fetchone()[0]


def interrupted_rebuild(path: Path) -> None:
    """Make ``path`` a checkpoint of 200,000 keys (watch ``w``) with 4 KiB pages, then SIGKILL a collector opening
    it while its rebuild to smaller pages has written most of the rollback journal (tried again, up to ten
    times, when the rebuild ends first)."""
    store = StateStore(path).open()
    for n in range(40):
        store.commit(Advance("w", T + timedelta(seconds=n + 1), T, new_keys=[(f"id-{n}-{i}", "held")
                                                                             for i in range(5000)]))
    store.close()
    journal = path.with_name(path.name + "-journal")
    for _ in range(10):
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            for statement in ("PRAGMA journal_mode = DELETE", "PRAGMA page_size = 4096", "VACUUM",
                              "PRAGMA journal_mode = WAL"):
                conn.execute(statement)
        full = path.stat().st_size
        opener = subprocess.Popen([sys.executable, "-c", "import sys; from collector.state import StateStore; "
                                   "StateStore(sys.argv[1]).open()", str(path)])
        while opener.poll() is None and _size(journal) < 0.9 * full:
            pass
        opener.kill()
        opener.wait()
        if _size(journal) > 0:
            return
    raise AssertionError("every rebuild ended before it could be interrupted")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
