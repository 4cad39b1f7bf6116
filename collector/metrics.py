"""Prometheus metrics on a registry passed in; labels stay bounded (watch, output, endpoint, code, reason)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from collector import __version__
from collector.metrics_server import MetricsServer

__all__ = ["Metrics", "serve_metrics"]

_NS = "mimecast_collector"
_API_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_POLL_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600)
_ANSWER_BUCKETS = (0, 1, 10, 25, 50, 75, 90, 99, 100, 250, 500, 1000, 5000)
_OUTCOMES = ("success", "failure", "interrupted", "crash")
_ERROR_TYPES = ("auth", "binding_expired", "not_found", "rate_limited", "server_error", "timeout", "connection",
                "dns", "tls_protocol", "tls_verify", "malformed_response", "api_fail", "answer_too_large", "sink",
                "state", "state_resource", "api", "internal")
_INVALID_REASONS = ("missing_id", "bad_received", "not_an_object", "format_error")
_RETRY_REASONS = ("token_expired", "server_error", "timeout", "connection", "dns", "malformed_response", "api_fail")


class Metrics:
    """Every metric the collector exposes, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, process: bool = True) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{_NS}_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{_NS}_{name}", doc, labels, registry=registry)

        self.events = counter("events", "Events written to an output.", ("watch", "output"))
        self.records_received = counter("records_received", "Tracked emails returned by searches.", ("watch",))
        self.duplicates = counter("duplicates_dropped", "Re-read message-statuses already shipped.", ("watch",))
        self.invalid = counter("records_invalid", "Tracked emails set aside as unusable.", ("watch", "reason"))
        self.api_requests = counter("api_requests", "HTTP requests to Mimecast by response code.",
                                    ("endpoint", "code"))
        self.api_duration = Histogram(f"{_NS}_api_request_duration_seconds", "Mimecast request latency.",
                                      ("endpoint",), buckets=_API_BUCKETS, registry=registry)
        self.api_retries = counter("api_retries", "Mimecast requests retried, by reason.", ("reason",))
        self.rate_limited = counter("rate_limited", "HTTP 429 answers from Mimecast.")
        self.rate_limit_remaining = Latest(f"{_NS}_rate_limit_remaining", "X-RateLimit-Remaining of Mimecast's "
                                           "latest answer that had it (absent until one has).", registry)
        self.rate_limit_limit = Latest(f"{_NS}_rate_limit_limit", "X-RateLimit-Limit of Mimecast's latest answer "
                                       "that had it (absent until one has).", registry)
        self.rate_limit_wait = counter("rate_limit_wait_seconds", "Wall-clock seconds the shared rate gate was "
                                       "closed by HTTP 429 answers (once for all watches).")
        self.quota_paced = counter("quota_paced_seconds", "Wall-clock seconds the shared rate gate held searches "
                                   "back to keep the quota's reserve (once for all watches).")
        self.quota_pacing = gauge("quota_pacing", "1 during a quota pacing episode (searches held back to keep "
                                  "the reserve within the last minute or Reset), else 0.")
        self.searches = counter("searches", "Searches by why they ran: first, settle, follow, split (a window "
                                "serving several counts as its oldest second's).", ("watch", "purpose"))
        self.followed = counter("followed_records", "Records a settle or follow read found in a status that is not "
                                "final, which keeps their second followed (other: an undocumented status).",
                                ("watch", "status"))
        self.splits = counter("searches_split", "Searches at the result cap, searched again narrower.", ("watch",))
        self.truncated = counter("searches_truncated", "One-second searches still at the result cap (records may be missing).", ("watch",))
        self.answer_records = Histogram(f"{_NS}_answer_records", "Tracked emails per search answer.",
                                        buckets=_ANSWER_BUCKETS, registry=registry)
        self.clock_skew = gauge("clock_skew_seconds", "This host's clock less Mimecast's (from its Date header).")
        self.clock_jumps = counter("clock_jumps", "Polls that found the watermark past the present.", ("watch",))
        self.gaps = counter("gap_seconds", "Seconds of history skipped because they were past retention.",
                            ("watch",))
        self.poll_runs = counter("poll_runs", "Poll cycles by outcome: success, failure (see poll_errors_total), "
                                 "interrupted (by shutdown) or crash (the scheduled job itself raised).",
                                 ("watch", "outcome"))
        self.poll_errors = counter("poll_errors", "Failed poll cycles by error type.", ("watch", "error_type"))
        self.poll_failing = gauge("poll_failing", "1 for the error type the latest poll of the watch failed with, "
                                  "0 otherwise (every type 0 after a poll that did not fail).",
                                  ("watch", "error_type"))
        self.poll_duration = Histogram(f"{_NS}_poll_duration_seconds", "Duration of one poll cycle.",
                                       ("watch",), buckets=_POLL_BUCKETS, registry=registry)
        self.poll_running = gauge("poll_running_seconds", "How long the running poll of the watch has been "
                                  "running (0 between polls).", ("watch",))
        self.last_success = gauge("last_success_timestamp_seconds", "When a poll of the watch last succeeded in "
                                  "this process (absent until one has; see start_time_seconds).", ("watch",))
        self.start_time = gauge("start_time_seconds", "When this collector process started.")
        self.watermark = Watermarks(f"{_NS}_watermark_timestamp_seconds", "Everything received before this is "
                                    "shipped (from the checkpoint; absent while a watch has no watermark yet).",
                                    registry)
        self.sink_errors = counter("sink_errors", "Chunks an output failed to take.", ("output",))
        self.output_failing = gauge("output_failing", "1 while the output's latest write failed, 0 once one "
                                    "succeeds.", ("output",))
        self.syslog_oversize = counter("syslog_oversize", "Syslog messages over max_message_bytes, by action.",
                                       ("output", "action"))
        self.state_write_errors = counter("state_write_errors", "Failed writes of the checkpoint file.")
        self.state_failing = gauge("state_failing", "1 while the latest write of the checkpoint failed, 0 once "
                                   "one succeeds.")
        self.build_info = gauge("build_info", "Version of the running collector.", ("version",))
        self.build_info.labels(__version__).set(1)
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    def prime(self, watches: Sequence[str], outputs: Sequence[str], syslog_outputs: Sequence[str] = ()) -> None:
        """Create every bounded label set at zero, so rate() and increase() see the first error."""
        for reason in _RETRY_REASONS:
            self.api_retries.labels(reason)
        for output in syslog_outputs:
            for action in ("truncate", "drop"):
                self.syslog_oversize.labels(output, action)
        for watch in watches:
            for outcome in _OUTCOMES:
                self.poll_runs.labels(watch, outcome)
            for purpose in ("first", "settle", "follow", "split"):
                self.searches.labels(watch, purpose)
            for error_type in _ERROR_TYPES:
                self.poll_errors.labels(watch, error_type)
                self.poll_failing.labels(watch, error_type)
            for reason in _INVALID_REASONS:
                self.invalid.labels(watch, reason)
            for metric in (self.records_received, self.duplicates, self.splits, self.truncated, self.gaps,
                           self.clock_jumps):
                metric.labels(watch)
            for output in outputs:
                self.events.labels(watch, output)
        for output in outputs:
            self.sink_errors.labels(output)
            self.output_failing.labels(output)

    def poll_ended(self, watch: str, error_type: str | None) -> None:
        """Set ``poll_failing`` of ``watch``: 1 for ``error_type`` (``None``: the poll did not fail), 0 for the rest."""
        for known in {*_ERROR_TYPES, *([error_type] if error_type else [])}:
            self.poll_failing.labels(watch, known).set(1 if known == error_type else 0)


class Latest:
    """A gauge that is absent until its first ``set``: a value Mimecast has not sent is not a zero."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name, self._doc = name, documentation
        self._value: float | None = None
        registry.register(self)

    def set(self, value: float) -> None:
        """Record the latest value."""
        self._value = float(value)

    def collect(self) -> Iterator[Metric]:
        """One sample once a value is known, nothing before."""
        family = GaugeMetricFamily(self._name, self._doc)
        if self._value is not None:
            family.add_metric([], self._value)
        yield family


class Watermarks:
    """``watermark_timestamp_seconds`` read from the checkpoint at every scrape, so it is there from the start."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name, self._doc = name, documentation
        self._source: Callable[[], Mapping[str, datetime | None]] = dict
        registry.register(self)

    def follow(self, source: Callable[[], Mapping[str, datetime | None]]) -> None:
        """Read the watermark of each watch from ``source`` (watch name to watermark, ``None`` if none yet)."""
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """One sample per watch that has a watermark."""
        family = GaugeMetricFamily(self._name, self._doc, labels=("watch",))
        for watch, watermark in sorted(self._source().items()):
            if watermark is not None:
                family.add_metric([watch], watermark.timestamp())
        yield family


class _WithoutCreated:
    """A view of a registry for exposition without the ``_created`` samples.

    They are a third of all samples and nothing here uses them. prometheus_client can only drop them for the
    whole process (``disable_created_metrics``), which would reach into every other registry.
    """

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        """Each family of the registry, less its ``_created`` samples."""
        for family in self._registry.collect():
            created = family.name + "_created"
            if any(s.name == created for s in family.samples):
                family.samples = [s for s in family.samples if s.name != created]
            yield family

    def restricted_registry(self, names: Iterable[str]) -> _WithoutCreated:
        """The same view over only the series ``names`` (``/metrics?name[]=...``)."""
        return _WithoutCreated(self._registry.restricted_registry(names))


def serve_metrics(metrics: Metrics, host: str, port: int) -> Any:
    """Serve ``/metrics`` on ``host:port`` from one thread, connections bounded and each with a deadline;
    return the server (call ``shutdown()`` then ``server_close()`` to stop)."""
    return MetricsServer(_WithoutCreated(metrics.registry), host, port).start()
