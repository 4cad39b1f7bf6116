"""The models of each section of the configuration file, with the checks that span several keys."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, Field, model_validator
from pydantic.dataclasses import dataclass

from collector.config.auth import auth_field
from collector.config.base import MODEL, Section
from collector.config.fields import (
    TEMPLATE, ChoiceList, Duration, Integer, Seconds, Size, Text, _DURATION_SCHEMA, kind, problem, templated, typed,
)
from collector.config.places import FilePath, Proxy, TlsVerify, Url
from collector.config.values import QuotaReserve, format_duration, parse_duration

__all__ = ["STATUSES", "CollectionConfig", "MimecastConfig"]

# Statuses Mimecast's tracking search may report: what final_statuses and a watch's status filter choose from.
STATUSES = ("processing", "delivery", "system", "held", "accepted", "bulk_processing",
            "bulk_delivery", "bounced", "deferred", "rejected", "archived")
_DEFAULT_SETTLE = timedelta(minutes=10)

_RESERVE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*%\s*$")
def _reserve(value: Any) -> QuotaReserve:
    if isinstance(value, QuotaReserve):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 1_000_000:
            raise problem(f"{value} is out of range (0 to 1000000)")
        return QuotaReserve(count=value)
    if not isinstance(value, str):
        raise problem(f"expected a number of requests or a percentage like '10%', got {kind(value)}")
    match = _RESERVE.match(value)
    if not match:
        raise problem(f"{value!r} is not a number of requests or a percentage like '10%'")
    percent = float(match.group(1))
    if not 0 <= percent <= 90:
        raise problem(f"{value} is out of range (0% to 90%)")
    return QuotaReserve(share=percent / 100)


Reserve = typed(QuotaReserve, _reserve, {"anyOf": [
    {"type": "integer", "minimum": 0, "maximum": 1_000_000},
    {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"}, TEMPLATE]})


def _api_path(value: Any) -> Any:
    if isinstance(value, str) and value.strip() and not value.startswith("/"):
        raise problem("must start with /")
    return value


@dataclass(frozen=True, config=MODEL)
class MimecastConfig(Section):
    """Where and how to reach Mimecast."""

    null_is_default = ("search_path", "token_url", "search_reason", "proxy")

    base_url: Url = Field(description="API host: https://api.services.mimecast.com for API 2.0, your regional "
                                      "host (e.g. https://eu-api.mimecast.com) for API 1.0.",
                          examples=["https://api.services.mimecast.com"])
    auth: auth_field() = Field(description="Credentials: type oauth2 (API 2.0) or hmac (API 1.0).",
                               examples=[{"type": "oauth2", "client_id": "${MIMECAST_CLIENT_ID}",
                                          "client_secret_file": "client_secret"}])
    search_path: Annotated[Optional[Text], BeforeValidator(_api_path)] = Field(
        None, description="Search endpoint (default /api/message-finder/search for oauth2, /api/tracking/search "
                          "for hmac).", examples=["/api/message-finder/search"])
    token_url: Optional[Url] = Field(None, description="OAuth token endpoint (default {base_url}/oauth/token).",
                                     examples=["https://api.services.mimecast.com/oauth/token"])
    search_reason: Text = Field("SIEM export by mimecast-collector",
                                description="Reason shown in Mimecast's audit log.",
                                examples=["SIEM export by mimecast-collector"])
    timeout: Seconds("1s", "10m") = Field(30.0, description="Per HTTP request, 1s to 10m.", examples=["30s"])
    retries: Integer(0, 20) = Field(5, description="Retries for 5xx, timeouts and connection errors.", examples=[5])
    backoff_initial: Seconds("0s", "5m") = Field(1.0, description="First retry delay.", examples=["1s"])
    backoff_max: Seconds("0s", "1h") = Field(60.0, description="Longest retry delay.", examples=["60s"])
    max_rate_limit_wait: Seconds("0s", "6h") = Field(
        900.0, description="Longest a single search waits out HTTP 429 before the poll gives up.", examples=["15m"])
    quota_reserve: Reserve = Field(
        QuotaReserve(share=0.1), description="Requests of each rate-limit quota (X-RateLimit-Limit) left unused: a "
                                             "count, or a share of the quota as a percentage from 0% to 90%.",
        examples=["10%", 20])
    max_answer_bytes: Size(64 << 10, 1 << 30) = Field(
        64 << 20, description="Largest search answer read (64KiB to 1GiB, e.g. 64MiB): a larger one is refused "
                              "unread and its window searched again narrower.", examples=["64MiB"])
    tls_verify: TlsVerify = Field(True, description="Verify Mimecast's certificate: true, false, or the path of a "
                                                    "CA bundle (for a TLS-inspecting proxy).", examples=[True])
    proxy: Optional[Proxy] = Field(None, description="HTTP(S) proxy URL; user:password@ is never shown.",
                                   examples=["http://proxy.example.com:3128"])

    @model_validator(mode="after")
    def _defaults(self) -> MimecastConfig:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.search_path is None:
            default = "/api/tracking/search" if self.auth.type == "hmac" else "/api/message-finder/search"
            object.__setattr__(self, "search_path", default)
        if self.token_url is None:
            object.__setattr__(self, "token_url", f"{self.base_url}/oauth/token")
        return self


def _ages(value: Any) -> tuple[timedelta, ...]:
    if isinstance(value, tuple) and all(isinstance(v, timedelta) for v in value):
        return value
    if not isinstance(value, list):
        raise problem(f"expected a list of durations like [1h, 1d], got {kind(value)}")
    ages, bad = [], []
    for i, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ValueError(f"expected a duration like 1h or 1d, got {kind(item)}")
            age = parse_duration(item)
            if not timedelta(minutes=1) <= age <= timedelta(days=29):
                raise ValueError(f"{item} is out of range (1m to 29d, inside Mimecast's 30-day retention)")
            ages.append(age)
        except (ValueError, OverflowError) as exc:
            bad.append((f"[{i}]", str(exc)))
    if bad:
        raise problem(bad[0][1], bad[0][0], bad[1:])
    return tuple(ages)


Ages = typed(tuple, _ages, {"type": "array", "items": templated(_DURATION_SCHEMA)})


@dataclass(frozen=True, config=MODEL)
class CollectionConfig(Section):
    """Rolling-window settings shared by every watch."""

    null_is_default = ("state_file", "dead_letter_file")

    interval: Duration("10s", "1d") = Field(timedelta(minutes=5), description="How often each watch polls.",
                                            examples=["5m"])
    window: Duration("1m", "1d") = Field(timedelta(minutes=15), description="Longest span of one search; longer "
                                                                            "gaps are split.", examples=["15m"])
    lag: Duration("0s", "6h") = Field(timedelta(minutes=2), description="Never search the most recent lag "
                                                                        "(late indexing).", examples=["2m"])
    settle: Optional[Duration("0s", "1d")] = Field(
        None, description="Each second is searched once more when it is this old (default 10m), for mail indexed "
                          "late and statuses that changed meanwhile; 0 disables. Longer than lag.", examples=["10m"])
    follow: Ages = Field((timedelta(days=1),), description="Ages (each longer than settle, increasing) at which the seconds that still "
                                         "held a message in a status not in final_statuses at their previous read "
                                         "are searched again, so that a later release or rejection becomes an event; "
                                         "[] disables. Default [1d]: one re-read of the seconds still pending, "
                                         "which keeps the steady state within the cost of the former overlap: 10m (docs/performance.md).",
                                         examples=[["1d"]])
    final_statuses: ChoiceList(*STATUSES) = Field(
        ("archived", "rejected", "bounced"),
        description="Statuses after which a message is not followed. Mimecast does not document which statuses "
                    "are final: the mimecast_collector_followed_records_total metric shows what stays pending.",
        examples=[["archived", "rejected", "bounced"]])
    overlap: Optional[Duration("0s", "1d")] = Field(
        None, description="Deprecated: read as settle = lag + overlap (the age today's overlap re-read up to).",
        examples=["10m"])
    initial_lookback: Duration("1m", "30d") = Field(timedelta(hours=1), description="How far back the first run "
                                                                                    "searches.", examples=["1h"])
    shutdown_timeout: Duration("1s", "10m") = Field(
        timedelta(seconds=60), description="Longest SIGTERM waits for running polls and outputs; then the "
                                           "collector exits 75 anyway (keep it under systemd's TimeoutStopSec).",
        examples=["60s"])
    result_cap: Integer(2, 100_000) = Field(100, description="A response this large may be truncated: the window "
                                                             "is split.", examples=[100])
    state_file: FilePath = Field(Path("/var/lib/mimecast-collector/state.json"), description="The checkpoint.",
                             examples=["/var/lib/mimecast-collector/state.json"])
    dead_letter_file: Optional[FilePath] = Field(
        None, description="Records set aside (default: beside the state file).",
        examples=["/var/lib/mimecast-collector/dead-letter.ndjson"])

    @model_validator(mode="after")
    def _dead_letters(self) -> CollectionConfig:
        # The first search spans [now - initial_lookback, now - lag), in whole seconds; every later one starts
        # from where it ended. Unless that first span holds at least a second, nothing is ever searched.
        if self.initial_lookback < self.lag + timedelta(seconds=1):
            raise problem(f"{format_duration(self.initial_lookback)} is not longer than collection.lag "
                          f"({format_duration(self.lag)}): the first search would span nothing, so no watch would "
                          "ever collect; make it at least a second longer than lag (the default is 1h)",
                          "initial_lookback")
        if self.dead_letter_file is None:
            object.__setattr__(self, "dead_letter_file", self.state_file.parent / "dead-letter.ndjson")
        if self.settle is None:
            settle = _DEFAULT_SETTLE if self.overlap is None else \
                (self.lag + self.overlap if self.overlap > timedelta(0) else timedelta(0))
            object.__setattr__(self, "settle", settle)
        if self.overlap is not None:
            # A deprecated overlap never makes a configuration invalid: follow ages it reaches past are dropped.
            object.__setattr__(self, "follow", tuple(a for a in self.follow if a > max(self.settle, self.lag)))
        found = []
        if self.settle and self.settle <= self.lag:
            found.append(("settle", f"{format_duration(self.settle)} is not longer than lag "
                                    f"({format_duration(self.lag)}); give a longer settle, or 0 to disable it"))
        floor, floor_name = max(self.settle, self.lag), "settle" if self.settle > self.lag else "lag"
        for i, age in enumerate(self.follow):
            if age <= floor:
                found.append((f"follow[{i}]", f"{format_duration(age)} is not longer than {floor_name} "
                                              f"({format_duration(floor)}): follow ages must increase"))
            floor, floor_name = max(floor, age), f"follow[{i}]"
        if found:
            raise problem(found[0][1], found[0][0], found[1:])
        return self

    def deprecations(self) -> list[str]:
        """Warnings about deprecated keys in use: said by check-config and at start, never an error."""
        if self.overlap is None:
            return []
        how = "lag + overlap" if self.settle else "an overlap of 0 re-read nothing"
        return [f"collection.overlap is deprecated: read as collection.settle: {format_duration(self.settle)} "
                f"({how}); replace it with settle, and follow to catch later status changes"]

