"""Proving that the bytes past a file's committed length are the ones this collector wrote there.

A file output is cut back to its committed length after a crash (or a failed chunk), but only when what
lies past that length is exactly what this checkpoint wrote: another process may have appended to the
file since (a ``search -o`` onto it, another collector), and its events must never be cut.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["digests_for", "matches", "prefix_matches"]

# A write that a signal ends early stops at a page of the file's cache; a digest is kept for each.
_PAGE = mmap.PAGESIZE
_READ = 1 << 20


def digests_for(start: int, data: bytes) -> dict[int, bytes]:
    """For each length the file may have once part of ``data`` is appended at ``start`` (every page boundary
    within it, and its end): the digest of the bytes from ``start`` to that length."""
    digest = hashlib.blake2b(digest_size=16)
    found: dict[int, bytes] = {}
    view = memoryview(data)
    at = start
    end = start + len(data)
    for boundary in [*range((start // _PAGE + 1) * _PAGE, end, _PAGE), end]:
        digest.update(view[at - start:boundary - start])
        found[boundary] = digest.digest()
        at = boundary
    return found


def matches(path: Path, identity: tuple[int, int], start: int, size: int, digests: Mapping[int, bytes]) -> bool:
    """True when the file at ``path`` (still ``identity``: device and inode) holds, from ``start`` to ``size``,
    bytes whose digest ``digests`` records for that length."""
    wanted = digests.get(size)
    if wanted is None:
        return False
    digest = hashlib.blake2b(digest_size=16)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != identity:
            return False
        at = start
        while at < size:
            block = os.pread(fd, min(_READ, size - at), at)
            if not block:
                return False
            digest.update(block)
            at += len(block)
    except OSError:
        return False
    finally:
        os.close(fd)
    return digest.digest() == wanted


def prefix_matches(path: Path, identity: tuple[int, int], start: int, size: int, data: bytes) -> bool:
    """True when the file at ``path`` (still ``identity``) holds, from ``start`` to ``size``, the beginning of
    ``data``: what a failed write of ``data`` at ``start`` left."""
    if not 0 <= size - start <= len(data):
        return False
    return matches(path, identity, start, size, {size: hashlib.blake2b(data[:size - start], digest_size=16).digest()})
