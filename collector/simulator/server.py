"""A loopback Mimecast: real HTTP, real authentication checks, switchable faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import random
import re
import secrets
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from typing import Any

from collector.simulator import ORDERS
from collector.simulator.flow import Filter, MailFlow
from collector.simulator.handler import SEARCH_PATHS, Fault, Recorded, make_handler
from collector.simulator.quota import Bucket, Window

__all__ = ["Bucket", "Window", "Credentials", "Fault", "Recorded", "Simulator", "SEARCH_PATHS"]


_DATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                   r"\d{4} \d{2}:\d{2}:\d{2} UTC$")
_SEARCH_DATE = "%Y-%m-%dT%H:%M:%S%z"
# serve_forever notices a stop only between polls of its socket: at its default half second, every stop
# (each test's simulator, the end of `demo`) waited that long for nothing.
_STOP_POLL_S = 0.05


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is routine here, not an error to print."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


@dataclass(frozen=True)
class Credentials:
    """The keys the simulator accepts (demo values; never real ones)."""

    client_id: str = "demo-client"
    client_secret: str = "demo-client-secret"
    app_id: str = "demo-app-id"
    app_key: str = "demo-app-key"
    access_key: str = "demo-access-key"
    secret_key: str = base64.b64encode(b"demo secret key for the simulator").decode()


class Simulator:
    """Serves ``/oauth/token`` and both search paths for a :class:`MailFlow` on 127.0.0.1.

    Args:
        flow: the messages to serve.
        cap: the most tracked emails one response carries, like a real API.
        clock: what "now" is for status changes (real UTC time by default).
        token_ttl: seconds an issued token lives.
        latency: seconds every search takes before it is answered.
        tls: ``(certificate file, key file)`` to serve HTTPS instead of HTTP.
        order: the order of records in an answer, and so which ones a capped answer keeps:
            ``oldest`` first, ``newest`` first or ``shuffled`` (Mimecast documents none of them).
        quota: a :class:`Bucket` or :class:`Window` that every request spends, with the rate-limit headers on
            every answer.
        send_date: send the HTTP ``Date`` header, from ``clock``, as a real server does.
    """

    def __init__(self, flow: MailFlow, *, cap: int = 100, credentials: Credentials | None = None,
                 clock: Callable[[], datetime] | None = None, token_ttl: float = 1799, port: int = 0,
                 latency: float = 0.0, tls: tuple[str, str] | None = None, order: str = "oldest",
                 quota: Bucket | Window | None = None, send_date: bool = True) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}")
        self.flow = flow
        self.cap = cap
        self.credentials = credentials or Credentials()
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.token_ttl = token_ttl
        self.latency = latency
        self.order = order
        self.quota = quota
        self.send_date = send_date
        self.end_inclusive = False
        self.periodic: tuple[int, Fault] | None = None
        self._answered: dict[str, int] = {}
        self._shuffle = random.Random(7)
        self.requests: deque[Recorded] = deque(maxlen=200_000)
        self._faults: list[tuple[Fault, int]] = []
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), make_handler(self))
        self._scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` when serving TLS)."""
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Simulator:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": _STOP_POLL_S},
                                        name="simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` requests to ``fault.endpoint`` fail this way."""
        with self._lock:
            self._faults.append((fault, times))

    def clear_faults(self) -> None:
        """Forget faults not yet consumed."""
        with self._lock:
            self._faults.clear()

    def expire_tokens(self) -> None:
        """Make every issued token expired, as if 30 minutes had passed."""
        with self._lock:
            self._tokens = {t: 0.0 for t in self._tokens}

    def searches(self) -> list[Recorded]:
        """The search requests received so far."""
        return [r for r in list(self.requests) if r.path in SEARCH_PATHS]

    def take_fault(self, endpoint: str) -> Fault | None:
        """Consume the next fault for ``endpoint``, if any (``periodic`` answers every n-th request so)."""
        with self._lock:
            self._answered[endpoint] = self._answered.get(endpoint, 0) + 1
            if self.periodic is not None and self.periodic[1].endpoint == endpoint \
                    and self._answered[endpoint] % self.periodic[0] == 0:
                return self.periodic[1]
            for i, (fault, times) in enumerate(self._faults):
                if fault.endpoint == endpoint:
                    if times <= 1:
                        del self._faults[i]
                    else:
                        self._faults[i] = (fault, times - 1)
                    return fault
        return None

    def issue_token(self, client_id: str, client_secret: str) -> tuple[int, dict[str, Any]]:
        """Answer a client-credentials request."""
        creds = self.credentials
        if not (hmac.compare_digest(client_id, creds.client_id)
                and hmac.compare_digest(client_secret, creds.client_secret)):
            return 401, {"fail": [{"code": "InvalidClientIdentifier", "message": "Client credentials are invalid"}]}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl), "scope": ""}

    def check_auth(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """``None`` if the request is authenticated, else the error answer."""
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            with self._lock:
                expires = self._tokens.get(auth[7:])
            if expires is None:
                return 401, _fail("err_invalid_token", "Unknown bearer token")
            if time.monotonic() >= expires:
                return 401, _fail("token_expired", "The access token has expired")
            return None
        if auth.startswith("MC "):
            return self._check_hmac(path, auth[3:], headers)
        return 401, _fail("err_missing_authorization", "Authorization header missing")

    def _check_hmac(self, path: str, value: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        creds = self.credentials
        access_key, _, signature = value.partition(":")
        date, req_id = headers.get("x-mc-date", ""), headers.get("x-mc-req-id", "")
        if not _DATE.match(date) or not req_id or headers.get("x-mc-app-id") != creds.app_id:
            return 401, _fail("err_xdk_missing_headers", "x-mc-date, x-mc-req-id or x-mc-app-id missing or invalid")
        data = f"{date}:{req_id}:{path}:{creds.app_key}".encode()
        expected = base64.b64encode(hmac.new(base64.b64decode(creds.secret_key), data, hashlib.sha1).digest()).decode()
        if access_key != creds.access_key or not hmac.compare_digest(signature, expected):
            return 401, _fail("err_xdk_signature_invalid", "Signature is invalid")
        return None

    def search(self, body: Any) -> tuple[int, dict[str, Any]]:
        """Answer a search body (already authenticated)."""
        if self.latency:
            time.sleep(self.latency)
        try:
            (item,) = body["data"]
            start = datetime.strptime(item["start"], _SEARCH_DATE)
            end = datetime.strptime(item["end"], _SEARCH_DATE)
        except (KeyError, TypeError, ValueError):
            return 400, _fail("err_validation_invalid_date", "data must hold one item with start and end")
        options = item.get("advancedTrackAndTraceOptions") or {}
        flt = Filter(from_=options.get("from"), to=options.get("to"), subject=options.get("subject"),
                     sender_ip=options.get("senderIP"), message_id=item.get("messageId"))
        if not any((flt.from_, flt.to, flt.subject, flt.sender_ip, flt.message_id)):
            return 200, _fail("err_validation_blank", "Advanced Track And Trace Options or message ID must be given")
        if self.end_inclusive:
            end = end + timedelta(seconds=1)
        visible = self.flow.visible(flt, start, end, self.clock())
        if self.order == "oldest":
            kept = list(itertools.islice(visible, self.cap))
        else:
            every = list(visible)
            if self.order == "newest":
                kept = every[::-1][:self.cap]
            else:
                with self._lock:
                    kept = self._shuffle.sample(every, min(self.cap, len(every)))
        found = [m.to_json(status, info) for m, status, info in kept]
        return 200, {"meta": {"status": 200}, "data": [{"trackedEmails": found}], "fail": []}


def _fail(code: str, message: str) -> dict[str, Any]:
    return {"meta": {"status": 200}, "data": [], "fail": [{"errors": [
        {"code": code, "message": message, "retryable": False}]}]}
