"""A misbehaving Mimecast on loopback: answers, then trickles its reply a byte at a time and never finishes."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Trickled:
    """One request the server trickled its answer to."""

    path: str
    at: float
    sent: int = 0
    client_left: bool = False


class Trickle:
    """An HTTP server that trickles ``phase`` (``token``, ``headers`` or ``body``) one byte per ``every`` seconds.

    ``token``: the token endpoint sends headers and then trickles its body. ``tls``: (certificate, key) to
    serve HTTPS.
    ``headers``: the search trickles its status line and headers.
    ``body``: the search sends headers at once, then trickles the body.
    Whatever is not trickled is answered normally. A trickle lasts at most ``limit`` seconds.
    """

    def __init__(self, phase: str, *, every: float = 0.25, limit: float = 120.0,
                 tls: tuple[str, str] | None = None) -> None:
        self.phase = phase
        self.every = every
        self.limit = limit
        self.trickled: list[Trickled] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        # serve_forever notices a shutdown only between polls of its socket, every half second by default.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT``."""
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _trickle(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        record = Trickled(handler.path, time.monotonic())
        self.trickled.append(record)
        deadline = time.monotonic() + self.limit
        for byte in data:
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                record.client_left = True
                return
            record.sent += 1
            if self._stop.wait(self.every):
                return

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        trickle = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                token = self.path == "/oauth/token"
                body = (json.dumps({"access_token": "t0ken-abc", "expires_in": 1800}) if token
                        else json.dumps({"meta": {"status": 200}, "data": [{"trackedEmails": []}], "fail": []})
                        ).encode() + b" " * 4096
                # It closes the connection after each answer, and says so: a client that pooled it would race
                # the close with its next request and see a connection error instead of the trickle.
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        "Connection: close\r\n"
                        + "".join(f"X-Padding-{i}: {'x' * 40}\r\n" for i in range(40)) + "\r\n").encode()
                if token != (trickle.phase == "token"):
                    self.wfile.write(head + body)
                elif trickle.phase == "headers":
                    trickle._trickle(self, head + body)
                else:
                    self.wfile.write(head)
                    self.wfile.flush()
                    trickle._trickle(self, body)
                self.close_connection = True

        return Handler


class HandshakeTrickle:
    """A TLS server that never finishes its handshake: a record header, then one byte per ``every`` seconds."""

    def __init__(self, *, every: float = 0.25, limit: float = 120.0) -> None:
        self.every = every
        self.limit = limit
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> HandshakeTrickle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + self.limit
        with conn:
            try:
                conn.recv(65536)  # the ClientHello
                conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record is coming...
                while time.monotonic() < deadline and not self._stop.wait(self.every):
                    conn.sendall(b"\x00")  # ...a byte at a time
            except OSError:
                return
