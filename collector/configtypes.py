"""The configuration's frozen, typed objects (built by :mod:`collector.config`)."""

from __future__ import annotations

import math

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Union

from collector.configreader import Secret
from collector.sinkconfig import SinkConfig

__all__ = ["CollectionConfig", "Config", "HmacAuth", "LoggingConfig", "MetricsConfig", "MimecastConfig",
           "OAuth2Auth", "OutputConfig", "WatchConfig"]


@dataclass(frozen=True)
class OAuth2Auth:
    """API 2.0 client credentials."""

    client_id: str
    client_secret: Secret = field(repr=False)
    type: str = "oauth2"


@dataclass(frozen=True)
class HmacAuth:
    """API 1.0 keys, signed per request with HMAC-SHA1."""

    app_id: str
    app_key: Secret = field(repr=False)
    access_key: Secret = field(repr=False)
    secret_key: Secret = field(repr=False)
    type: str = "hmac"


@dataclass(frozen=True)
class QuotaReserve:
    """Requests of Mimecast's quota left for other integrations: a count or a share of the limit."""

    count: int | None = None
    share: float | None = None

    def of(self, limit: int) -> int:
        """How many requests to keep in reserve when the quota is ``limit``."""
        if self.share is not None:
            return math.ceil(limit * self.share)
        return max(0, min(self.count or 0, limit - 1))


@dataclass(frozen=True)
class MimecastConfig:
    """Where and how to reach Mimecast."""

    base_url: str
    search_path: str
    token_url: str
    auth: Union[OAuth2Auth, HmacAuth]
    search_reason: str
    timeout: float
    retries: int
    backoff_initial: float
    backoff_max: float
    max_rate_limit_wait: float
    tls_verify: Union[bool, str]
    proxy: str | None
    quota_reserve: QuotaReserve = QuotaReserve(share=0.1)


@dataclass(frozen=True)
class CollectionConfig:
    """Rolling-window settings shared by every watch."""

    interval: timedelta
    window: timedelta
    lag: timedelta
    overlap: timedelta
    initial_lookback: timedelta
    result_cap: int
    state_file: Path
    dead_letter_file: Path


@dataclass(frozen=True)
class WatchConfig:
    """One search filter polled on its own schedule."""

    name: str
    from_: str | None = None
    to: str | None = None
    subject: str | None = None
    sender_ip: str | None = None
    message_id: str | None = None
    status: tuple[str, ...] = ()
    route: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputConfig:
    """A format written to a sink; every event goes to every output."""

    name: str
    format: str
    sink: SinkConfig
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint; ``listen`` is ``None`` when disabled."""

    listen: tuple[str, int] | None


@dataclass(frozen=True)
class LoggingConfig:
    """Log level and renderer (``json``, ``console`` or ``auto``)."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    mimecast: MimecastConfig
    collection: CollectionConfig
    watches: tuple[WatchConfig, ...]
    outputs: tuple[OutputConfig, ...]
    metrics: MetricsConfig
    logging: LoggingConfig
    source: Path | None = None

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for the log redactor."""
        auth = self.mimecast.auth
        found = [v for v in vars(auth).values() if isinstance(v, Secret)]
        return tuple(s.reveal() for s in found)
