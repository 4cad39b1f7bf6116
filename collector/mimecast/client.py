"""The Mimecast tracking-search client: one POST, every documented failure handled."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import structlog
import urllib3

from collector import __version__
from collector.config import HmacAuth, MimecastConfig, WatchConfig
from collector.errors import (
    ApiError, ApiFailError, AuthError, BindingExpiredError, EndpointNotFoundError, MalformedResponseError,
    RateLimitedError, RecordError, TransientApiError,
)
from collector.mimecast.auth import Authenticator, HmacSigner, OAuthTokenSource
from collector.mimecast.envelope import TOKEN_EXPIRED, first_failure, tracked_emails
from collector.mimecast.ratelimit import RateGate, Slot, backoff_delay, parse_quota, reset_seconds
from collector.mimecast.wire import post
from collector.records import TrackedEmail, parse_tracked_email

__all__ = ["MimecastClient", "SearchResult", "format_search_date", "search_body"]

# When Mimecast sends a 429 without a usable X-RateLimit-Reset, wait this long before asking again.
_DEFAULT_RESET_S = 60.0
# A 429 that says "reset in 0 ms" is still a refusal: never ask again sooner than this, nor more often in a row.
_MIN_429_WAIT_S = 0.25
_MAX_429 = 30


@dataclass
class SearchResult:
    """What one search returned: usable records and the ones set aside."""

    records: list[TrackedEmail] = field(default_factory=list)
    invalid: list[tuple[RecordError, Any]] = field(default_factory=list)
    server_time: datetime | None = None

    @property
    def count(self) -> int:
        """How many tracked emails the response held, valid or not."""
        return len(self.records) + len(self.invalid)


def format_search_date(value: datetime) -> str:
    """Format a search bound as Mimecast documents it: ``2011-12-03T10:15:30+0000`` in UTC."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def search_body(watch: WatchConfig, start: datetime, end: datetime, reason: str) -> dict[str, Any]:
    """The JSON body of a search for ``watch`` over ``[start, end)``."""
    item: dict[str, Any] = {"start": format_search_date(start), "end": format_search_date(end),
                            "searchReason": reason}
    if watch.message_id:
        item["messageId"] = watch.message_id
    else:
        options = {"from": watch.from_, "to": watch.to, "subject": watch.subject, "senderIP": watch.sender_ip}
        item["advancedTrackAndTraceOptions"] = {k: v for k, v in options.items() if v}
    return {"data": [item]}


class MimecastClient:
    """Searches Mimecast message tracking, retrying what may pass and reporting what will not.

    One client is shared by every watch: its :class:`RateGate` makes a 429
    seen by one watch hold back all of them.
    """

    def __init__(self, config: MimecastConfig, *, metrics: Any = None, stop: threading.Event | None = None,
                 session: requests.Session | None = None, rand: Callable[[], float] = random.random) -> None:
        self._cfg = config
        self._metrics = metrics
        self._rand = rand
        self._log = structlog.get_logger("collector.mimecast")
        self.gate = RateGate(stop=stop, on_held=self._held, on_pacing=self._pacing)
        if metrics is not None:
            metrics.quota_pacing.set_function(lambda: float(self.gate.pacing()))
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = f"mimecast-collector/{__version__}"
        self._proxies = {"http": config.proxy.reveal(), "https": config.proxy.reveal()} if config.proxy else None
        self._auth: Authenticator
        if isinstance(config.auth, HmacAuth):
            self._auth = HmacSigner(config.auth)
        else:
            self._auth = OAuthTokenSource(config.auth, config.token_url, self._session, timeout=config.timeout,
                                          verify=config.tls_verify, proxies=self._proxies, observe=self._observe)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def check_credentials(self) -> bool:
        """Fetch a token now (API 2.0); ``False`` for API 1.0 keys, which only a request can test.

        Raises:
            ApiError: the token endpoint refused or could not be reached.
        """
        if not isinstance(self._auth, OAuthTokenSource):
            return False
        self._auth.headers(self._cfg.search_path)
        return True

    def search(self, watch: WatchConfig, start: datetime, end: datetime) -> SearchResult:
        """Search one window; records that cannot be parsed are returned in ``invalid``.

        Raises:
            ApiError: a subclass saying what went wrong, after retries where they make sense.
            CancelledError: shutdown was requested while waiting.
        """
        body = search_body(watch, start, end, self._cfg.search_reason)
        emails, server_time = self._post(body)
        result = SearchResult(server_time=server_time)
        for raw in emails:
            try:
                result.records.append(parse_tracked_email(raw))
            except RecordError as exc:
                result.invalid.append((exc, raw))
        return result

    def _post(self, body: dict[str, Any]) -> tuple[list[Any], datetime | None]:
        attempt, refreshed, rate_waited, limited = 0, False, 0.0, 0
        while True:
            slot = self.gate.wait()
            try:
                return self._attempt(body, slot)
            except _TokenExpired:
                if refreshed or not self._auth.invalidate():
                    raise AuthError("Mimecast rejected a freshly issued token (HTTP 401)", status=401) from None
                refreshed = True
                self._count_retry("token_expired")
            except RateLimitedError as exc:
                wait, limited = exc.wait_seconds, limited + 1
                # Every caller honours the reset, but never for longer than the collector may wait at all.
                self.gate.block(min(wait, self._cfg.max_rate_limit_wait))
                if self._metrics is not None:
                    self._metrics.rate_limited.inc()
                if rate_waited + wait > self._cfg.max_rate_limit_wait or limited > _MAX_429:
                    raise RateLimitedError(f"Mimecast rate limit (HTTP 429): reset in {wait:g}s after {rate_waited:g}s "
                                           f"and {limited} refusals; giving up until the next poll",
                                           wait_seconds=wait) from None
                rate_waited += wait
                self._log.warning("mimecast.rate_limited", wait_s=round(wait, 3), waited_s=round(rate_waited, 3))
            except ApiError as exc:
                if not exc.retryable or attempt >= self._cfg.retries:
                    raise
                attempt += 1
                delay = backoff_delay(attempt, self._cfg.backoff_initial, self._cfg.backoff_max, self._rand)
                self._count_retry(exc.error_type)
                self._log.warning("mimecast.retry", error_type=exc.error_type, attempt=attempt,
                                  of=self._cfg.retries, delay_s=round(delay, 3), error=str(exc))
                self.gate.sleep(delay)

    def _attempt(self, body: dict[str, Any], slot: Slot) -> tuple[list[Any], datetime | None]:
        path = self._cfg.search_path
        try:
            headers = {"Content-Type": "application/json", "Accept": "application/json",
                       **self._auth.headers(path)}
            response = post(self._session, self._cfg.base_url + path, endpoint="search", what="search",
                            observe=self._observe, timeout=self._cfg.timeout, max_bytes=self._cfg.max_answer_bytes,
                            json=body, headers=headers,
                            verify=self._cfg.tls_verify, proxies=self._proxies)
            self._read_quota(response, slot)
        finally:
            self.gate.done(slot)
        return self._interpret(response), _server_date(response.headers.get("Date"))

    def _read_quota(self, response: requests.Response, slot: Slot) -> None:
        quota = parse_quota(response.headers)
        if quota.limit is not None and self._metrics is not None:
            self._metrics.rate_limit_limit.set(quota.limit)
        if quota.remaining is not None and self._metrics is not None:
            self._metrics.rate_limit_remaining.set(quota.remaining)
        if response.status_code == 429:
            return
        reserve = self._cfg.quota_reserve.of(quota.limit) if quota.limit is not None else 0
        self.gate.observe(quota, reserve, self._cfg.max_rate_limit_wait, slot)

    def _held(self, reason: str, seconds: float) -> None:
        if self._metrics is not None and seconds > 0:
            (self._metrics.quota_paced if reason == "paced" else self._metrics.rate_limit_wait).inc(seconds)

    def _pacing(self, started: bool, facts: dict[str, Any]) -> None:
        # Paced, the budget hovers at the reserve and flips with nearly every answer: the gate reports the episode.
        self._log.info("mimecast.quota_pacing_started" if started else "mimecast.quota_pacing_ended", **facts)

    def _interpret(self, response: requests.Response) -> list[Any]:
        status = response.status_code
        try:
            payload = json.loads(response.content, parse_constant=_constant)
        except (ValueError, RecursionError):
            payload = None
        code, message, _ = first_failure(payload)
        detail = f"{code}: {message}" if code else message or "no details"
        if status == 200:
            if payload is None:
                raise MalformedResponseError("search response is not valid JSON", status=200)
            if code == TOKEN_EXPIRED:
                raise _TokenExpired()
            return tracked_emails(payload)
        if status == 401:
            if isinstance(self._auth, OAuthTokenSource):
                raise _TokenExpired()
            raise AuthError(f"Mimecast rejected the request signature (HTTP 401, {detail}); check app_id, "
                            "app_key, access_key, secret_key and that base_url is your account's region",
                            status=401, code=code)
        if status == 403:
            raise AuthError(f"Mimecast denied access (HTTP 403, {detail}); the API user needs the "
                            "Gateway | Tracking | Read permission", status=403, code=code)
        if status == 418:
            raise BindingExpiredError(
                "the API 1.0 access key binding has expired (HTTP 418); generate a new access key and secret key "
                "for the API user and set its authentication profile's cache TTL to never expire",
                status=418, code=code)
        if status in (404, 405):
            path = _path(self._cfg.base_url) + self._cfg.search_path
            raise EndpointNotFoundError(f"the search endpoint was not found (HTTP {status} from {path}); "
                                        "check base_url: the region's API host, no path", status=status, code=code)
        if status == 429:
            reset = reset_seconds(response.headers.get("X-RateLimit-Reset"))
            wait = _DEFAULT_RESET_S if reset is None else max(reset, _MIN_429_WAIT_S)
            raise RateLimitedError(f"Mimecast rate limit exceeded (HTTP 429, reset in {wait:g}s)", wait_seconds=wait)
        if status >= 500:
            raise TransientApiError(f"Mimecast answered HTTP {status} ({detail})", kind="server_error", status=status)
        raise ApiFailError(f"Mimecast answered HTTP {status} ({detail})", status=status, code=code)

    def _observe(self, endpoint: str, code: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.api_requests.labels(endpoint, code).inc()
            self._metrics.api_duration.labels(endpoint).observe(seconds)

    def _count_retry(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.api_retries.labels(reason).inc()


def _path(url: str) -> str:
    return urllib3.util.parse_url(url).path or ""


def _constant(name: str) -> str:
    # NaN and Infinity are not JSON: kept as their text so that no output writes invalid JSON.
    return name


class _TokenExpired(Exception):
    """The bearer token was refused; fetch a new one and try once more."""


def _server_date(value: str | None) -> datetime | None:
    """Mimecast's clock from an HTTP ``Date`` header; ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return at.astimezone(timezone.utc) if at.tzinfo is not None else None
