"""What every sink shares: the line it is given, the sink interface, and standard output."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from collector.errors import SinkError
from collector.state import OutputMark

__all__ = ["Line", "Sink", "StdoutSink"]


@dataclass(frozen=True, slots=True)
class Line:
    """One formatted event: its text (no line break), severity (0-10) and time (when Mimecast received it)."""

    text: str
    severity: int
    timestamp: datetime


class Sink(Protocol):
    """Where formatted lines go.

    The engine calls ``write`` then ``flush`` for every chunk; only when every
    sink has flushed is the checkpoint saved and ``committed`` called. On any
    failure it calls ``rollback``, so a sink that can take back uncommitted
    data (a file) is never duplicated by the retry.
    """

    name: str

    def write(self, lines: Sequence[Line]) -> None:
        """Send ``lines``; raise SinkError on failure."""

    def flush(self) -> None:
        """Make everything written durable or delivered; raise SinkError on failure."""

    def mark(self) -> OutputMark | None:
        """What the checkpoint should record as committed (files only)."""

    def committed(self) -> None:
        """The checkpoint now covers everything written."""

    def rollback(self) -> bool | None:
        """Take back what was written since the last commit, where possible; True when bytes that are not
        only this sink's were found past the committed point and kept (counted as a sink error)."""

    def reopen(self) -> None:
        """Reopen the destination (after log rotation)."""

    def close(self) -> None:
        """Flush and release the destination."""


class StdoutSink:
    """One line per event on standard output."""

    def __init__(self, name: str, stream: Any = None) -> None:
        self.name = name
        self._stream = stream

    @property
    def stream(self) -> Any:
        """Standard output as it is now (tests and the demo may swap it)."""
        return self._stream or sys.stdout

    def write(self, lines: Sequence[Line]) -> None:
        """Print the lines."""
        try:
            self.stream.write("".join(f"{line.text}\n" for line in lines))
        except (OSError, ValueError) as exc:
            raise SinkError(self.name, f"cannot write to stdout: {exc}") from None

    def flush(self) -> None:
        """Flush standard output."""
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            raise SinkError(self.name, f"cannot flush stdout: {exc}") from None

    def mark(self) -> None:
        """Standard output keeps no mark."""
        return None

    def committed(self) -> None:
        """Nothing to do."""

    def rollback(self) -> None:
        """Printed lines cannot be taken back (at-least-once)."""

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Flush what is buffered."""
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass
