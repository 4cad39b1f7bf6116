"""One POST to Mimecast under a total deadline, timed, with transport failures turned into typed errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from collector.errors import AnswerTooLargeError, TlsError, TransientApiError
from collector.mimecast.deadlines import Abort, Deadlines, Resolver, is_address

__all__ = ["DeadlineAdapter", "Observer", "connection_failure", "post", "tls_failure"]

Observer = Callable[[str, str, float], None]
_CHUNK_BYTES = 64 << 10


def tls_failure(exc: requests.exceptions.SSLError, url: str = "") -> TlsError:
    """A TLS failure talking to Mimecast: not retried, because retrying cannot fix a certificate or a port.

    A server that answers a TLS hello in plain text is not a certificate problem: ``https://`` points at a
    port that does not speak TLS (a plain-HTTP port, or a proxy given as ``https://``).
    """
    text = str(exc)
    where = _host_port(url) or "Mimecast"
    if any(mark in text for mark in _PLAIN_TEXT_ANSWERS):
        return TlsError(f"{where} does not speak TLS (the TLS handshake got a plain-text answer); "
                        "check base_url's scheme and port (and proxy's)", kind="tls_protocol")
    detail = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else _innermost(exc)
    return TlsError(f"TLS verification of {where} failed ({detail}); check base_url, tls_verify (a CA bundle "
                    "for a TLS-inspecting proxy) and proxy", kind="tls_verify")


def connection_failure(exc: BaseException, url: str, what: str) -> TransientApiError:
    """A connection that never carried a request: a name that does not resolve, or a refused or unreachable port."""
    where = _host_port(url)
    if isinstance(exc, requests.exceptions.ProxyError):
        return TransientApiError(f"{what} failed: the proxy cannot be reached ({_innermost(exc)}); check proxy",
                                 kind="connection")
    if _caused_by(exc, urllib3.exceptions.NameResolutionError) or "Failed to resolve" in str(exc):
        host = urllib3.util.parse_url(url).host or url
        return TransientApiError(f"{what} failed: cannot resolve {host} (DNS); check base_url's host name and "
                                 "this host's DNS resolver", kind="dns")
    reason = "connection refused" if _caused_by(exc, ConnectionRefusedError) or "Connection refused" in str(exc) \
        else _innermost(exc)
    return TransientApiError(f"{what} failed: cannot connect to {where} ({reason}); check base_url, proxy and "
                             "that a firewall lets this host reach it", kind="connection")


# OpenSSL's words for a handshake answered by something that is not TLS (a plain HTTP server says "HTTP/1.0 400").
_PLAIN_TEXT_ANSWERS = ("WRONG_VERSION_NUMBER", "wrong version number", "RECORD_LAYER_FAILURE", "packet length too long",
                       "http request", "UNKNOWN_PROTOCOL")


def _host_port(url: str) -> str:
    if not url:
        return ""
    parsed = urllib3.util.parse_url(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host}:{port}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop()
        if any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
        for linked in (getattr(item, "reason", None), item.__cause__, item.__context__):
            if isinstance(linked, BaseException):
                todo.append(linked)
    return seen


def _caused_by(exc: BaseException, kind: type) -> bool:
    return any(isinstance(e, kind) for e in _chain(exc))


def _innermost(exc: BaseException) -> str:
    chain = _chain(exc)
    errno = next((e for e in chain if isinstance(e, OSError) and e.strerror), None)
    return errno.strerror if errno is not None else type(chain[-1]).__name__


def post(session: requests.Session, url: str, *, endpoint: str, what: str, observe: Observer,
         timeout: float, max_bytes: int | None = None, **kwargs: Any) -> requests.Response:
    """POST ``url`` and read the whole answer within ``timeout`` seconds, connect to last byte, and within
    ``max_bytes`` (decoded) when given.

    ``requests``' own timeout bounds each socket read, so a server that trickles
    a byte at a time would never trip it; here the adapter's deadline thread
    (one for all requests) shuts the connection down when the deadline passes,
    whatever phase the exchange is in. The code
    and latency go to ``observe`` (``endpoint``, ``code``, seconds).

    Raises:
        TransientApiError: the deadline passed, a timeout or a connection failure (retryable).
        AnswerTooLargeError: the answer is larger than ``max_bytes``; it is not read further.
        TlsError: TLS failed: verification, or the port does not speak TLS (not retryable).
    """
    started = time.monotonic()
    adapter = _deadline_adapter(session, url)
    with adapter.deadline(timeout) as abort:
        try:
            response = session.post(url, timeout=(timeout, timeout), stream=True, **kwargs)
            try:
                _read(response, max_bytes)  # under the same deadline
            except AnswerTooLargeError:
                observe(endpoint, "too_large", time.monotonic() - started)
                raise
            finally:
                response.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            elapsed = time.monotonic() - started
            if abort.fired or _is_timeout(exc):
                observe(endpoint, "timeout", elapsed)
                raise TransientApiError(f"{what} timed out after {timeout:g}s", kind="timeout") from None
            if isinstance(exc, requests.exceptions.SSLError):
                observe(endpoint, "tls", elapsed)
                raise tls_failure(exc, url) from None
            failure = connection_failure(exc, url, what)
            observe(endpoint, failure.error_type, elapsed)
            raise failure from None
    observe(endpoint, str(response.status_code), time.monotonic() - started)
    return response


def _read(response: requests.Response, max_bytes: int | None) -> None:
    """Read the body into ``response.content``, refusing it at the first byte past ``max_bytes``."""
    if max_bytes is None:
        _ = response.content
        return
    declared = (response.headers.get("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(f"declares {int(declared)} bytes", max_bytes, max_bytes / int(declared))
    chunks, size = [], 0
    for chunk in response.iter_content(_CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(f"passed {max_bytes} bytes and was not read further", max_bytes)
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what .content returns from now on


def _too_large(detail: str, max_bytes: int, share: float = 0.5) -> AnswerTooLargeError:
    return AnswerTooLargeError(f"Mimecast's answer {detail} (mimecast.max_answer_bytes is {max_bytes}); "
                               "its window is searched again narrower", share=share)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)):
        return True
    # requests reports a read timeout while streaming the body as a ConnectionError wrapping it.
    return any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in getattr(exc, "args", ()))


def _deadline_adapter(session: requests.Session, url: str) -> DeadlineAdapter:
    adapter = session.get_adapter(url)
    if isinstance(adapter, DeadlineAdapter):
        return adapter
    adapter = DeadlineAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return adapter


class DeadlineAdapter(HTTPAdapter):
    """An HTTP adapter whose connections can be shut down by a deadline set on the calling thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._local = threading.local()
        self._classes: dict[type, type] = {}
        self._deadlines = Deadlines()
        self._resolver = Resolver()
        super().__init__(*args, **kwargs)

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[Abort]:
        """Shut down the connection this thread uses if the block is still running after ``seconds``."""
        abort = self._deadlines.add(seconds)
        self._local.abort = abort
        try:
            yield abort
        finally:
            self._deadlines.cancel(abort)
            self._local.abort = None

    def close(self) -> None:
        """Close pooled connections and end the deadline and name lookup threads."""
        super().close()
        self._deadlines.close()
        self._resolver.close()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:  # requests < 2.32
        """The connection pool for a request, with connections that report to the deadline."""
        return self._track(super().get_connection(*args, **kwargs))  # type: ignore[misc]

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        """The connection pool for a request, with connections that report to the deadline."""
        return self._track(super().get_connection_with_tls_context(*args, **kwargs))

    def _track(self, pool: Any) -> Any:
        base = pool.ConnectionCls
        if base not in self._classes.values():
            if base not in self._classes:
                self._classes[base] = _tracked(base, self._local, self._resolver)
            pool.ConnectionCls = self._classes[base]
        return pool


def _tracked(base: type, local: threading.local, resolver: Resolver) -> type:
    class Tracked(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            """The socket, its name looked up within the request's deadline (the deadline thread can end a
            blocked read, not a blocked ``getaddrinfo``)."""
            abort = getattr(local, "abort", None)
            host = self._dns_host
            if abort is None or is_address(host):
                return super()._new_conn()
            try:
                addresses = resolver.addresses(host, self.port, abort.when)
            except socket.gaierror as exc:
                raise urllib3.exceptions.NameResolutionError(self.host, self, exc) from exc
            except TimeoutError:
                raise urllib3.exceptions.ConnectTimeoutError(self, f"looking up {host} timed out") from None
            failed: Exception | None = None
            for address in addresses:
                self._dns_host = address
                try:
                    return super()._new_conn()
                except urllib3.exceptions.NewConnectionError as exc:
                    failed = exc
                finally:
                    self._dns_host = host
            assert failed is not None
            raise failed

        def connect(self) -> None:
            abort = getattr(local, "abort", None)
            if abort is not None:
                abort.attach(self)
            super().connect()
            if abort is not None:
                abort.attach(self)

        def request(self, *args: Any, **kwargs: Any) -> None:
            abort = getattr(local, "abort", None)
            if abort is not None:
                abort.attach(self)
            super().request(*args, **kwargs)

    Tracked.__name__ = f"Deadline{base.__name__}"
    return Tracked
