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

from collector.errors import ApiError, TransientApiError

__all__ = ["DeadlineAdapter", "Observer", "post", "tls_failure"]

Observer = Callable[[str, str, float], None]


def tls_failure(exc: requests.exceptions.SSLError) -> ApiError:
    """A TLS failure talking to Mimecast: not retried, because retrying cannot fix a certificate."""
    reason = exc.args[0] if exc.args else exc
    detail = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(reason) else type(reason).__name__
    return ApiError(f"TLS verification of Mimecast failed ({detail}); check base_url, tls_verify (a CA bundle "
                    "for a TLS-inspecting proxy) and proxy")


def post(session: requests.Session, url: str, *, endpoint: str, what: str, observe: Observer,
         timeout: float, **kwargs: Any) -> requests.Response:
    """POST ``url`` and read the whole answer within ``timeout`` seconds, connect to last byte.

    ``requests``' own timeout bounds each socket read, so a server that trickles
    a byte at a time would never trip it; here a timer shuts the connection
    down when the deadline passes, whatever phase the exchange is in. The code
    and latency go to ``observe`` (``endpoint``, ``code``, seconds).

    Raises:
        TransientApiError: the deadline passed, a timeout or a connection failure (retryable).
        ApiError: TLS verification failed (not retryable).
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
                raise tls_failure(exc) from None
            observe(endpoint, "connection", elapsed)
            raise TransientApiError(f"{what} failed: {type(exc).__name__}", kind="connection") from None
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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self.fired = False

    def attach(self, conn: Any) -> None:
        """Follow ``conn``; shut it down at once if the deadline has already passed."""
        with self._lock:
            self._conn = conn
            if self.fired:
                self._shutdown()

    def fire(self) -> None:
        """The deadline passed: end every read and write on the connection now."""
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        sock = getattr(self._conn, "sock", None)
        if sock is None:
            return
        try:
            # The plain socket's shutdown: it wakes a blocked read (TLS or not) with end-of-file.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class DeadlineAdapter(HTTPAdapter):
    """An HTTP adapter whose connections can be shut down by a deadline set on the calling thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._local = threading.local()
        self._classes: dict[type, type] = {}
        super().__init__(*args, **kwargs)

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[_Abort]:
        """Shut down the connection this thread uses if the block is still running after ``seconds``."""
        abort = _Abort()
        timer = threading.Timer(seconds, abort.fire)
        timer.daemon = True
        self._local.abort = abort
        timer.start()
        try:
            yield abort
        finally:
            timer.cancel()
            self._local.abort = None

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
