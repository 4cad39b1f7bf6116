"""Plain value objects of the configuration: secrets, a redacted URL, durations and the quota reserve.

Nothing here depends on pydantic, so the rest of the collector can use these values without paying
for validation machinery it does not need.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote

__all__ = ["QuotaReserve", "RedactedUrl", "Secret", "format_duration", "parse_duration", "redact_url"]

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Secret:
    """A credential that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret text, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Everything up to the last "@" is user-info, whatever the URL's shape: a scheme mistyped (``http//``) or
# missing, or a password holding "/", "@" or "#", must not move the password out of the part hidden.
_USERINFO = re.compile(r"^(?P<scheme>\s*[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>.*)@", re.S)


def _userinfo(url: str) -> tuple[str, str] | None:
    """``(scheme://, user-info)`` of ``url``, valid or not; ``None`` when it has no ``@``."""
    match = _USERINFO.match(url)
    return (match.group("scheme") or "", match.group("userinfo")) if match else None


def redact_url(url: str) -> str:
    """``url`` with any user-info (``user:password@``) replaced by ``***@``, however malformed the URL is."""
    found = _userinfo(url)
    if found is None:
        return url
    scheme, userinfo = found
    return f"{scheme}***@{url[len(scheme) + len(userinfo) + 1:]}"


class RedactedUrl:
    """A URL that may carry a password: str and repr show it redacted, :meth:`reveal` gives it whole."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The full URL, for the one place that must connect with it."""
        return self._value

    def secrets(self) -> tuple[str, ...]:
        """The parts a log line must never show: the whole URL, its user-info and its password."""
        found = _userinfo(self._value)
        if found is None:
            return ()
        userinfo = found[1]
        password = userinfo.partition(":")[2]
        return tuple(s for s in (self._value, userinfo, password, unquote(password)) if s)

    def __str__(self) -> str:
        return redact_url(self._value)

    def __repr__(self) -> str:
        return f"RedactedUrl({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RedactedUrl) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class QuotaReserve:
    """Requests of Mimecast's quota (``X-RateLimit-Limit``) to leave unused: a count or a share."""

    count: int | None = None
    share: float | None = None

    def of(self, limit: int) -> int:
        """How many requests to keep in reserve when the quota is ``limit`` requests."""
        if self.share is not None:
            return math.ceil(max(limit, 0) * self.share)
        return max(0, min(self.count or 0, limit - 1))

    def __str__(self) -> str:
        return f"{self.share * 100:g}%" if self.share is not None else str(self.count)


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``5m``, ``1h30m``, ``30d`` or ``250ms`` into a timedelta.

    Raises:
        ValueError: the text is not such a duration.
    """
    compact = text.strip()
    if not compact or _DURATION_PART.sub("", compact):
        raise ValueError(f"{text!r} is not a duration like 90s, 5m, 1h or 30d")
    try:
        seconds = sum(int(n) * _UNIT[u] for n, u in _DURATION_PART.findall(compact))
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):  # past timedelta's 999999999 days, or more digits than int() reads
        raise ValueError(f"{text!r} is too long (at most {timedelta.max.days} days)") from None


def format_duration(value: timedelta) -> str:
    """Render a timedelta the way a config file would spell it (``1h30m``)."""
    left = int(value.total_seconds())
    if left == 0:
        millis = round(value.total_seconds() * 1000)
        return f"{millis}ms" if millis else "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
