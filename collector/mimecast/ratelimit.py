"""The shared rate-limit gate: Mimecast's quota paces every caller of the client together."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from collector.errors import CancelledError

__all__ = ["MAX_RESET_S", "Quota", "RateGate", "backoff_delay", "parse_quota", "reset_seconds"]

# Mimecast's quotas refill within the hour; a longer reset is a broken header, not a reason to stop for days.
MAX_RESET_S = 3600.0
_MAX_COUNT = 10**9
# A reset of "0 ms" would let a paced collector spin; one request per quarter second is the fastest pace.
_MIN_REFILL_S = 0.25


@dataclass(frozen=True)
class Quota:
    """What the ``X-RateLimit-*`` headers of one answer said; ``None`` where a header was absent or unusable."""

    limit: int | None
    remaining: int | None
    reset_s: float | None


def _count(value: str | None) -> int | None:
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if number <= _MAX_COUNT else None


def reset_seconds(value: str | None) -> float | None:
    """``X-RateLimit-Reset`` (milliseconds) as seconds in ``[0, MAX_RESET_S]``; ``None`` when unusable."""
    try:
        millis = float((value or "").strip())
    except ValueError:
        return None
    if not math.isfinite(millis) or millis < 0:
        return None
    return min(millis / 1000.0, MAX_RESET_S)


def parse_quota(headers: Mapping[str, str]) -> Quota:
    """Read the three rate-limit headers, rejecting anything that is not a plain bounded number."""
    return Quota(_count(headers.get("X-RateLimit-Limit")), _count(headers.get("X-RateLimit-Remaining")),
                 reset_seconds(headers.get("X-RateLimit-Reset")))


class RateGate:
    """Holds callers back while Mimecast's quota is spent or down to the reserve.

    Mimecast counts its quota per user or application, not per query, so when
    the quota runs low every watch waits. The gate keeps a budget of requests
    it may still start (``Remaining`` less the reserve less the requests in
    flight); once spent, it lets one request through per ``Reset`` interval,
    the rate at which Mimecast adds requests back. Without quota headers the
    budget is unknown and only a 429 closes the gate. ``stop`` makes waits
    end early with :class:`~collector.errors.CancelledError` on shutdown.
    """

    def __init__(self, *, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stop = stop or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._open_at = 0.0
        self._budget: int | None = None
        self._refill_s = 1.0
        self._in_flight = 0
        self._observed_at = 0.0
        self.pacing = False

    def block(self, seconds: float) -> None:
        """Keep the gate closed for at least ``seconds`` from now; afterwards one request may try."""
        with self._lock:
            self._open_at = max(self._open_at, self._clock() + seconds)
            if self._budget is not None:
                self._budget = max(self._budget, 1)

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        with self._lock:
            return max(0.0, self._open_at - self._clock())

    def observe(self, quota: Quota, reserve: int, longest: float) -> bool:
        """Update the budget from an answer's headers (a paced wait never exceeds ``longest`` seconds);
        True when the reserve has been reached. An answer without the headers makes the budget unknown
        again: pacing on what an older answer said would slow every search for ever."""
        with self._lock:
            if quota.remaining is None or quota.limit is None:
                self._budget, self.pacing = None, False
                return False
            if quota.reset_s is not None:
                self._refill_s = min(max(quota.reset_s, _MIN_REFILL_S), max(longest, _MIN_REFILL_S))
            others = max(0, self._in_flight - 1)
            budget, now = quota.remaining - reserve - others, self._clock()
            if self._budget is not None and budget > self._budget:
                # Answers of concurrent requests arrive out of order: an older, higher Remaining may come
                # last. The budget grows only as fast as Mimecast adds requests back.
                budget = min(budget, self._budget + int((now - self._observed_at) / self._refill_s))
            if self._budget is None or budget != self._budget:
                self._observed_at = now
            self._budget = budget
            self.pacing = self._budget <= 0
            return self.pacing

    def wait(self) -> float:
        """Wait for a request slot; return the seconds waited. Pair with :meth:`done`.

        Raises:
            CancelledError: shutdown was requested while waiting.
        """
        waited = 0.0
        while True:
            with self._lock:
                left = self._open_at - self._clock()
                if left <= 0:
                    if self._budget is None or self._budget > 0:
                        if self._budget is not None:
                            self._budget -= 1
                        self._in_flight += 1
                        break
                    # The budget is spent: Mimecast adds one request back per reset interval.
                    self._budget = 1
                    self._open_at = self._clock() + self._refill_s
                    left = self._refill_s
            if self._stop.wait(left):
                raise CancelledError("shutdown requested during a rate-limit wait")
            waited += left
        if self._stop.is_set():
            self.done()
            raise CancelledError("shutdown requested")
        return waited

    def done(self) -> None:
        """A request that :meth:`wait` let through has been answered (or failed)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

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
