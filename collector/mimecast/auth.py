"""Request authentication: API 1.0 HMAC-SHA1 signatures and API 2.0 OAuth bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

import requests
import urllib3

from collector.config import HmacAuth, OAuth2Auth
from collector.errors import AuthError, EndpointNotFoundError, MalformedResponseError, TransientApiError
from collector.mimecast.envelope import first_failure
from collector.mimecast.wire import Observer, post

__all__ = ["Authenticator", "HmacSigner", "OAuthTokenSource", "mc_date"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Mimecast tokens live about 30 minutes; renew a minute early so no request carries a stale one.
_TOKEN_GRACE_S = 60.0


class Authenticator(Protocol):
    """Adds authentication headers to one request."""

    def headers(self, path: str) -> dict[str, str]:
        """Headers that authenticate a request to ``path``."""

    def invalidate(self) -> bool:
        """Forget cached credentials; ``True`` if a fresh attempt can help."""


def mc_date(now: datetime) -> str:
    """Format ``x-mc-date`` (``Tue, 24 Nov 2015 12:50:11 UTC``) in English whatever the locale."""
    t = now.astimezone(timezone.utc)
    return f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year} {t:%H:%M:%S} UTC"


class HmacSigner:
    """Signs API 1.0 requests as Mimecast's Authorization guide documents."""

    def __init__(self, auth: HmacAuth, *, now: Callable[[], datetime] | None = None) -> None:
        self._app_id = auth.app_id
        self._app_key = auth.app_key
        self._access_key = auth.access_key
        self._secret = base64.b64decode(auth.secret_key.reveal())
        self._now = now or (lambda: datetime.now(timezone.utc))

    def headers(self, path: str, *, request_id: str | None = None) -> dict[str, str]:
        """``Authorization: MC access:signature`` plus ``x-mc-date``, ``x-mc-req-id``, ``x-mc-app-id``."""
        date = mc_date(self._now())
        req_id = request_id or str(uuid.uuid4())
        data = f"{date}:{req_id}:{path}:{self._app_key.reveal()}".encode()
        signature = base64.b64encode(hmac.new(self._secret, data, hashlib.sha1).digest()).decode()
        return {
            "Authorization": f"MC {self._access_key.reveal()}:{signature}",
            "x-mc-date": date,
            "x-mc-req-id": req_id,
            "x-mc-app-id": self._app_id,
        }

    def invalidate(self) -> bool:
        """HMAC keys cannot be refreshed: a rejected signature stays rejected."""
        return False


class OAuthTokenSource:
    """Fetches, caches and renews an API 2.0 client-credentials token (thread-safe)."""

    def __init__(self, auth: OAuth2Auth, token_url: str, session: requests.Session, *,
                 timeout: float, verify: bool | str, proxies: dict[str, str] | None = None,
                 observe: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._auth = auth
        self._url = token_url
        self._session = session
        self._timeout = timeout
        self._verify = verify
        self._proxies = proxies
        self._observe = observe or (lambda endpoint, code, seconds: None)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def headers(self, path: str) -> dict[str, str]:
        """``Authorization: Bearer <token>``, fetching a token when none is valid."""
        return {"Authorization": f"Bearer {self._current()}"}

    def invalidate(self) -> bool:
        """Drop the cached token so the next request fetches a new one."""
        with self._lock:
            self._token = None
        return True

    def _current(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = self._fetch()
                self._expires_at = self._clock() + max(0.0, lifetime - _TOKEN_GRACE_S)
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"client_id": self._auth.client_id, "client_secret": self._auth.client_secret.reveal(),
                "grant_type": "client_credentials"}
        response = post(self._session, self._url, endpoint="token", what="token request", observe=self._observe,
                        timeout=self._timeout, data=form, verify=self._verify, proxies=self._proxies,
                        headers={"Accept": "application/json"})
        body = _json_or_none(response)
        if response.status_code >= 500:
            raise TransientApiError(f"token endpoint answered HTTP {response.status_code}",
                                    kind="server_error", status=response.status_code)
        if response.status_code in (404, 405):
            raise EndpointNotFoundError(f"the token endpoint was not found (HTTP {response.status_code} from "
                                        f"{_path(self._url)}); check base_url: the region's API host, no path",
                                        status=response.status_code)
        if response.status_code != 200:
            code, message, _ = first_failure(body) if body is not None else (None, "", False)
            raise AuthError(f"Mimecast refused the client credentials (HTTP {response.status_code}"
                            f"{': ' + code if code else ''}{' - ' + message if message else ''}); "
                            "check client_id and client_secret of the API 2.0 application",
                            status=response.status_code, code=code)
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise MalformedResponseError("token response has no access_token", status=200)
        lifetime = body.get("expires_in", 1800)
        return body["access_token"], float(lifetime) if isinstance(lifetime, (int, float)) else 1800.0


def _path(url: str) -> str:
    return urllib3.util.parse_url(url).path or "/"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
