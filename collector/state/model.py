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
    """

    watermark: datetime | None = None
    density: float | None = None
    remembered_from: datetime | None = None
    horizon: datetime | None = None


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
    """What one delivered chunk commits, in one transaction."""

    watch: str
    watermark: datetime
    horizon: datetime
    new_keys: Sequence[Key] = ()
    seen_again: Sequence[Key] = ()
    density: float | None = None
    marks: Mapping[str, OutputMark] = field(default_factory=dict)
