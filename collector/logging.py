"""Logging setup: structlog JSON lines to stderr (journald), readable on a terminal, secrets scrubbed."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["Redactor", "SkippedRunToDebug", "configure_logging"]

_SECRET_KEYS = re.compile(r"(secret|token|password|authorization|signature|access_key|app_key)", re.I)


class Redactor:
    """A structlog processor that replaces known secret values, anywhere in an event, with ``***``.

    Keys that name credentials (``client_secret``, ``authorization``...) are
    masked whatever their value, so a future log call cannot leak one by mistake.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if _SECRET_KEYS.search(key) and key not in ("event", "error_type"):
                event[key] = "***"
            else:
                event[key] = self._scrub(value)
        return event

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, "***")
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, BaseException):
            return self._scrub(f"{type(value).__name__}: {value}")
        return value


class SkippedRunToDebug(logging.Filter):
    """APScheduler's "maximum number of running instances reached" warning, demoted to debug.

    The collector's own ``poll.still_running`` line says the same in its words, once per skipped slot.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote the skipped-run warning; let every other record through."""
        if "maximum number of running instances" not in str(record.msg):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("apscheduler").isEnabledFor(logging.DEBUG)


def configure_logging(level: str = "info", fmt: str = "auto", *, stream: TextIO | None = None,
                      secrets: Iterable[str] = ()) -> None:
    """Route structlog and the standard library (APScheduler) through one renderer.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        fmt: ``json``, ``console``, or ``auto`` (console on a terminal, else JSON).
        stream: where to write (standard error by default).
        secrets: values to scrub from every event.
    """
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if use_console
                     else structlog.processors.JSONRenderer(ensure_ascii=False))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
    # The scheduler's own "Running job" lines, two per poll, are detail: shown only at debug.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if root.level <= logging.DEBUG
                                              else max(logging.WARNING, root.level))
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    for old in [f for f in scheduler_log.filters if isinstance(f, SkippedRunToDebug)]:
        scheduler_log.removeFilter(old)
    scheduler_log.addFilter(SkippedRunToDebug())
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
