"""A strict reference CEF decoder, written from the CEF Implementation Standard's grammar.

Stricter than the peers on purpose: header escapes are only ``\\\\`` and ``\\|``;
extension keys are alphanumeric; value escapes are only ``\\=``, ``\\\\``, ``\\n``
and ``\\r`` (Elastic rejects any other); an unescaped ``=`` inside a value, a raw
line break, or a repeated key is an error. Spaces before a key, except the
last, belong to the previous value; trailing spaces of the last value are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEVERITY = re.compile(r"^[A-Za-z0-9-]+$")
_KEY_CHAR = re.compile(r"[A-Za-z0-9]")
_UNESCAPE = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


class CefError(ValueError):
    """The line is not valid CEF."""


@dataclass
class CefEvent:
    """A decoded line."""

    version: int
    vendor: str
    product: str
    device_version: str
    class_id: str
    name: str
    severity: str
    extension: dict[str, str]


def decode(line: str) -> CefEvent:
    """Decode one CEF line (no syslog prefix)."""
    if any(c in line for c in "\r\n\x00"):
        raise CefError("a raw CR, LF or NUL in the line")
    if not line.startswith("CEF:"):
        raise CefError("does not start with CEF:")
    header, i, buf = [], 4, []
    while len(header) < 7:
        if i >= len(line):
            raise CefError("truncated header")
        c = line[i]
        if c == "\\":
            nxt = line[i + 1] if i + 1 < len(line) else ""
            if nxt not in ("\\", "|"):
                raise CefError(f"invalid header escape \\{nxt}")
            buf.append(nxt)
            i += 2
        elif c == "|":
            header.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    version, vendor, product, dev_version, class_id, name, severity = header
    if not version.isdigit():
        raise CefError(f"bad version {version!r}")
    if not _SEVERITY.match(severity):
        raise CefError(f"bad severity {severity!r}")
    return CefEvent(int(version), vendor, product, dev_version, class_id, name, severity, decode_extension(line[i:]))


def decode_extension(ext: str) -> dict[str, str]:
    """Decode ``key=value key=value`` with the spec's escapes and spacing rules."""
    if not ext:
        return {}
    equals, i = [], 0
    while i < len(ext):
        if ext[i] == "\\":
            if i + 1 >= len(ext) or ext[i + 1] not in _UNESCAPE:
                raise CefError(f"invalid extension escape at {i}: {ext[i:i + 2]!r}")
            i += 2
            continue
        if ext[i] == "=":
            equals.append(i)
        i += 1
    starts = []
    for pos in equals:
        start = pos
        while start > 0 and _KEY_CHAR.match(ext[start - 1]):
            start -= 1
        if start == pos:
            raise CefError(f"empty key before '=' at {pos}")
        if start > 0 and ext[start - 1] != " ":
            raise CefError(f"unescaped '=' inside a value at {pos}")
        starts.append(start)
    if not starts or starts[0] != 0:
        raise CefError("extension does not start with a key")
    pairs: dict[str, str] = {}
    for n, (start, pos) in enumerate(zip(starts, equals)):
        key = ext[start:pos]
        if key in pairs:
            raise CefError(f"repeated key {key}")
        raw = ext[pos + 1:starts[n + 1] - 1] if n + 1 < len(starts) else ext[pos + 1:].rstrip(" ")
        pairs[key] = _unescape(raw)
    return pairs


def _unescape(raw: str) -> str:
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\":
            out.append(_UNESCAPE[raw[i + 1]])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)
