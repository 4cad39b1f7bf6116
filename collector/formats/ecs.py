"""The ``ecs`` format: one Elastic Common Schema 9.4.0 document per event.

Strings are kept exactly as Mimecast sent them; JSON escaping carries any
character. What ECS has no field for (display names, the attachments flag,
spam score, the watch) lives under ``mimecast.*``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from collector.formats.base import Event, json_line
from collector.formats.severity import SeverityMap, outcome
from collector.records import Address, TrackedEmail

__all__ = ["ECS_VERSION", "EcsFormatter"]

ECS_VERSION = "9.4.0"


@functools.lru_cache(maxsize=1024)
def _ts(value: datetime) -> str:
    # Cached: every event of a chunk shares event.created, and many share a received second.
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EcsFormatter:
    """Renders events as ECS documents; ``include_original`` adds ``event.original`` (the raw JSON)."""

    name = "ecs"

    def __init__(self, *, include_original: bool = False, severity_map: Mapping[str, int] | None = None) -> None:
        self._original = include_original
        self._severity = SeverityMap(severity_map)

    def format(self, event: Event) -> str:
        """One ECS document as a JSON line."""
        return json_line(self.document(event))

    def severity(self, event: Event) -> int:
        """The severity of the event's status (``event.severity``)."""
        return self._severity(event.record.status)

    def document(self, event: Event) -> dict[str, Any]:
        """The ECS document of ``event`` as a nested dict."""
        r = event.record
        received = _ts(r.received)
        ev: dict[str, Any] = {
            "kind": "event", "category": ["email"], "type": ["info"], "outcome": outcome(r.status),
            "module": "mimecast", "dataset": "mimecast.tracked_email", "created": _ts(event.fetched_at),
            "id": r.event_id, "severity": self.severity(event),
        }
        _put(ev, "action", r.status)
        _put(ev, "reason", r.info)
        if self._original:
            ev["original"] = json.dumps(r.raw, ensure_ascii=False, separators=(",", ":"))
        email: dict[str, Any] = {"local_id": r.id, "delivery_timestamp": received}
        _put(email, "subject", r.subject)
        _put(email, "direction", r.route)
        if r.sender_hdr.address:
            email["from"] = {"address": [r.sender_hdr.address]}
        if r.sender_env.address:
            email["sender"] = {"address": r.sender_env.address}
        recipients = [a.address for a in r.recipients if a.address]
        if recipients:
            email["to"] = {"address": recipients}
        doc: dict[str, Any] = {"@timestamp": received, "ecs": {"version": ECS_VERSION}, "event": ev, "email": email}
        related: dict[str, Any] = {}
        if r.ip is not None:
            ip = str(r.ip)
            doc["source"] = {"ip": ip, "address": ip}
            related["ip"] = [ip]
        users = list(dict.fromkeys(a for a in (r.sender_env.address, r.sender_hdr.address, *recipients) if a))
        if users:
            related["user"] = users
        if related:
            doc["related"] = related
        doc["observer"] = {"vendor": "Mimecast", "product": "Email Security", "type": "email-gateway"}
        doc["message"] = _summary(r)
        doc["mimecast"] = _custom(event)
        return doc


def _put(target: dict[str, Any], key: str, value: str) -> None:
    if value:
        target[key] = value


def _custom(event: Event) -> dict[str, Any]:
    r = event.record
    custom: dict[str, Any] = {"watch": event.watch}
    _put(custom, "status", r.status)
    _put(custom, "route", r.route)
    _put(custom, "info", r.info)
    _put(custom, "detection_level", r.detection_level)
    if r.spam_score is not None:
        custom["spam_score"] = r.spam_score
    if r.attachments is not None:
        custom["attachments"] = r.attachments
    if r.sent is not None:
        custom["sent"] = _ts(r.sent)
    if r.sender_ip and r.ip is None:
        custom["sender_ip"] = r.sender_ip
    for key, address in (("from_env", r.sender_env), ("from_hdr", r.sender_hdr)):
        if address.address or address.name:
            custom[key] = _address(address)
    if r.recipients:
        custom["to"] = [_address(a) for a in r.recipients]
    return custom


def _address(address: Address) -> dict[str, str]:
    out = {}
    _put(out, "address", address.address)
    _put(out, "display_name", address.name)
    return out


def _summary(r: TrackedEmail) -> str:
    sender = r.sender_env.address or r.sender_hdr.address or "an unknown sender"
    recipients = [a.address for a in r.recipients if a.address]
    to = recipients[0] if recipients else "no recipient"
    more = f" and {len(recipients) - 1} more" if len(recipients) > 1 else ""
    route = f"{r.route} " if r.route else ""
    return f"Mimecast {r.status or 'tracked'} {route}email from {sender} to {to}{more}"
