"""The shared rate-limit gate: Mimecast's quota paces every caller of the client together."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.errors import CancelledError

__all__ = ["MAX_RESET_S", "Quota", "RateGate", "Slot", "backoff_delay", "parse_quota", "reset_seconds"]

# Mimecast's quotas refill within the hour; a longer reset is a broken header, not a reason to stop for days.
MAX_RESET_S = 3600.0
_MAX_COUNT = 10**9
# A reset of "0 ms" would let a paced collector spin; one request per quarter second is the fastest pace.
_MIN_REFILL_S = 0.25
# A waiter looks at the stop event at least this often (a condition cannot wait on an event as well).
_SLICE_S = 0.5
# A pacing episode ends once no search was held back for this long (or the episode's longest reset): a quota
# that refills whole each window holds searches back once a window, and that is one episode, not one a window.
_QUIET_S = 60.0


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


class Slot:
    """One request the gate let through, and how much of Mimecast's quota the gate had seen when it left."""

    __slots__ = ("seen",)

    def __init__(self, seen: int) -> None:
        self.seen = seen


class RateGate:
    """Holds callers back while Mimecast's quota is spent or down to the reserve.

    Mimecast counts its quota per user or application, not per query, so when
    the quota runs low every watch waits. The gate keeps a budget of requests
    it may still start: ``Remaining`` less the reserve less the requests in
    flight. An answer to a request sent after every answer seen so far is the
    newest word on the quota and sets the budget, up or down, whatever the
    refill model (one request per ``Reset``, a window that refills whole,
    anything else); an answer that crossed another on the way may be older
    and can only lower it. Once the budget is spent the gate lets one request
    through per ``Reset`` after the latest answer, whose answer says how much
    came back. Without quota headers the budget is unknown and only a 429
    closes the gate. ``stop`` ends waits early with
    :class:`~collector.errors.CancelledError` on shutdown.

    ``on_held(reason, seconds)`` receives wall-clock seconds the gate was
    closed (``limited``: by a 429) or held searches back (``paced``: to keep
    the reserve), once for all callers; ``on_pacing(started, facts)`` hears
    when a pacing episode starts and ends.
    """

    def __init__(self, *, stop: threading.Event | None = None, clock: Callable[[], float] = time.monotonic,
                 on_held: Callable[[str, float], None] | None = None,
                 on_pacing: Callable[[bool, dict[str, Any]], None] | None = None) -> None:
        self._stop = stop or threading.Event()
        self._clock = clock
        self._on_held = on_held or (lambda reason, seconds: None)
        self._on_pacing = on_pacing or (lambda started, facts: None)
        self._cond = threading.Condition(threading.Lock())
        self._blocked_until = self._limited_counted = 0.0
        self._budget: int | None = None
        self._refill_s = 1.0
        self._in_flight = 0
        self._seen = 0
        self._observed_at = self._probe_at = 0.0
        self._quota: tuple[Quota, int] | None = None
        self._paced_waiters = 0
        self._paced_mark = 0.0
        self._episode: _Episode | None = None

    def block(self, seconds: float) -> None:
        """Keep the gate closed for at least ``seconds`` from now; afterwards one request may try."""
        with self._cond:
            now = self._clock()
            self._count_limited(now)
            if self._blocked_until <= now:
                self._limited_counted = now
            self._blocked_until = max(self._blocked_until, now + seconds)
            if self._budget is not None:
                self._budget = max(self._budget, 1)

    def remaining(self) -> float:
        """Seconds until the gate lets the next request through (0 when open)."""
        with self._cond:
            now = self._clock()
            until = self._blocked_until
            if self._budget is not None and self._budget <= 0:
                until = max(until, self._next_probe())
            return max(0.0, until - now)

    def pacing(self) -> bool:
        """True during a pacing episode: from the first search held back to keep the reserve until no search
        has been held back for a quiet spell (a minute, or the longest ``Reset`` of the episode)."""
        with self._cond:
            return self._episode is not None and not self._episode.over(self._clock(), self._paced_waiters)

    def observe(self, quota: Quota, reserve: int, longest: float, slot: Slot | None = None) -> bool:
        """Update the budget from the headers of the answer to ``slot`` (a paced wait never exceeds ``longest``
        seconds); True when the reserve has been reached. An answer without the headers makes the budget
        unknown again: pacing on what an older answer said would slow every search for ever."""
        with self._cond:
            now = self._clock()
            if quota.remaining is None or quota.limit is None:
                self._budget = None
                self._cond.notify_all()
                return False
            newest = slot is None or slot.seen == self._seen
            self._seen += 1
            if quota.reset_s is not None:
                self._refill_s = min(max(quota.reset_s, _MIN_REFILL_S), max(longest, _MIN_REFILL_S))
            others = max(0, self._in_flight - 1)
            budget = quota.remaining - reserve - others
            if not newest and self._budget is not None:
                budget = min(budget, self._budget)
            self._budget, self._observed_at, self._quota = budget, now, (quota, reserve)
            if self._episode is not None:
                self._episode.longest = max(self._episode.longest, self._refill_s)
            if budget > 0:
                self._cond.notify_all()
            self._end_episode(now)
            return budget <= 0

    def wait(self) -> Slot:
        """Wait for a request slot; pair with :meth:`done`.

        Raises:
            CancelledError: shutdown was requested while waiting.
        """
        with self._cond:
            held = False
            try:
                while True:
                    if self._stop.is_set():
                        raise CancelledError("shutdown requested during a rate-limit wait")
                    now = self._clock()
                    self._count_limited(now)
                    paced = False
                    if now < self._blocked_until:
                        until = self._blocked_until
                    elif self._budget is None or self._budget > 0:
                        break
                    elif now >= self._next_probe():
                        self._probe_at = now  # the budget is spent: one request per reset finds out what came back
                        break
                    else:
                        until, paced = self._next_probe(), True
                    held = self._hold(paced, held, now)
                    self._cond.wait(min(until - now, _SLICE_S))
            finally:
                self._hold(False, held, self._clock())
            if self._budget is not None:
                self._budget -= 1
            self._in_flight += 1
            self._end_episode(self._clock())
            return Slot(self._seen)

    def done(self, slot: Slot | None = None) -> None:
        """A request that :meth:`wait` let through has been answered (or failed)."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)

    def sleep(self, seconds: float) -> None:
        """Sleep for a retry backoff, ending early on shutdown.

        Raises:
            CancelledError: shutdown was requested while sleeping.
        """
        if seconds > 0 and self._stop.wait(seconds):
            raise CancelledError("shutdown requested during a retry backoff")

    def _next_probe(self) -> float:
        return max(self._observed_at, self._probe_at) + self._refill_s

    def _count_limited(self, now: float) -> None:
        """Report the seconds the 429 closed the gate, up to now, once whoever waits."""
        end = min(now, self._blocked_until)
        if end > self._limited_counted:
            self._on_held("limited", end - self._limited_counted)
            self._limited_counted = end

    def _hold(self, paced: bool, held: bool, now: float) -> bool:
        """Move one caller in or out of the paced hold; the paced seconds are counted once for all callers."""
        if self._paced_waiters:
            self._on_held("paced", now - self._paced_mark)
            if self._episode is not None:
                self._episode.paced_s += now - self._paced_mark
                self._episode.last_held = now
        self._paced_mark = now
        self._paced_waiters += int(paced) - int(held)
        if paced and self._episode is None:
            self._episode = _Episode(now, self._refill_s)
            quota, reserve = self._quota or (Quota(None, None, None), 0)
            self._on_pacing(True, {"remaining": quota.remaining, "limit": quota.limit, "reserve": reserve,
                                   "reset_s": round(self._refill_s, 3)})
        return paced

    def _end_episode(self, now: float) -> None:
        if self._episode is not None and self._episode.over(now, self._paced_waiters):
            episode, self._episode = self._episode, None
            self._on_pacing(False, {"paced_s": round(episode.paced_s, 3),
                                    "lasted_s": round(episode.last_held - episode.started, 3)})


@dataclass
class _Episode:
    """One pacing episode: when it started, when a search was last held back, the seconds held in all."""

    started: float
    longest: float
    last_held: float = 0.0
    paced_s: float = 0.0

    def __post_init__(self) -> None:
        self.last_held = self.started

    def over(self, now: float, waiters: int) -> bool:
        """No search held back for a quiet spell: the quota keeps up again."""
        return waiters == 0 and now - self.last_held >= max(_QUIET_S, self.longest)


def backoff_delay(attempt: int, initial: float, cap: float, rand: Callable[[], float]) -> float:
    """Capped exponential backoff with full jitter for retry number ``attempt`` (1-based)."""
    ceiling = min(cap, initial * (2 ** (attempt - 1)))
    return ceiling * (0.5 + rand() / 2)
