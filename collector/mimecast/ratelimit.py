"""The shared rate-limit gate: one 429 holds back every caller of the client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from collector.errors import CancelledError

__all__ = ["RateGate", "backoff_delay"]


class RateGate:
    """Blocks callers until a rate-limit reset has passed.

    Mimecast counts its quota per user or application, not per query, so when
    one watch is told to wait, every watch waits. ``stop`` makes waits end
    early with :class:`~collector.errors.CancelledError` on shutdown.
    """

    def __init__(self, *, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stop = stop or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._open_at = 0.0

    def block(self, seconds: float) -> None:
        """Keep the gate closed for at least ``seconds`` from now."""
        with self._lock:
            self._open_at = max(self._open_at, self._clock() + seconds)

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        with self._lock:
            return max(0.0, self._open_at - self._clock())

    def wait(self) -> float:
        """Wait until the gate is open; return the seconds waited.

        Raises:
            CancelledError: shutdown was requested while waiting.
        """
        waited = 0.0
        while (left := self.remaining()) > 0:
            if self._stop.wait(left):
                raise CancelledError("shutdown requested during a rate-limit wait")
            waited += left
        if self._stop.is_set():
            raise CancelledError("shutdown requested")
        return waited

    def sleep(self, seconds: float) -> None:
        """Sleep for a retry backoff, ending early on shutdown.

        Raises:
            CancelledError: shutdown was requested while sleeping.
        """
        if seconds > 0 and self._stop.wait(seconds):
            raise CancelledError("shutdown requested during a retry backoff")


def backoff_delay(attempt: int, initial: float, cap: float, rand: Callable[[], float]) -> float:
    """Capped exponential backoff with full jitter for retry number ``attempt`` (1-based)."""
    ceiling = min(cap, initial * (2 ** (attempt - 1)))
    return ceiling * (0.5 + rand() / 2)
