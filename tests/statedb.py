"""Read the checkpoint database the way an operator would: with sqlite3, read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote


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
