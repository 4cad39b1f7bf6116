"""The syslog sink: each event one RFC 5424 or RFC 3164 message over UDP, TCP or TLS."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import structlog

from collector.errors import SinkError
from collector.config import SyslogSinkConfig
from collector.sinks.base import Line
from collector.sinks.syslogmsg import MessageBuilder, frame
from collector.sinks.transport import Transport, TransportError

__all__ = ["SyslogSink"]


class SyslogSink:
    """Sends lines to a syslog receiver, at least once.

    A send error closes the connection and fails the chunk, so the engine
    retries it and the checkpoint does not advance. Before each send and at
    each flush the connection is checked for a peer that went away. A
    message longer than ``max_message_bytes`` is truncated or dropped, as
    configured, and counted, but never split in two.
    """

    def __init__(self, name: str, cfg: SyslogSinkConfig, *, metrics: Any = None) -> None:
        self.name = name
        self._cfg = cfg
        self._metrics = metrics
        self._builder = MessageBuilder(cfg)
        self._transport = Transport(cfg)
        self._lock = threading.Lock()
        self._log = structlog.get_logger("collector.sinks.syslog").bind(output=name)

    def write(self, lines: Sequence[Line]) -> None:
        """Build, frame and send one message per line."""
        framed, oversize = [], 0
        for line in lines:
            message, truncated = self._builder.build(line.text, line.severity, line.timestamp)
            if truncated:
                oversize += 1
                if self._cfg.oversize == "drop":
                    continue
            framed.append(message if self._cfg.transport == "udp" else frame(message, self._cfg.framing))
        if oversize:
            self._count_oversize(self._cfg.oversize, oversize)
        if not framed:
            return
        with self._lock:
            try:
                self._transport.send(framed)
            except TransportError as exc:
                raise SinkError(self.name, str(exc)) from None

    def flush(self) -> None:
        """Fail the chunk if the receiver closed the connection while it was sent."""
        with self._lock:
            try:
                self._transport.check()
            except TransportError as exc:
                raise SinkError(self.name, str(exc)) from None

    def mark(self) -> None:
        """A network sink keeps no mark in the checkpoint."""
        return None

    def committed(self) -> None:
        """Nothing to do."""

    def rollback(self) -> None:
        """Sent messages cannot be taken back (at-least-once; consumers dedupe on the event id)."""

    def reopen(self) -> None:
        """Reconnect on the next write."""
        with self._lock:
            self._transport.close()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._transport.close()

    def _count_oversize(self, action: str, count: int) -> None:
        if self._metrics is not None:
            self._metrics.syslog_oversize.labels(self.name, action).inc(count)
        # One line per batch (one chunk), however many of its messages were too long.
        self._log.warning("sink.syslog.oversize", action=action, count=count, limit=self._cfg.max_message_bytes)
