"""Who owns a file that ``search -o`` is asked to append to.

A file written under a checkpoint belongs to it: the daemon's checkpoint records the committed length of
each file output, a resumable search's progress that of its file, and each cuts back to that length what
it wrote before a crash. A search appending to such a file would interleave its events with the owner's,
so it refuses: a configured file output (the daemon's), any file the configured checkpoint holds a mark
for, the checkpoint's own files, and a file an unfinished resumable search claims. The claim is a small
file beside the output (``.<name>.search-claim``) naming the progress file; it goes when that search ends
complete.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from collector.config import Config, FileSinkConfig
from collector.state import SIDE_FILES
from collector.state.opening import connect_immutable

__all__ = ["claim", "claim_path", "owner", "release"]


def owner(path: Path, config: Config, resume: Path | None) -> str | None:
    """Who, other than the search keeping its progress in ``resume``, owns ``path``; ``None`` when nobody."""
    state = config.collection.state_file
    for output in config.outputs:
        if isinstance(output.sink, FileSinkConfig) and _same(path, output.sink.path):
            return (f"output {output.name!r} of the collector whose checkpoint is {state} (backfill it with "
                    f"--output {output.name}, which writes beside it)")
    own = [state, *(state.with_name(state.name + s) for s in (*SIDE_FILES, ".lock")),
           config.collection.dead_letter_file]
    if resume is not None:
        own += [resume, *(resume.with_name(resume.name + s) for s in (*SIDE_FILES, ".lock", ".search.json"))]
    if any(_same(path, p) for p in own):
        return "a checkpoint's own files"
    for name, mark_path in _marks(state).items():
        if _same(path, Path(mark_path)):
            return f"output {name!r} recorded in the collector's checkpoint {state}"
    progress = _claimed_by(path)
    if progress is not None and progress.exists() and not (resume is not None and _same(progress, resume)):
        return f"the unfinished search whose progress is {progress} (continue it with --resume {progress})"
    return None


def claim_path(path: Path) -> Path:
    """Where the claim of a resumable search on ``path`` is kept: beside it."""
    return path.with_name(f".{path.name}.search-claim")


def claim(path: Path, progress: Path) -> None:
    """Record that the search keeping its progress in ``progress`` writes ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    claim_path(path).write_text(json.dumps({"progress": str(progress.absolute())}) + "\n", encoding="utf-8")


def release(path: Path) -> None:
    """Remove the claim on ``path`` (its search ended complete)."""
    claim_path(path).unlink(missing_ok=True)


def _claimed_by(path: Path) -> Path | None:
    try:
        progress = json.loads(claim_path(path).read_text(encoding="utf-8"))["progress"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(progress) if isinstance(progress, str) else None


def _marks(state: Path) -> dict[str, str]:
    """The file outputs the checkpoint at ``state`` holds marks for (none when it cannot be read: the owner
    then still proves a tail its own before cutting it).

    The database is opened immutable, so that the search leaves the daemon's checkpoint, its write-ahead log
    and shared memory file byte for byte as they were; a mark still only in the log is not seen, and the
    daemon's own proof of its tail covers that case."""
    if not state.exists():
        return {}
    try:
        conn = connect_immutable(state)
    except sqlite3.Error:
        return {}
    try:
        return {str(name): str(path) for name, path in conn.execute("SELECT name, path FROM outputs")}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
