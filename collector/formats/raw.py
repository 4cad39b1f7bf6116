"""The ``raw`` format: Mimecast's record as returned, wrapped with the watch and a stable event id."""

from __future__ import annotations

from collector.formats.base import Event, json_line
from collector.formats.severity import severity

__all__ = ["RawFormatter"]


class RawFormatter:
    """``{"event_id", "watch", "fetched_at", "tracked_email": <as Mimecast sent it>}`` on one line."""

    name = "raw"

    def format(self, event: Event) -> str:
        """Render ``event`` as one JSON line."""
        return json_line({
            "event_id": event.record.event_id,
            "watch": event.watch,
            "fetched_at": event.fetched_at.isoformat().replace("+00:00", "Z"),
            "tracked_email": event.record.raw,
        })

    def severity(self, event: Event) -> int:
        """The default severity of the event's status."""
        return severity(event.record.status)
