"""What the checkpoint holds and what a chunk commits, as plain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Advance", "Intent", "Key", "OutputMark", "WatchState"]

Key = tuple[str, str]


@dataclass
class WatchState:
    """Progress of one watch: everything received before ``watermark`` is shipped.

    ``remembered_from``: the keys this watch may meet again are complete for
    everything last seen at or after it (``None``: nothing was ever forgotten).
    It never moves back, and never passes the watermark.

    ``horizon`` is the settle frontier: every second before it had its settle read (``None``: not known,
    settle back from the watermark). ``seconds`` maps each epoch second read completely that still
    matters to ``(count, stage)``: the matching records it held at its last read, and what it waits for
    (0 its settle read, k >= 1 follow age k, -1 nothing: kept for its count).
    """

    watermark: datetime | None = None
    density: float | None = None
    remembered_from: datetime | None = None
    horizon: datetime | None = None
    seconds: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputMark:
    """How much of a file output is committed: its inode and length."""

    path: str
    inode: int
    size: int


@dataclass(frozen=True)
class Intent:
    """What a file output is about to append past its committed length, recorded before it writes.

    ``device`` and ``inode`` name the file; ``start`` is the committed length the write begins at;
    ``digests`` maps each length the file may stop at if the process dies mid-write (every page boundary
    within the write, and its end) to the digest of the bytes from ``start`` to that length. A tail past
    the committed length is cut only when it is exactly one of these: what this checkpoint wrote.
    """

    path: str
    device: int
    inode: int
    start: int
    digests: Mapping[int, bytes]

    @property
    def end(self) -> int:
        """The file's length once the whole write is in it."""
        return max(self.digests, default=self.start)


@dataclass(frozen=True)
class Advance:
    """What one delivered chunk commits, in one transaction.

    ``horizon`` is the watch's settle frontier after the chunk; ``key_seconds`` the received second of
    keys (new or seen again) that the chunk found; ``seconds`` the rows it changes (``None`` deletes one).
    """

    watch: str
    watermark: datetime
    horizon: datetime
    new_keys: Sequence[Key] = ()
    seen_again: Sequence[Key] = ()
    key_seconds: Mapping[Key, int] = field(default_factory=dict)
    seconds: Mapping[int, tuple[int, int] | None] = field(default_factory=dict)
    density: float | None = None
    marks: Mapping[str, OutputMark] = field(default_factory=dict)
