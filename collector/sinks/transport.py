"""Syslog transports: one reused UDP, TCP or TLS connection that never trusts a dead peer."""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Sequence

from collector.config import SyslogSinkConfig

__all__ = ["Transport", "TransportError"]

# After a failure, wait this long (doubling, capped) before connecting again.
_BACKOFF_INITIAL_S = 0.5
_BACKOFF_MAX_S = 30.0
# A receiver that refuses us after the handshake (a client certificate it does not accept, a full
# queue) closes the connection a moment later, after our first write already "succeeded". The first
# flush on a new connection waits this long for such a refusal before the chunk counts as delivered.
_SETTLE_S = 0.5


class TransportError(Exception):
    """Sending failed; the connection was dropped."""


class Transport:
    """A connection to a syslog receiver, opened on first use and reopened after any error."""

    def __init__(self, cfg: SyslogSinkConfig) -> None:
        self._cfg = cfg
        self._sock: socket.socket | None = None
        self._fresh = False
        self._failures = 0
        self._retry_at = 0.0
        self._context = self._tls_context() if cfg.transport == "tls" else None

    def send(self, messages: Sequence[bytes]) -> None:
        """Send framed messages (UDP: one datagram each).

        Raises:
            TransportError: the peer is unreachable, went away, or refused TLS.
        """
        sock = self._connected()
        try:
            if self._cfg.transport == "udp":
                for message in messages:
                    sock.send(message)
            else:
                sock.sendall(b"".join(messages))
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"send to {self._where()} failed: {_reason(exc)}")

    def check(self) -> None:
        """Raise if a stream peer has closed the connection (data sent into it may be lost)."""
        if self._sock is None or self._cfg.transport == "udp":
            return
        wait, self._fresh = (_SETTLE_S if self._fresh else 0.0), False
        if self._peer_closed(self._sock, wait):
            hint = ("; a receiver that requires a client certificate does this when cert_file and key_file "
                    "are missing or not trusted") if self._cfg.transport == "tls" else ""
            self._fail(f"{self._where()} closed the connection; the chunk will be sent again{hint}")

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _connected(self) -> socket.socket:
        if self._sock is not None and self._cfg.transport != "udp" and self._peer_closed(self._sock):
            self.close()
        if self._sock is None:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise TransportError(f"{self._where()} is down; next connection attempt in {wait:.1f}s")
            try:
                self._sock = self._connect()
            except (OSError, ssl.SSLError) as exc:
                self._fail(f"cannot connect to {self._where()}: {_reason(exc)}")
            self._failures = 0
            self._fresh = True
        return self._sock

    def _connect(self) -> socket.socket:
        cfg = self._cfg
        if cfg.transport == "udp":
            family, kind, proto, _, address = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            sock.connect(address)
            return sock
        sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self._context is not None:
            try:
                sock = self._context.wrap_socket(sock, server_hostname=cfg.server_name or cfg.host)
            except BaseException:
                sock.close()
                raise
        sock.settimeout(cfg.send_timeout)
        return sock

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self._cfg
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not cfg.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cfg.cert_file and cfg.key_file:
            context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        return context

    def _peer_closed(self, sock: socket.socket, wait: float = 0.0) -> bool:
        try:
            readable, _, errored = select.select([sock], [], [sock], wait)
        except (OSError, ValueError):
            return True
        if errored:
            return True
        if not readable:
            return False
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.setblocking(False)
                try:
                    return sock.recv(1) == b""
                finally:
                    sock.settimeout(self._cfg.send_timeout)
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except (OSError, ssl.SSLError):
            return True

    def _fail(self, message: str) -> None:
        self.close()
        self._failures += 1
        delay = min(_BACKOFF_MAX_S, _BACKOFF_INITIAL_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        raise TransportError(message)

    def _where(self) -> str:
        return f"{self._cfg.transport}://{self._cfg.host}:{self._cfg.port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed ({exc.verify_message}); check ca_file and server_name"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
