"""Prometheus metrics on a registry passed in; labels stay bounded (watch, output, endpoint, code, reason)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

from collector import __version__

__all__ = ["Metrics", "serve_metrics"]

_NS = "mimecast_collector"
_API_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_POLL_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600)
_ANSWER_BUCKETS = (0, 1, 10, 25, 50, 75, 90, 99, 100, 250, 500, 1000, 5000)
_OUTCOMES = ("success", "failure", "interrupted", "crash")
_ERROR_TYPES = ("auth", "binding_expired", "rate_limited", "server_error", "timeout", "connection",
                "malformed_response", "api_fail", "sink", "state", "api", "internal")
_INVALID_REASONS = ("missing_id", "bad_received", "not_an_object", "format_error")
_RETRY_REASONS = ("token_expired", "server_error", "timeout", "connection", "malformed_response", "api_fail")


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
        self.rate_limit_remaining = gauge("rate_limit_remaining", "X-RateLimit-Remaining of Mimecast's latest answer.")
        self.rate_limit_limit = gauge("rate_limit_limit", "X-RateLimit-Limit of Mimecast's latest answer.")
        self.rate_limit_wait = counter("rate_limit_wait_seconds", "Seconds spent waiting out rate limits.")
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
        self.poll_runs = counter("poll_runs", "Poll cycles by outcome (success, failure).", ("watch", "outcome"))
        self.poll_errors = counter("poll_errors", "Failed poll cycles by error type.", ("watch", "error_type"))
        self.poll_duration = Histogram(f"{_NS}_poll_duration_seconds", "Duration of one poll cycle.",
                                       ("watch",), buckets=_POLL_BUCKETS, registry=registry)
        self.poll_running = gauge("poll_running_seconds", "How long the running poll of the watch has been "
                                  "running (0 between polls).", ("watch",))
        self.last_success = gauge("last_success_timestamp_seconds", "When a poll of the watch last succeeded.",
                                  ("watch",))
        self.watermark = gauge("watermark_timestamp_seconds", "Everything received before this is shipped.",
                               ("watch",))
        self.sink_errors = counter("sink_errors", "Chunks an output failed to take.", ("output",))
        self.syslog_oversize = counter("syslog_oversize", "Syslog messages over max_message_bytes, by action.",
                                       ("output", "action"))
        self.state_write_errors = counter("state_write_errors", "Failed writes of the checkpoint file.")
        self.build_info = gauge("build_info", "Version of the running collector.", ("version",))
        self.build_info.labels(__version__).set(1)
        if process:
            ProcessCollector(registry=registry)


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
            for reason in _INVALID_REASONS:
                self.invalid.labels(watch, reason)
            for metric in (self.records_received, self.duplicates, self.splits, self.truncated, self.gaps,
                           self.clock_jumps):
                metric.labels(watch)
            for output in outputs:
                self.events.labels(watch, output)
        for output in outputs:
            self.sink_errors.labels(output)


def serve_metrics(metrics: Metrics, host: str, port: int) -> Any:
    """Serve ``/metrics`` on ``host:port``; return the server (call ``shutdown()`` to stop)."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
