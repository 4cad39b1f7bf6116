"""The collector's one error hierarchy.

Every error carries a short, bounded ``error_type`` usable as a metric label
(never a message id, an address or raw text)::

    CollectorError
    ├── ConfigError              the configuration is invalid (exit 78)
    ├── StateError               the checkpoint cannot be used
    │   ├── StateCorruptError    unreadable or of an unknown shape
    │   ├── StateResourceError   the disk is full, read-only or not permitted (exit 75)
    │   └── StateLockedError     another instance holds the lock
    ├── ApiError                 talking to Mimecast failed
    │   ├── AuthError            401/403 or bad client credentials: not retried
    │   ├── BindingExpiredError  418: the API 1.0 key binding lapsed
    │   ├── EndpointNotFoundError  404: base_url does not lead to Mimecast's API
    │   ├── TlsError             TLS failed: verification, or not TLS at all on that port
    │   ├── RateLimitedError     429 for longer than the collector may wait
    │   ├── TransientApiError    5xx, timeouts, connection errors
    │   ├── MalformedResponseError  a body that is not the documented JSON
    │   ├── AnswerTooLargeError  an answer over mimecast.max_answer_bytes, refused unread
    │   └── ApiFailError         a ``fail`` entry or a non-200 ``meta.status``
    ├── RecordError              one tracked email is unusable: set aside, counted
    ├── SinkError                an output could not take a chunk
    └── CancelledError           shutdown was requested during a wait
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AnswerTooLargeError",
    "ApiError",
    "ApiFailError",
    "AuthError",
    "BindingExpiredError",
    "CancelledError",
    "CollectorError",
    "ConfigError",
    "EndpointNotFoundError",
    "MalformedResponseError",
    "RateLimitedError",
    "RecordError",
    "SinkError",
    "StateCorruptError",
    "StateError",
    "StateLockedError",
    "StateResourceError",
    "TlsError",
    "TransientApiError",
]


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""

    error_type = "error"


class ConfigError(CollectorError):
    """The configuration is invalid; ``problems`` lists every ``dotted.path: reason``."""

    error_type = "config"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class StateError(CollectorError):
    """The checkpoint file cannot be read, written or locked."""

    error_type = "state"


class StateCorruptError(StateError):
    """The checkpoint file exists but cannot be understood."""

    error_type = "state_corrupt"


class StateResourceError(StateError):
    """The checkpoint is fine but its file system is not: full, read-only, not permitted, failing I/O.

    Retrying once space, the mount or the permissions are fixed continues from the checkpoint; it is never a
    reason to move the database aside.
    """

    error_type = "state_resource"


class StateLockedError(StateError):
    """Another collector instance is using the same checkpoint file."""

    error_type = "state_locked"


class ApiError(CollectorError):
    """A Mimecast request failed.

    Attributes:
        status: the HTTP status, when there was a response.
        code: Mimecast's error code (``err_...``), when it sent one.
    """

    error_type = "api"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class AuthError(ApiError):
    """Mimecast refused the credentials (401/403, invalid client): not retried."""

    error_type = "auth"


class BindingExpiredError(ApiError):
    """HTTP 418: the API 1.0 access key and secret key binding has expired."""

    error_type = "binding_expired"


class EndpointNotFoundError(ApiError):
    """HTTP 404 from the token or search endpoint: base_url (or a path under it) is wrong; not retried."""

    error_type = "not_found"


class TlsError(ApiError):
    """TLS with Mimecast failed; ``error_type`` says how: ``tls_verify`` (the certificate) or ``tls_protocol``
    (no TLS at all on that port). Not retried: retrying cannot fix either."""

    error_type = "tls_verify"

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.error_type = kind


class RateLimitedError(ApiError):
    """HTTP 429 persisted past the longest wait the collector allows in one call."""

    error_type = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, wait_seconds: float, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.wait_seconds = wait_seconds


class TransientApiError(ApiError):
    """A failure that may pass: 5xx, timeout or connection error."""

    error_type = "transient"
    retryable = True

    def __init__(self, message: str, *, kind: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.error_type = kind


class MalformedResponseError(ApiError):
    """The response body is not the JSON envelope Mimecast documents."""

    error_type = "malformed_response"
    retryable = True


class AnswerTooLargeError(ApiError):
    """An answer larger than ``mimecast.max_answer_bytes``: refused before it fills memory; a narrower window
    may pass, the same one will not."""

    error_type = "answer_too_large"

    def __init__(self, message: str, *, share: float = 0.5) -> None:
        super().__init__(message)
        #: At most this share of the answer would have fitted: the limit over its declared size, or a half when
        #: the answer gave no size and was cut at the limit.
        self.share = share


class ApiFailError(ApiError):
    """Mimecast reported a function-level failure (``fail`` or ``meta.status``)."""

    error_type = "api_fail"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message, status=status, code=code)
        self.retryable = retryable


class RecordError(CollectorError):
    """One tracked email cannot be used; ``reason`` is a bounded label."""

    error_type = "invalid_record"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class SinkError(CollectorError):
    """An output failed to write or flush a chunk; the chunk is not committed."""

    error_type = "sink"

    def __init__(self, output: str, detail: str) -> None:
        self.output = output
        super().__init__(f"output {output!r}: {detail}")


class CancelledError(CollectorError):
    """Shutdown was requested while the collector was waiting."""

    error_type = "cancelled"
