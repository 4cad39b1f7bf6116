"""The typed tracked email, parsed from one element of ``data[0].trackedEmails``."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from collector.errors import RecordError

__all__ = ["Address", "TrackedEmail", "event_id", "parse_timestamp", "parse_tracked_email"]

_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})$")
_INTEGER = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Address:
    """An email address with its display name; either may be empty."""

    address: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class TrackedEmail:
    """One message-status as Mimecast tracked it.

    ``received`` and ``sent`` are aware UTC datetimes; ``sender_ip`` is the raw
    text and ``ip`` its parsed form (``None`` when it is not an IP address);
    ``attachments`` is ``None`` when Mimecast did not say.
    """

    id: str
    status: str
    route: str
    received: datetime
    sent: datetime | None
    sender_env: Address
    sender_hdr: Address
    recipients: tuple[Address, ...]
    subject: str
    sender_ip: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    attachments: bool | None
    info: str
    spam_score: int | None
    detection_level: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """The identity of this event: a message in one status."""
        return (self.id, self.status)

    @property
    def event_id(self) -> str:
        """A stable id for this message-status, the same on every run and output."""
        return event_id(self.id, self.status)


def event_id(mimecast_id: str, status: str) -> str:
    """Derive the stable event id of ``(mimecast id, status)``."""
    digest = hashlib.sha256(f"{mimecast_id}\x00{status}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def parse_timestamp(text: Any) -> datetime:
    """Parse Mimecast's ``2022-07-18T13:25:00+0000`` (also ``+00:00`` and ``Z``) to aware UTC.

    Raises:
        ValueError: not such a timestamp.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a date string, got {type(text).__name__}")
    try:
        # Python 3.11 reads Mimecast's "+0000" and "Z" directly: the common case costs one C call.
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = datetime.fromisoformat(_normalize_offset(text.strip()))
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return parsed.astimezone(timezone.utc)


def _normalize_offset(value: str) -> str:
    if value.endswith(("Z", "z")):
        return value[:-1] + "+00:00"
    match = _OFFSET.search(value)
    return value[:match.start()] + f"{match[1]}{match[2]}:{match[3]}" if match else value


def parse_tracked_email(raw: Any) -> TrackedEmail:
    """Turn one ``trackedEmails`` element into a :class:`TrackedEmail`.

    Raises:
        RecordError: with reason ``not_an_object``, ``missing_id`` or ``bad_received``.
    """
    if not isinstance(raw, dict):
        raise RecordError("not_an_object", f"expected an object, got {type(raw).__name__}")
    mimecast_id = raw.get("id")
    if type(mimecast_id) is int:
        mimecast_id = str(mimecast_id)  # a numeric id is still an id: kept as its text
    if not isinstance(mimecast_id, str) or not mimecast_id:
        raise RecordError("missing_id", "tracked email has no id")
    try:
        received = parse_timestamp(raw.get("received"))
    except (ValueError, OverflowError) as exc:
        raise RecordError("bad_received", f"unparseable received time: {exc}") from None
    try:
        sent = parse_timestamp(raw["sent"]) if raw.get("sent") else None
    except (ValueError, OverflowError):
        sent = None
    sender_ip = _text(raw.get("senderIP"))
    return TrackedEmail(
        id=mimecast_id,
        status=_text(raw.get("status")),
        route=_text(raw.get("route")).lower(),
        received=received,
        sent=sent,
        sender_env=_address(raw.get("fromEnv")),
        sender_hdr=_address(raw.get("fromHdr")),
        recipients=_recipients(raw.get("to")),
        subject=_text(raw.get("subject")),
        sender_ip=sender_ip,
        ip=_ip(sender_ip),
        attachments=raw.get("attachments") if isinstance(raw.get("attachments"), bool) else None,
        info=_text(raw.get("info")),
        spam_score=_int(raw.get("spamScore")),
        detection_level=_text(raw.get("detectionLevel")),
        raw=raw,
    )


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    return "" if value is None else str(value)


_NO_ADDRESS = Address()


def _address(value: Any) -> Address:
    if type(value) is not dict:
        return _NO_ADDRESS
    return Address(_text(value.get("emailAddress")), _text(value.get("displayableName")))


def _recipients(value: Any) -> tuple[Address, ...]:
    # Mimecast sends a list of address objects; a bare string (one address or a comma list) is kept, not dropped.
    if isinstance(value, str):
        return tuple(Address(part.strip()) for part in value.split(",") if part.strip())
    if not isinstance(value, list):
        return ()
    return tuple(Address(a.strip()) if isinstance(a, str) else _address(a) for a in value)


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # The same sending servers recur all day; parsing an address is the costliest part of a record.
    try:
        return ipaddress.ip_address(text.strip()) if text else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return None
