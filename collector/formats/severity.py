"""What a status means: its outcome and its severity (0-10, the CEF scale, also ECS event.severity)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_SEVERITY", "SeverityMap", "outcome", "severity"]

# Held and rejected mail is what an analyst looks at first; routine delivery is low.
DEFAULT_SEVERITY: Mapping[str, int] = {
    "held": 7, "rejected": 6, "bounced": 5, "deferred": 4, "system": 4,
    "processing": 2, "bulk_processing": 2, "bulk_delivery": 2,
    "delivery": 3, "accepted": 3, "archived": 3,
}
_DEFAULT = 5
_SUCCESS = frozenset({"archived", "delivery", "accepted", "bulk_delivery"})
_FAILURE = frozenset({"rejected", "bounced"})


def outcome(status: str) -> str:
    """``success``, ``failure`` or ``unknown`` (the three values ECS allows)."""
    key = status.lower()
    return "success" if key in _SUCCESS else "failure" if key in _FAILURE else "unknown"


class SeverityMap:
    """Status to severity: ``overrides`` first (``default`` for unknown statuses), then the built-in map."""

    def __init__(self, overrides: Mapping[str, int] | None = None) -> None:
        self._table = {**DEFAULT_SEVERITY, **(overrides or {})}
        self._default = self._table.get("default", _DEFAULT)

    def __call__(self, status: str) -> int:
        """The severity of ``status``."""
        return self._table.get(status.lower(), self._default)


_BUILT_IN = SeverityMap()


def severity(status: str) -> int:
    """The built-in severity of ``status``."""
    return _BUILT_IN(status)
