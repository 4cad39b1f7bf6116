"""The ``cef`` format: one ArcSight CEF line per event, safe for Elastic, Logstash and Splunk SC4S.

Header values escape ``\\`` and never contain a pipe (SC4S splits the header
without honouring ``\\|``, so a pipe becomes ``/``). Extension values escape
``\\`` and ``=``, and carry CR and LF as ``\\r`` and ``\\n``; every other control
character, and a lone surrogate, becomes U+FFFD. No other backslash escape is
written, because Elastic's decoder rejects it. The line always ends with the
watch name, which has no spaces, so no value loses trailing spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from collector import __version__
from collector.formats.base import Event
from collector.formats.severity import SeverityMap, outcome

__all__ = ["CefFormatter", "cef_time", "escape_header", "escape_value"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CONTROL = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_HEADER_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Most values (ids, addresses, labels) need no escaping; one C-level scan tells.
_NEEDS_ESCAPE = re.compile("[\\\\=\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "=": "\\=", "\r": "\\r", "\n": "\\n"})
_REPLACEMENT = "\ufffd"


def escape_header(value: str, limit: int = 1023) -> str:
    """A header field: backslash escaped, pipes replaced, control characters replaced, length capped."""
    value = _HEADER_CONTROL.sub(_REPLACEMENT, value[:limit]).replace("|", "/")
    return value.replace("\\", "\\\\")


def escape_value(value: str) -> str:
    """An extension value: ``\\``, ``=``, CR and LF escaped; other control characters replaced."""
    if not _NEEDS_ESCAPE.search(value):
        return value
    return _CONTROL.sub(_REPLACEMENT, value).translate(_VALUE_ESCAPES)


def cef_time(value: datetime, fmt: str) -> str:
    """``epoch_ms`` (milliseconds since the epoch) or ``syslog`` (``MMM dd yyyy HH:mm:ss UTC``, English)."""
    if fmt == "epoch_ms":
        return str(int(value.timestamp() * 1000))
    return f"{_MONTHS[value.month - 1]} {value.day:02d} {value.year} {value:%H:%M:%S} UTC"


class CefFormatter:
    """Renders events as CEF:0 lines with the mapping documented in docs/outputs.md."""

    name = "cef"

    def __init__(self, *, rt_format: str = "epoch_ms", severity: Mapping[str, int] | None = None) -> None:
        self._rt = rt_format
        self._severity = SeverityMap(severity)
        self._prefix = f"CEF:0|Mimecast|Email Security|{escape_header(__version__, 31)}|"

    def severity(self, event: Event) -> int:
        """The CEF severity (0-10) of the event's status with this output's overrides."""
        return self._severity(event.record.status)

    def format(self, event: Event) -> str:
        """One CEF line, without a syslog prefix."""
        r = event.record
        status = r.status or "unknown"
        header = (f"{self._prefix}tracking:{escape_header(status, 1000)}|Email {escape_header(status, 500)}|"
                  f"{self.severity(event)}|")
        pairs: list[tuple[str, str]] = [("rt", cef_time(r.received, self._rt)), ("act", r.status),
                                        ("outcome", outcome(r.status)), ("suser", r.sender_env.address),
                                        ("duser", ",".join(a.address for a in r.recipients if a.address))]
        if r.ip is not None and r.ip.version == 4:
            pairs.append(("src", str(r.ip)))
        elif r.ip is not None:
            pairs += [("c6a2Label", "senderIPv6"), ("c6a2", str(r.ip))]
        elif r.sender_ip:
            pairs += [("cs6Label", "senderIP"), ("cs6", r.sender_ip)]
        pairs += [("msg", r.subject), ("cs1Label", "mimecastId"), ("cs1", r.id), ("cs2Label", "route"),
                  ("cs2", r.route), ("cs3Label", "fromHeader"), ("cs3", r.sender_hdr.address),
                  ("cs4Label", "info"), ("cs4", r.info)]
        if r.spam_score is not None:
            pairs += [("cn1Label", "spamScore"), ("cn1", str(r.spam_score))]
        if r.attachments is not None:
            pairs += [("cn2Label", "hasAttachments"), ("cn2", "1" if r.attachments else "0")]
        if r.sent is not None:
            pairs += [("deviceCustomDate1Label", "sent"), ("deviceCustomDate1", cef_time(r.sent, self._rt))]
        if r.route in ("inbound", "outbound"):
            pairs.append(("deviceDirection", "0" if r.route == "inbound" else "1"))
        pairs += [("externalId", r.event_id), ("cs5Label", "watch"), ("cs5", event.watch)]
        extension = " ".join(f"{k}={escape_value(v)}" for k, v in _drop_empty(pairs))
        return header + extension


def _drop_empty(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Omit empty values, and a label whose value was omitted."""
    present = {k for k, v in pairs if v}
    return [(k, v) for k, v in pairs if v and (not k.endswith("Label") or k[:-5] in present)]
