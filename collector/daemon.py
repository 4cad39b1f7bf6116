"""Lifecycle: build the pipeline from the config, run once or forever, handle signals and sd_notify."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from types import FrameType
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from collector import __version__
from collector.config import Config
from collector.formats import build_formatter
from collector.metrics import Metrics, serve_metrics
from collector.mimecast.client import MimecastClient
from collector.pipeline import Output, Pipeline
from collector.poller import CycleResult, Poller
from collector.sinks import build_sink
from collector.state import StateStore
from collector.watchdog import PollTracker, Stall, bounds_for

__all__ = ["Collector", "sd_notify", "stopping_on_signals"]

# How long SIGTERM waits for the running chunks before giving up (systemd's default stop timeout is 90 s).
_SHUTDOWN_GRACE_S = 60.0
# How often the daemon looks for stalled polls (and pings systemd, more often if it asks for that).
_CHECK_EVERY_S = 5.0


@contextmanager
def stopping_on_signals(stop: threading.Event,
                        on_hup: Callable[[int, FrameType | None], None] | None = None) -> Iterator[None]:
    """Inside the block SIGTERM and SIGINT set ``stop`` (and SIGHUP calls ``on_hup``); the handlers that were
    installed before come back after it."""
    def handler(signum: int, frame: FrameType | None) -> None:
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


def sd_notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send ``message`` to systemd's ``$NOTIFY_SOCKET``; False when not under systemd."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


class Collector:
    """Everything one configuration needs, built once: client, checkpoint, outputs, pollers."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 stop: threading.Event | None = None, on_chunk: Callable[[str, int, int], None] | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.metrics = Metrics(registry or CollectorRegistry())
        self.metrics.prime([w.name for w in config.watches], [o.name for o in config.outputs],
                           [o.name for o in config.outputs if o.sink.type == "syslog"])
        self.log = structlog.get_logger("collector.daemon")
        self.state = StateStore(config.collection.state_file).open()
        self.state.prepare(w.name for w in config.watches)
        names = [w.name for w in config.watches]
        self.metrics.watermark.follow(lambda: {n: self.state.watch(n).watermark for n in names})
        self.metrics.start_time.set(time.time())
        try:
            outputs = [Output(o.name, build_formatter(o.format, o.options),
                              build_sink(o.name, o.sink, metrics=self.metrics)) for o in config.outputs]
            self.pipeline = Pipeline(outputs, self.state, dead_letter=config.collection.dead_letter_file,
                                     metrics=self.metrics)
            self.pipeline.reconcile()
        except BaseException:
            self.state.close()
            raise
        self.client = MimecastClient(config.mimecast, metrics=self.metrics, stop=self.stop)
        self.tracker = PollTracker(bounds_for(config))
        for w in config.watches:
            self.metrics.poll_running.labels(w.name).set_function(lambda n=w.name: self.tracker.running_for(n))
        self.pollers = [
            Poller(w, config.collection, self.client, self.pipeline, self.metrics, stop=self.stop,
                   on_chunk=(lambda done, total, n=w.name: on_chunk(n, done, total)) if on_chunk else None,
                   tracker=self.tracker)
            for w in config.watches
        ]

    def close(self) -> None:
        """Close outputs, the client and the checkpoint lock."""
        self.pipeline.close()
        self.client.close()
        self.state.close()

    def run_once(self, watches: Sequence[str] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> list[CycleResult]:
        """One cycle of each selected watch, in order; SIGHUP (``reload``) reopens outputs instead of killing it."""
        selected = [p for p in self.pollers if not watches or p.watch.name in watches]
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGHUP, self._reopen) if main else None
        try:
            return [p.run_cycle(now()) for p in selected]
        finally:
            if main:
                signal.signal(signal.SIGHUP, previous)

    def run_forever(self) -> int:
        """Serve metrics, poll on schedule until SIGTERM/SIGINT; SIGHUP reopens outputs. Returns 0."""
        from collector.scheduler import build_scheduler  # APScheduler is needed only by the daemon

        listen = self.config.metrics.listen
        server = serve_metrics(self.metrics, *listen) if listen else None
        scheduler = build_scheduler(self.pollers, self.config.collection.interval.total_seconds(), self.metrics,
                                    tracker=self.tracker, stop=self.stop)
        try:
            with stopping_on_signals(self.stop, on_hup=self._reopen):
                scheduler.start()
                self.log.info("collector.started", version=__version__, watches=len(self.pollers),
                              outputs=[o.name for o in self.config.outputs],
                              metrics=f"http://{listen[0]}:{listen[1]}/metrics" if listen else None)
                sd_notify(f"READY=1\nSTATUS=polling {len(self.pollers)} watches")
                watchdog = _watchdog_interval()
                reported: set[tuple[str, datetime]] = set()
                release = _heap_releaser()
                while not self.stop.wait(min(watchdog or _CHECK_EVERY_S, _CHECK_EVERY_S)):
                    release()
                    healthy = self._check_progress(reported)
                    if watchdog and healthy and scheduler.running:
                        sd_notify("WATCHDOG=1")
                sd_notify("STOPPING=1\nSTATUS=finishing the current chunks")
                self.log.info("collector.stopping", reason="signal")
                _shutdown(scheduler, _SHUTDOWN_GRACE_S, self.log)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
        self.log.info("collector.stopped")
        return 0

    def _check_progress(self, reported: set[tuple[str, datetime]]) -> bool:
        """True when every running poll is within its bound; a stalled poll is logged once."""
        if self.client.gate.remaining() > 0:
            self.tracker.excuse_searching()
        stalls = self.tracker.stalls()
        for stall in stalls:
            if (stall.watch, stall.started) not in reported:
                reported.add((stall.watch, stall.started))
                self._log_stall(stall)
        reported.intersection_update((s.watch, s.started) for s in stalls)
        return not stalls

    def _log_stall(self, stall: Stall) -> None:
        self.log.error("poll.stuck", watch=stall.watch, doing=stall.doing, running_since=_iso(stall.started),
                       last_step=stall.last_step, last_step_at=_iso(stall.last_step_at),
                       quiet_s=round(stall.quiet_s, 1), bound_s=round(stall.bound_s, 1),
                       reason="no progress within the worst case the configuration allows; "
                              "watchdog pings stop so systemd restarts the collector")

    def _reopen(self, signum: int, frame: FrameType | None) -> None:
        self.pipeline.request_reopen()


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _heap_releaser() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)``, or a no-op where the C library has none.

    Concurrent polls fragment glibc's heap: the free space it holds grew from 2 to 13 MiB over four
    simulated hours while the bytes in use stayed flat; trimming hands the free pages back to the kernel.
    """
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def release() -> None:
        trim(0)

    return release


def _watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


def _shutdown(scheduler: Any, grace: float, log: Any) -> None:
    done = threading.Event()

    def wait_for_jobs() -> None:
        scheduler.shutdown(wait=True)
        done.set()

    threading.Thread(target=wait_for_jobs, name="shutdown", daemon=True).start()
    if not done.wait(grace):
        log.error("collector.shutdown_timeout", grace_s=grace,
                  reason="a poll did not finish in time; its chunk was not committed and will be retried")
