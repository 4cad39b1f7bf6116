"""Deadlines of requests in flight and name lookups bounded by them, each on one thread for every request."""

from __future__ import annotations

import heapq
import ipaddress
import socket
import threading
import time
from collections import deque
from typing import Any

__all__ = ["Abort", "Deadlines", "Resolver", "is_address"]

AddrInfo = tuple[Any, ...]


class Abort:
    """The connection of one request in flight, shut down when its deadline passes."""

    def __init__(self, when: float) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self._sock: Any = None
        self.when = when
        self.fired = False
        self.cancelled = False

    def __lt__(self, other: Abort) -> bool:
        return self.when < other.when

    def attach(self, conn: Any) -> None:
        """Follow ``conn``; shut it down at once if the deadline has already passed."""
        with self._lock:
            self._conn = conn
            self._sock = getattr(conn, "sock", None) or self._sock
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
        # The socket as seen when the request was sent: an answer with "Connection: close" takes the socket
        # off the connection (http.client hands it to the response), and its body must still be cut off.
        sock = getattr(self._conn, "sock", None) or self._sock
        if sock is None:
            return
        try:
            # The plain socket's shutdown: it wakes a blocked read (TLS or not) with end-of-file.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class Deadlines:
    """Every deadline of one adapter, watched by one thread for all requests (a timer per search would be a
    thread per search), started with the first deadline and ended by :meth:`close`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[Abort] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, seconds: float) -> Abort:
        """A deadline ``seconds`` from now."""
        abort = Abort(time.monotonic() + seconds)
        with self._cond:
            heapq.heappush(self._heap, abort)
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(target=self._watch, name="mimecast-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        return abort

    def cancel(self, abort: Abort) -> None:
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


def is_address(host: str) -> bool:
    """True for an IP address, which needs no lookup."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _Lookup:
    """One name being looked up, and every request waiting for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.addresses: list[str] = []
        self.error: OSError | None = None


class Resolver:
    """Looks names up on a thread of its own, so that a request waits no longer than its deadline.

    ``getaddrinfo`` cannot be interrupted: a resolver that never answers held a request past its deadline
    for as long as the system's resolver timeout. Requests for a name already being looked up wait for
    that lookup instead of queueing another, so a stuck resolver costs one thread, not one per request.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, int], _Lookup] = {}
        self._queue: deque[tuple[str, int]] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False

    def addresses(self, host: str, port: int, deadline: float) -> list[str]:
        """The addresses of ``host``, in the system resolver's order.

        Raises:
            TimeoutError: the lookup did not finish before ``deadline`` (``time.monotonic()``).
            socket.gaierror: the name does not resolve.
        """
        key = (host, port)
        with self._cond:
            lookup = self._pending.get(key)
            if lookup is None:
                lookup = self._pending[key] = _Lookup()
                self._queue.append(key)
                if self._thread is None or not self._thread.is_alive():
                    self._closed = False
                    self._thread = threading.Thread(target=self._run, name="mimecast-lookup", daemon=True)
                    self._thread.start()
                self._cond.notify()
        if not lookup.done.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"looking up {host} took longer than the request's deadline")
        if lookup.error is not None:
            raise lookup.error
        return lookup.addresses

    def close(self) -> None:
        """Let the lookup thread end once it is idle (a lookup in progress cannot be stopped)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                key = self._queue.popleft()
                lookup = self._pending[key]
            try:
                infos = socket.getaddrinfo(key[0], key[1], socket.AF_UNSPEC, socket.SOCK_STREAM)
                lookup.addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            except OSError as exc:
                lookup.error = exc
            with self._cond:
                del self._pending[key]
            lookup.done.set()
