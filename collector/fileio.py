"""Durable writes shared by the checkpoint, the file sink and the dead-letter file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["append_durably", "write_all"]


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data``; ``os.write`` may write fewer than asked.

    Raises:
        OSError: the write failed (a full disk, a closed file).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append_durably(path: Path, data: bytes, mode: int) -> tuple[int, int, int]:
    """Append ``data`` to ``path`` (created with ``mode``, folders as needed) and fsync it.

    Returns the file's device and inode, and its length before the append (where ``data`` begins).

    Raises:
        OSError: the folder, the file or the write failed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(fd)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return info.st_dev, info.st_ino, info.st_size
