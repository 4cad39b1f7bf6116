"""What every format shares: the event, the formatter interface, and one-line JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from collector.records import TrackedEmail

__all__ = ["Event", "Formatter", "json_line"]

# JSON leaves these literal, but Python's str.splitlines() and some log shippers break lines on them.
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
# A lone surrogate (legal in JSON text, "\ud800") cannot be written as UTF-8: keep it escaped instead.
_SPECIAL = re.compile("[\u0085\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Event:
    """A tracked email on its way out: the record, the watch that found it, and when it was fetched."""

    record: TrackedEmail
    watch: str
    fetched_at: datetime


class Formatter(Protocol):
    """Turns an event into exactly one line of text, without the line break."""

    name: str

    def format(self, event: Event) -> str:
        """Render ``event`` as one line."""

    def severity(self, event: Event) -> int:
        """The event's severity, 0-10 (the CEF scale)."""


def json_line(document: Any) -> str:
    """Serialize as compact UTF-8 JSON guaranteed to hold no line break of any kind."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    if text.isascii() or not _SPECIAL.search(text):
        return text
    if _SURROGATE.search(text):
        text = json.dumps(document, ensure_ascii=True, separators=(",", ":"))
    for char, escaped in _LINE_BREAKS.items():
        text = text.replace(char, escaped)
    return text
