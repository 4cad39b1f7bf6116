"""The file sink: append, fsync per chunk, exactly once across crashes."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import structlog

from collector.errors import SinkError
from collector.fileio import write_all
from collector.sinks.base import Line
from collector.sinks.tails import digests_for, matches, prefix_matches
from collector.state import Intent, OutputMark

__all__ = ["FileSink"]


class FileSink:
    """Appends one UTF-8 line per event to ``path`` (created with mode 0640).

    The checkpoint records the committed length and inode. On start,
    :meth:`reconcile` cuts off a tail written after the last commit (a crash
    between write and checkpoint), so the retried chunk is not duplicated;
    before each write, :meth:`stage` says what it will append, so that a tail
    is cut only when it is exactly that (another writer's bytes are kept).
    A path that is not a regular file (a FIFO, ``/dev/stdout``) is written
    without fsync or marks: at-least-once, like any stream.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = Path(path)
        self._fd: int | None = None
        self._regular = True
        self._inode = 0
        self._device = 0
        self._committed = 0
        self._staged: tuple[Sequence[Line], bytes] | None = None
        self._unsettled = b""  # written since the last commit, to prove a tail ours before taking it back
        self._dirty = False
        self._marked: int | None = None
        self._log = structlog.get_logger("collector.sinks.file").bind(output=name)
        self._open()

    def reconcile(self, mark: OutputMark | None, intent: Intent | None = None) -> int:
        """Cut off what this checkpoint wrote after the committed ``mark``; return the bytes removed.

        A tail is cut only when ``intent`` proves it is the write that a crash kept from being committed.
        Anything else past the mark (another process appended to the file) is kept, logged as an error and
        returned as a negative count. So is a file shorter than its committed mark, which lost committed
        events (cut by hand, restored from an old backup, a storage fault): the file is taken as it is.
        """
        if not self._regular:
            return 0
        size = self._size()
        if mark is None or mark.inode != self._inode or mark.path != str(self.path):
            self._committed = size
            return 0
        if size < mark.size:
            self._log.error("sink.file.shorter_than_committed", path=str(self.path), size=size,
                            committed=mark.size, missing_bytes=mark.size - size,
                            reason="events the checkpoint records as delivered are no longer in the file; "
                                   "they are not shipped again")
            self._committed = size
            return size - mark.size
        if size > mark.size and not self._ours(intent, mark.size, size):
            self._keep_foreign_tail(mark.size, size, "what this collector wrote there",
                                    "a chunk written before a crash, if any")
            return mark.size - size
        if size > mark.size:
            self._truncate(mark.size)
            self._log.warning("sink.file.uncommitted_tail_removed", path=str(self.path), bytes=size - mark.size,
                              reason="events written before a crash are shipped again from the checkpoint")
            self._committed = mark.size
            return size - mark.size
        self._committed = size
        return 0

    def stage(self, lines: Sequence[Line]) -> Intent | None:
        """What writing ``lines`` next will append, to be recorded before :meth:`write` (regular files only)."""
        data = "".join(f"{line.text}\n" for line in lines).encode("utf-8", "surrogatepass")
        self._staged = (lines, data)
        if not self._regular:
            return None
        start = self._size()
        return Intent(str(self.path), self._device, self._inode, start, digests_for(start, data))

    def write(self, lines: Sequence[Line]) -> None:
        """Append the lines."""
        if not lines:
            return
        staged, self._staged = self._staged, None
        data = staged[1] if staged is not None and staged[0] is lines else \
            "".join(f"{line.text}\n" for line in lines).encode("utf-8", "surrogatepass")
        self._dirty = True
        self._unsettled += data
        try:
            write_all(self._require_fd(), data)
        except OSError as exc:
            raise SinkError(self.name, f"cannot write {self.path}: {exc.strerror or exc}") from None

    def flush(self) -> None:
        """fsync the file, when anything was written since the last flush."""
        if not self._regular or not self._dirty:
            return
        try:
            os.fsync(self._require_fd())
        except OSError as exc:
            raise SinkError(self.name, f"cannot fsync {self.path}: {exc.strerror or exc}") from None
        self._dirty = False

    def mark(self) -> OutputMark | None:
        """The current inode and length, to be recorded as committed."""
        if not self._regular:
            return None
        self._marked = self._size()
        return OutputMark(str(self.path), self._inode, self._marked)

    def committed(self) -> None:
        """The checkpoint now covers everything up to the last mark (no system call: this cannot fail)."""
        if self._regular:
            self._committed = self._marked if self._marked is not None else self._size()
            self._marked = None
        self._unsettled = b""

    def rollback(self) -> bool:
        """Truncate back to the last committed length, when what lies past it is what this sink wrote; True
        when bytes past it were kept instead (another process appended to the file)."""
        self._marked = None
        self._staged = None
        written, self._unsettled = self._unsettled, b""
        try:
            size = self._size() if self._regular and self._fd is not None else self._committed
            if size <= self._committed:
                return False
            if prefix_matches(self.path, (self._device, self._inode), self._committed, size, written):
                self._truncate(self._committed)
                return False
            self._keep_foreign_tail(self._committed, size, "only what this collector wrote", "the chunk")
            return True
        except (OSError, SinkError) as exc:
            self._log.error("sink.file.rollback_failed", path=str(self.path), error=str(exc))
        return False

    def _keep_foreign_tail(self, committed: int, size: int, not_what: str, again: str) -> None:
        """Keep the bytes from ``committed`` to ``size``, which another process appended, and say so."""
        self._log.error("sink.file.foreign_tail_kept", path=str(self.path), committed=committed,
                        kept_bytes=size - committed,
                        reason=f"bytes past the committed length are not {not_what} (another process appended to "
                               f"the file): they are kept, and {again} is shipped again after them")
        self._committed = size

    def reopen(self) -> None:
        """Close and open the path again (logrotate moved the file away)."""
        self._marked = None
        self._unsettled = b""
        self.close()
        self._open()
        self.committed()

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            info = os.fstat(self._fd)
            self._inode, self._device, self._regular = info.st_ino, info.st_dev, stat.S_ISREG(info.st_mode)
        except OSError as exc:
            raise SinkError(self.name, f"cannot open {self.path}: {exc.strerror or exc}") from None

    def _require_fd(self) -> int:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        return self._fd

    def _size(self) -> int:
        return os.fstat(self._require_fd()).st_size

    def _ours(self, intent: Intent | None, start: int, size: int) -> bool:
        return (intent is not None and intent.path == str(self.path) and intent.start == start
                and (intent.device, intent.inode) == (self._device, self._inode)
                and matches(self.path, (self._device, self._inode), start, size, intent.digests))

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._require_fd(), size)
            os.fsync(self._require_fd())
        except OSError as exc:
            raise SinkError(self.name, f"cannot truncate {self.path}: {exc.strerror or exc}") from None
