"""One POST to Mimecast, timed, with transport failures turned into typed errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from collector.errors import ApiError, TransientApiError

__all__ = ["Observer", "post", "tls_failure"]

Observer = Callable[[str, str, float], None]


def tls_failure(exc: requests.exceptions.SSLError) -> ApiError:
    """A TLS failure talking to Mimecast: not retried, because retrying cannot fix a certificate."""
    reason = exc.args[0] if exc.args else exc
    detail = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(reason) else type(reason).__name__
    return ApiError(f"TLS verification of Mimecast failed ({detail}); check base_url, tls_verify (a CA bundle "
                    "for a TLS-inspecting proxy) and proxy")


def post(session: requests.Session, url: str, *, endpoint: str, what: str, observe: Observer,
         timeout: float, **kwargs: Any) -> requests.Response:
    """POST ``url`` and report its code and latency to ``observe`` (``endpoint``, ``code``, seconds).

    Raises:
        TransientApiError: a timeout or connection failure (retryable).
        ApiError: TLS verification failed (not retryable).
    """
    started = time.monotonic()
    try:
        response = session.post(url, timeout=timeout, **kwargs)
    except requests.Timeout:
        observe(endpoint, "timeout", time.monotonic() - started)
        raise TransientApiError(f"{what} timed out after {timeout:g}s", kind="timeout") from None
    except requests.exceptions.SSLError as exc:
        observe(endpoint, "tls", time.monotonic() - started)
        raise tls_failure(exc) from None
    except requests.RequestException as exc:
        observe(endpoint, "connection", time.monotonic() - started)
        raise TransientApiError(f"{what} failed: {type(exc).__name__}", kind="connection") from None
    observe(endpoint, str(response.status_code), time.monotonic() - started)
    return response
