"""Signals: SIGTERM and SIGINT ask the process to stop, SIGHUP to reopen its outputs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["Hangup", "stopping_on_signals"]


@contextmanager
def stopping_on_signals(stop: threading.Event,
                        on_hup: Callable[[int, FrameType | None], None] | None = None,
                        on_stop: Callable[[], None] | None = None) -> Iterator[None]:
    """Inside the block SIGTERM and SIGINT set ``stop`` (the first one also calls ``on_stop``) and SIGHUP calls
    ``on_hup``; the handlers that were installed before come back after it."""
    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set() and on_stop is not None:
            on_stop()
        stop.set()

    handlers: dict[int, Any] = {signal.SIGTERM: handler, signal.SIGINT: handler}
    if on_hup is not None:
        handlers[signal.SIGHUP] = on_hup
    previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class Hangup:
    """SIGHUP (``reload``) as a request to reopen the outputs, whenever in the process's life it comes.

    Installed before anything can show this pid (the checkpoint lock is what ``reload`` reads it from),
    so a reload during start-up never kills the process; a request that comes before the outputs exist
    is kept and passed on to them once they do.
    """

    def __init__(self) -> None:
        self._reopen: Callable[[], None] | None = None
        self._pending = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._reopen is None:
            self._pending = True
        else:
            self._reopen()

    def attach(self, reopen: Callable[[], None]) -> None:
        """From now on SIGHUP calls ``reopen``; one that came before is passed on now."""
        self._reopen = reopen
        if self._pending:
            self._pending = False
            reopen()

    @contextmanager
    def installed(self) -> Iterator[Hangup]:
        """Inside the block SIGHUP comes here (in the main thread; elsewhere signals cannot be handled)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGHUP, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGHUP, previous)
