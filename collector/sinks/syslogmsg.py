"""Building syslog messages: RFC 5424 and RFC 3164 headers, PRI, framing, and the size limit."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from collector.config import FACILITIES, SyslogSinkConfig

__all__ = ["MessageBuilder", "frame", "syslog_severity", "truncate_utf8"]

# FACILITIES lists the RFC 5424 facilities in code order (kern = 0 ... local7 = 23).
_FACILITY_CODES = {name: code for code, name in enumerate(FACILITIES)}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BOM = b"\xef\xbb\xbf"


def syslog_severity(severity: int) -> int:
    """Map the CEF scale (0-3 low, 4-6 medium, 7-8 high, 9-10 very high) to syslog info/notice/warning/err."""
    if severity >= 9:
        return 3
    if severity >= 7:
        return 4
    if severity >= 4:
        return 5
    return 6


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """Cut ``data`` to at most ``limit`` bytes on a character boundary, never inside a CEF escape."""
    if len(data) <= limit:
        return data
    cut = data[:limit]
    while cut and (cut[-1] & 0xC0) == 0x80:  # continuation bytes of a split character
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:  # the lead byte of that character
        cut = cut[:-1]
    trailing = len(cut) - len(cut.rstrip(b"\\"))
    if trailing % 2:  # a lone backslash would escape whatever the receiver sees next
        cut = cut[:-1]
    return cut


def frame(message: bytes, framing: str) -> bytes:
    """RFC 6587 octet counting (``LEN SP MSG``) or a line feed trailer."""
    if framing == "octet-counting":
        return b"%d %s" % (len(message), message)
    return message + b"\n"


class MessageBuilder:
    """Turns a line into one syslog message no larger than ``max_message_bytes``."""

    def __init__(self, cfg: SyslogSinkConfig) -> None:
        self._cfg = cfg
        self._facility = _FACILITY_CODES[cfg.facility]
        self._procid = str(os.getpid())

    def build(self, text: str, severity: int, timestamp: datetime) -> tuple[bytes, bool]:
        """The message bytes, and whether the body had to be truncated to fit."""
        cfg = self._cfg
        pri = self._facility * 8 + syslog_severity(severity)
        t = timestamp.astimezone(timezone.utc)
        if cfg.protocol == "rfc5424":
            stamp = t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            head = f"<{pri}>1 {stamp} {cfg.hostname} {cfg.app_name} {self._procid} {cfg.msgid or '-'} - ".encode()
            if cfg.bom:
                head += _BOM
        else:
            stamp = f"{_MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"
            # ArcSight and SC4S expect CEF right after the host, with no tag.
            tag = "" if text.startswith("CEF:") else f"{cfg.app_name[:32]}[{self._procid}]: "
            head = f"<{pri}>{stamp} {cfg.hostname} {tag}".encode()
        body = text.encode("utf-8", "replace")
        room = cfg.max_message_bytes - len(head)
        if len(body) <= room:
            return head + body, False
        return head + truncate_utf8(body, max(0, room)), True
