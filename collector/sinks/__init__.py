"""Sinks behind one small interface: write lines, flush them durably, commit or roll back."""

from __future__ import annotations

from typing import Any

from collector.config import SinkConfig
from collector.sinks.base import Line, Sink, StdoutSink
from collector.sinks.file import FileSink
from collector.sinks.syslog import SyslogSink

__all__ = ["Line", "Sink", "StdoutSink", "build_sink"]


def build_sink(name: str, config: SinkConfig, *, metrics: Any = None) -> Sink:
    """The sink an output's ``sink:`` block describes."""
    if config.type == "file":
        return FileSink(name, config.path)
    if config.type == "stdout":
        return StdoutSink(name)
    if config.type == "syslog":
        return SyslogSink(name, config, metrics=metrics)
    raise ValueError(f"unknown sink type {config.type!r}")
