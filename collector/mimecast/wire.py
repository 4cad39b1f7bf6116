"""One POST to Mimecast under a total deadline, timed, with transport failures turned into typed errors."""

from __future__ import annotations

import heapq
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from collector.errors import TlsError, TransientApiError

__all__ = ["DeadlineAdapter", "Observer", "connection_failure", "post", "tls_failure"]

Observer = Callable[[str, str, float], None]


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
         timeout: float, **kwargs: Any) -> requests.Response:
    """POST ``url`` and read the whole answer within ``timeout`` seconds, connect to last byte.

    ``requests``' own timeout bounds each socket read, so a server that trickles
    a byte at a time would never trip it; here the adapter's deadline thread
    (one for all requests) shuts the connection down when the deadline passes,
    whatever phase the exchange is in. The code
    and latency go to ``observe`` (``endpoint``, ``code``, seconds).

    Raises:
        TransientApiError: the deadline passed, a timeout or a connection failure (retryable).
        TlsError: TLS failed: verification, or the port does not speak TLS (not retryable).
    """
    started = time.monotonic()
    adapter = _deadline_adapter(session, url)
    with adapter.deadline(timeout) as abort:
        try:
            response = session.post(url, timeout=(timeout, timeout), stream=True, **kwargs)
            try:
                _ = response.content  # read the body under the same deadline
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


class _Abort:
    """The connection of one request in flight, shut down when its deadline passes."""

    def __init__(self, when: float) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self.when = when
        self.fired = False
        self.cancelled = False

    def __lt__(self, other: _Abort) -> bool:
        return self.when < other.when

    def attach(self, conn: Any) -> None:
        """Follow ``conn``; shut it down at once if the deadline has already passed."""
        with self._lock:
            self._conn = conn
            if self.fired:
                self._shutdown()

    def fire(self) -> None:
        """The deadline passed: end every read and write on the connection now, unless the request ended."""
        with self._lock:
            if self.cancelled:
                return
            self.fired = True
            self._shutdown()

    def cancel(self) -> None:
        """The request ended in time: the connection may now serve another request and must be left alone."""
        with self._lock:
            self.cancelled = True

    def _shutdown(self) -> None:
        sock = getattr(self._conn, "sock", None)
        if sock is None:
            return
        try:
            # The plain socket's shutdown: it wakes a blocked read (TLS or not) with end-of-file.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _Deadlines:
    """Every deadline of one adapter, watched by one thread for all requests (a timer per search would be a
    thread per search), started with the first deadline and ended by :meth:`close`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[_Abort] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, seconds: float) -> _Abort:
        """A deadline ``seconds`` from now."""
        abort = _Abort(time.monotonic() + seconds)
        with self._cond:
            heapq.heappush(self._heap, abort)
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(target=self._watch, name="mimecast-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        return abort

    def cancel(self, abort: _Abort) -> None:
        """The request ended in time; its deadline is forgotten when it comes up."""
        abort.cancel()

    def close(self) -> None:
        """End the watching thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _watch(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0].cancelled:
                    heapq.heappop(self._heap)
                if self._closed:
                    return
                left = self._heap[0].when - time.monotonic() if self._heap else None
                if left is None or left > 0:
                    self._cond.wait(left)
                    continue
                due = heapq.heappop(self._heap)
            due.fire()


class DeadlineAdapter(HTTPAdapter):
    """An HTTP adapter whose connections can be shut down by a deadline set on the calling thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._local = threading.local()
        self._classes: dict[type, type] = {}
        self._deadlines = _Deadlines()
        super().__init__(*args, **kwargs)

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[_Abort]:
        """Shut down the connection this thread uses if the block is still running after ``seconds``."""
        abort = self._deadlines.add(seconds)
        self._local.abort = abort
        try:
            yield abort
        finally:
            self._deadlines.cancel(abort)
            self._local.abort = None

    def close(self) -> None:
        """Close pooled connections and end the deadline thread."""
        super().close()
        self._deadlines.close()

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
                self._classes[base] = _tracked(base, self._local)
            pool.ConnectionCls = self._classes[base]
        return pool


def _tracked(base: type, local: threading.local) -> type:
    class Tracked(base):  # type: ignore[valid-type, misc]
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
