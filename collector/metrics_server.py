"""The ``/metrics`` endpoint: one thread for every connection, a bounded number of them, each with a deadline.

prometheus_client's own server starts a thread per connection and reads without a timeout, so idle or
half-sent connections each pinned a thread for ever; under a task limit (systemd's ``TasksMax``) the polls
then failed to start threads. Here one thread multiplexes every connection with a selector: a connection
that has not sent its request and read its answer within the deadline is closed, and past the limit the
oldest connection makes way for the newest, so a scrape always gets in.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["MAX_CONNECTIONS", "REQUEST_DEADLINE_S", "MetricsServer"]

MAX_CONNECTIONS = 32
"""Connections served at once; a new one past this closes the oldest."""
REQUEST_DEADLINE_S = 10.0
"""Seconds a connection has to send its request and read the answer (Prometheus' default scrape timeout)."""
_MAX_REQUEST_BYTES = 16 * 1024
_TICK_S = 0.5


class _Connection:
    """One client: what it has sent, what is left to send it, and when it must be done."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.received = b""
        self.outgoing = b""


class MetricsServer:
    """Serves ``registry`` over HTTP on ``host:port`` from a single thread.

    Raises:
        OSError: the address cannot be resolved or bound (as ``socket.bind`` raises it).
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int, *,
                 max_connections: int = MAX_CONNECTIONS, deadline: float = REQUEST_DEADLINE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(64)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.server_address = self._listener.getsockname()
        self._app = make_wsgi_app(registry)
        self._max, self._deadline, self._clock = max_connections, deadline, clock
        self._conns: dict[socket.socket, _Connection] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        """Serve in the background thread."""
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._stopping.set()
        self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join()

    def server_close(self) -> None:
        """Close every socket (after :meth:`shutdown`)."""
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            for key, events in self._selector.select(_TICK_S):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is not self._wake_r:
                    self._step(key.data, events)
            now = self._clock()
            for conn in [c for c in self._conns.values() if c.deadline <= now]:
                self._drop(conn)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionError):
            return
        except OSError:  # out of file descriptors: try again on the next event
            time.sleep(0.05)
            return
        if len(self._conns) >= self._max:
            self._drop(min(self._conns.values(), key=lambda c: c.deadline))
        sock.setblocking(False)
        conn = _Connection(sock, self._clock() + self._deadline)
        self._conns[sock] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _step(self, conn: _Connection, events: int) -> None:
        try:
            if events & selectors.EVENT_READ and not conn.outgoing:
                chunk = conn.sock.recv(4096)
                if not chunk:
                    self._drop(conn)
                    return
                conn.received += chunk
                if b"\r\n\r\n" in conn.received or b"\n\n" in conn.received:
                    try:
                        response = _response(self._app, conn.received)
                    except Exception:  # noqa: BLE001 - a failing collector must not end the endpoint
                        response = _plain(500, "Internal Server Error")
                    self._answer(conn, response)
                elif len(conn.received) > _MAX_REQUEST_BYTES:
                    self._answer(conn, _plain(431, "Request Header Fields Too Large"))
            if events & selectors.EVENT_WRITE and conn.outgoing:
                sent = conn.sock.send(conn.outgoing)
                conn.outgoing = conn.outgoing[sent:]
                if not conn.outgoing:
                    self._drop(conn)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)

    def _answer(self, conn: _Connection, response: bytes) -> None:
        conn.outgoing = response
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)

    def _drop(self, conn: _Connection) -> None:
        if self._conns.pop(conn.sock, None) is None:
            return
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()


def _response(app: Any, request: bytes) -> bytes:
    """Run prometheus_client's WSGI application (content negotiation, gzip, ``name[]``) for one request."""
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("latin-1")
    lines = head.splitlines()
    parts = lines[0].split() if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return _plain(400, "Bad Request")
    method, target, _ = parts
    path, _, query = target.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
    status: list[str] = []
    headers: list[tuple[str, str]] = []

    def start_response(code: str, sent: list[tuple[str, str]]) -> None:
        status.append(code)
        headers.extend(sent)

    body = b"".join(app(environ, start_response))
    return _head(status[0], headers, len(body)) + body


def _plain(code: int, reason: str) -> bytes:
    body = f"{code} {reason}\n".encode()
    return _head(f"{code} {reason}", [("Content-Type", "text/plain; charset=utf-8")], len(body)) + body


def _head(status: str, headers: Iterable[tuple[str, str]], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {length}",
             "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")
