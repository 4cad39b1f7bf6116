"""Lifecycle: build the pipeline from the config, run once or forever, handle signals and sd_notify."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from collector import __version__
from collector.config import Config
from collector.errors import CollectorError, ConfigError
from collector.formats import build_formatter
from collector.metrics import Metrics, serve_metrics
from collector.mimecast.client import MimecastClient
from collector.pipeline import Output, Pipeline
from collector.poller import CycleResult, Poller
from collector.sinks import build_sink
from collector.signals import Hangup, stopping_on_signals
from collector.state import StateStore
from collector.watchdog import PollTracker, Stall, bounds_for

__all__ = ["EX_STOP_TIMEOUT", "Collector", "Hangup", "sd_notify", "stopping_on_signals"]

# The exit status when shutdown_timeout passes with a poll or an output still blocked (EX_TEMPFAIL).
EX_STOP_TIMEOUT = 75
# How often the daemon looks for stalled polls (and pings systemd, more often if it asks for that).
_CHECK_EVERY_S = 5.0


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
                 stop: threading.Event | None = None, on_chunk: Callable[[str, int, int], None] | None = None,
                 hangup: Hangup | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.metrics = Metrics(registry or CollectorRegistry())
        self.metrics.prime([w.name for w in config.watches], [o.name for o in config.outputs],
                           [o.name for o in config.outputs if o.sink.type == "syslog"])
        self.log = structlog.get_logger("collector.daemon")
        self.state = StateStore(config.collection.state_file).open()
        follow = config.collection.follow
        self.state.prepare((w.name for w in config.watches),
                           ended_before=datetime.now(timezone.utc) - (max(follow) if follow else timedelta(0)))
        names = [w.name for w in config.watches]
        self.metrics.watermark.follow(lambda: {n: self.state.watch(n).watermark for n in names})
        self.metrics.start_time.set(time.time())
        try:
            outputs = [Output(o.name, build_formatter(o.format, o.options),
                              build_sink(o.name, o.sink, metrics=self.metrics)) for o in config.outputs]
            self.pipeline = Pipeline(outputs, self.state, dead_letter=config.collection.dead_letter_file,
                                     metrics=self.metrics)
            self.pipeline.reconcile()
            if hangup is not None:
                hangup.attach(self.pipeline.request_reopen)
        except BaseException:
            self.state.close()
            raise
        self.client = MimecastClient(config.mimecast, metrics=self.metrics, stop=self.stop)
        self.tracker = PollTracker(bounds_for(config))
        self._deadline = _StopDeadline(self.log, self.tracker, [w.name for w in config.watches])
        for w in config.watches:
            self.metrics.poll_running.labels(w.name).set_function(lambda n=w.name: self.tracker.running_for(n))
        self.pollers = [
            Poller(w, config.collection, self.client, self.pipeline, self.metrics, stop=self.stop,
                   on_chunk=(lambda done, total, n=w.name: on_chunk(n, done, total)) if on_chunk else None,
                   tracker=self.tracker)
            for w in config.watches
        ]

    def close(self) -> None:
        """Close outputs, the client and the checkpoint lock (then a pending shutdown deadline is moot)."""
        try:
            self.pipeline.close()
            self.client.close()
            self.state.close()
        finally:
            self._deadline.cancel()

    def arm_stop_deadline(self) -> None:
        """Exit 75 unless :meth:`close` ends within ``collection.shutdown_timeout`` from now (once stop is asked)."""
        self._deadline.arm(self.config.collection.shutdown_timeout.total_seconds())

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
        server = _serve(self.metrics, listen) if listen else None
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
                self.arm_stop_deadline()
                scheduler.shutdown(wait=True)
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


def _serve(metrics: Metrics, listen: tuple[str, int]) -> Any:
    """The metrics endpoint on ``listen``; a port in use is a runtime error, any other refusal a config one.

    Raises:
        CollectorError: the port is in use (exit 1: it may be free after a restart).
        ConfigError: the host does not resolve, is not an address of this machine, or the port is privileged.
    """
    host, port = listen
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        return serve_metrics(metrics, host, port)
    except socket.gaierror as exc:
        raise ConfigError([f"metrics.listen: cannot resolve {host!r} ({exc.strerror}); give an address of this "
                           "machine, e.g. 127.0.0.1:9464"]) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CollectorError(f"metrics.listen: {where} is already in use by another process; stop it or "
                                 "choose another port") from None
        raise ConfigError([f"metrics.listen: cannot listen on {where} ({exc.strerror or exc})"]) from None


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


class _StopDeadline:
    """Ends the process when a shutdown outlives its timeout, whatever a poll or an output is blocked in.

    A blocked ``write`` (a FIFO whose reader stopped, a hung mount) cannot be interrupted from another
    thread, and the scheduler's threads are not daemon threads, so without this the process would never
    exit. Nothing is lost by leaving: a chunk is committed only after every output took it, so the
    blocked chunk is searched and delivered again at the next start, as after a crash.
    """

    def __init__(self, log: Any, tracker: PollTracker, watches: Sequence[str]) -> None:
        self._log, self._tracker, self._watches = log, tracker, watches
        self._done = threading.Event()
        self._armed = False

    def arm(self, timeout_s: float) -> None:
        """Start counting ``timeout_s`` seconds (once); :meth:`cancel` before then, or the process exits 75."""
        if self._armed:
            return
        self._armed = True
        threading.Thread(target=self._wait, args=(timeout_s,), name="stop-deadline", daemon=True).start()

    def cancel(self) -> None:
        """The shutdown finished: the deadline no longer applies."""
        self._done.set()

    def _wait(self, timeout_s: float) -> None:
        if self._done.wait(timeout_s):
            return
        running = {w: round(self._tracker.running_for(w), 1) for w in self._watches if self._tracker.running_for(w)}
        self._log.error("collector.shutdown_timeout", timeout_s=timeout_s, exit_status=EX_STOP_TIMEOUT,
                        polls_running_s=running, blocked_in=_blocked_in(),
                        reason="a poll or an output did not finish in time; exiting anyway: nothing past the "
                               "checkpoint was committed, so the next start delivers the unfinished chunk")
        sys.stderr.flush()
        os._exit(EX_STOP_TIMEOUT)


def _blocked_in() -> list[str]:
    """Where each other thread is, as ``thread: file:line function`` of its innermost collector frame."""
    found = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        name = next((t.name for t in threading.enumerate() if t.ident == ident), str(ident))
        inner = frame
        while inner is not None and f"{os.sep}collector{os.sep}" not in inner.f_code.co_filename:
            inner = inner.f_back
        if inner is not None:
            where = inner.f_code.co_filename.rpartition(f"{os.sep}collector{os.sep}")[2]
            found.append(f"{name}: collector/{where}:{inner.f_lineno} {inner.f_code.co_name}")
    return sorted(found)
