"""Mimecast's request quota, as two refill models its documentation allows: a bucket refilling one request at a
time, and a fixed window that refills whole when it ends."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["Bucket", "Window", "parse_quota_spec"]


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


class Window:
    """``limit`` requests per fixed window of ``period`` seconds, all given back when the window ends.

    ``X-RateLimit-Reset`` is the time left in the window: at least one request (here all of them) comes
    back then, which is all Mimecast promises. A request past the limit is refused with 429. ``served``
    counts the requests let through in each window (0 is the first, from when the quota was made).
    """

    def __init__(self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("a quota needs limit >= 1 and a period > 0")
        self.limit, self.period = limit, period
        self._clock = clock
        self._lock = threading.Lock()
        self._origin = clock()
        self.served: Counter[int] = Counter()
        self.refused = 0
        self.low_water = limit

    def take(self) -> tuple[bool, dict[str, str]]:
        """Spend one request of the current window if there is one; ``(allowed, headers for the answer)``."""
        with self._lock:
            elapsed = self._clock() - self._origin
            window = math.floor(elapsed / self.period)
            allowed = self.served[window] < self.limit
            if allowed:
                self.served[window] += 1
            else:
                self.refused += 1
            remaining = self.limit - self.served[window]
            self.low_water = min(self.low_water, remaining)
            reset_ms = max(1, math.ceil(((window + 1) * self.period - elapsed) * 1000))
            return allowed, {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(remaining),
                             "X-RateLimit-Reset": str(reset_ms)}


def parse_quota_spec(text: str) -> Bucket | Window:
    """``LIMIT/SECONDS`` (a bucket: one request back every SECONDS) or ``LIMIT/SECONDS:window`` (LIMIT per
    window of SECONDS, refilled whole); ``:bucket`` may be written too.

    Raises:
        ValueError: the text is not one of these forms, or a number is out of range.
    """
    spec, _, model = text.partition(":")
    limit, _, seconds = spec.partition("/")
    number, period = int(limit), float(seconds.strip().removesuffix("s"))
    if not math.isfinite(period):
        raise ValueError("the period must be a finite number of seconds")
    if model in ("", "bucket"):
        return Bucket(number, period)
    if model == "window":
        return Window(number, period)
    raise ValueError(f"unknown quota model {model!r}")
