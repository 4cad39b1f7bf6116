"""Event formats behind one small interface: ``Formatter.format(event) -> one line``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.formats.base import Event, Formatter, json_line
from collector.formats.cef import CefFormatter
from collector.formats.ecs import EcsFormatter
from collector.formats.raw import RawFormatter

__all__ = ["Event", "Formatter", "build_formatter", "json_line"]


def build_formatter(fmt: str, options: Mapping[str, Any]) -> Formatter:
    """The formatter for ``fmt`` (``ecs``, ``cef`` or ``raw``) with its options."""
    if fmt == "raw":
        return RawFormatter()
    if fmt == "ecs":
        return EcsFormatter(include_original=bool(options.get("include_original")))
    if fmt == "cef":
        return CefFormatter(rt_format=options.get("rt_format", "epoch_ms"), severity=options.get("severity") or {})
    raise ValueError(f"unknown format {fmt!r}")
