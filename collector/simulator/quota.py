"""Mimecast's request quota as its documentation describes it: a bucket that refills one request at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Bucket"]


class Bucket:
    """``limit`` requests; one is added back every ``refill`` seconds; each request takes one.

    Every answer carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` (after this request) and
    ``X-RateLimit-Reset`` (milliseconds until the next request is added back). A request that finds
    the bucket empty is refused with 429 and takes nothing. ``other`` requests per second model the
    customer's other integrations spending the same quota.
    """

    def __init__(self, limit: int, refill: float, *, other: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or refill <= 0:
            raise ValueError("a quota needs limit >= 1 and refill > 0")
        self.limit, self.refill, self.other = limit, refill, other
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(limit)
        self._last = clock()
        self.refused = 0
        self.low_water = limit

    def take(self) -> tuple[bool, dict[str, str]]:
        """Spend one request if there is one; ``(allowed, headers for the answer)``."""
        with self._lock:
            now = self._clock()
            elapsed = now - self._last
            self._last = now
            self._tokens = min(float(self.limit), self._tokens + elapsed / self.refill - elapsed * self.other)
            self._tokens = max(self._tokens, 0.0)
            allowed = self._tokens >= 1.0
            if allowed:
                self._tokens -= 1.0
            else:
                self.refused += 1
            remaining = int(self._tokens)
            self.low_water = min(self.low_water, remaining)
            fraction = self._tokens - remaining
            reset_ms = max(1, int((1.0 - fraction) * self.refill * 1000))
            return allowed, {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(remaining),
                             "X-RateLimit-Reset": str(reset_ms)}
