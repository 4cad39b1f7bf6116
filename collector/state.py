"""The durable checkpoint: per watch a watermark and the keys shipped within the overlap horizon.

The file is versioned JSON, written atomically (temporary file in the same
folder, fsync, rename, fsync of the folder) with mode 0600, and guarded by a
lock file so that two instances never share it. A file that cannot be
understood stops the start; it is never silently replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collector.errors import StateCorruptError, StateError, StateLockedError
from collector.fileio import write_all

__all__ = ["STATE_VERSION", "OutputMark", "StateStore", "WatchState"]

STATE_VERSION = 1
_RESET_HINT = "inspect it with `mimecast-collector state show`; `mimecast-collector state reset` starts afresh"


@dataclass
class WatchState:
    """Progress of one watch: everything received before ``watermark`` is shipped.

    ``seen`` maps a shipped key ``(mimecast id, status)`` to the epoch second
    that decides when it can be forgotten (its received time).
    """

    watermark: datetime | None = None
    seen: dict[tuple[str, str], int] = field(default_factory=dict)
    density: float | None = None
    remembered_from: datetime | None = None

    def prune(self, horizon: datetime) -> None:
        """Forget keys older than ``horizon``: no search will read them again."""
        limit = int(horizon.timestamp())
        self.seen = {k: t for k, t in self.seen.items() if t >= limit}


@dataclass(frozen=True)
class OutputMark:
    """How much of a file output is committed: its inode and length."""

    path: str
    inode: int
    size: int


class StateStore:
    """Loads, locks and atomically saves the checkpoint file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.watches: dict[str, WatchState] = {}
        self.outputs: dict[str, OutputMark] = {}
        self._lock_fd: int | None = None

    def open(self, *, lock: bool = True) -> StateStore:
        """Take the lock (unless ``lock`` is false) and load the file.

        Raises:
            StateLockedError: another instance holds the lock.
            StateCorruptError: the file exists but cannot be understood.
            StateError: the folder cannot be created or read.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise StateError(f"cannot create the state folder {self.path.parent}: {exc.strerror}") from None
        if lock:
            self._lock()
        self._load()
        return self

    def holder(self) -> int | None:
        """The pid of the collector holding the lock, or ``None`` when no collector runs on this state."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        else:
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def watch(self, name: str) -> WatchState:
        """The state of watch ``name`` (created empty on first use)."""
        return self.watches.setdefault(name, WatchState())

    def known(self, watch: str, keys: Any) -> set[tuple[str, str]]:
        """Which of ``keys`` watch ``watch`` already shipped or set aside."""
        seen = self.watch(watch).seen
        return {k for k in keys if k in seen}

    def save(self) -> None:
        """Write the whole checkpoint atomically.

        Raises:
            StateError: the file could not be written; the previous one is intact.
        """
        data = json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StateError(f"cannot write the state file {self.path}: {exc.strerror or exc}") from None

    def to_json(self) -> dict[str, Any]:
        """The checkpoint as the file holds it."""
        return {
            "version": STATE_VERSION,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "watches": {
                name: {"watermark": w.watermark.isoformat() if w.watermark else None,
                       "seen": [[k[0], k[1], t] for k, t in w.seen.items()]}
                for name, w in self.watches.items()
            },
            "outputs": {name: {"path": m.path, "inode": m.inode, "size": m.size} for name, m in self.outputs.items()},
        }

    def _lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open the lock file {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLockedError(
                f"the state file {self.path} is in use by another mimecast-collector (pid {holder}); "
                "stop it first, or give each instance its own collection.state_file") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"cannot read the state file {self.path}: {exc.strerror}") from None
        try:
            self._parse(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateCorruptError(f"the state file {self.path} is corrupt ({type(exc).__name__}: {exc}); "
                                    f"{_RESET_HINT}") from None

    def _parse(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            found = data.get("version") if isinstance(data, dict) else None
            raise ValueError(f"unsupported state version {found!r} (this collector writes {STATE_VERSION})")
        for name, entry in data["watches"].items():
            mark = entry["watermark"]
            watermark = datetime.fromisoformat(mark).astimezone(timezone.utc) if mark is not None else None
            seen = {}
            for mimecast_id, status, t in entry["seen"]:
                if not isinstance(mimecast_id, str) or not isinstance(status, str) or not isinstance(t, int):
                    raise ValueError(f"bad key in watch {name!r}")
                seen[(mimecast_id, status)] = t
            self.watches[name] = WatchState(watermark, seen)
        for name, entry in data.get("outputs", {}).items():
            self.outputs[name] = OutputMark(str(entry["path"]), int(entry["inode"]), int(entry["size"]))
