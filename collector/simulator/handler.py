"""The simulator's HTTP request handler: routing, faults and recording."""

from __future__ import annotations

import email.utils
import json
import time
from datetime import timezone
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from collector.simulator.server import Simulator

__all__ = ["Fault", "Recorded", "SEARCH_PATHS", "dumps", "make_handler", "parse_form"]

SEARCH_PATHS = ("/api/tracking/search", "/api/message-finder/search")


@dataclass
class Fault:
    """One scripted failure, consumed by the next matching request.

    ``kind``: ``rate_limit`` (429 with ``X-RateLimit-Reset: reset_ms``), ``server_error``
    (``status``), ``slow`` (``delay`` seconds, then a normal answer), ``malformed``,
    ``fail200`` (``code``), ``expire_token``, ``binding_expired`` (418), ``unauthorized``
    (401), ``forbidden`` (403), ``canned`` (``status``, ``body`` and ``headers`` as given) or
    ``corrupt_records`` (a normal answer plus unusable records). ``endpoint`` is ``search`` or ``token``.
    Every kind waits ``delay`` seconds before it answers.
    """

    kind: str
    status: int = 500
    reset_ms: int = 1000
    delay: float = 0.0
    code: str = "err_simulated"
    endpoint: str = "search"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    retryable: bool = False


@dataclass
class Recorded:
    """One request the simulator received, and how it answered."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)
    answered_at: float = 0.0


def dumps(payload: Any) -> bytes:
    """Serialize a response body as Mimecast does (UTF-8 JSON)."""
    return json.dumps(payload, ensure_ascii=False).encode()


def parse_form(raw: bytes) -> dict[str, str]:
    """Decode an ``application/x-www-form-urlencoded`` body."""
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}

# Records a real response could carry and the collector must set aside: no id, a bad date, not an object.
_CORRUPT: list[Any] = [
    {"status": "held", "received": "2026-01-01T00:00:00+0000", "subject": "no id"},
    {"id": "eNpBadDate", "status": "held", "received": "yesterday at noon"},
    "not an object",
]


def make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to ``sim``."""

    class Handler(BaseHTTPRequestHandler):
        """Serves one request of the simulated Mimecast API."""

        protocol_version = "HTTP/1.1"
        server_version = "MimecastSimulator/1"
        # Send headers and body in one segment: a separate small write waits on delayed ACKs (~40 ms).
        disable_nagle_algorithm = True
        wbufsize = 1 << 16

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            """Stay quiet: tests read ``sim.requests`` instead."""

        def date_time_string(self, timestamp: float | None = None) -> str:
            """The ``Date`` header from the simulator's clock, so that simulated time is Mimecast's time."""
            if timestamp is not None:
                return super().date_time_string(timestamp)
            return email.utils.format_datetime(sim.clock().astimezone(timezone.utc), usegmt=True)

        def send_header(self, keyword: str, value: str) -> None:
            """Drop ``Date`` when the simulator plays a server (or proxy) that sends none."""
            if keyword.lower() == "date" and not sim.send_date:
                return
            super().send_header(keyword, value)

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            """Route a POST to the token endpoint or a search path."""
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            record = Recorded(path=self.path, headers=headers, body=None)
            sim.requests.append(record)
            self._quota: dict[str, str] = {}
            if sim.quota is not None:
                allowed, self._quota = sim.quota.take()
                if not allowed:
                    self._send(record, 429, {"detail": "Over throttling limit"})
                    return
            if self.path == "/oauth/token":
                record.body = parse_form(raw)
                self._token(record)
            elif self.path in SEARCH_PATHS:
                try:
                    record.body = json.loads(raw)
                except ValueError:
                    self._send(record, 400, {"fail": [{"code": "err_bad_json", "message": "Body is not JSON"}]})
                    return
                self._search(record)
            else:
                self._send(record, 404, {"fail": [{"code": "err_not_found", "message": "No such endpoint"}]})

        def _token(self, record: Recorded) -> None:
            fault = sim.take_fault("token")
            if fault is not None and self._fault(record, fault):
                return
            form = record.body
            status, payload = sim.issue_token(form.get("client_id", ""), form.get("client_secret", ""))
            self._send(record, status, payload)

        def _search(self, record: Recorded, corrupt: bool = False) -> None:
            fault = None if corrupt else sim.take_fault("search")
            if fault is not None and self._fault(record, fault):
                return
            denied = sim.check_auth(self.path, record.headers)
            if denied is not None:
                self._send(record, *denied)
                return
            status, payload = sim.search(record.body)
            if corrupt and status == 200 and payload.get("data"):
                payload["data"][0]["trackedEmails"][:0] = _CORRUPT
            self._send(record, status, payload)

        def _fault(self, record: Recorded, fault: Fault) -> bool:
            """Answer with ``fault``; ``False`` when the request should go on normally."""
            kind = fault.kind
            time.sleep(fault.delay)
            if kind == "slow":
                return False
            if kind == "expire_token":
                sim.expire_tokens()
                return False
            if kind == "corrupt_records":
                self._search(record, corrupt=True)
            elif kind == "canned":
                self._send_raw(record, fault.status, fault.body, fault.headers)
            elif kind == "rate_limit":
                self._send(record, 429, {"detail": "Over throttling limit (10000/hour)"},
                           {"X-RateLimit-Reset": str(fault.reset_ms), "X-RateLimit-Remaining": "0"})
            elif kind == "server_error":
                self._send(record, fault.status, {"meta": {"status": fault.status}, "data": [], "fail": []})
            elif kind == "malformed":
                self._send_raw(record, 200, b'{"meta": {"status": 200}, "data": [{"trackedEmails": [{"id": ')
            elif kind == "fail200":
                self._send(record, 200, {"meta": {"status": 200}, "data": [], "fail": [{"errors": [
                    {"code": fault.code, "message": "Simulated failure", "retryable": fault.retryable}]}]})
            elif kind == "binding_expired":
                self._send(record, 418, {"meta": {"status": 418}, "data": [], "fail": [{"errors": [
                    {"code": "err_xdk_binding_expired", "message": "The binding has expired", "retryable": False}]}]})
            elif kind in ("unauthorized", "forbidden"):
                status = 401 if kind == "unauthorized" else 403
                self._send(record, status, {"meta": {"status": status}, "data": [], "fail": [{"errors": [
                    {"code": f"err_simulated_{status}", "message": "Simulated", "retryable": False}]}]})
            else:
                raise ValueError(f"unknown fault kind {kind!r}")
            return True

        def _send(self, record: Recorded, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send_raw(record, status, dumps(payload), headers)

        def _send_raw(self, record: Recorded, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            record.status = status
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in {**getattr(self, "_quota", {}), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            record.answered_at = time.monotonic()

    return Handler
